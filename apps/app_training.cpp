// What the training apps share (see app_training.h).
#include "app_training.h"

#include <cstdio>
#include <exception>
#include <iostream>

#include <fmt/format.h>

#include <ocl/data/factory.h>
#include <ocl/engine/run.h>

namespace ocl::apps {

void add_print_config_flag(CLI::App& app, bool& print_config) {
  app.add_flag("--print-config", print_config,
               "print the resolved config with derived values (effective batch, lr, steps per "
               "epoch, tokens per group) and exit");
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

void add_resume_flags(CLI::App& app, std::string& resume, bool& overwrite,
                      const std::string& resume_help, const std::string& overwrite_help) {
  auto* resume_option = app.add_option("--resume", resume, resume_help);
  app.add_flag("--overwrite", overwrite, overwrite_help)->excludes(resume_option);
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
