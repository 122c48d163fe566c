// Fused AdamW step over torch::optim::AdamW's own state (see include/ocl/optim/adamw_step.h).
#include "ocl/optim/adamw_step.h"

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include <torch/torch.h>

#include "ocl/compat.h"

namespace ocl::optim {

bool resolve_fused_adamw(const std::string& mode, c10::Device device) {
  const bool supported = compat::fused_adamw_supported(device.type());
  if (mode == "off") return false;
  if (mode == "auto") return supported;
  TORCH_CHECK(mode == "on", "optim.fused: must be one of auto | on | off, got '", mode, "'");
  TORCH_CHECK(supported, "optim.fused: on, but LibTorch ", compat::torch_version(),
              " has no fused AdamW kernel for ", device,
              " (CUDA needs LibTorch >= 2.0, CPU >= 2.6); use auto or off");
  return true;
}

namespace {

// One fused call's tensors: a group's parameters sharing device, dtype and step number (one
// shared step tensor per call).
struct Bucket {
  c10::Device device{c10::kCPU};
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
};

// (device type, device index, dtype, step): c10::Device has no ordering of its own.
using BucketKey = std::tuple<int, int, int, int64_t>;

// Parameter p's state, made as torch::optim::AdamW makes it on a parameter's first step.
torch::optim::AdamWParamState& state_of(torch::optim::AdamW& optimizer, const at::Tensor& p) {
  auto& state = optimizer.state();
  const auto key = compat::optimizer_state_key(p);
  auto it = state.find(key);
  if (it == state.end()) {
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(0);
    s->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
    s->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
    it = state.emplace(key, std::move(s)).first;
  }
  return static_cast<torch::optim::AdamWParamState&>(*it->second);
}

void fused_step(torch::optim::AdamW& optimizer, const DeviceSkip* skip) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    TORCH_CHECK(!o.amsgrad(), "fused AdamW: amsgrad is not supported");
    std::map<BucketKey, Bucket> buckets;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "fused AdamW: sparse gradients are not supported");
      auto& s = state_of(optimizer, p);
      s.step(s.step() + 1);
      auto& b = buckets[BucketKey{static_cast<int>(p.device().type()), p.device().index(),
                                  static_cast<int>(p.scalar_type()), s.step()}];
      b.device = p.device();
      b.params.push_back(p);
      b.grads.push_back(grad);
      b.exp_avgs.push_back(s.exp_avg());
      b.exp_avg_sqs.push_back(s.exp_avg_sq());
    }
    for (auto& [key, b] : buckets) {
      const int64_t step = std::get<3>(key);
      // The kernel reads the step as a float32 tensor on the parameters' device (exact up to
      // 2^24 steps); torch.optim.AdamW(fused=True) keeps it so.
      auto step_tensor = torch::full({}, static_cast<double>(step),
                                     at::TensorOptions().dtype(at::kFloat).device(b.device));
      if (skip && skip->uncounted.defined()) step_tensor = step_tensor - skip->uncounted;
      const std::vector<at::Tensor> steps(b.params.size(), step_tensor);
      compat::fused_adamw_(b.params, b.grads, b.exp_avgs, b.exp_avg_sqs, steps, o.lr(),
                           std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(),
                           o.eps(), skip ? skip->found_inf : at::Tensor());
    }
  }
}

}  // namespace

void adamw_step(torch::optim::AdamW& optimizer, bool fused) {
  if (fused) {
    fused_step(optimizer, nullptr);
  } else {
    optimizer.step();
  }
}

void adamw_step(torch::optim::AdamW& optimizer, const DeviceSkip& skip) {
  TORCH_CHECK(skip.found_inf.defined(), "adamw_step: a device skip needs found_inf");
  fused_step(optimizer, &skip);
}

// The parameters a step counts are those with a gradient, as fused_step.
void uncount_adamw_step(torch::optim::AdamW& optimizer) {
  auto& state = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      const auto it = state.find(compat::optimizer_state_key(p));
      if (!p.grad().defined() || it == state.end()) continue;
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      s.step(s.step() - 1);
    }
  }
}

CapturableAdamW::CapturableAdamW(torch::optim::AdamW& optimizer) : optimizer_(optimizer) {
  torch::NoGradGuard no_grad;
  auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    std::map<BucketKey, Bucket> by_key;
    for (auto& p : groups[g].params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "fused AdamW: sparse gradients are not supported");
      auto& s = state_of(optimizer, p);
      auto& b = by_key[BucketKey{static_cast<int>(p.device().type()), p.device().index(),
                                 static_cast<int>(p.scalar_type()), s.step()}];
      if (!b.step.defined()) {
        const auto on = at::TensorOptions().dtype(at::kFloat).device(p.device());
        b.group = g;
        b.step = torch::full({}, static_cast<double>(s.step()), on);
        b.lr = torch::zeros({}, on);
      }
      b.params.push_back(p);
      b.grads.push_back(p.grad());
      b.exp_avgs.push_back(s.exp_avg());
      b.exp_avg_sqs.push_back(s.exp_avg_sq());
    }
    for (auto& [key, b] : by_key) buckets_.push_back(std::move(b));
  }
  TORCH_CHECK(!buckets_.empty(), "CapturableAdamW: no parameter has a gradient yet");
  load_lr();
}

void CapturableAdamW::load_lr() {
  for (auto& b : buckets_) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(
        optimizer_.param_groups()[b.group].options());
    b.lr.fill_(o.lr());
  }
}

void CapturableAdamW::step(const torch::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(
        optimizer_.param_groups()[b.group].options());
    b.step.add_(1 - found_inf);  // a skipped step is not counted
    const std::vector<at::Tensor> steps(b.params.size(), b.step);
    compat::fused_adamw_(b.params, b.grads, b.exp_avgs, b.exp_avg_sqs, steps, b.lr,
                         std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(), o.eps(),
                         found_inf);
  }
}

void CapturableAdamW::write_back() {
  auto& state = optimizer_.state();
  for (const auto& b : buckets_) {
    const auto step = static_cast<int64_t>(b.step.item<float>());
    for (const auto& p : b.params) {
      auto& s =
          static_cast<torch::optim::AdamWParamState&>(*state.at(compat::optimizer_state_key(p)));
      s.step(step);
    }
  }
}

}  // namespace ocl::optim
