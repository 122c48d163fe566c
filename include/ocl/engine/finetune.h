// Full fine-tuning of a pre-trained encoder (MAE's main_finetune, PAPER.md "Fine-tuning"): the
// whole ViT trains with a new linear head, the patch embedding and positions included, under
// MAE's recipe: layer-wise lr decay, AdamW with warmup + cosine, drop path, RandAugment, random
// erasing, mixup / cutmix with label smoothing (soft-target cross-entropy), global average
// pooling + fc_norm, optional gradient clipping and a model EMA. Top-1 / top-5 on the
// validation split (Resize + CenterCrop) after every epoch.
//
//   auto config = ocl::io::load_config("configs/vitb16.yaml");
//   ocl::engine::FinetuneOptions options;
//   options.weights = "runs/vitb16/checkpoint-last";   // or a converted .safetensors, or "none"
//   ocl::engine::Finetuner tuner(config, options);    // model, data, optimiser; resumes
//   auto result = tuner.run();                        // result.best_top1, .last_top1
//
// One process or many (the launchers of pre-training): each rank reads its shard of the
// training set, gradients are averaged over ranks (bucketed all-reduce), evaluation is sharded
// and every validation image counts exactly once.
//
// The output folder (finetune.output_dir, else <train.output_dir>/finetune) holds config.yaml,
// train.log, metrics.jsonl ("finetune_step" records every log.every steps, "finetune_epoch"
// records with train_loss, top1, top5, val_loss, best_top1 and, with an EMA, ema_top1),
// checkpoint folders as in pre-training (encoder.safetensors = the whole classifier in timm
// names; trainer.safetensors = AdamW moments, the EMA as "ema.<name>", the best figures) with
// `checkpoint-last`, and model-best.safetensors: the classifier of the best epoch, in timm names.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <torch/optim/adamw.h>

#include "ocl/data/dataset.h"
#include "ocl/data/loader.h"
#include "ocl/data/mixing.h"
#include "ocl/data/transforms.h"
#include "ocl/dist/communicator.h"
#include "ocl/dist/grad_sync.h"
#include "ocl/dist/launch.h"
#include "ocl/engine/checkpoint.h"
#include "ocl/engine/console.h"
#include "ocl/engine/metrics.h"
#include "ocl/io/config.h"
#include "ocl/nn/vision_transformer.h"
#include "ocl/optim/param_groups.h"
#include "ocl/optim/schedule.h"

namespace ocl::engine {

/// The fine-tuning model of `config`: the configured ViT with finetune.drop_path, a head of
/// `num_classes`, finetune.global_pool, a trainable patch embedding and trainable positions
/// (timm's VisionTransformer, as MAE fine-tunes it), initialised from the seed, then the head
/// re-initialised as MAE does (weight ~ N(0, (2e-5)²), bias 0).
nn::VisionTransformer build_finetune_model(const io::Config& config, int64_t num_classes);

/// An exponential moving average of a model's parameters and buffers (timm's ModelEmaV2):
/// after each optimiser step, ema = decay · ema + (1 − decay) · model.
class ModelEma {
 public:
  ModelEma(const nn::VisionTransformer& model, double decay);
  void update(const nn::VisionTransformer& model);
  nn::VisionTransformer& model() { return ema_; }
  double decay() const { return decay_; }

 private:
  nn::VisionTransformer ema_{nullptr};
  double decay_;
};

struct ClassifierAccuracy {
  double top1 = 0, top5 = 0;  // percent (top-k with k = min(5, classes))
  double loss = 0;            // mean cross-entropy (hard labels)
  int64_t images = 0;         // every validation image once, all ranks together
};

/// `model` (eval mode, no gradients, bf16 autocast when asked) on the validation images; the
/// model's mode is restored. With `comm`, sharded over ranks and gathered exactly once.
ClassifierAccuracy evaluate_classifier(nn::VisionTransformer& model, const data::Dataset& val,
                                       const data::Transform& transform,
                                       const torch::Device& device, int64_t batch, int64_t workers,
                                       bool bf16, dist::Communicator* comm = nullptr);

struct FinetuneOptions {
  /// Encoder weights (load_encoder_weights): a checkpoint folder, an encoder.safetensors, or
  /// "none" (the random encoder: the baseline). Required unless a checkpoint is resumed;
  /// ignored when one is.
  std::string weights;
  /// "" (start fresh), "auto" (continue from <output>/checkpoint-last when there is one) or a
  /// fine-tuning checkpoint folder.
  std::string resume;
  /// Start fresh in an output folder that holds another fine-tuning run's checkpoints.
  bool overwrite = false;
  /// Only evaluate (the resumed model, else the loaded weights) and return (MAE's --eval).
  bool eval_only = false;
  /// Set by a signal handler: the current step finishes, a checkpoint is written, run() returns.
  const std::atomic<int>* stop_requested = nullptr;
  /// Stop as if signalled after this many optimiser steps of this run (tests); 0 = never.
  int64_t stop_after_steps = 0;
  std::shared_ptr<ConsoleSink> console;  // nullptr = plain lines on stdout
  dist::LaunchInfo launch;               // default: a single process
};

struct FinetuneEpoch {
  int64_t epoch = 0;  // 1-based: the epochs completed
  double train_loss = 0;
  double lr = 0;  // at the epoch's last step (the head's, scale 1)
  double top1 = 0, top5 = 0, val_loss = 0;
  double ema_top1 = -1;  // with finetune.model_ema
  double seconds = 0;
};

struct FinetuneResult {
  std::vector<FinetuneEpoch> epochs;  // the epochs this run() trained
  int64_t epochs_done = 0;
  double best_top1 = -1;  // percent, over all epochs (resumed ones included)
  int64_t best_epoch = 0;
  double last_top1 = -1, last_top5 = -1;
  bool interrupted = false;
  bool nothing_to_do = false;  // resumed from a finished run
  std::string checkpoint;      // the last checkpoint written or resumed, "" if none
};

class Finetuner {
 public:
  Finetuner(io::Config config, FinetuneOptions options);
  ~Finetuner();
  Finetuner(const Finetuner&) = delete;
  Finetuner& operator=(const Finetuner&) = delete;

  FinetuneResult run();

  nn::VisionTransformer& model() { return model_; }
  const std::vector<optim::ParamGroup>& param_groups() const { return groups_; }
  const std::string& output_dir() const { return out_; }

 private:
  struct StepFigures;
  bool is_writer() const { return rank_ == 0; }
  void train_step(StepFigures& figures);
  ClassifierAccuracy evaluate(nn::VisionTransformer& model);
  std::string write_checkpoint();
  void write_best_model();

  io::Config config_;
  FinetuneOptions options_;
  int64_t rank_ = 0, world_size_ = 1;
  std::string out_;
  std::string config_yaml_;
  std::shared_ptr<ConsoleSink> console_;
  std::shared_ptr<spdlog::logger> logger_;
  torch::Device device_{torch::kCPU};
  bool bf16_ = false;
  bool tf32_ = false;  // train.tf32 applied (CUDA only: set_tf32)
  double lr_ = 0;      // peak lr (blr · effective batch / 256 unless finetune.lr)
  int64_t effective_batch_ = 0;

  nn::VisionTransformer model_{nullptr};
  std::unique_ptr<ModelEma> ema_;
  std::vector<optim::ParamGroup> groups_;
  std::vector<torch::Tensor> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  bool fused_adamw_ = false;  // optim.fused resolved for device_ (optim::adamw_step)
  optim::CosineSchedule schedule_;
  data::MixupOptions mixup_;
  data::RandomErasingOptions erasing_;

  std::shared_ptr<const data::Dataset> train_set_, val_set_;
  std::shared_ptr<const data::Transform> val_transform_;
  std::unique_ptr<data::Loader> loader_;
  int64_t steps_per_epoch_ = 0;

  std::unique_ptr<dist::Communicator> comm_;
  std::unique_ptr<dist::GradSynchronizer> grad_sync_;
  std::unique_ptr<MetricsLog> metrics_;

  TrainingState state_;
  double best_top1_ = -1;
  int64_t best_epoch_ = 0;
  std::string last_checkpoint_;
  int64_t steps_this_run_ = 0;
};

}  // namespace ocl::engine
