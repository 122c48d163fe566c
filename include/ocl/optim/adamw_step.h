// One AdamW step, fused where LibTorch can (one multi-tensor kernel per group instead of five to
// seven per parameter), on torch::optim::AdamW's own state: checkpoints are the same either way.
#pragma once

#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <torch/optim/adamw.h>

namespace ocl::optim {

/// Whether adamw_step takes the fused path on `device` as `optim.fused` says: "auto" (where
/// supported), "on" (throws where unsupported), "off".
bool resolve_fused_adamw(const std::string& mode, c10::Device device);

/// The update of optimizer.step(); fused: one compat::fused_adamw_ call per group, device and
/// dtype (throws where unsupported, or for amsgrad).
void adamw_step(torch::optim::AdamW& optimizer, bool fused);

/// A step whose non-finite check is made on the device: float32 0-d tensors there.
struct DeviceSkip {
  /// 1: this step's loss or gradient is not finite; the update leaves every tensor as it was.
  torch::Tensor found_inf;
  /// 1: the step before was skipped on the device and the host's step count still counts it
  /// (the host learns it one step late); undefined when nothing is in flight.
  torch::Tensor uncounted;
};

/// adamw_step(optimizer, true) where skip.found_inf is 0, no update where it is 1; bias
/// corrections from the step count less skip.uncounted. The host counts the step either way.
void adamw_step(torch::optim::AdamW& optimizer, const DeviceSkip& skip);

/// Takes back a step adamw_step(optimizer, skip) skipped on the device from the step counts.
void uncount_adamw_step(torch::optim::AdamW& optimizer);

/// The fused AdamW step for a step replayed as a CUDA graph (train.cuda_graph): every tensor it
/// reads keeps its address, and what changes from step to step is on the device: each group's
/// learning rate (load_lr writes it before a replay) and the step counts, which step() advances by
/// 1 − found_inf. Made over the optimiser's state after a first backward (the gradients must
/// exist); from then on the step counts are the device's: write_back() copies them into the
/// optimiser's state, as a checkpoint needs. LibTorch >= 2.6.
class CapturableAdamW {
 public:
  explicit CapturableAdamW(torch::optim::AdamW& optimizer);
  void load_lr();
  void step(const torch::Tensor& found_inf);
  void write_back();

 private:
  struct Bucket {
    size_t group = 0;
    torch::Tensor lr, step;  // 0-d float32 on the parameters' device
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  };
  torch::optim::AdamW& optimizer_;
  std::vector<Bucket> buckets_;
};

}  // namespace ocl::optim
