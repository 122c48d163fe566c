// The pieces an engine sets its run up with (see include/ocl/engine/run.h): the data config and
// loader options of a run, its steps per epoch, an evaluation section's run spec and derived
// values, and where a resumed epoch continues under another layout.
#include <unistd.h>

#include <sstream>

#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/engine/run.h"

namespace ocl::engine {

void log_data_warnings(const data::Dataset& set, spdlog::logger& logger) {
  for (const auto& w : set.warnings()) logger.warn("data: {}", w);
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
