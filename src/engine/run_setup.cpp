// Process start-up shared by the training apps (see include/ocl/engine/run_setup.h).
#include "ocl/engine/run_setup.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <torch/torch.h>

namespace ocl::engine {

std::shared_ptr<spdlog::logger> rank_logger(const std::shared_ptr<ConsoleSink>& console,
                                            const std::string& log_file, const io::Config& config,
                                            int64_t rank) {
  const auto& level = config.log.level;
  const bool chatty = level == "trace" || level == "debug" || level == "info";
  return make_run_logger(console, rank == 0 ? log_file : "", rank == 0 || !chatty ? level : "warn");
}

void set_process_threads(const io::Config& config, const dist::LaunchInfo& launch) {
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

dist::CommunicatorOptions communicator_options(const io::Config& config,
                                               const torch::Device& device) {
  dist::CommunicatorOptions options;
  options.backend = config.dist.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.dist.timeout_s * 1000));
  options.device = device;
  return options;
}

std::unique_ptr<dist::Communicator> connect_ranks(const io::Config& config,
                                                  const dist::LaunchInfo& launch,
                                                  const torch::Device& device,
                                                  spdlog::logger& logger) {
  if (launch.world_size <= 1) return nullptr;
  logger.info("distributed: {}; waiting for all {} processes", launch.describe(),
              launch.world_size);
  return std::make_unique<dist::Communicator>(launch, communicator_options(config, device));
}

io::DataConfig run_data_config(const io::DataConfig& data, const std::string& output_dir) {
  io::DataConfig result = data;
  if (result.cache_dir.empty() && !result.path.empty() && ::access(result.path.c_str(), W_OK) != 0)
    result.cache_dir = output_dir;
  return result;
}

data::LoaderOptions training_loader_options(const io::Config& config, int64_t batch_size,
                                            int64_t accum_iter, const dist::LaunchInfo& launch,
                                            const torch::Device& device,
                                            std::shared_ptr<spdlog::logger> logger) {
  data::LoaderOptions o;
  o.batch_size = batch_size;
  o.workers = config.data.workers;
  o.prefetch = config.data.prefetch;
  o.seed = config.train.seed;
  o.rank = launch.rank;
  o.world_size = launch.world_size;
  o.max_bad_fraction = config.data.max_bad_fraction;
  o.pin_memory = device.is_cuda();
  o.max_steps_per_epoch =
      config.train.steps_per_epoch > 0 ? config.train.steps_per_epoch * accum_iter : 0;
  o.on_bad_sample = [logger = std::move(logger)](const data::BadSample& bad) {
    logger->warn("skipping unreadable image #{} {}: {}", bad.index, bad.path, bad.reason);
  };
  return o;
}

std::string evaluation_config_yaml(const io::Config& config, const io::DerivedConfig& derived,
                                   const std::string& title, const std::string& section,
                                   int64_t effective_batch, double lr, const std::string& weights) {
  std::ostringstream yaml;
  yaml << io::to_yaml_with_derived(config, derived) << "# " << title << ":\n"
       << "#   effective_batch: " << effective_batch << "  # " << section << ".batch_size · "
       << section << ".accum_iter · processes\n"
       << "#   lr: " << lr << "\n"
       << "#   weights: " << weights << "\n";
  return yaml.str();
}

bool any_rank_stopping(dist::Communicator* comm, bool local, const torch::Device& device) {
  if (comm == nullptr) return local;
  auto flag =
      torch::full({1}, local ? 1.0 : 0.0, torch::TensorOptions(torch::kFloat64).device(device));
  comm->all_reduce_sum(flag, dist::Group::kLoss, "stop decision");
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

torch::Device resolve_device(const std::string& name, const dist::LaunchInfo& launch) {
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

std::unique_ptr<dist::GradSynchronizer> make_grad_sync(dist::Communicator& comm,
                                                       const std::vector<torch::Tensor>& params,
                                                       const io::Config& config,
                                                       spdlog::logger& logger) {
  dist::GradSyncOptions o;
  o.bucket_mb = config.dist.bucket_mb;
  o.first_bucket_mb = config.dist.first_bucket_mb;
  auto sync = std::make_unique<dist::GradSynchronizer>(comm, params, o);
  const auto sizes = sync->bucket_bytes();
  logger.info("gradient all-reduce: {} buckets ({:.2f} MiB first, {:.1f} MiB cap), {} backend, {}",
              sizes.size(), sizes.empty() ? 0.0 : sizes.front() / 1048576.0, config.dist.bucket_mb,
              comm.backend(),
              config.dist.overlap ? "overlapping backward" : "after backward (dist.overlap off)");
  return sync;
}

int64_t resume_step_in_epoch(int64_t epoch, int64_t step, const StepLayout& saved,
                             const StepLayout& now, double lr, spdlog::logger& logger) {
  const int64_t images = step * saved.images();
  const int64_t continue_at = images / now.images();
  if (saved.world_size != now.world_size && step > 0) {
    logger.warn(
        "the checkpoint was written by {} processes and this run has {}: epoch {} continues at "
        "step {} (after {} of its images; step {} of {} processes), the effective batch is now "
        "{} and lr {:.3g}",
        saved.world_size, now.world_size, epoch, continue_at, images, step, saved.world_size,
        now.images(), lr);
  } else if (saved.world_size != now.world_size) {
    logger.warn(
        "the checkpoint was written by {} processes and this run has {}: the effective batch "
        "is now {} and lr {:.3g}",
        saved.world_size, now.world_size, now.images(), lr);
  }
  return continue_at;
}

}  // namespace ocl::engine
