// ocl_linprobe: the linear probe of a pre-trained encoder (MAE's main_linprobe protocol;
// engine::LinearProbe), evaluated on the validation split after every epoch.
//
//   ocl_linprobe --config configs/vitb16.yaml --weights runs/vitb16/checkpoint-last
#include "app_common.h"
#include "app_training.h"
#include <CLI/CLI.hpp>

#include <ocl/engine/linprobe.h>
#include <ocl/io/config.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_linprobe: linear probe (MAE's protocol) of a pre-trained ViT encoder"};
  ocl::apps::ConfigCommand command;
  ocl::engine::LinearProbeOptions options;
  ocl::apps::add_config_flags(app, command, "YAML config: model sizes, data, linprobe recipe",
                              "linprobe.epochs=10");
  ocl::apps::add_weights_flag(app, options.weights);
  app.get_option("--weights")->required();
  ocl::apps::add_run_flags(app, options,
                           "'auto': continue from <output>/checkpoint-last if there is one; or "
                           "a probe checkpoint folder",
                           "start afresh in an output folder that holds another probe's "
                           "checkpoint");
  ocl::apps::add_eval_flag(app, "ocl_linprobe", options.eval_only,
                           "only evaluate the head (of --resume, else the initial one) and exit");
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;

  return ocl::apps::run_reporting_errors("ocl_linprobe", [&] {
    ocl::io::Config config;
    if (auto code =
            ocl::apps::load_or_delegate(command, "linprobe", argc, argv, config, options.launch))
      return *code;
    options.stop_requested = ocl::apps::install_stop_handlers("ocl_linprobe");
    ocl::engine::LinearProbe probe(config, options);
    const auto r = probe.run();
    ocl::apps::report_end_of_run(
        "ocl_linprobe", options.launch.rank, r.interrupted, r.checkpoint,
        ocl::apps::classifier_summary("linear probe", options.eval_only, r));
    return 0;
  });
}
