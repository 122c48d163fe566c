// ocl_finetune: full fine-tuning of a pre-trained encoder (MAE's main_finetune protocol;
// engine::Finetuner), evaluated on the validation split after every epoch.
//
//   ocl_finetune --config configs/vitb16.yaml --weights runs/vitb16/checkpoint-last
#include <cstdio>

#include "app_common.h"
#include "app_training.h"
#include <CLI/CLI.hpp>

#include <ocl/engine/finetune.h>
#include <ocl/io/config.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_finetune: full fine-tuning (MAE's protocol) of a pre-trained ViT encoder"};
  ocl::apps::ConfigCommand command;
  ocl::engine::FinetuneOptions options;
  ocl::apps::add_config_flags(app, command, "YAML config: model sizes, data, finetune recipe",
                              "finetune.epochs=10");
  ocl::apps::add_weights_flag(app, options.weights, " (not needed with --resume)");
  ocl::apps::add_run_flags(app, options,
                           "'auto': continue from <output>/checkpoint-last if there is one; or "
                           "a fine-tuning checkpoint folder",
                           "start afresh in an output folder that holds another fine-tuning run");
  ocl::apps::add_eval_flag(app, "ocl_finetune", options.eval_only,
                           "only evaluate the model of --resume on the validation split and exit");
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;

  return ocl::apps::run_reporting_errors("ocl_finetune", [&] {
    ocl::io::Config config;
    if (auto code =
            ocl::apps::load_or_delegate(command, "finetune", argc, argv, config, options.launch))
      return *code;
    if (options.weights == "none" && options.resume.empty()) {
      std::fprintf(stderr,
                   "ocl_finetune: --weights none: fine-tuning a randomly initialised encoder "
                   "(the baseline)\n");
    }
    options.stop_requested = ocl::apps::install_stop_handlers("ocl_finetune");
    ocl::engine::Finetuner tuner(config, options);
    const auto r = tuner.run();
    ocl::apps::report_end_of_run(
        "ocl_finetune", options.launch.rank, r.interrupted, r.checkpoint,
        ocl::apps::classifier_summary("fine-tuning", options.eval_only, r));
    return 0;
  });
}
