// The training loop of every engine (on a RunContext, engine/run.h): optimiser steps of accum_iter
// micro-batches, gradient all-reduce, clipping, the non-finite policy, logs, stops, checkpoints.
// Each step's randomness follows (seed, global step, micro-batch, rank) and each epoch's data
// order (seed, epoch), so a run stopped anywhere and resumed takes the steps of one that never did.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "ocl/data/loader.h"
#include "ocl/data/streaming.h"
#include "ocl/distributed/grad_sync.h"
#include "ocl/engine/run.h"
#include "ocl/optim/adamw_step.h"
#include "ocl/optim/schedule.h"

namespace ocl::engine {

/// Where a micro-batch stands: what its random draws may depend on.
struct StepContext {
  uint64_t seed = 0;
  int64_t epoch = 0, step_in_epoch = 0, global_step = 0;
  int64_t micro = 0;  // the micro-batch of the step
  int64_t rank = 0, world_size = 1;
  /// The micro-batch's place among the step's micro-batches of all ranks.
  int64_t slot() const { return micro * world_size + rank; }
};

/// A micro-batch's loss (back-propagated by the loop, scaled by 1 / accum_iter) and the engine's
/// figures (0-d tensors, in the order of TrainingEngine::figures()).
struct MicroStep {
  torch::Tensor loss;
  std::vector<torch::Tensor> figures;
};

/// A figure of a step besides the loss, averaged over micro-batches and ranks: recorded under
/// `name` in metrics.jsonl, shown in the log line as `label` (none when empty).
struct Figure {
  std::string name, label;
  int decimals = 3;
};

/// The micro-batches of an epoch, in order (a data::Loader, the probe's cached features).
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t batches_per_epoch() const = 0;  // this rank's
  virtual void start_epoch(int64_t epoch, int64_t first_batch) = 0;
  virtual data::Batch next() = 0;
  virtual int64_t bad_samples() const { return 0; }  // unreadable images so far
  virtual int64_t size() const = 0;                  // images (rows) of the training set
};

std::unique_ptr<BatchSource> loader_source(std::unique_ptr<data::Loader> loader);
/// A streamed training set (data/streaming.h); its size() is the epoch's samples.
std::unique_ptr<BatchSource> streaming_source(std::unique_ptr<data::StreamingLoader> loader);

/// An engine's part of the epoch's log line and metrics.jsonl record (after the loop's own).
struct EpochReport {
  std::string text;
  io::MetricFields fields;
};

/// An engine's checkpoint: its model file, the rest (optimiser state, ...) and the model file's
/// header (nn::encoder_metadata). Tensors on any device.
struct CheckpointTensors {
  io::TensorMap model, trainer;
  io::Metadata model_metadata;
};

class TrainingEngine {
 public:
  virtual ~TrainingEngine() = default;
  /// The module whose parameters the replica check compares.
  virtual torch::nn::Module& trained_module() = 0;
  /// The trainable parameters in optimiser order.
  virtual const std::vector<torch::Tensor>& trainable() = 0;
  virtual std::vector<Figure> figures() const { return {}; }
  virtual void set_lr(double lr) = 0;
  /// The forward of one micro-batch (train mode), its loss not yet back-propagated.
  virtual MicroStep forward(const data::Batch& batch, const StepContext& at) = 0;
  /// The optimiser step on the gradients (and what follows it: an EMA).
  virtual void update() = 0;
  /// Whether update_or_skip can skip on the device (train.host_sync: deferred; the fused AdamW).
  virtual bool can_skip_on_device() const { return false; }
  /// update(), left undone on the device where skip.found_inf is 1.
  virtual void update_or_skip(const optim::DeviceSkip& skip) { update(); }
  /// A step update_or_skip skipped on the device, learnt one step late (optim::uncount_adamw_step).
  virtual void forget_skipped_update() {}
  /// The staged step (train.cuda_graph), whose device work a CUDA graph can capture: stage()
  /// copies micro-batch at.micro's inputs into buffers of its own that keep their addresses and,
  /// for the first micro-batch, seeds what the forwards draw (outside the graph: the later
  /// micro-batches draw on from there, as inside a graph they must); forward_staged(micro) is
  /// forward() on those buffers, and update_staged() the update gated by found_inf with nothing
  /// read from the host (the learning rate set by set_lr before stage()). Engines without it
  /// leave can_stage() false.
  virtual bool can_stage() const { return false; }
  virtual void stage(const data::Batch& batch, const StepContext& at);
  virtual MicroStep forward_staged(int64_t micro);
  virtual void update_staged(const torch::Tensor& found_inf);
  /// After an epoch's last step (`state.epoch` counts it already): evaluation and the like.
  virtual EpochReport end_of_epoch(const io::TrainingState& state) = 0;
  virtual CheckpointTensors checkpoint_tensors() = 0;
};

/// What the loop does as the config says (the loop reads no config key itself).
struct LoopSettings {
  // The engine's section.
  int64_t epochs = 1, accum_iter = 1, batch_size = 1;
  int64_t save_every = 1, keep_last = 1;
  double clip_grad = 0;  // max gradient norm, 0 = off
  optim::CosineSchedule schedule;
  std::string section;  // "train" (with optim.accum_iter), "finetune", "linprobe": messages
  /// metrics.jsonl record types: "step"/"epoch" when empty, else "<records>_step"/"_epoch".
  std::string records;
  std::string nonfinite_hint;  // what to change, appended to a non-finite error
  // The run-wide keys (run_loop_settings).
  int64_t max_steps_per_epoch = 0;         // train.steps_per_epoch: a cap on every engine, 0 = none
  int64_t log_every = 1;                   // log.every: steps per log line and metrics record
  bool skip_nonfinite = false;             // train.on_nonfinite: skip (else stop)
  int64_t max_nonfinite_skips = 0;         // train.max_nonfinite_skips
  distributed::GradSyncOptions grad_sync;  // dist.bucket_mb, dist.first_bucket_mb
  bool overlap = true;                     // dist.overlap: all-reduce during backward
  int64_t verify_every = 0;                // dist.verify_every: replica check period, 0 = never
  /// train.host_sync: deferred: the non-finite check on the device and each step's figures read
  /// while the next step runs (where the engine can_skip_on_device); else read before the update.
  bool deferred_figures = false;
  /// train.cuda_graph: every step through the engine's staged path, its device work (with the
  /// all-reduces of a distributed run) run uncaptured for the first kGraphWarmUp steps, then
  /// captured as a CUDA graph and replayed. Needs deferred figures and, to capture, a CUDA
  /// device and NCCL; with capture_graph false (train.cuda_graph: staged) the staged path runs
  /// uncaptured every step.
  bool cuda_graph = false;
  bool capture_graph = true;
};
inline constexpr int64_t kGraphWarmUp = 3;

/// The run-wide part of LoopSettings from `config`.
LoopSettings run_loop_settings(const io::Config& config);

/// The loop settings of section `s` (fields of these names) with peak lr `lr`, records "<name>_*".
template <class Section>
LoopSettings section_loop_settings(const io::Config& config, const Section& s,
                                   const std::string& name, double lr) {
  LoopSettings settings = run_loop_settings(config);
  settings.epochs = s.epochs;
  settings.accum_iter = s.accum_iter;
  settings.batch_size = s.batch_size;
  settings.save_every = s.save_every;
  settings.keep_last = s.keep_last;
  settings.schedule = {lr, s.min_lr, s.warmup_epochs, static_cast<double>(s.epochs)};
  settings.section = name;
  settings.records = name;
  return settings;
}

struct LoopResult {
  bool interrupted = false;         // stopped by a signal or --stop-after-steps before the end
  std::vector<double> step_losses;  // every optimiser step of this run() call
  std::string last_checkpoint;      // "" if none was written or resumed
};

/// How a distributed step all-reduces gradients: as dist.overlap says, or forced (ocl_bench).
enum class GradSyncMode {
  kConfigured,     // dist.overlap
  kOverlapped,     // buckets all-reduced while backward runs
  kAfterBackward,  // every bucket all-reduced after backward
  kLocal,          // no all-reduce: each rank keeps its own gradients (a benchmark's baseline)
};

class TrainingLoop {
 public:
  /// Throws when the training set does not fill one optimiser step.
  TrainingLoop(RunContext& run, TrainingEngine& engine, std::unique_ptr<BatchSource> source,
               LoopSettings settings);
  ~TrainingLoop();

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  /// Distributed: the gradient synchroniser, parameters broadcast from rank 0 (after resuming).
  void connect_gradients();
  /// Trains until settings.epochs are done or a stop is asked for.
  LoopResult run();
  /// Writes a checkpoint of the current state (rank 0; "" on the others).
  std::string write_checkpoint();
  /// One step as run() takes it, without log, stop or checkpoint (ocl_bench). Returns its loss
  /// (deferred: the step before's, NaN for the first).
  double step();
  /// Replaces the source of the micro-batches (ocl_bench: one fixed batch on the device).
  void set_source(std::unique_ptr<BatchSource> source) { source_ = std::move(source); }
  distributed::GradSynchronizer* grad_sync() { return grad_sync_.get(); }
  /// How step() and run() all-reduce gradients from now on (ocl_bench --grad-sync).
  void set_grad_sync_mode(GradSyncMode mode) { grad_sync_mode_ = mode; }
  /// The mean of the engine's figure `name` over the current epoch so far (NaN before a step).
  double epoch_figure(const std::string& name) const;

 private:
  struct Step;
  struct Window;
  void begin_epoch();
  bool after_step(const Step& step, LoopResult& result);  // true: stopped mid-epoch
  void record_step(const Step& step);                     // window, epoch sums, log, status
  bool end_epoch(LoopResult& result);                     // true: stopped after the epoch
  void finish();
  Step train_step();
  // Forward + backward of the step's micro-batches (forward(micro)): their figures' sums.
  torch::Tensor accumulate(const std::function<MicroStep(int64_t micro)>& forward);
  // After accumulate: gradients averaged over ranks, clipped; the figures reduced over ranks.
  torch::Tensor reduce_step(const torch::Tensor& sums, const torch::Tensor& stop);
  data::Batch next_batch(Step& step);     // the source's next micro-batch, its wait counted
  StepContext step_context() const;       // the next step's, micro-batch 0
  torch::Tensor staged_step(Step& step);  // train.cuda_graph: the step's figures, update done
  void send_figures(Step& step, const torch::Tensor& figures);  // deferred: copy to the host
  void read_figures(Step& step, const torch::Tensor& host_figures);
  void resolve(Step& step);  // deferred: the figures read, the non-finite policy applied
  void skip_or_stop_nonfinite(const Step& step);
  void verify_replicas();
  void log_window(const Step& step, double eta);
  void show_status(const Step& step, double eta);
  void log_epoch(double epoch_time, const EpochReport& report);
  double eta_seconds() const;
  bool step_limit_reached() const;

  RunContext& run_;
  TrainingEngine& engine_;
  std::unique_ptr<BatchSource> source_;
  LoopSettings settings_;
  std::vector<Figure> figures_;
  int64_t steps_per_epoch_ = 0;
  std::unique_ptr<distributed::GradSynchronizer> grad_sync_;
  GradSyncMode grad_sync_mode_ = GradSyncMode::kConfigured;
  int64_t verified_step_ = 0;  // the last global step whose replicas were checked equal
  std::chrono::steady_clock::time_point run_start_;
  int64_t first_step_ = 0, steps_this_run_ = 0;  // the global step run() started at; since
  bool stop_ = false;                            // a stop was asked: taken at the next chance
  bool deferred_ = false;                        // settings.deferred_figures, where possible
  std::unique_ptr<Step> pending_;                // deferred: the step whose figures are unread
  torch::Tensor uncounted_;  // deferred: the last queued step's found_inf (optim::DeviceSkip)
  torch::Tensor resumed_epoch_sums_;  // a mid-epoch checkpoint's sums, until its epoch starts
  struct Graph;
  std::unique_ptr<Graph> graph_;  // train.cuda_graph: the captured step and its buffers
  std::unique_ptr<Window> window_, epoch_sums_;
};

}  // namespace ocl::engine
