// The pieces an engine sets its run up with (see include/ocl/engine/run_setup.h).
#include "ocl/engine/run_setup.h"

#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/distributed/agreement.h"
#include "ocl/distributed/process.h"

namespace ocl::engine {
namespace {

// Intra-op threads: train.threads, or the node's cores divided among its local processes (some
// LibTorch builds otherwise start with one thread).
void set_process_threads(const io::Config& config, const distributed::LaunchInfo& launch) {
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t local = std::max<int64_t>(1, launch.local_world_size);
  const int64_t threads =
      config.train.threads > 0 ? config.train.threads : std::max<int64_t>(1, cores / local);
  torch::set_num_threads(static_cast<int>(threads));
}

torch::Device resolve_one_device(const std::string& name) {
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

// train.device → a device ("auto", "cpu", "cuda", "cuda:N"); with several processes "auto" and
// "cuda" mean cuda:LOCAL_RANK, and "cuda:N" on a node of several is refused (one GPU shared).
torch::Device resolve_device(const std::string& name, const distributed::LaunchInfo& launch) {
  if (!launch.distributed()) return resolve_one_device(name);
  if (name == "cuda" || (name == "auto" && torch::cuda::is_available())) {
    return resolve_one_device("cuda:" + std::to_string(launch.local_rank));
  }
  if (name.rfind("cuda:", 0) == 0 && launch.local_world_size > 1) {
    throw std::runtime_error("train.device is '" + name + "', one GPU for all " +
                             std::to_string(launch.local_world_size) +
                             " processes of this node: use cuda or auto (each process takes the "
                             "GPU of its LOCAL_RANK)");
  }
  return resolve_one_device(name);
}

// bf16 autocast: train.precision bf16, or auto on a CUDA device.
bool use_bf16(const io::Config& config, const torch::Device& device) {
  const auto& precision = config.train.precision;
  return precision == "bf16" || (precision == "auto" && device.is_cuda());
}

}  // namespace

std::shared_ptr<spdlog::logger> rank_logger(const std::shared_ptr<io::ConsoleSink>& console,
                                            const std::string& log_file, const io::Config& config,
                                            int64_t rank) {
  const auto& level = config.log.level;
  const bool chatty = level == "trace" || level == "debug" || level == "info";
  return io::make_run_logger(console, rank == 0 ? log_file : "",
                             rank == 0 || !chatty ? level : "warn");
}

bool set_tf32(const io::Config& config, const torch::Device& device) {
  if (!device.is_cuda()) return false;
  at::globalContext().setAllowTF32CuBLAS(config.train.tf32);
  at::globalContext().setAllowTF32CuDNN(config.train.tf32);
  return config.train.tf32;
}

Process start_process(const io::Config& config, const distributed::LaunchInfo& launch,
                      std::shared_ptr<spdlog::logger> log) {
  Process p;
  p.launch = launch;
  p.device = resolve_device(config.train.device, launch);
  p.bf16 = use_bf16(config, p.device);
  p.tf32 = set_tf32(config, p.device);
  const std::string& a = config.model.attention;
  if (a != "auto") {
    if (!compat::kCanChooseSdpaBackend)
      throw io::ConfigError("model.attention: " + a + " needs LibTorch >= 2.6, this is " +
                            compat::torch_version() + " (use auto)");
    p.attention = a;
    p.attention_scope = std::make_shared<compat::SdpaBackendScope>(
        a == "flash"       ? compat::SdpaBackend::kFlash
        : a == "efficient" ? compat::SdpaBackend::kMemEfficient
        : a == "cudnn"     ? compat::SdpaBackend::kCuDNN
                           : compat::SdpaBackend::kMath);
  }
  set_process_threads(config, launch);
  p.log = std::move(log);
  p.comm = distributed::connect_ranks(config, launch, p.device, *p.log);
  return p;
}

void log_startup(const Process& p, const std::string& app, const std::string& detail) {
  p.log->info("{}: LibTorch {}, device {}, {}{}{}, {} threads{}", app, compat::torch_version(),
              p.device.str(), p.bf16 ? "bf16 autocast" : "fp32", detail,
              p.device.is_cuda() ? (p.tf32 ? " (TF32 on for fp32 matmuls)" : " (TF32 off)") : "",
              torch::get_num_threads(),
              p.attention_scope ? ", attention: SDPA's " + p.attention + " kernels only" : "");
}

void check_data(const Process& p, const data::Dataset& set, const std::string& what) {
  for (const auto& w : set.warnings()) p.log->warn("data: {}", w);
  if (p.comm)
    distributed::require_same_data(*p.comm, p.device, what, set.size(), set.num_classes());
}

DataSplits open_splits(const Process& process, const io::DataConfig& data, int img, uint64_t seed,
                       std::shared_ptr<const data::Dataset> train) {
  DataSplits splits{std::move(train), nullptr};
  if (!splits.train) {
    splits.train = data::make_dataset(data, img, /*train=*/true, seed);
    check_data(process, *splits.train, "the training set");
  }
  splits.val = data::make_dataset(data, img, /*train=*/false, seed);
  check_data(process, *splits.val, "the validation set");
  data::require_same_classes(*splits.train, *splits.val);
  return splits;
}

std::string parameter_counts(const torch::nn::Module& module) {
  int64_t trainable = 0, frozen = 0;
  for (const auto& q : module.parameters()) (q.requires_grad() ? trainable : frozen) += q.numel();
  return fmt::format("{:.2f} M trainable, {:.2f} M frozen parameters", trainable / 1e6,
                     frozen / 1e6);
}

io::DataConfig run_data_config(const io::DataConfig& data, const std::string& output_dir) {
  io::DataConfig result = data;
  if (result.cache_dir.empty() && !result.path.empty() && ::access(result.path.c_str(), W_OK) != 0)
    result.cache_dir = output_dir;
  return result;
}

data::LoaderOptions training_loader_options(const io::Config& config, int64_t batch_size,
                                            int64_t accum_iter,
                                            const distributed::LaunchInfo& launch,
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
    if (bad.index < 0) {  // a streamed shard given up on (data/streaming.h)
      logger->warn("giving up on shard {} (its other samples are passed over): {}", bad.path,
                   bad.reason);
      return;
    }
    logger->warn("skipping unreadable image #{} {}: {}", bad.index, bad.path, bad.reason);
  };
  return o;
}

std::string section_derived_yaml(const std::string& section, const std::string& title,
                                 int64_t effective_batch, double lr) {
  std::ostringstream yaml;
  yaml << "# " << title << ":\n"
       << "#   effective_batch: " << effective_batch << "  # " << section << ".batch_size · "
       << section << ".accum_iter · processes\n"
       << "#   lr: " << lr << "\n";
  return yaml.str();
}

int64_t training_steps_per_epoch(const io::Config& config, int64_t dataset_size,
                                 const StepLayout& layout) {
  distributed::LaunchInfo launch;
  launch.world_size = layout.world_size;
  const auto options = training_loader_options(config, layout.batch_size, layout.accum_iter, launch,
                                               torch::kCPU, nullptr);
  return data::batches_per_epoch(dataset_size, options) / layout.accum_iter;
}

RunSpec evaluation_run_spec(const io::Config& config, int64_t world_size, const std::string& app,
                            const std::string& section, const std::string& output_dir,
                            const std::string& title, int64_t effective_batch, double lr,
                            const std::string& weights) {
  std::ostringstream yaml;
  yaml << io::to_yaml_with_derived(config, io::derive(config, world_size))
       << section_derived_yaml(section, title, effective_batch, lr) << "#   weights: " << weights
       << "\n";
  return {.app = app,
          .output_dir = output_dir.empty() ? config.train.output_dir + "/" + section : output_dir,
          .output_key = section + ".output_dir",
          .config_yaml = yaml.str()};
}

int64_t resume_step_in_epoch(int64_t epoch, int64_t step, const StepLayout& saved,
                             const StepLayout& now, double lr, spdlog::logger& logger) {
  const int64_t images = step * saved.images();
  const int64_t continue_at = images / now.images();
  if (saved.world_size != now.world_size) {
    logger.warn(
        "the checkpoint was written by {} processes and this run has {}: {}the effective batch is "
        "now {} and lr {:.3g}",
        saved.world_size, now.world_size,
        step > 0 ? fmt::format("epoch {} continues at step {} (after {} of its images; step {} of "
                               "{} processes), ",
                               epoch, continue_at, images, step, saved.world_size)
                 : "",
        now.images(), lr);
  }
  return continue_at;
}

}  // namespace ocl::engine
