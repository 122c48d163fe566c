// What the training apps share (see app_training.h).
#include "app_training.h"

#include <cstdio>
#include <exception>
#include <iostream>

#include "app_common.h"
#include <fmt/format.h>

#include <ocl/data/factory.h>
#include <ocl/engine/run.h>

namespace ocl::apps {

void add_config_flags(CLI::App& app, ConfigCommand& command, const std::string& config_help,
                      const std::string& set_example) {
  app.add_option("--config", command.config_path, config_help)->required();
  app.add_option("--set", command.overrides,
                 "override a config key: --set " + set_example + " (repeatable)");
  app.add_option("--nproc-per-node", command.nproc_per_node,
                 "start this many worker processes on this machine (one per GPU; CPU: Gloo); for "
                 "several machines use torchrun, srun or mpirun")
      ->check(at_least(1));
  app.add_flag("--print-config", command.print_config,
               "print the resolved config with derived values (effective batch, lr, steps per "
               "epoch, tokens per group) and exit");
}

std::optional<int> load_or_delegate(const ConfigCommand& command, const std::string& section,
                                    int argc, char** argv, io::Config& config,
                                    distributed::LaunchInfo& launch) {
  config = io::load_config(command.config_path, command.overrides);
  launch = distributed::launch_from_environment();
  if (command.print_config) {
    print_config(config, command.nproc_per_node > 0 ? command.nproc_per_node : launch.world_size,
                 section);
    return 0;
  }
  return run_local_workers_if_asked(command.nproc_per_node, launch, argc, argv);
}

void add_weights_flag(CLI::App& app, std::string& weights, const std::string& note) {
  app.add_option("--weights", weights,
                 "encoder weights: a checkpoint folder, an encoder.safetensors (timm names, or "
                 "converted by scripts/convert_checkpoint.py), or 'none' for the random "
                 "baseline" +
                     note);
}

void print_config(const io::Config& config, int64_t world_size, const std::string& section) {
  std::cout << io::to_yaml_with_derived(config, io::derive(config, world_size));
  engine::StepLayout layout{world_size, config.train.batch_size, config.optim.accum_iter};
  auto evaluation = [&](const auto& s, const char* title) {
    const auto recipe = engine::section_recipe(s, world_size);
    layout = recipe.layout;
    std::cout << engine::section_derived_yaml(section, title, layout.images(), recipe.lr);
  };
  if (section == "finetune") evaluation(config.finetune, "fine-tuning");
  if (section == "linprobe") evaluation(config.linprobe, "linear probe");
  if (section.empty()) return;
  // Steps per epoch need the training set's size: build it (ImageFolder reads its cached list).
  try {
    const auto dataset = data::make_dataset(config.data, static_cast<int>(config.model.img_size),
                                            /*train=*/true, config.train.seed);
    std::cout << "#   steps_per_epoch: "
              << engine::training_steps_per_epoch(config, dataset->size(), layout) << "   # "
              << dataset->size() << " training images\n";
  } catch (const std::exception& e) {
    std::cout << "#   steps_per_epoch: unknown (" << e.what() << ")\n";
  }
}

void add_run_flags(CLI::App& app, engine::RunOptions& options, const std::string& resume_help,
                   const std::string& overwrite_help) {
  auto* resume_option = app.add_option("--resume", options.resume, resume_help);
  app.add_flag("--overwrite", options.overwrite, overwrite_help)->excludes(resume_option);
  app.add_option("--stop-after-steps", options.stop_after_steps,
                 "stop as if pre-empted after this many optimiser steps of this run (testing)")
      ->check(at_least(0));
}

void add_eval_flag(CLI::App& app, const char* program, bool& eval, const std::string& description) {
  app.add_flag("--eval", eval, description);
  app.add_flag_callback(
      "--eval-only",
      [program, &eval] {
        eval = true;
        std::fprintf(stderr, "%s: --eval-only is deprecated: use --eval\n", program);
      },
      "deprecated alias of --eval");
}

void report_end_of_run(const char* program, int64_t rank, bool interrupted,
                       const std::string& checkpoint, const std::string& summary) {
  if (rank != 0) return;
  if (interrupted) {
    std::fprintf(stderr, "%s: stopped cleanly; checkpoint %s\n", program, checkpoint.c_str());
  } else if (!summary.empty()) {
    std::printf("%s\n", summary.c_str());
  }
  std::fflush(stdout);
}

std::string classifier_summary(const std::string& what, bool evaluated,
                               const engine::ClassifierRunResult& r) {
  if (evaluated)
    return fmt::format("{} (eval): top-1 {:.2f} %, top-5 {:.2f} %", what, r.last_top1, r.last_top5);
  if (r.nothing_to_do) return "";
  return fmt::format("{}: best top-1 {:.2f} % (epoch {}), last top-1 {:.2f} %, top-5 {:.2f} %",
                     what, r.best_top1, r.best_epoch, r.last_top1, r.last_top5);
}

}  // namespace ocl::apps
