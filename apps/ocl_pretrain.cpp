// ocl_pretrain: OCL self-supervised pre-training of a Vision Transformer (engine::Pretrainer);
// exit codes and pre-emption are in docs/pretraining.md.
//
//   ocl_pretrain --config configs/vitl16.yaml [--set optim.blr=1e-4 ...] [--resume auto]
#include "app_common.h"
#include "app_training.h"
#include <CLI/CLI.hpp>

#include <ocl/engine/pretrain.h>
#include <ocl/io/config.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_pretrain: OCL self-supervised pre-training of a Vision Transformer"};
  ocl::apps::ConfigCommand command;
  ocl::engine::PretrainOptions options;
  ocl::apps::add_config_flags(app, command, "YAML config (configs/*.yaml)", "optim.blr=1e-4");
  ocl::apps::add_run_flags(
      app, options,
      "'auto': continue from <output_dir>/checkpoint-last if there is one; or a checkpoint folder",
      "start afresh in an output folder that holds another run (deletes its checkpoints)");
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;

  return ocl::apps::run_reporting_errors("ocl_pretrain", [&] {
    ocl::io::Config config;
    if (auto code =
            ocl::apps::load_or_delegate(command, "train", argc, argv, config, options.launch))
      return *code;
    options.stop_requested = ocl::apps::install_stop_handlers("ocl_pretrain");
    ocl::engine::Pretrainer trainer(config, options);
    const auto result = trainer.run();
    ocl::apps::report_end_of_run("ocl_pretrain", options.launch.rank, result.interrupted,
                                 result.last_checkpoint, "");
    return 0;
  });
}
