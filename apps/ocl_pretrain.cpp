// ocl_pretrain: OCL self-supervised pre-training of a Vision Transformer.
//
//   ocl_pretrain --config configs/vitl16.yaml [--set optim.blr=1e-4 ...] [--resume auto]
//   ocl_pretrain --nproc-per-node 4 --config ...        (starts 4 local workers itself)
//   torchrun --nproc-per-node 4 --no-python ocl_pretrain --config ...   (or srun, or mpirun)
//
// Reads the config, trains (engine::Pretrainer), and exits 0 when done, 0 after a clean stop on
// SIGTERM/SIGINT (a checkpoint is written; rerun with --resume auto), 1 on an error, 2 on a bad
// command line. A second signal (a second or more after the first) ends the process at once.
#include <cstdio>

#include "app_common.h"
#include "app_training.h"
#include <CLI/CLI.hpp>

#include <ocl/distributed/launch.h>
#include <ocl/engine/pretrain.h>
#include <ocl/io/config.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_pretrain: OCL self-supervised pre-training of a Vision Transformer"};
  std::string config_path;
  std::vector<std::string> overrides;
  std::string resume;
  bool print_config = false, overwrite = false;
  int64_t stop_after_steps = 0;
  int nproc_per_node = 0;
  app.add_option("--config", config_path, "YAML config (configs/*.yaml)")->required();
  app.add_option("--set", overrides, "override a key: --set optim.blr=1e-4 (repeatable)");
  ocl::apps::add_resume_flags(
      app, resume, overwrite,
      "'auto': continue from <output_dir>/checkpoint-last if there is one; or a checkpoint folder",
      "start afresh in an output folder that holds another run (deletes its checkpoints)");
  ocl::apps::add_print_config_flag(app, print_config);
  app.add_option("--stop-after-steps", stop_after_steps,
                 "stop as if pre-empted after this many optimiser steps of the run (testing)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--nproc-per-node", nproc_per_node,
                 "start this many worker processes on this machine (one per GPU; CPU: Gloo) and "
                 "train with all of them; for several machines use torchrun, srun or mpirun")
      ->check(ocl::apps::at_least(1));
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;

  return ocl::apps::run_reporting_errors("ocl_pretrain", [&] {
    const auto config = ocl::io::load_config(config_path, overrides);
    if (print_config) {
      const auto world = nproc_per_node > 0
                             ? nproc_per_node
                             : ocl::distributed::launch_from_environment().world_size;
      ocl::apps::print_config(config, world, "train");
      return 0;
    }
    const auto launch = ocl::distributed::launch_from_environment();
    if (auto code = ocl::apps::run_local_workers_if_asked(nproc_per_node, launch, argc, argv)) {
      return *code;
    }
    ocl::engine::PretrainOptions options;
    options.resume = resume;
    options.overwrite = overwrite;
    options.stop_requested = ocl::apps::install_stop_handlers("ocl_pretrain");
    options.stop_after_steps = stop_after_steps;
    options.launch = launch;
    ocl::engine::Pretrainer trainer(config, options);
    const auto result = trainer.run();
    ocl::apps::report_end_of_run("ocl_pretrain", launch.rank, result.interrupted,
                                 result.last_checkpoint, "");
    return 0;
  });
}
