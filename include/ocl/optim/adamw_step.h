// One AdamW step, fused where LibTorch can: at::_fused_adamw_ updates a parameter group in one
// multi-tensor kernel (CUDA on LibTorch ≥ 2.0, CPU on ≥ 2.6) instead of torch::optim::AdamW's five
// to seven per parameter, on the state torch::optim::AdamW keeps (exp_avg, exp_avg_sq, step), so
// checkpoints are the same either way and the two paths may alternate within a run.
#pragma once

#include <string>

#include <c10/core/Device.h>
#include <torch/optim/adamw.h>

namespace ocl::optim {

/// Whether adamw_step should take the fused path for parameters on `device`, from the
/// `optim.fused` setting: "auto" (fused where supported), "on" (fused, or throw naming
/// optim.fused where LibTorch has no fused kernel for `device`), "off" (never).
bool resolve_fused_adamw(const std::string& mode, c10::Device device);

/// One step of `optimizer`, the same update as optimizer.step() (parameters without a gradient
/// skipped). fused: one compat::fused_adamw_ call per group, device and dtype (throws where
/// unsupported, or for amsgrad); otherwise optimizer.step().
void adamw_step(torch::optim::AdamW& optimizer, bool fused);

/// A step whose non-finite check is made on the device (engine::TrainingLoop with
/// train.host_sync: deferred): float32 0-d tensors on the parameters' device.
struct DeviceSkip {
  /// 1: this step's loss or gradient is not finite; the update leaves every tensor as it was.
  torch::Tensor found_inf;
  /// 1: the step before was skipped on the device and the host's step count still counts it
  /// (the host learns it one step late); undefined when nothing is in flight.
  torch::Tensor uncounted;
};

/// The fused step gated on the device: the same update as adamw_step(optimizer, true) where
/// skip.found_inf is 0, none where it is 1, with bias corrections from the step count less
/// skip.uncounted. The host counts the step either way; take it back with uncount_adamw_step
/// once the skip is known.
void adamw_step(torch::optim::AdamW& optimizer, const DeviceSkip& skip);

/// Takes one step back from every parameter's step count: a step adamw_step(optimizer, skip)
/// skipped on the device.
void uncount_adamw_step(torch::optim::AdamW& optimizer);

}  // namespace ocl::optim
