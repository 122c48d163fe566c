// LARS, the optimiser of MAE's linear probe (util/lars.py): SGD with momentum whose update of
// each matrix is rescaled by trust · ‖w‖ / ‖g + wd·w‖ (layer-wise adaptive rate); vectors
// (biases, norms) get neither weight decay nor the rescaling.
#pragma once

#include <vector>

#include <torch/types.h>

namespace ocl::optim {

struct LarsOptions {
  double lr = 0.0;  // set per step by the schedule (set_lr)
  double momentum = 0.9;
  double trust_coefficient = 0.001;
  double weight_decay = 0.0;  // on tensors of ≥ 2 dimensions only
};

class Lars {
 public:
  /// `params`: the parameters to update (those without requires_grad are refused).
  Lars(std::vector<torch::Tensor> params, LarsOptions options);

  /// One update from the current gradients (parameters without one skipped); for w of ≥ 2 dims
  ///   g' = g + wd·w and g' ← g' · (trust · ‖w‖ / ‖g'‖)   (factor 1 when ‖w‖ or ‖g'‖ is 0)
  ///   μ ← momentum · μ + g';  w ← w − lr · μ
  void step();
  void zero_grad();

  void set_lr(double lr) { options_.lr = lr; }
  const std::vector<torch::Tensor>& params() const { return params_; }
  /// The momentum buffer μ of each parameter (undefined before its first update).
  std::vector<torch::Tensor>& momentum_buffers() { return momentum_; }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> momentum_;
  LarsOptions options_;
};

}  // namespace ocl::optim
