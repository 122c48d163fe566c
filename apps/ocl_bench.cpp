// ocl_bench: throughput of the pre-training step and of the data loader for a config, one
// `key=value` line a measurement (bench.h); scripts/bench_*.sh compare it with PyTorch's.
//
//   ocl_bench --config configs/vits16.yaml --set train.batch_size=32 --steps 10 --warmup 2
#include "app_common.h"
#include "app_training.h"
#include "bench.h"
#include <CLI/CLI.hpp>

#include <ocl/io/config.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_bench: pre-training step and data loader throughput on synthetic data"};
  ocl::apps::BenchArgs args;
  ocl::apps::add_config_flags(app, args.command, "YAML config", "train.batch_size=32");
  app.add_option("--steps", args.steps, "timed steps")->check(ocl::apps::at_least(1));
  app.add_option("--warmup", args.warmup, "untimed steps first")->check(ocl::apps::at_least(0));
  app.add_option("--loader-batches", args.loader_batches,
                 "batches timed for the loader alone (0: skip)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--matmul-size", args.matmul_size,
                 "n of the n×n matrix products timed beside the step (bf16 on CUDA, fp32 on CPU); "
                 "-1: 8192 on CUDA, 1024 on CPU; 0: skip");
  app.add_flag("--max-batch", args.max_batch,
               "search the largest batch whose step fits in GPU memory (CUDA only)");
  app.add_flag("--data", args.data_only,
               "time only the loader (decode, train transform, uint8 batches) on the config's "
               "own data set instead of synthetic images");
  app.add_flag("--micro", args.micro,
               "time the step's pieces instead of the step: the block's GEMMs (forward and both "
               "backward products), attention per SDPA backend, each fused operation against "
               "its composite");
  app.add_flag("--grad-sync", args.grad_sync,
               "measure how much of the gradient all-reduce hides behind backward (needs several "
               "processes: --nproc-per-node, torchrun, srun)");
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;
  return ocl::apps::run_reporting_errors("ocl_bench", [&] {
    if (args.command.print_config) {
      // What the step benchmark trains on: the config on synthetic data (--data: its own data).
      auto config = ocl::io::load_config(args.command.config_path, args.command.overrides);
      if (!args.data_only) config.data.dataset = "synthetic";
      const int64_t nproc = args.command.nproc_per_node;
      const int64_t world = ocl::distributed::launch_from_environment().world_size;
      ocl::apps::print_config(config, nproc > 0 ? nproc : world, "train");
      return 0;
    }
    ocl::io::Config config;
    ocl::distributed::LaunchInfo launch;
    if (auto code = ocl::apps::load_or_delegate(args.command, "train", argc, argv, config, launch))
      return *code;
    return ocl::apps::run_benchmarks(args, std::move(config));
  });
}
