// OCL pre-training on one or many processes: the epoch loop of MAE's engine_pretrain.py for OCL's
// step, with gradient accumulation, warmup + cosine lr, bf16 autocast, gradient clipping,
// non-finite handling, checkpoints and exact resume, a status line, train.log and metrics.jsonl.
// With several processes (PretrainOptions::launch), gradients are averaged by a bucketed all-reduce
// that overlaps backward, the CLS outputs are all-gathered for global negatives, each rank reads
// its shard of the data, and only rank 0 writes checkpoints, logs and metrics.
//
//   auto config = ocl::io::load_config("configs/quickstart.yaml");
//   ocl::engine::Pretrainer trainer(config, {});     // builds model, data, optimiser; resumes
//   auto result = trainer.run();                    // trains to config.train.epochs
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ocl/data/loader.h"
#include "ocl/dist/communicator.h"
#include "ocl/dist/grad_sync.h"
#include "ocl/dist/launch.h"
#include "ocl/engine/checkpoint.h"
#include "ocl/engine/console.h"
#include "ocl/engine/metrics.h"
#include "ocl/io/config.h"
#include "ocl/optim/param_groups.h"
#include "ocl/optim/schedule.h"
#include "ocl/ssl/ocl_model.h"

namespace ocl::engine {

struct PretrainOptions {
  /// "" (start fresh), "auto" (continue from output_dir/checkpoint-last when there is one) or
  /// the path of a checkpoint folder.
  std::string resume;
  /// Start fresh in an output folder that holds another run's config.
  bool overwrite = false;
  /// Set by a signal handler: the current step finishes, a checkpoint is written, run() returns.
  const std::atomic<int>* stop_requested = nullptr;
  /// Stop as if signalled once this many optimiser steps of the run are done (0 = never).
  int64_t stop_after_steps = 0;
  /// Console sink (status line); nullptr = plain lines on stdout.
  std::shared_ptr<ConsoleSink> console;
  /// Called before every optimiser step with the global step and the trainable parameters
  /// (their .grad() holds the step's gradient, after clipping): tests and debugging.
  std::function<void(int64_t, const std::vector<torch::Tensor>&)> before_optimizer_step;
  /// This process's place in a distributed run (dist::launch_from_environment()); the default
  /// is a single process.
  dist::LaunchInfo launch;
};

struct PretrainResult {
  TrainingState state;              // where the run stopped
  bool interrupted = false;         // stopped by a signal (or stop_after_steps) before the end
  std::string last_checkpoint;      // "" if none was written
  std::vector<double> step_losses;  // loss of every optimiser step taken by this run() call
  double knn_top1 = -1;             // the last kNN monitor top-1 (%), −1 if none ran
};

/// The OCL model a config describes (encoder sizes from `derived`), initialised from
/// config.train.seed: the same config always starts from the same weights.
ssl::OCL build_ocl_model(const io::Config& config, const io::DerivedConfig& derived);

/// The mask noise of micro-batch `micro` of optimiser step `global_step` for this rank's
/// `batch` rows: uniform [B, N], row i from a generator seeded by (seed, global_step, micro,
/// i·world_size + rank), the row's place in the step's global batch. So a resumed run draws the
/// same masks, and W processes × batch B draw for each image the mask that one process × batch
/// W·B draws for it (the loader hands rank r the global rows r, r + W, ...).
torch::Tensor step_mask_noise(uint64_t seed, int64_t global_step, int64_t micro, int64_t batch,
                              int64_t num_patches, int64_t rank = 0, int64_t world_size = 1);

/// Global negatives for ssl::OCL::forward: both groups' CLS outputs of every rank, gathered
/// with one differentiable all-gather; this rank's rows start at rank · B.
ssl::FeatureGather global_negatives(dist::Communicator& comm);

class Pretrainer {
 public:
  /// Validates the config, prepares the output folder (refusing one that holds a different
  /// run's config unless resuming or overwriting), builds data, model and optimiser, and loads
  /// the checkpoint to resume from. Throws with a message naming the problem.
  Pretrainer(io::Config config, PretrainOptions options);
  ~Pretrainer();

  /// Trains until config.train.epochs are done or a stop is requested.
  PretrainResult run();

  const io::Config& config() const { return config_; }
  const io::DerivedConfig& derived() const { return derived_; }
  ssl::OCL& model() { return model_; }
  const TrainingState& state() const { return state_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  std::shared_ptr<spdlog::logger> logger() const { return logger_; }
  /// The communicator and gradient synchroniser of a distributed run; null in one process.
  dist::Communicator* communicator() { return comm_.get(); }
  dist::GradSynchronizer* grad_sync() { return grad_sync_.get(); }

 private:
  struct StepStats;
  bool train_step(StepStats& stats);
  std::string write_checkpoint();
  void log_step(const StepStats& stats);
  double run_knn_monitor();
  bool is_writer() const { return rank_ == 0; }  // the stop decision, agreed by all ranks
  void verify_replicas();                        // throws if the ranks' parameters differ
  int64_t verified_step_ = 0;                    // the last global step verify_replicas() passed

  io::Config config_;
  io::DerivedConfig derived_;
  io::DataConfig data_config_;  // config_.data with the file-list cache folder resolved
  PretrainOptions options_;
  std::string config_yaml_;
  torch::Device device_{torch::kCPU};
  int64_t rank_ = 0, world_size_ = 1;
  std::unique_ptr<dist::Communicator> comm_;  // declared before grad_sync_: destroyed after it
  std::unique_ptr<dist::GradSynchronizer> grad_sync_;
  ssl::FeatureGather gather_;  // global negatives across ranks; null in one process or local
  bool bf16_ = false;
  bool tf32_ = false;  // train.tf32 applied (CUDA only: set_tf32)
  std::shared_ptr<ConsoleSink> console_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<MetricsLog> metrics_;
  ssl::OCL model_{nullptr};
  std::vector<optim::ParamGroup> groups_;
  std::vector<torch::Tensor> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  bool fused_adamw_ = false;  // optim.fused resolved for device_ (optim::adamw_step)
  optim::CosineSchedule schedule_;
  std::shared_ptr<const data::Dataset> train_set_;
  std::unique_ptr<data::Loader> loader_;
  int64_t steps_per_epoch_ = 0;
  TrainingState state_;
  std::string last_checkpoint_;
  std::shared_ptr<const data::Dataset> knn_bank_, knn_held_out_;  // kNN monitor, built on first use
  std::shared_ptr<const data::Transform> knn_transform_;
};

}  // namespace ocl::engine
