// The start of every training or evaluation process, shared by pre-training, the linear probe
// and fine-tuning: this rank's logger, its share of the node's cores, the precision, and the
// connection to the other ranks; and the small pieces their loops share (the stop decision all
// ranks take together, elapsed seconds).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <torch/types.h>

#include "ocl/data/loader.h"
#include "ocl/dist/communicator.h"
#include "ocl/dist/grad_sync.h"
#include "ocl/dist/launch.h"
#include "ocl/engine/console.h"
#include "ocl/io/config.h"

namespace ocl::engine {

/// The run logger of rank `rank`: rank 0 logs at log.level to the console and to `log_file`
/// (none when empty); the other ranks print warnings and errors only and write no file.
std::shared_ptr<spdlog::logger> rank_logger(const std::shared_ptr<ConsoleSink>& console,
                                            const std::string& log_file, const io::Config& config,
                                            int64_t rank);

/// train.device → a device: "auto" (the first GPU when CUDA is available, else the CPU), "cpu",
/// "cuda", "cuda:N". Throws naming the value when CUDA or that GPU is not there.
torch::Device resolve_device(const std::string& name);
/// The same for one process of a launch: with several processes, "auto" (when CUDA is there)
/// and "cuda" mean this process's GPU, cuda:LOCAL_RANK; "cuda:N" with several processes on a
/// node is refused (they would share one GPU).
torch::Device resolve_device(const std::string& name, const dist::LaunchInfo& launch);

/// Intra-op threads: train.threads, or the node's cores divided among its local processes
/// (some LibTorch builds, Debian's among them, otherwise start with one thread).
void set_process_threads(const io::Config& config, const dist::LaunchInfo& launch);

/// bf16 autocast: train.precision bf16, or auto on a CUDA device.
bool use_bf16(const io::Config& config, const torch::Device& device);

/// TF32 for fp32 matmuls (cuBLAS) and convolutions (cuDNN) on a CUDA `device`, as
/// train.tf32 says; returns whether it is on. LibTorch's own default is off for cuBLAS and on
/// for cuDNN. Process-wide (LibTorch's global context); nothing is changed for a CPU device.
bool set_tf32(const io::Config& config, const torch::Device& device);

/// The communicator settings of `config` (dist.backend, dist.timeout_s) on `device`.
dist::CommunicatorOptions communicator_options(const io::Config& config,
                                               const torch::Device& device);
/// The communicator of a distributed launch (dist.backend, dist.timeout_s, on `device`), after
/// logging that it waits for the others; nullptr for a single process.
std::unique_ptr<dist::Communicator> connect_ranks(const io::Config& config,
                                                  const dist::LaunchInfo& launch,
                                                  const torch::Device& device,
                                                  spdlog::logger& logger);

/// The gradient synchroniser of a distributed run over `params` (the trainable parameters in
/// optimiser order), with the config's dist.bucket_mb and dist.first_bucket_mb; rank 0's
/// parameters are broadcast to every rank. Logs the bucket layout and whether the all-reduce
/// overlaps backward (dist.overlap, which the training loop applies).
std::unique_ptr<dist::GradSynchronizer> make_grad_sync(dist::Communicator& comm,
                                                       const std::vector<torch::Tensor>& params,
                                                       const io::Config& config,
                                                       spdlog::logger& logger);

/// The images one optimiser step takes: a run layout (processes × batch × accumulation).
struct StepLayout {
  int64_t world_size = 1, batch_size = 1, accum_iter = 1;
  int64_t images() const { return world_size * batch_size * accum_iter; }
};

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

/// Options of this rank's training loader: `batch_size` images per micro-batch, data.workers,
/// data.prefetch, data.max_bad_fraction, train.seed, the launch's shard, pinned memory on CUDA,
/// at most train.steps_per_epoch × accum_iter batches per epoch (when set), and each unreadable
/// image logged as a warning on `logger`.
data::LoaderOptions training_loader_options(const io::Config& config, int64_t batch_size,
                                            int64_t accum_iter, const dist::LaunchInfo& launch,
                                            const torch::Device& device,
                                            std::shared_ptr<spdlog::logger> logger);

/// The config.yaml of an evaluation run (linear probe, fine-tuning): the resolved config with its
/// derived values, then a commented block headed `title` with the effective batch (the
/// `section`'s batch_size · accum_iter · processes), the lr and the encoder weights.
std::string evaluation_config_yaml(const io::Config& config, const io::DerivedConfig& derived,
                                   const std::string& title, const std::string& section,
                                   int64_t effective_batch, double lr, const std::string& weights);

/// Whether any rank asks to stop (its `local` flag: a signal, a step limit), so that all of them
/// stop at the same step; one small all-reduce, or just `local` without `comm`.
bool any_rank_stopping(dist::Communicator* comm, bool local, const torch::Device& device);

/// Seconds on the monotonic clock since `start`.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace ocl::engine
