// Parameter groups for the optimiser (MAE's `param_groups_weight_decay`, `param_groups_lrd`):
// trainable parameters only, no weight decay on tensors of < 2 dimensions nor on named tokens,
// each group with an lr multiplier; AdamW over them and gradient norms.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

namespace ocl::optim {

struct ParamGroup {
  std::string name;                // "decay" / "no_decay"
  std::vector<std::string> names;  // parameter names, in the module's order
  std::vector<torch::Tensor> params;
  double weight_decay = 0.0;
  double lr_scale = 1.0;  // the group's lr = schedule lr · lr_scale
};

/// Splits the trainable parameters of `module` into a decayed group (≥ 2-D) and an undecayed one
/// (< 2-D, or a last name component in `no_decay_names`); empty groups are dropped.
std::vector<ParamGroup> weight_decay_groups(const torch::nn::Module& module, double weight_decay,
                                            const std::set<std::string>& no_decay_names = {
                                                "cls_token", "pos_embed", "logit_scale"});

/// A ViT parameter's layer in MAE's get_layer_id_for_vit: cls_token, pos_embed, patch_embed.* 0,
/// blocks.k.* k + 1, anything else (norm, fc_norm, head) depth + 1.
int64_t vit_layer_id(const std::string& name, int64_t depth);

/// MAE's param_groups_lrd: weight_decay_groups per layer ("layer_<id>_decay" / "_no_decay", in
/// order of appearance), lr_scale = layer_decay^(depth + 1 − id): the head at the full lr.
std::vector<ParamGroup> layer_decay_groups(const torch::nn::Module& vit, int64_t depth,
                                           double weight_decay, double layer_decay,
                                           const std::set<std::string>& no_decay_names = {
                                               "cls_token", "pos_embed"});

struct AdamWSettings {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
};

/// LibTorch's AdamW over `groups`, each with its own weight decay: its group i is groups[i].
std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<ParamGroup>& groups,
                                                const AdamWSettings& settings);

/// Sets group i's lr to lr · groups[i].lr_scale.
void set_learning_rate(torch::optim::Optimizer& optimizer, const std::vector<ParamGroup>& groups,
                       double lr);

/// The global L2 norm of the gradients (undefined count as zero): 0-d float, no host sync.
torch::Tensor grad_norm(const std::vector<torch::Tensor>& params);

/// Scales the gradients to a global norm of at most `max_norm`, as torch's clip_grad_norm_.
void clip_grads(const std::vector<torch::Tensor>& params, const torch::Tensor& norm,
                double max_norm);

}  // namespace ocl::optim
