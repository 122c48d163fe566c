// ocl_bench's measurements: the training step on a fixed batch, the loader alone, the gradient
// all-reduce's overlap, the matmul rate, the largest batch that fits, and (--micro) the step's
// pieces. Each prints one key=value line a measurement.
#pragma once

#include <cstdint>
#include <functional>

#include "app_training.h"
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace ocl::apps {

struct BenchArgs {
  ConfigCommand command;
  int64_t steps = 10, warmup = 2, loader_batches = 20, matmul_size = -1;
  bool max_batch = false, grad_sync = false, data_only = false, micro = false;
};

/// The benchmarks `args` asks for on `config` (its --config with --set); returns the exit code.
int run_benchmarks(const BenchArgs& args, io::Config config);

struct MicroShapes {
  int64_t sequences = 0;  // 2 × batch: both token groups
  int64_t seq = 0;        // tokens a sequence: the group's patches and CLS
  int64_t dim = 0, heads = 0, mlp_hidden = 0;
};

/// Waits for the device's queued work (nothing to wait for on a CPU).
void synchronize(const c10::Device& device);
/// Seconds a call of `fn`: one warm-up, then at least 3 calls and `min_seconds`.
double seconds_per_call(const c10::Device& device, const std::function<void()>& fn,
                        double min_seconds = 0.2);

void run_micro_benchmarks(const MicroShapes& shapes, const c10::Device& device,
                          c10::ScalarType dtype);

}  // namespace ocl::apps
