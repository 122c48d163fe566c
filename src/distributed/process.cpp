// This process of a run (see include/ocl/distributed/process.h).
#include "ocl/distributed/process.h"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include <torch/torch.h>

namespace ocl::distributed {

std::shared_ptr<spdlog::logger> rank_logger(const std::shared_ptr<io::ConsoleSink>& console,
                                            const std::string& log_file, const io::Config& config,
                                            int64_t rank) {
  const auto& level = config.log.level;
  const bool chatty = level == "trace" || level == "debug" || level == "info";
  return io::make_run_logger(console, rank == 0 ? log_file : "",
                             rank == 0 || !chatty ? level : "warn");
}

void set_process_threads(const io::Config& config, const distributed::LaunchInfo& launch) {
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t local = std::max<int64_t>(1, launch.local_world_size);
  const int64_t threads =
      config.train.threads > 0 ? config.train.threads : std::max<int64_t>(1, cores / local);
  torch::set_num_threads(static_cast<int>(threads));
}

bool use_bf16(const io::Config& config, const torch::Device& device) {
  const auto& precision = config.train.precision;
  return precision == "bf16" || (precision == "auto" && device.is_cuda());
}

bool set_tf32(const io::Config& config, const torch::Device& device) {
  if (!device.is_cuda()) return false;
  at::globalContext().setAllowTF32CuBLAS(config.train.tf32);
  at::globalContext().setAllowTF32CuDNN(config.train.tf32);
  return config.train.tf32;
}

distributed::CommunicatorOptions communicator_options(const io::Config& config,
                                                      const torch::Device& device) {
  distributed::CommunicatorOptions options;
  options.backend = config.dist.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.dist.timeout_s * 1000));
  options.device = device;
  return options;
}

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

torch::Device resolve_device(const std::string& name) {
  if (name == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  if (name == "cpu") return torch::kCPU;
  if (!torch::cuda::is_available()) {
    throw std::runtime_error("train.device is '" + name +
                             "' but CUDA is not available (a CPU build of LibTorch, or no GPU); "
                             "use train.device=cpu or auto");
  }
  torch::Device device(name);
  if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count())) {
    throw std::runtime_error("train.device is '" + name + "' but only " +
                             std::to_string(torch::cuda::device_count()) + " GPUs are visible");
  }
  return device;
}

torch::Device resolve_device(const std::string& name, const distributed::LaunchInfo& launch) {
  if (!launch.distributed()) return resolve_device(name);
  if (name == "cuda" || (name == "auto" && torch::cuda::is_available())) {
    return resolve_device("cuda:" + std::to_string(launch.local_rank));
  }
  if (name.rfind("cuda:", 0) == 0 && launch.local_world_size > 1) {
    throw std::runtime_error("train.device is '" + name + "', one GPU for all " +
                             std::to_string(launch.local_world_size) +
                             " processes of this node: use cuda or auto (each process takes the "
                             "GPU of its LOCAL_RANK)");
  }
  return resolve_device(name);
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
