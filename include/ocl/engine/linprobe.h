// The linear probe (MAE's main_linprobe, PAPER.md "Linear probing"): a frozen encoder's CLS
// feature after the final norm → BatchNorm1d(D, affine=false, eps 1e-6) → Linear(D, classes),
// only the head trained, with LARS (momentum 0.9, trust 0.001), warmup + cosine lr, cross-entropy,
// RandomResizedCrop + flip; top-1/top-5 on the validation split (Resize + CenterCrop) after every
// epoch. One process or many (the launchers of pre-training): each rank reads its shard, head
// gradients are averaged, the BatchNorm running statistics are rank 0's (DDP's
// broadcast_buffers), evaluation is sharded and every validation image counts exactly once.
//
//   auto config = ocl::io::load_config("configs/quickstart.yaml");
//   ocl::engine::LinprobeOptions options;
//   options.weights = "runs/quickstart/checkpoint-last";     // or "none": the random baseline
//   ocl::engine::LinearProbe probe(config, options);          // encoder, head, data; resumes
//   auto result = probe.run();                               // result.best_top1, .last_top1
//
// The encoder is frozen and in eval mode, so the validation features never change: they are
// extracted once and the head is evaluated on them every epoch (the same figures as running the
// encoder each time). With linprobe.cached_features the training features are extracted once
// too, through the evaluation transform (no augmentation): much faster, but another protocol.
//
// The output folder (linprobe.output_dir, else <train.output_dir>/linprobe) holds config.yaml,
// train.log, metrics.jsonl ("linprobe_step" records every log.every steps of the image path,
// "linprobe_epoch" records with top1, top5, best_top1) and checkpoint.safetensors: head.*, the
// LARS momentum optim.<param>.momentum, and the epoch, best and last figures and config in its
// metadata; rewritten atomically every linprobe.save_every epochs and at the end.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include "ocl/data/loader.h"
#include "ocl/dist/communicator.h"
#include "ocl/dist/grad_sync.h"
#include "ocl/dist/launch.h"
#include "ocl/engine/console.h"
#include "ocl/engine/knn.h"
#include "ocl/engine/metrics.h"
#include "ocl/io/config.h"
#include "ocl/optim/lars.h"
#include "ocl/optim/schedule.h"

namespace ocl::engine {

/// MAE's probe head: BatchNorm1d(dim, affine=false, eps=1e-6) then Linear(dim, num_classes).
/// Tensors: bn.running_mean, bn.running_var, bn.num_batches_tracked, fc.weight, fc.bias.
class LinprobeHeadImpl : public torch::nn::Module {
 public:
  LinprobeHeadImpl(int64_t dim, int64_t num_classes);
  /// fc.weight ~ N(0, 0.01²) from the global generator, fc.bias = 0. MAE calls
  /// trunc_normal_(std=0.01) with timm's default bounds ±2, i.e. ±200σ: a plain normal.
  void reset_parameters();
  /// features [B, D] → logits [B, num_classes].
  torch::Tensor forward(const torch::Tensor& features);

  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(LinprobeHead);

/// LARS over the head as MAE's probe builds it: momentum 0.9, trust 0.001, weight decay
/// (on fc.weight only, LARS skips vectors) as given.
optim::Lars make_linprobe_lars(LinprobeHead& head, double weight_decay);

struct ProbeAccuracy {
  double top1 = 0;     // percent
  double top5 = 0;     // percent (top-k with k = min(5, classes))
  int64_t images = 0;  // validation images counted (all ranks together)
};

/// The head (in eval mode: BatchNorm running statistics) on every row of `val`, `batch` rows
/// at a time; the head's mode is restored. With `comm`, rank r scores rows r, r + W, ... and
/// the hit counts are summed: every rank returns the figures of the whole set.
ProbeAccuracy evaluate_head(LinprobeHead& head, const Features& val, const torch::Device& device,
                            dist::Communicator* comm = nullptr, int64_t batch = 4096);

struct FeatureEpochOptions {
  int64_t batch_size = 512;  // rows per process and micro-batch
  int64_t accum_iter = 1;    // micro-batches per LARS step
  uint64_t seed = 0;         // with the epoch, fixes the row order
  int64_t first_step = 0;    // resume inside the epoch
  int64_t rank = 0, world_size = 1;
  torch::Device device{torch::kCPU};
  bool overlap = true;  // the gradient all-reduce during the last backward (dist.overlap)
};

/// LARS steps per epoch of the cached-features path: whole global batches of
/// batch_size · accum_iter · world_size rows (the last partial one is dropped).
int64_t feature_steps_per_epoch(int64_t rows, const FeatureEpochOptions& options);

/// One epoch of the cached-features path: the head (train mode) on the rows of `train` in an
/// order drawn from (seed, epoch), global step k taking positions [k·G, (k+1)·G) of it
/// (G = batch·accum·W) and rank r every W-th of them, as the image loader shards; lr per step
/// from `schedule` at the fractional epoch. With `sync`, gradients are averaged over ranks.
/// Returns the mean cross-entropy of the steps taken (this rank's).
double train_head_on_features(LinprobeHead& head, optim::Lars& lars,
                              const optim::CosineSchedule& schedule, const Features& train,
                              int64_t epoch, const FeatureEpochOptions& options,
                              dist::GradSynchronizer* sync = nullptr);

struct LinprobeOptions {
  /// Encoder weights (load_encoder_weights): a checkpoint folder, an encoder.safetensors, or
  /// "none" (the random encoder: the baseline).
  std::string weights = "none";
  /// "" (start fresh), "auto" (continue from <output_dir>/checkpoint.safetensors when there is
  /// one) or the path of a probe checkpoint (the file, or the folder holding it).
  std::string resume;
  /// Start fresh in an output folder that holds another probe's checkpoint.
  bool overwrite = false;
  /// Only evaluate the head (the resumed one, else the initial one) and return (MAE's --eval).
  bool eval_only = false;
  /// Set by a signal handler: the current step finishes, a checkpoint is written, run() returns.
  const std::atomic<int>* stop_requested = nullptr;
  /// Console sink; nullptr = plain lines on stdout.
  std::shared_ptr<ConsoleSink> console;
  /// This process's place in a distributed run; the default is a single process.
  dist::LaunchInfo launch;
};

struct LinprobeEpoch {
  int64_t epoch = 0;  // 1-based: the epochs completed
  double loss = 0;    // mean training loss (rank 0's)
  double lr = 0;      // at the epoch's last step
  double top1 = 0, top5 = 0;
  double seconds = 0;
};

struct LinprobeResult {
  std::vector<LinprobeEpoch> epochs;  // the epochs this run() call trained
  int64_t epochs_done = 0;
  double best_top1 = -1;  // percent, over all epochs of the probe (resumed ones included)
  int64_t best_epoch = 0;
  double last_top1 = -1, last_top5 = -1;  // the final head's
  bool interrupted = false;               // stopped by a signal before the end
  bool nothing_to_do = false;             // resumed from a finished probe
  std::string checkpoint;                 // the last checkpoint written or resumed, "" if none
};

class LinearProbe {
 public:
  /// Validates the config, prepares the output folder (linprobe.output_dir, else
  /// <train.output_dir>/linprobe), builds the frozen encoder (weights loaded and described in
  /// the log), the head, LARS, the data, and loads the checkpoint to resume from. Throws with a
  /// message naming the problem.
  LinearProbe(io::Config config, LinprobeOptions options);
  ~LinearProbe();

  /// Trains until linprobe.epochs are done (evaluating after each) or a stop is requested.
  LinprobeResult run();

  const std::string& output_dir() const { return out_; }
  LinprobeHead& head() { return head_; }
  std::shared_ptr<spdlog::logger> logger() const { return logger_; }

 private:
  double train_epoch_images(bool& stop);  // one epoch (from step_) through encoder + head
  ProbeAccuracy evaluate();               // BN statistics from rank 0, then the sharded eval
  void write_checkpoint();

  io::Config config_;
  LinprobeOptions options_;
  std::string out_, config_yaml_, checkpoint_path_;
  torch::Device device_{torch::kCPU};
  bool bf16_ = false;
  int64_t rank_ = 0, world_size_ = 1;
  int64_t effective_batch_ = 0;
  double lr_ = 0;
  std::unique_ptr<dist::Communicator> comm_;  // declared before sync_: destroyed after it
  std::unique_ptr<dist::GradSynchronizer> sync_;
  std::shared_ptr<ConsoleSink> console_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<MetricsLog> metrics_;
  nn::VisionTransformer encoder_{nullptr};
  LinprobeHead head_{nullptr};
  std::unique_ptr<optim::Lars> lars_;
  optim::CosineSchedule schedule_;
  std::shared_ptr<const data::Dataset> train_set_;
  std::unique_ptr<data::Loader> loader_;
  Features train_features_, val_features_;  // train only with cached_features
  int64_t num_classes_ = 0;
  int64_t steps_per_epoch_ = 0;
  int64_t epoch_ = 0, step_ = 0;  // the epoch in progress and LARS steps of it taken
  double best_top1_ = -1, last_top1_ = -1, last_top5_ = -1;
  int64_t best_epoch_ = 0;
  std::string resumed_from_;
};

}  // namespace ocl::engine
