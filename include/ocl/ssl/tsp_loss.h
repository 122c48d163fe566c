// T-distributed spherical (T-SP) similarity and OCL's symmetric contrastive loss
// (paper §2.3, Algorithm 1). Pure functions: features, scale and labels in; loss and figures out.
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace ocl::ssl {

/// φ_κ(c) = (1 + c) / (1 + (1 − c)/κ) − 1, elementwise on cosines c ∈ [−1, 1] → [−1, 1].
/// φ(1) = 1, φ(−1) = −1, increasing in c, and → c as κ → ∞; smaller κ concentrates it.
/// Throws unless κ is finite and > 0.
torch::Tensor tsp_similarity(const torch::Tensor& cos, double kappa);

/// The learnable logit scale s = exp(log_scale) (0-d) clamped to ≤ max_scale; temperature 1/s.
torch::Tensor logit_scale_from_log(const torch::Tensor& log_scale, double max_scale = 100.0);

/// The loss and the figures a run logs (detached 0-d tensors on the features' device).
struct ContrastiveLoss {
  torch::Tensor loss;         // (CE(z_ab) + CE(z_ba)) / 2
  torch::Tensor pos_cos;      // mean cosine of the positive pairs (a_i, b_i)
  torch::Tensor neg_cos;      // mean cosine of all other pairs (a_i, b_j), j ≠ i
  torch::Tensor accuracy;     // share of a_i whose most similar b is b_i
  torch::Tensor temperature;  // 1 / scale
};

/// Symmetric T-SP contrastive loss on CLS outputs a, b [B, D] of the two groups of B images:
/// z_ab[i, j] = s·(φ_κ(cos(a_i, b_j)) + 1)/2 with target column offset + i, and the same for b.
/// Negatives: the batch's other images, or for global negatives the gathered a_all, b_all [M, D]
/// with this batch's rows at `offset`. scale: 0-d s. In float32 (float64 for float64 input).
ContrastiveLoss symmetric_tsp_loss(const torch::Tensor& a, const torch::Tensor& b,
                                   const torch::Tensor& scale, double kappa,
                                   const torch::Tensor& a_all = {}, const torch::Tensor& b_all = {},
                                   int64_t offset = 0);

}  // namespace ocl::ssl
