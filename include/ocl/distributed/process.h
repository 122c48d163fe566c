// This process of a (possibly distributed) run, set up from its config and its place in the
// launch: this rank's logger, its device (the GPU of its LOCAL_RANK), its share of the node's
// cores, precision and TF32, its connection to the other ranks, the gradient synchroniser, and
// the ranks' agreement to stop. The training run puts them together (engine/run.h); ocl_knn and
// ocl_bench use them on their own.
//
//   const torch::Device device = resolve_device(config.train.device, launch);
//   set_process_threads(config, launch);
//   auto comm = connect_ranks(config, launch, device, *logger);   // nullptr in one process
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <torch/types.h>

#include "ocl/distributed/communicator.h"
#include "ocl/distributed/grad_sync.h"
#include "ocl/distributed/launch.h"
#include "ocl/io/config.h"
#include "ocl/io/console.h"

namespace ocl::distributed {

/// The run logger of rank `rank`: rank 0 logs at log.level to the console and to `log_file`
/// (none when empty); the other ranks print warnings and errors only and write no file.
std::shared_ptr<spdlog::logger> rank_logger(const std::shared_ptr<io::ConsoleSink>& console,
                                            const std::string& log_file, const io::Config& config,
                                            int64_t rank);

/// train.device → a device: "auto" (the first GPU when CUDA is available, else the CPU), "cpu",
/// "cuda", "cuda:N". Throws naming the value when CUDA or that GPU is not there.
torch::Device resolve_device(const std::string& name);
/// The same for one process of a launch: with several processes, "auto" (when CUDA is there)
/// and "cuda" mean this process's GPU, cuda:LOCAL_RANK; "cuda:N" with several processes on a
/// node is refused (they would share one GPU).
torch::Device resolve_device(const std::string& name, const distributed::LaunchInfo& launch);

/// Intra-op threads: train.threads, or the node's cores divided among its local processes
/// (some LibTorch builds, Debian's among them, otherwise start with one thread).
void set_process_threads(const io::Config& config, const distributed::LaunchInfo& launch);

/// bf16 autocast: train.precision bf16, or auto on a CUDA device.
bool use_bf16(const io::Config& config, const torch::Device& device);

/// TF32 for fp32 matmuls (cuBLAS) and convolutions (cuDNN) on a CUDA `device`, as
/// train.tf32 says; returns whether it is on. LibTorch's own default is off for cuBLAS and on
/// for cuDNN. Process-wide (LibTorch's global context); nothing is changed for a CPU device.
bool set_tf32(const io::Config& config, const torch::Device& device);

/// The communicator settings of `config` (dist.backend, dist.timeout_s) on `device`.
distributed::CommunicatorOptions communicator_options(const io::Config& config,
                                                      const torch::Device& device);
/// The communicator of a distributed launch (dist.backend, dist.timeout_s, on `device`), after
/// logging that it waits for the others; nullptr for a single process.
std::unique_ptr<distributed::Communicator> connect_ranks(const io::Config& config,
                                                         const distributed::LaunchInfo& launch,
                                                         const torch::Device& device,
                                                         spdlog::logger& logger);

/// The gradient synchroniser of a distributed run over `params` (the trainable parameters in
/// optimiser order) with `options` (dist.bucket_mb, dist.first_bucket_mb: LoopSettings); rank 0's
/// parameters are broadcast to every rank. Logs the bucket layout and whether the all-reduce
/// overlaps backward (`overlap`, dist.overlap, which the training loop applies).
std::unique_ptr<distributed::GradSynchronizer> make_grad_sync(
    distributed::Communicator& comm, const std::vector<torch::Tensor>& params,
    const distributed::GradSyncOptions& options, bool overlap, spdlog::logger& logger);

/// Whether any rank asks to stop (its `local` flag: a signal, a step limit), so that all of them
/// stop at the same step; one small all-reduce, or just `local` without `comm`.
bool any_rank_stopping(distributed::Communicator* comm, bool local, const torch::Device& device);

}  // namespace ocl::distributed
