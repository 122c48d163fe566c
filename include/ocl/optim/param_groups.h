// Parameter groups for the optimiser (MAE's `param_groups_weight_decay`): trainable parameters
// only, no weight decay on 1-D and 0-d tensors (LayerNorm, biases, LayerScale, the logit scale)
// nor on named tokens (cls_token, pos_embed), each group with an lr multiplier for later
// schedules such as layer-wise decay.
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

/// The layer of a ViT parameter in MAE's layer-wise lr decay (util/lr_decay.py,
/// get_layer_id_for_vit): cls_token, pos_embed and patch_embed.* are layer 0, blocks.k.* is
/// layer k + 1, anything else (norm, fc_norm, head) is layer depth + 1.
int64_t vit_layer_id(const std::string& name, int64_t depth);

/// MAE's param_groups_lrd: the trainable parameters of a ViT split by layer and decay as
/// weight_decay_groups ("layer_<id>_decay" / "layer_<id>_no_decay", in order of appearance),
/// lr_scale = layer_decay^(depth + 1 − id): the head at the full lr, each block below at
/// layer_decay times the one above.
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

/// The global L2 norm of the gradients of `params` (undefined ones count as zero): a 0-d float
/// tensor on their device, computed without a host sync.
torch::Tensor grad_norm(const std::vector<torch::Tensor>& params);

/// Scales the gradients so that their global norm is at most `max_norm` (torch's
/// clip_grad_norm_ with its 1e-6 guard), given their current norm; no host sync.
void clip_grads(const std::vector<torch::Tensor>& params, const torch::Tensor& norm,
                double max_norm);

}  // namespace ocl::optim
