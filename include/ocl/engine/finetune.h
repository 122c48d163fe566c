// Full fine-tuning of a pre-trained encoder (MAE's main_finetune; docs/method.md): the whole ViT
// with a new head under MAE's recipe on the shared loop, evaluated after every epoch;
// docs/evaluation.md gives the output folder's files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/adamw.h>

#include "ocl/data/dataset.h"
#include "ocl/data/mixing.h"
#include "ocl/data/transforms.h"
#include "ocl/distributed/communicator.h"
#include "ocl/engine/classifier.h"
#include "ocl/engine/loop.h"
#include "ocl/engine/run.h"
#include "ocl/io/config.h"
#include "ocl/nn/vision_transformer.h"
#include "ocl/optim/model_ema.h"
#include "ocl/optim/param_groups.h"

namespace ocl::engine {

/// The configured ViT as MAE fine-tunes it: finetune.drop_path and global_pool, a head of
/// `num_classes`, trainable patch embedding and positions; initialised from the seed.
nn::VisionTransformer build_finetune_model(const io::Config& config, int64_t num_classes);

/// `model` in eval mode (its mode restored after) on the validation images; with `comm`, sharded
/// over ranks.
ClassifierAccuracy evaluate_classifier(nn::VisionTransformer& model, const data::Dataset& val,
                                       const data::Transform& transform,
                                       const torch::Device& device, int64_t batch, int64_t workers,
                                       bool bf16, distributed::Communicator* comm = nullptr);

struct FinetuneOptions : RunOptions {
  /// Encoder weights (load_encoder_weights, "none": the random baseline); required unless a
  /// checkpoint is resumed, which eval_only requires.
  std::string weights;
};

using FinetuneResult = ClassifierRunResult;

class Finetuner : private TrainingEngine {
 public:
  Finetuner(io::Config config, FinetuneOptions options);
  ~Finetuner() override;
  Finetuner(const Finetuner&) = delete;
  Finetuner& operator=(const Finetuner&) = delete;

  FinetuneResult run();

 private:
  torch::nn::Module& trained_module() override { return *model_; }
  const std::vector<torch::Tensor>& trainable() override { return trainable_; }
  void set_lr(double lr) override;
  MicroStep forward(const data::Batch& batch, const StepContext& at) override;
  void update() override;
  EpochReport end_of_epoch(const io::TrainingState& state) override;
  CheckpointTensors checkpoint_tensors() override;
  ClassifierAccuracy evaluate(nn::VisionTransformer& model);
  std::shared_ptr<const data::Transform> train_transform() const;
  void log_setup(const data::Transform& train_transform) const;

  io::Config config_;
  SectionRecipe recipe_;  // processes × batch × accumulation, peak lr
  RunContext run_;
  nn::VisionTransformer model_{nullptr};
  std::unique_ptr<optim::ModelEma> ema_;
  std::vector<optim::ParamGroup> groups_;
  std::vector<torch::Tensor> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  bool fused_adamw_ = false;  // optim.fused resolved for the device (optim::adamw_step)
  data::MixupOptions mixup_;
  data::RandomErasingOptions erasing_;
  std::shared_ptr<const data::Dataset> train_set_, val_set_;
  std::shared_ptr<const data::Transform> val_transform_;
  std::unique_ptr<TrainingLoop> loop_;  // none when eval_only
  ValidationRecord record_;
};

}  // namespace ocl::engine
