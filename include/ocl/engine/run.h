// The run every training engine stands on: its output folder and the choice to resume, restart
// or refuse it; its process (run_setup.h); config.yaml, metrics.jsonl and the TensorBoard event
// file; the checkpoint it resumes, agreed by every rank, and those it writes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ocl/engine/run_setup.h"
#include "ocl/io/checkpoint.h"
#include "ocl/io/config.h"
#include "ocl/io/console.h"
#include "ocl/io/event_file.h"
#include "ocl/io/files.h"
#include "ocl/io/metrics_log.h"

namespace ocl::engine {

/// Engines build the run, load resumed() into their model, then call resume_position.
class RunContext {
 public:
  /// Resolves and reads the checkpoint to resume from (refusing one that is damaged, of another
  /// kind, seed, model size or input standardisation); refuses a folder holding another run
  /// unless resuming or --overwrite; starts the process. Eval-only runs, other ranks write nothing.
  RunContext(const io::Config& config, RunOptions options, RunSpec spec);
  ~RunContext();
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  /// The run's position: zero for a fresh run; where the checkpoint stopped, in this run's layout
  /// (resume_step_in_epoch; `layout_of`: a config's layout), for a resumed one. Checks that every
  /// rank agrees and frees the checkpoint's tensors.
  void resume_position(const std::function<StepLayout(const io::Config&)>& layout_of,
                       const StepLayout& now, int64_t steps_per_epoch, double lr);

  const Process& process() const { return process_; }
  const RunSpec& spec() const { return spec_; }
  const RunOptions& options() const { return options_; }
  bool signalled() const;
  io::ConsoleSink& console() const { return *console_; }

  /// The checkpoint being resumed (nullptr when starting fresh).
  const io::Checkpoint* resumed() const { return resumed_ ? &*resumed_ : nullptr; }
  io::TrainingState& state() { return state_; }
  const io::TrainingState& state() const { return state_; }
  const std::string& last_checkpoint() const { return last_checkpoint_; }

  /// Whether this rank writes the run's files (rank 0, not --eval, not ocl_bench): the methods
  /// below do nothing elsewhere.
  bool writes() const { return writer_; }
  /// Writes config.yaml and opens metrics.jsonl and the event file, once, when there is work.
  void begin_records();
  /// A record into metrics.jsonl and, with log.tensorboard, the event file at its global_step.
  void record(const std::string& type, const io::MetricFields& fields);
  /// Writes a checkpoint of state(), keeping the newest `keep_last`; returns its folder or "".
  std::string write_checkpoint(const io::TensorMap& model, const io::TensorMap& trainer,
                               const io::Metadata& model_metadata, int64_t keep_last);

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
  Process process_;
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
