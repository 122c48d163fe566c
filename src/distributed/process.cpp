// A rank's connection to the others (see include/ocl/distributed/process.h).
#include "ocl/distributed/process.h"

#include <torch/torch.h>

namespace ocl::distributed {
namespace {

distributed::CommunicatorOptions communicator_options(const io::Config& config,
                                                      const torch::Device& device) {
  distributed::CommunicatorOptions options;
  options.backend = config.dist.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.dist.timeout_s * 1000));
  options.device = device;
  return options;
}

}  // namespace

std::unique_ptr<distributed::Communicator> connect_ranks(const io::Config& config,
                                                         const distributed::LaunchInfo& launch,
                                                         const torch::Device& device,
                                                         spdlog::logger& logger) {
  if (launch.world_size <= 1) return nullptr;
  logger.info("distributed: {}; waiting for all {} processes", launch.describe(),
              launch.world_size);
  return std::make_unique<distributed::Communicator>(launch, communicator_options(config, device));
}

bool any_rank_stopping(distributed::Communicator* comm, bool local, const torch::Device& device) {
  if (comm == nullptr) return local;
  auto flag =
      torch::full({1}, local ? 1.0 : 0.0, torch::TensorOptions(torch::kFloat64).device(device));
  comm->all_reduce_sum(flag, distributed::Group::kLoss, "stop decision");
  return flag.item<double>() > 0;
}

std::unique_ptr<distributed::GradSynchronizer> make_grad_sync(
    distributed::Communicator& comm, const std::vector<torch::Tensor>& params,
    const distributed::GradSyncOptions& options, bool overlap, spdlog::logger& logger) {
  auto sync = std::make_unique<distributed::GradSynchronizer>(comm, params, options);
  const auto sizes = sync->bucket_bytes();
  logger.info("gradient all-reduce: {} buckets ({:.2f} MiB first, {:.1f} MiB cap), {} backend, {}",
              sizes.size(), sizes.empty() ? 0.0 : sizes.front() / 1048576.0, options.bucket_mb,
              comm.backend(),
              overlap ? "overlapping backward" : "after backward (dist.overlap off)");
  return sync;
}

}  // namespace ocl::distributed
