// The run every training engine stands on (pre-training, fine-tuning, the linear probe; start
// here when adding one): the output folder and the choice to resume it, start it again or refuse
// it; this rank's logger and status line; the device, precision, threads and the connection to
// the other ranks (distributed/process.h); config.yaml, metrics.jsonl and the TensorBoard event
// file; the checkpoint to resume from and where its epoch continues under this run's layout, agreed
// by every rank; the checkpoints it writes. Engines and the loop see it through the methods of
// RunContext, not its members. The loop that trains on it is engine/loop.h; what is an engine's
// own (its model, the forward of a micro-batch, its evaluation, what its checkpoint holds) stays
// in the engine.
//
//   RunContext run(config, options, {"ocl_pretrain", out, "train.output_dir", yaml});
//   ... build the model, the optimiser and the data; load run.resumed()->model into it ...
//   run.resume_position(layout_of, now, steps_per_epoch, lr);   // run.state() is where to go on
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <torch/types.h>

#include "ocl/data/loader.h"
#include "ocl/distributed/communicator.h"
#include "ocl/distributed/launch.h"
#include "ocl/distributed/process.h"
#include "ocl/io/checkpoint.h"
#include "ocl/io/config.h"
#include "ocl/io/console.h"
#include "ocl/io/event_file.h"
#include "ocl/io/files.h"
#include "ocl/io/metrics_log.h"

namespace ocl::engine {

/// Seconds on the monotonic clock since `start`.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The images one optimiser step takes: a run layout (processes × batch × accumulation).
struct StepLayout {
  int64_t world_size = 1, batch_size = 1, accum_iter = 1;
  int64_t images() const { return world_size * batch_size * accum_iter; }
};

/// The step layout and peak lr of an evaluation section (finetune, linprobe: its batch_size,
/// accum_iter, lr and blr) on `world_size` processes: lr, else blr · effective batch / 256.
struct SectionRecipe {
  StepLayout layout;
  double lr = 0;
};
template <class Section>
SectionRecipe section_recipe(const Section& s, int64_t world_size) {
  const StepLayout layout{world_size, s.batch_size, s.accum_iter};
  return {layout, io::absolute_lr(s.lr, s.blr, layout.images())};
}

/// Where a run resumed from a checkpoint continues in epoch `epoch`, whose first `step` steps of
/// layout `saved` were taken, when this run's layout is `now`. An epoch's data order is one
/// permutation whatever the layout, and step k of a layout covers its positions
/// [k · images, (k + 1) · images): the run continues at the first step of the new layout not yet
/// covered (the images of a partly covered step are seen again). A change of world size is
/// logged as a warning saying where the epoch continues, the effective batch and `lr`.
/// Pre-training, fine-tuning and the linear probe all resume this way.
int64_t resume_step_in_epoch(int64_t epoch, int64_t step, const StepLayout& saved,
                             const StepLayout& now, double lr, spdlog::logger& logger);

/// The data config of a run whose output folder is `output_dir`: a read-only data set (a shared
/// ImageNet) keeps its file-list cache there instead, so that the second start does not scan
/// 1.3 M files again.
io::DataConfig run_data_config(const io::DataConfig& data, const std::string& output_dir);
/// Logs each of a data set's warnings (data::Dataset::warnings: folders that could not be
/// listed, ...) as a warning on `logger`.
void log_data_warnings(const data::Dataset& set, spdlog::logger& logger);

/// Options of this rank's training loader: `batch_size` images per micro-batch, data.workers,
/// data.prefetch, data.max_bad_fraction, train.seed, the launch's shard, pinned memory on CUDA,
/// at most train.steps_per_epoch × accum_iter batches per epoch (when set), and each unreadable
/// image logged as a warning on `logger`.
data::LoaderOptions training_loader_options(const io::Config& config, int64_t batch_size,
                                            int64_t accum_iter,
                                            const distributed::LaunchInfo& launch,
                                            const torch::Device& device,
                                            std::shared_ptr<spdlog::logger> logger);

// --- The run

/// `config` after io::validate (which throws naming the key): for an engine's initialiser list.
inline io::Config validated(io::Config config) {
  io::validate(config);
  return config;
}

/// What the apps pass to every engine.
struct RunOptions {
  /// "" (start fresh), "auto" (continue from the output folder's checkpoint-last when there is
  /// one) or a checkpoint folder.
  std::string resume;
  /// Start fresh in an output folder that holds another run (its checkpoints are deleted).
  bool overwrite = false;
  /// Only evaluate and return (fine-tuning, the linear probe); nothing is written.
  bool eval_only = false;
  /// Write nothing (no folder, train.log, config.yaml, metrics or checkpoints): ocl_bench.
  bool write_nothing = false;
  /// Set by a signal handler: the current step finishes, a checkpoint is written, run() returns.
  const std::atomic<int>* stop_requested = nullptr;
  /// Stop as if signalled once this many optimiser steps of this run are done (0 = never).
  int64_t stop_after_steps = 0;
  /// Console sink (status line); nullptr = plain lines on stdout.
  std::shared_ptr<io::ConsoleSink> console;
  /// Called before every optimiser step with the global step and the trainable parameters
  /// (their .grad() holds the step's gradient, after clipping): tests and debugging.
  std::function<void(int64_t, const std::vector<torch::Tensor>&)> before_optimizer_step;
  /// This process's place in a distributed run (distributed::launch_from_environment()); the
  /// default is a single process.
  distributed::LaunchInfo launch;
};

/// What an engine tells its run about itself.
struct RunSpec {
  std::string app;          // "ocl_pretrain": names the start-up line
  std::string output_dir;   // the run's folder
  std::string output_key;   // the config key that names it, for messages ("train.output_dir")
  std::string config_yaml;  // config.yaml, written by rank 0
  /// The checkpoints' model file (kEncoderFile, or the probe's head.safetensors).
  std::string model_file = io::kEncoderFile;
  /// The kind of run, which its checkpoints are recognised by: "pre-training", "fine-tuning"
  /// (its encoder holds a classifier head) or "linear probe" (head.safetensors, no encoder).
  /// A checkpoint of another kind is refused naming it and the app that resumes it.
  std::string kind = "pre-training";
  /// Files of the run besides its checkpoints and metrics.jsonl that --overwrite removes.
  std::vector<std::string> own_files;
  /// The engine's preconditions on the checkpoint to resume from ("" = none), checked before
  /// anything is created or written; throws naming what is missing.
  std::function<void(const std::string& resume_from)> precondition;
};

/// The commented block of an evaluation section's derived values (config.yaml, --print-config):
/// "# <title>:" then its effective batch and lr.
std::string section_derived_yaml(const std::string& section, const std::string& title,
                                 int64_t effective_batch, double lr);

/// Optimiser steps per epoch of a training engine whose step is `layout` on `dataset_size`
/// training images, as its loader cuts them (each rank ceil(size / processes) images, whole
/// batches, whole steps; train.steps_per_epoch caps it): what --print-config shows.
int64_t training_steps_per_epoch(const io::Config& config, int64_t dataset_size,
                                 const StepLayout& layout);

/// The run of an evaluation engine (fine-tuning, the linear probe) on config section `section`
/// of a run of `world_size` processes: its folder (`output_dir`, the section's setting, else
/// <train.output_dir>/<section>) and its config.yaml: the resolved config with its derived
/// values, then a commented block headed `title` with the effective batch (the section's
/// batch_size · accum_iter · processes), the lr and the encoder weights.
RunSpec evaluation_run_spec(const io::Config& config, int64_t world_size, const std::string& app,
                            const std::string& section, const std::string& output_dir,
                            const std::string& title, int64_t effective_batch, double lr,
                            const std::string& weights);

class RunContext {
 public:
  /// Resolves the checkpoint to resume from; refuses an output folder holding another run (a
  /// different config.yaml, or checkpoints) unless resuming or --overwrite; makes the logger,
  /// sets the device, precision, TF32 and threads, connects the ranks and reads the checkpoint
  /// (warning when its config differs; refusing one that is damaged, of another seed, model
  /// size or input standardisation, and naming an older checkpoint that reads whole). Nothing is
  /// written by an eval-only run or by ranks other than 0.
  RunContext(const io::Config& config, RunOptions options, RunSpec spec);
  ~RunContext();
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  /// Once the engine has loaded resumed() into its model: the run's position. A fresh run
  /// starts at zero with train.seed; a resumed one continues where the checkpoint stopped, its
  /// epoch position converted to this run's layout (resume_step_in_epoch; `layout_of` gives
  /// the layout of the checkpoint's config), in the next epoch when this config's epochs are
  /// shorter. Checks that every rank is at the same place, and frees the checkpoint's tensors.
  /// What the run then writes (begin_records): metrics.jsonl keeps a resumed run's records up
  /// to its step, and its TensorBoard event file begins with SessionLog START at its next step,
  /// so that TensorBoard drops what the interrupted run wrote after its checkpoint.
  void resume_position(const std::function<StepLayout(const io::Config&)>& layout_of,
                       const StepLayout& now, int64_t steps_per_epoch, double lr);

  // --- What the run is and where it runs
  const std::string& output_dir() const { return spec_.output_dir; }
  const distributed::LaunchInfo& launch() const { return options_.launch; }
  int64_t rank() const { return options_.launch.rank; }
  int64_t world_size() const { return options_.launch.world_size; }
  /// Only evaluate (--eval): nothing is trained or written.
  bool eval_only() const { return options_.eval_only; }
  const torch::Device& device() const { return device_; }
  bool bf16() const { return bf16_; }
  /// The connection to the other ranks; nullptr in one process.
  distributed::Communicator* comm() const { return comm_.get(); }
  /// This rank's logger (rank 0 at log.level, to the console and train.log).
  spdlog::logger& log() const { return *logger_; }
  const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }
  /// "<app>: LibTorch 2.6.0, device cpu, fp32, 2 threads" (+ `detail` after the precision).
  void log_startup(const std::string& detail = "") const;
  /// Logs the data set's warnings and, with several ranks, checks that every rank sees the
  /// same one (distributed::require_same_data: its size and classes); `what` names it in messages.
  void check_data(const data::Dataset& set, const std::string& what) const;

  // --- Where it stands
  /// The checkpoint being resumed, read by the constructor; nullptr when starting fresh. Its
  /// tensors are freed by resume_position, its state and path stay.
  const io::Checkpoint* resumed() const { return resumed_ ? &*resumed_ : nullptr; }
  /// Where the run stands: the loop advances it.
  io::TrainingState& state() { return state_; }
  const io::TrainingState& state() const { return state_; }
  /// The newest checkpoint written or resumed, "" if none.
  const std::string& last_checkpoint() const { return last_checkpoint_; }

  // --- What it writes (rank 0 of a run that writes; no-ops elsewhere)
  /// Whether this rank writes the run's files (rank 0, not --eval, not ocl_bench).
  bool is_writer() const { return writer_; }
  /// Whether records go anywhere (this rank writes): callers can skip computing them.
  bool records() const { return writer_; }
  /// Writes config.yaml and opens metrics.jsonl and the event file, once, when the run has
  /// something to do (the loop's first step, an engine's first record): a resumed run with
  /// nothing left to do writes none of them.
  void begin_records();
  /// A record of the run (metrics.jsonl's "type" and fields, "global_step" among them) into
  /// metrics.jsonl and, with log.tensorboard, the event file as scalars at its global step
  /// (io::tensorboard_tag), flushed: a crash loses at most the record being written.
  void record(const std::string& type, const io::MetricFields& fields);
  /// Writes a checkpoint of state() with these tensors (copied to the CPU) and config.yaml,
  /// keeping the newest `keep_last`; returns its folder ("" on ranks that do not write).
  std::string write_checkpoint(const io::TensorMap& model, const io::TensorMap& trainer,
                               const io::Metadata& model_metadata, int64_t keep_last);
  /// The console's status line (shown only on a terminal, rank 0).
  bool has_status_line() const { return console_->has_status_line(); }
  void set_status(const std::string& line) const { console_->set_status(line); }
  void clear_status() const { console_->clear_status(); }

  // --- What the caller asked of the loop (RunOptions)
  /// Whether a signal asked this rank to stop.
  bool signalled() const;
  /// Stop as if signalled after this many optimiser steps of this run (0 = never).
  int64_t stop_after_steps() const { return options_.stop_after_steps; }
  /// The caller's hook before every optimiser step (RunOptions::before_optimizer_step).
  void before_optimizer_step(int64_t global_step, const std::vector<torch::Tensor>& params) const {
    if (options_.before_optimizer_step) options_.before_optimizer_step(global_step, params);
  }

  /// The model and trainable parameter counts in millions, "12.34 M trainable, 0.50 M frozen".
  static std::string parameter_counts(const torch::nn::Module& module);

 private:
  void prepare_folder();
  void open_event_file();
  void lock_folder();
  void check_resumable() const;
  [[noreturn]] void refuse_damaged_checkpoint(const std::string& why) const;
  void check_checkpoint_kind() const;
  void check_ranks_agree() const;

  const io::Config& config_;
  const RunOptions options_;
  const RunSpec spec_;
  bool writer_ = false;  // rank 0 of a run that writes (not eval-only)
  std::shared_ptr<io::ConsoleSink> console_;
  std::shared_ptr<spdlog::logger> logger_;
  torch::Device device_{torch::kCPU};
  bool bf16_ = false, tf32_ = false;
  std::unique_ptr<distributed::Communicator> comm_;  // null in one process
  std::unique_ptr<io::MetricsLog> metrics_;      // rank 0 of a training run, after resume_position
  std::unique_ptr<io::EventFileWriter> events_;  // the same, with log.tensorboard
  std::string resume_from_;                      // the checkpoint folder, "" when starting fresh
  std::optional<io::Checkpoint> resumed_;        // read; its tensors freed by resume_position
  std::optional<io::Config> resumed_config_;     // the checkpoint's config, when readable
  io::TrainingState state_;                      // where the run stands
  std::string last_checkpoint_;                  // the newest written or resumed, "" if none
  int64_t keep_metrics_through_ = -1;            // a resumed run's metrics.jsonl keeps these
  io::FileLock lock_;  // the run folder's lock, held for the run's lifetime
};

}  // namespace ocl::engine
