// A rank's connection to the others (see include/ocl/distributed/process.h).
#include "ocl/distributed/process.h"

#include <torch/torch.h>

namespace ocl::distributed {

std::unique_ptr<Communicator> connect_ranks(const io::Config& config, const LaunchInfo& launch,
                                            const torch::Device& device, spdlog::logger& logger) {
  if (launch.world_size <= 1) return nullptr;
  logger.info("distributed: {}; waiting for all {} processes", launch.describe(),
              launch.world_size);
  CommunicatorOptions options;
  options.backend = config.dist.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.dist.timeout_s * 1000));
  options.device = device;
  return std::make_unique<Communicator>(launch, options);
}

bool any_rank_stopping(Communicator* comm, bool local, const torch::Device& device) {
  if (comm == nullptr) return local;
  auto flag =
      torch::full({1}, local ? 1.0 : 0.0, torch::TensorOptions(torch::kFloat64).device(device));
  comm->all_reduce_sum(flag, Group::kLoss, "stop decision");
  return flag.item<double>() > 0;
}

std::unique_ptr<GradSynchronizer> make_grad_sync(Communicator& comm,
                                                 const std::vector<torch::Tensor>& params,
                                                 const GradSyncOptions& options, bool overlap,
                                                 spdlog::logger& logger) {
  auto sync = std::make_unique<GradSynchronizer>(comm, params, options);
  const auto sizes = sync->bucket_bytes();
  logger.info("gradient all-reduce: {} buckets ({:.2f} MiB first, {:.1f} MiB cap), {} backend, {}",
              sizes.size(), sizes.empty() ? 0.0 : sizes.front() / 1048576.0, options.bucket_mb,
              comm.backend(),
              overlap ? "overlapping backward" : "after backward (dist.overlap off)");
  return sync;
}

}  // namespace ocl::distributed
