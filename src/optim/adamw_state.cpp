// AdamW's state as named tensors, for checkpoints (see include/ocl/optim/adamw_state.h).
#include "ocl/optim/adamw_state.h"

#include <memory>

#include <torch/torch.h>

#include "ocl/compat.h"

namespace ocl::optim {

io::TensorMap adamw_state(const torch::optim::AdamW& optimizer,
                          const std::vector<ParamGroup>& groups) {
  io::TensorMap out;
  const auto& state = optimizer.state();
  for (const auto& group : groups) {
    for (size_t i = 0; i < group.params.size(); ++i) {
      const auto it = state.find(compat::optimizer_state_key(group.params[i]));
      if (it == state.end()) continue;  // no step taken yet for this parameter
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      const std::string key = "optim." + group.names[i];
      out[key + ".exp_avg"] = s.exp_avg();
      out[key + ".exp_avg_sq"] = s.exp_avg_sq();
      out[key + ".step"] = torch::tensor(s.step(), torch::kLong);
    }
  }
  return out;
}

void load_adamw_state(torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups,
                      const io::TensorMap& tensors) {
  auto& state = optimizer.state();
  for (const auto& group : groups) {
    for (size_t i = 0; i < group.params.size(); ++i) {
      const auto& p = group.params[i];
      const std::string key = "optim." + group.names[i];
      const auto avg = tensors.find(key + ".exp_avg");
      const auto sq = tensors.find(key + ".exp_avg_sq");
      const auto step = tensors.find(key + ".step");
      const bool any = avg != tensors.end() || sq != tensors.end() || step != tensors.end();
      if (!any) continue;  // saved before this parameter's first step
      TORCH_CHECK(avg != tensors.end() && sq != tensors.end() && step != tensors.end(),
                  "checkpoint: optimizer state of '", group.names[i], "' is incomplete");
      TORCH_CHECK(avg->second.sizes() == p.sizes() && sq->second.sizes() == p.sizes(),
                  "checkpoint: optimizer state of '", group.names[i], "' has shape ",
                  avg->second.sizes(), ", the parameter ", p.sizes());
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(step->second.item<int64_t>());
      s->exp_avg(avg->second.to(p.options()).clone());
      s->exp_avg_sq(sq->second.to(p.options()).clone());
      state[compat::optimizer_state_key(p)] = std::move(s);
    }
  }
}

}  // namespace ocl::optim
