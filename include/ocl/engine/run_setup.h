// What an engine's run is made from: this process (device, precision, threads, logger, ranks),
// the options and spec every engine passes to its RunContext (engine/run.h), and the set-up
// helpers the engines share.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include "ocl/compat.h"
#include "ocl/data/loader.h"
#include "ocl/distributed/communicator.h"
#include "ocl/distributed/launch.h"
#include "ocl/io/checkpoint.h"
#include "ocl/io/config.h"
#include "ocl/io/console.h"
#include "ocl/io/files.h"

namespace ocl::engine {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// This process of a (possibly distributed) run: where it computes and how.
struct Process {
  distributed::LaunchInfo launch;
  torch::Device device{torch::kCPU};
  bool bf16 = false;  // bf16 autocast
  bool tf32 = false;  // TF32 for fp32 matmuls and convolutions (CUDA)
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<distributed::Communicator> comm;  // null in one process
  /// model.attention, and its SDPA backend held while the process lives (null for auto).
  std::string attention = "auto";
  std::shared_ptr<compat::SdpaBackendScope> attention_scope;
};

/// Sets this process up as `config` says: device, threads, bf16, TF32, then the connection to
/// the other ranks (before the slow data set-up: a missing rank is reported early).
Process start_process(const io::Config& config, const distributed::LaunchInfo& launch,
                      std::shared_ptr<spdlog::logger> log);
/// "<app>: LibTorch 2.6.0, device cpu, fp32, 2 threads" (+ `detail` after the precision).
void log_startup(const Process& process, const std::string& app, const std::string& detail = "");

/// Rank 0 logs at log.level to the console and `log_file` (none when empty); the other ranks
/// print warnings and errors only.
std::shared_ptr<spdlog::logger> rank_logger(const std::shared_ptr<io::ConsoleSink>& console,
                                            const std::string& log_file, const io::Config& config,
                                            int64_t rank);
/// TF32 for cuBLAS and cuDNN on a CUDA `device` as train.tf32 says: returns whether it is on.
bool set_tf32(const io::Config& config, const torch::Device& device);

/// Logs the data set's warnings and, with several ranks, checks that every rank sees the same
/// size and classes; `what` names it.
void check_data(const Process& process, const data::Dataset& set, const std::string& what);
/// The training (`train`, if already open) and validation splits of `data`, each checked
/// (check_data) before splits with different classes are refused.
struct DataSplits {
  std::shared_ptr<const data::Dataset> train, val;
};
DataSplits open_splits(const Process& process, const io::DataConfig& data, int img, uint64_t seed,
                       std::shared_ptr<const data::Dataset> train = nullptr);
/// "12.34 M trainable, 0.50 M frozen parameters".
std::string parameter_counts(const torch::nn::Module& module);

/// The images of one optimiser step: processes × batch × accumulation.
struct StepLayout {
  int64_t world_size = 1, batch_size = 1, accum_iter = 1;
  int64_t images() const { return world_size * batch_size * accum_iter; }
};

/// An evaluation section's step layout and peak lr (its lr, else blr · effective batch / 256).
struct SectionRecipe {
  StepLayout layout;
  double lr = 0;
};
template <class Section>
SectionRecipe section_recipe(const Section& s, int64_t world_size) {
  const StepLayout layout{world_size, s.batch_size, s.accum_iter};
  return {layout, io::absolute_lr(s.lr, s.blr, layout.images())};
}

/// Where epoch `epoch` continues in layout `now` after `step` steps of layout `saved`: the first
/// step not yet covered (an epoch's data order does not depend on the layout). A change of world
/// size is logged with the new effective batch and `lr`.
int64_t resume_step_in_epoch(int64_t epoch, int64_t step, const StepLayout& saved,
                             const StepLayout& now, double lr, spdlog::logger& logger);

/// `data` for a run in `output_dir`: a read-only data set keeps its file-list cache there.
io::DataConfig run_data_config(const io::DataConfig& data, const std::string& output_dir);

/// This rank's training loader; each unreadable image is logged as a warning on `logger`.
data::LoaderOptions training_loader_options(const io::Config& config, int64_t batch_size,
                                            int64_t accum_iter,
                                            const distributed::LaunchInfo& launch,
                                            const torch::Device& device,
                                            std::shared_ptr<spdlog::logger> logger);
/// Optimiser steps per epoch of `layout` on `dataset_size` images (--print-config).
int64_t training_steps_per_epoch(const io::Config& config, int64_t dataset_size,
                                 const StepLayout& layout);

/// `config` after io::validate (which throws naming the key): for an engine's initialiser list.
inline io::Config validated(io::Config config) {
  io::validate(config);
  return config;
}

/// What the apps pass to every engine.
struct RunOptions {
  std::string resume;          // "", "auto" (checkpoint-last, if any) or a checkpoint folder
  bool overwrite = false;      // start again in a folder holding another run (--overwrite)
  bool eval_only = false;      // only evaluate (fine-tuning, the probe); nothing is written
  bool write_nothing = false;  // no folder, logs, metrics or checkpoints: ocl_bench
  /// Set by a signal handler: the current step finishes, a checkpoint is written, run() returns.
  const std::atomic<int>* stop_requested = nullptr;
  /// Stop as if signalled once this many optimiser steps of this run are done (0 = never).
  int64_t stop_after_steps = 0;
  std::shared_ptr<io::ConsoleSink> console;  // nullptr = plain lines on stdout
  /// Called before every optimiser step (global step, parameters with clipped gradients): tests.
  std::function<void(int64_t, const std::vector<torch::Tensor>&)> before_optimizer_step;
  distributed::LaunchInfo launch;  // distributed::launch_from_environment()
};

/// What an engine tells its run about itself.
struct RunSpec {
  std::string app;          // "ocl_pretrain": names the start-up line
  std::string output_dir;   // the run's folder
  std::string output_key;   // the config key that names it, for messages ("train.output_dir")
  std::string config_yaml;  // config.yaml, written by rank 0
  std::string model_file = io::kEncoderFile;  // the checkpoints' model file
  /// "pre-training", "fine-tuning" or "linear probe": a checkpoint of another kind is refused.
  std::string kind = "pre-training";
  /// Files of the run besides its checkpoints and metrics.jsonl that --overwrite removes.
  std::vector<std::string> own_files;
  /// Throws when the checkpoint to resume from ("" = none) will not do; before anything is written.
  std::function<void(const std::string& resume_from)> precondition;
};

/// An evaluation section's derived values as a commented block: "# <title>:", effective batch, lr.
std::string section_derived_yaml(const std::string& section, const std::string& title,
                                 int64_t effective_batch, double lr);

/// The run of an evaluation engine on config section `section`: its folder (`output_dir`, else
/// <train.output_dir>/<section>) and its config.yaml (with section_derived_yaml and the weights).
RunSpec evaluation_run_spec(const io::Config& config, int64_t world_size, const std::string& app,
                            const std::string& section, const std::string& output_dir,
                            const std::string& title, int64_t effective_batch, double lr,
                            const std::string& weights);

}  // namespace ocl::engine
