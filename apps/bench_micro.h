// ocl_bench --micro: where a step's time can go on this device, measured piece by piece: the
// block's GEMM shapes (forward and both backward products), attention per SDPA backend, and
// each ocl::ops operation against its ATen composite. Prints one key=value line a measurement.
#pragma once

#include <cstdint>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace ocl::apps {

struct MicroShapes {
  int64_t sequences = 0;  // 2 × batch: both token groups
  int64_t seq = 0;        // tokens a sequence: the group's patches and CLS
  int64_t dim = 0, heads = 0, mlp_hidden = 0;
};

/// Waits for the device's queued work (nothing to wait for on a CPU).
void synchronize(const c10::Device& device);

void run_micro_benchmarks(const MicroShapes& shapes, const c10::Device& device,
                          c10::ScalarType dtype);

}  // namespace ocl::apps
