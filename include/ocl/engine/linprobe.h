// The linear probe (MAE's main_linprobe; docs/method.md): BatchNorm + Linear on a frozen
// encoder's CLS feature, trained with LARS on the shared loop, evaluated after every epoch on
// features extracted once (linprobe.cached_features: the training ones too). docs/evaluation.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"
#include "ocl/distributed/communicator.h"
#include "ocl/engine/classifier.h"
#include "ocl/engine/knn.h"
#include "ocl/engine/loop.h"
#include "ocl/engine/run.h"
#include "ocl/io/config.h"
#include "ocl/nn/linear_probe_head.h"
#include "ocl/nn/vision_transformer.h"
#include "ocl/optim/lars.h"

namespace ocl::engine {

/// LARS over the head as MAE's probe builds it: momentum 0.9, trust 0.001.
optim::Lars make_linprobe_lars(nn::LinearProbeHead& head, double weight_decay);

/// The head in eval mode (its mode restored after) on every row of `val`; with `comm`, each rank
/// scores its share and returns the figures of the whole set.
ClassifierAccuracy evaluate_head(nn::LinearProbeHead& head, const Features& val,
                                 const torch::Device& device,
                                 distributed::Communicator* comm = nullptr, int64_t batch = 4096);

/// Cached training features as micro-batches (Batch::images: features [b, D]): each epoch in an
/// order drawn from (seed, epoch), sharded over ranks as the image loader does; an epoch is whole
/// global steps of B·accum·W rows.
class FeatureRows : public BatchSource {
 public:
  FeatureRows(Features rows, int64_t batch_size, int64_t accum_iter, uint64_t seed,
              int64_t rank = 0, int64_t world_size = 1);
  int64_t batches_per_epoch() const override;
  void start_epoch(int64_t epoch, int64_t first_batch) override;
  data::Batch next() override;
  int64_t size() const override { return rows_.labels.size(0); }

 private:
  Features rows_;
  int64_t batch_size_, accum_iter_, rank_, world_size_;
  uint64_t seed_;
  torch::Tensor order_;  // this epoch's row order
  int64_t next_ = 0;     // the next micro-batch of the epoch
};

struct LinearProbeOptions : RunOptions {
  /// Encoder weights (load_encoder_weights; "none": the random baseline).
  std::string weights = "none";
};

using LinprobeResult = ClassifierRunResult;

/// The checkpoints' model file: the head, in the names of nn::LinearProbeHead.
inline constexpr const char* kHeadFile = "head.safetensors";

class LinearProbe : private TrainingEngine {
 public:
  /// Sets the run up (in linprobe.output_dir, else <train.output_dir>/linprobe), builds encoder,
  /// head, LARS and data, and loads the checkpoint to resume from.
  LinearProbe(io::Config config, LinearProbeOptions options);
  ~LinearProbe() override;

  /// Trains (evaluating after each epoch); with eval_only, evaluates the head only.
  LinprobeResult run();

 private:
  torch::nn::Module& trained_module() override { return *head_; }
  const std::vector<torch::Tensor>& trainable() override { return trainable_; }
  void set_lr(double lr) override { lars_->set_lr(lr); }
  MicroStep forward(const data::Batch& batch, const StepContext& at) override;
  void update() override { lars_->step(); }
  EpochReport end_of_epoch(const io::TrainingState& state) override;
  CheckpointTensors checkpoint_tensors() override;
  ClassifierAccuracy evaluate();  // BatchNorm statistics from rank 0, then the sharded evaluation
  Features extract(const data::Dataset& set, const data::Transform& transform);
  std::unique_ptr<TrainingLoop> make_loop(const io::DataConfig& data_config,
                                          const data::Transform& eval_transform,
                                          int64_t& cached_rows);
  void resume(const io::Checkpoint& checkpoint, int64_t dim);
  void log_setup(const data::Dataset& val_set) const;

  io::Config config_;
  SectionRecipe recipe_;  // processes × batch × accumulation, peak lr
  RunContext run_;
  nn::VisionTransformer encoder_{nullptr};
  nn::LinearProbeHead head_{nullptr};
  std::vector<torch::Tensor> trainable_;
  std::unique_ptr<optim::Lars> lars_;
  std::shared_ptr<const data::Dataset> train_set_;
  Features val_features_;
  std::unique_ptr<TrainingLoop> loop_;  // none when eval_only
  ValidationRecord record_;
};

}  // namespace ocl::engine
