// A rank's connection to the others as a run's config asks for it: the communicator, the
// gradient synchroniser and the ranks' agreement to stop. The process's device, precision and
// logger are set up by the engine (engine/run_setup.h).
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

namespace ocl::distributed {

/// The communicator of a distributed launch (dist.backend, dist.timeout_s, on `device`), after
/// logging that it waits for the others; nullptr for a single process.
std::unique_ptr<Communicator> connect_ranks(const io::Config& config, const LaunchInfo& launch,
                                            const torch::Device& device, spdlog::logger& logger);

/// The gradient synchroniser over `params` (trainable, in optimiser order) with `options`, rank
/// 0's parameters broadcast to every rank; logs the bucket layout and whether the all-reduce
/// overlaps backward (`overlap`: dist.overlap, which the training loop applies).
std::unique_ptr<GradSynchronizer> make_grad_sync(Communicator& comm,
                                                 const std::vector<torch::Tensor>& params,
                                                 const GradSyncOptions& options, bool overlap,
                                                 spdlog::logger& logger);

/// Whether any rank asks to stop (its `local` flag: a signal, a step limit), so that all of them
/// stop at the same step; one small all-reduce, or just `local` without `comm`.
bool any_rank_stopping(Communicator* comm, bool local, const torch::Device& device);

}  // namespace ocl::distributed
