// OCL's mask-and-split (paper §2.2, Algorithm 1): drop a random share of the patches, then split
// the kept ones into two disjoint random groups of equal size. Pure: the caller passes the noise.
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace ocl::ssl {

/// Indices of the two groups, each [B, L/2] int64, in random order.
struct MaskSplit {
  torch::Tensor ids_a;
  torch::Tensor ids_b;
};

/// Kept tokens L = floor(N·(1−r)/2)·2 (even, so both groups have L/2). Throws unless 0 ≤ r < 1
/// and L ≥ 2, naming r, N and L. Examples for N = 196: r 0.3 → 136, 0.35 → 126, 0.4 → 116.
int64_t kept_tokens(int64_t num_patches, double mask_ratio);

/// noise [B, N] (floating) → groups: per image the first L of argsort(noise) are kept (MAE's
/// `random_masking`), the first L/2 of them group A, the next L/2 group B.
MaskSplit mask_and_split(const torch::Tensor& noise, double mask_ratio);

/// MAE's mask convention, written once: [B, N] float, 0 = kept (in either group), 1 = removed.
torch::Tensor removed_mask(const MaskSplit& split, int64_t num_patches);

}  // namespace ocl::ssl
