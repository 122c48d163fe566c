// Optimiser parameter groups, AdamW construction and gradient norms.
#include "ocl/optim/param_groups.h"

#include <cmath>
#include <map>
#include <string>

#include <torch/torch.h>

namespace ocl::optim {

std::vector<ParamGroup> weight_decay_groups(const torch::nn::Module& module, double weight_decay,
                                            const std::set<std::string>& no_decay_names) {
  ParamGroup decay{"decay", {}, {}, weight_decay, 1.0};
  ParamGroup no_decay{"no_decay", {}, {}, 0.0, 1.0};
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    const auto& p = item.value();
    if (!p.requires_grad()) continue;
    const auto& name = item.key();
    const std::string leaf = name.substr(name.find_last_of('.') + 1);  // npos + 1 = 0: all of it
    auto& group = (p.dim() < 2 || no_decay_names.count(leaf)) ? no_decay : decay;
    group.names.push_back(name);
    group.params.push_back(p);
  }
  std::vector<ParamGroup> groups;
  for (auto* g : {&decay, &no_decay}) {
    if (!g->params.empty()) groups.push_back(std::move(*g));
  }
  return groups;
}

int64_t vit_layer_id(const std::string& name, int64_t depth) {
  if (name == "cls_token" || name == "pos_embed" || name.rfind("patch_embed.", 0) == 0) return 0;
  if (name.rfind("blocks.", 0) == 0) {
    const auto end = name.find('.', 7);
    return std::stoll(name.substr(7, end - 7)) + 1;
  }
  return depth + 1;
}

std::vector<ParamGroup> layer_decay_groups(const torch::nn::Module& vit, int64_t depth,
                                           double weight_decay, double layer_decay,
                                           const std::set<std::string>& no_decay_names) {
  TORCH_CHECK(layer_decay > 0.0 && layer_decay <= 1.0, "layer decay must be in (0, 1], got ",
              layer_decay);
  std::vector<ParamGroup> groups;
  std::map<std::string, size_t> index;  // group name → position in `groups`
  for (const auto& item : vit.named_parameters(/*recurse=*/true)) {
    const auto& p = item.value();
    if (!p.requires_grad()) continue;
    const auto& name = item.key();
    const std::string leaf = name.substr(name.find_last_of('.') + 1);
    const bool decay = p.dim() >= 2 && no_decay_names.count(leaf) == 0;
    const int64_t layer = vit_layer_id(name, depth);
    const std::string group_name =
        "layer_" + std::to_string(layer) + (decay ? "_decay" : "_no_decay");
    auto [it, added] = index.emplace(group_name, groups.size());
    if (added) {
      groups.push_back({group_name,
                        {},
                        {},
                        decay ? weight_decay : 0.0,
                        std::pow(layer_decay, static_cast<double>(depth + 1 - layer))});
    }
    groups[it->second].names.push_back(name);
    groups[it->second].params.push_back(p);
  }
  return groups;
}

std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<ParamGroup>& groups,
                                                const AdamWSettings& s) {
  TORCH_CHECK(!groups.empty(), "AdamW: no trainable parameters");
  std::vector<torch::optim::OptimizerParamGroup> torch_groups;
  for (const auto& g : groups) {
    auto options = std::make_unique<torch::optim::AdamWOptions>(s.lr * g.lr_scale);
    options->betas(std::make_tuple(s.beta1, s.beta2)).eps(s.eps).weight_decay(g.weight_decay);
    torch_groups.emplace_back(g.params, std::move(options));
  }
  return std::make_unique<torch::optim::AdamW>(
      torch_groups,
      torch::optim::AdamWOptions(s.lr).betas(std::make_tuple(s.beta1, s.beta2)).eps(s.eps));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, const std::vector<ParamGroup>& groups,
                       double lr) {
  auto& torch_groups = optimizer.param_groups();
  TORCH_CHECK(torch_groups.size() == groups.size(), "optimizer has ", torch_groups.size(),
              " parameter groups, expected ", groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    static_cast<torch::optim::AdamWOptions&>(torch_groups[i].options()).lr(lr * groups[i].lr_scale);
  }
}

torch::Tensor grad_norm(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad().detach());
  }
  if (grads.empty()) return torch::zeros({});
  // One multi-tensor kernel for all the norms (clip_grad_norm_'s foreach path), not ~300 launches.
  auto norms = at::_foreach_norm(grads, 2);
  for (auto& n : norms) {
    if (n.scalar_type() != torch::kFloat32) n = n.to(torch::kFloat32);
  }
  return torch::stack(norms).norm();
}

void clip_grads(const std::vector<torch::Tensor>& params, const torch::Tensor& norm,
                double max_norm) {
  torch::NoGradGuard no_grad;
  // torch.nn.utils.clip_grad_norm_: coefficient max/(norm + 1e-6), applied only when < 1.
  auto coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
  for (const auto& p : params) {
    if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().dtype()));
  }
}

}  // namespace ocl::optim
