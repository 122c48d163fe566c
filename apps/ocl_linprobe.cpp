// ocl_linprobe: the linear probe of a pre-trained encoder (MAE's main_linprobe protocol).
//
//   ocl_linprobe --config configs/vitb16.yaml --weights runs/vitb16/checkpoint-last
//   ocl_linprobe --config configs/quickstart.yaml --weights none          (the random baseline)
//   ocl_linprobe --nproc-per-node 4 --config ... --weights ... [--resume auto]
//   ocl_linprobe --config ... --weights ... --resume auto --eval          (evaluate the head only)
//
// Trains a BatchNorm + Linear head on the frozen CLS feature (engine::LinearProbe; the recipe is
// the config's linprobe section) and evaluates it on the validation split after every epoch.
// Exits 0 when done, 0 after a clean stop on SIGTERM/SIGINT (a checkpoint is written; rerun with
// --resume auto), 1 on an error, 2 on a bad command line. A second signal (a second or more
// after the first) ends it at once.
#include <cstdio>
#include <string>
#include <vector>

#include "app_common.h"
#include "app_training.h"
#include <CLI/CLI.hpp>

#include <ocl/distributed/launch.h>
#include <ocl/engine/linprobe.h>
#include <ocl/io/config.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_linprobe: linear probe (MAE's protocol) of a pre-trained ViT encoder"};
  std::string config_path;
  std::vector<std::string> overrides;
  ocl::engine::LinearProbeOptions options;
  int nproc_per_node = 0;
  bool print_config = false;
  app.add_option("--config", config_path, "YAML config: model sizes, data, linprobe recipe")
      ->required();
  app.add_option("--weights", options.weights,
                 "encoder weights: a checkpoint folder, an encoder.safetensors (timm names, or "
                 "converted by scripts/convert_checkpoint.py), or 'none' for the random baseline")
      ->required();
  app.add_option("--set", overrides,
                 "override a config key: --set linprobe.epochs=10 (repeatable)");
  ocl::apps::add_resume_flags(app, options.resume, options.overwrite,
                              "'auto': continue from <output>/checkpoint-last if there is one; or "
                              "a probe checkpoint folder",
                              "start afresh in an output folder that holds another probe's "
                              "checkpoint");
  ocl::apps::add_eval_flag(app, "ocl_linprobe", options.eval_only,
                           "only evaluate the head (of --resume, else the initial one) and exit");
  app.add_option("--stop-after-steps", options.stop_after_steps,
                 "stop as if pre-empted after this many optimiser steps of this run (testing)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--nproc-per-node", nproc_per_node,
                 "start this many worker processes on this machine (one per GPU; CPU: Gloo)")
      ->check(ocl::apps::at_least(1));
  ocl::apps::add_print_config_flag(app, print_config);
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;

  return ocl::apps::run_reporting_errors("ocl_linprobe", [&] {
    const auto config = ocl::io::load_config(config_path, overrides);
    const auto launch = ocl::distributed::launch_from_environment();
    if (print_config) {
      ocl::apps::print_config(config, nproc_per_node > 0 ? nproc_per_node : launch.world_size,
                              "linprobe");
      return 0;
    }
    if (auto code = ocl::apps::run_local_workers_if_asked(nproc_per_node, launch, argc, argv)) {
      return *code;
    }
    options.stop_requested = ocl::apps::install_stop_handlers("ocl_linprobe");
    options.launch = launch;
    ocl::engine::LinearProbe probe(config, options);
    const auto r = probe.run();
    ocl::apps::report_end_of_run(
        "ocl_linprobe", launch.rank, r.interrupted, r.checkpoint,
        ocl::apps::classifier_summary("linear probe", options.eval_only, r));
    return 0;
  });
}
