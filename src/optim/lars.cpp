// LARS (see include/ocl/optim/lars.h), step for step MAE's util/lars.py.
#include "ocl/optim/lars.h"

#include <stdexcept>

#include <torch/torch.h>

namespace ocl::optim {

Lars::Lars(std::vector<torch::Tensor> params, LarsOptions options)
    : params_(std::move(params)), momentum_(params_.size()), options_(options) {
  for (const auto& p : params_) {
    if (!p.requires_grad()) {
      throw std::invalid_argument(
          "Lars: every parameter must require grad (leave frozen ones out)");
    }
  }
  if (!(options_.momentum >= 0 && options_.trust_coefficient > 0 && options_.weight_decay >= 0)) {
    throw std::invalid_argument(
        "Lars: needs momentum >= 0, trust_coefficient > 0, weight_decay >= 0");
  }
}

void Lars::step() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    auto d = p.grad();
    if (p.dim() > 1) {
      d = d.add(p, options_.weight_decay);
      auto w_norm = p.norm();
      auto d_norm = d.norm();
      auto one = torch::ones_like(w_norm);
      // Both norms on the device: no host synchronisation.
      auto q = torch::where(
          w_norm > 0, torch::where(d_norm > 0, options_.trust_coefficient * w_norm / d_norm, one),
          one);
      d = d.mul(q);
    }
    auto& mu = momentum_[i];
    if (!mu.defined()) mu = torch::zeros_like(p);
    mu.mul_(options_.momentum).add_(d);
    p.add_(mu, -options_.lr);
  }
}

void Lars::zero_grad() {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

}  // namespace ocl::optim
