// What some config values mean, written once at the bottom layer so that the config and the
// layers acting on them share the rule: the ViT presets (model.arch), the token count a mask ratio
// keeps, and timm's RandAugment string (finetune.auto_augment). Nothing here needs LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ocl::io {

struct VitSizes {
  int64_t patch_size = 0, embed_dim = 0, depth = 0, num_heads = 0;
};

/// The sizes of a ViT preset ("vit_tiny_patch16" ... "vit_huge_patch14", short forms "vit_t16"
/// ... "vit_h14"); nullptr for any other name.
const VitSizes* find_vit_preset(const std::string& name);
/// Every preset name find_vit_preset knows: the long names by size, then the short forms.
const std::vector<std::string>& vit_preset_names();

/// Tokens kept by masking `num_patches` at `mask_ratio`, split evenly between the two groups:
/// 2 · floor(N (1 − r) / 2 + ε), so that 10 · (1 − 0.6) = 3.9999999999999996 counts as 4.
/// Unchecked: the caller decides what a ratio outside [0, 1) or a count below 2 means.
int64_t kept_token_count(int64_t num_patches, double mask_ratio);

/// timm's RandAugment string: "rand" and "-"-separated sections m<float>, n<int>, mstd<float>
/// (> 100: uniform, as in timm), mmax<float>, inc<0|1>, p<float>, e.g. "rand-m9-mstd0.5-inc1";
/// keys not given keep timm's defaults (below). Unlike timm (Python's bool("0")), inc0 is off.
/// Anything malformed ("" and "none" included) throws std::invalid_argument naming the section.
struct RandAugmentSpec {
  int num_ops = 2;
  double magnitude = 10, magnitude_std = 0, magnitude_max = 10;
  bool increasing = false;
  double prob = 0.5;
};
RandAugmentSpec parse_rand_augment_spec(const std::string& spec);

}  // namespace ocl::io
