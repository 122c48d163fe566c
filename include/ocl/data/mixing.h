// MAE fine-tuning's batch augmentations and loss as timm implements them: RandomErasing
// ('pixel'), Mixup/CutMix ('batch', label smoothing), SoftTargetCrossEntropy, on normalised float
// [B, 3, H, W] on any device, every draw from a SampleRng the caller seeds (device-independent).
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "ocl/data/transforms.h"

namespace ocl::data {

/// Standard normal draw (Box–Muller, sine discarded): portable, unlike std::normal_distribution.
double sample_normal(SampleRng& rng);
/// Gamma(shape, 1), shape > 0: Marsaglia–Tsang (2000) on sample_normal and rng.uniform(); for
/// shape < 1, Gamma(shape + 1) · U^(1/shape).
double sample_gamma(double shape, SampleRng& rng);
/// Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). When both underflow to 0 (a, b
/// ≪ 1) the limit is a Bernoulli(a / (a + b)) draw of 0 or 1.
double sample_beta(double a, double b, SampleRng& rng);

/// timm's RandomErasing(probability=prob, min_area, max_area, min_aspect, mode='pixel',
/// max_count=count) as MAE's fine-tuning uses it (re_prob 0.25, re_count 1).
struct RandomErasingOptions {
  double prob = 0.25;
  double min_area = 0.02, max_area = 1.0 / 3;
  double min_aspect = 0.3;  // the aspect ratio is log-uniform in [min_aspect, 1 / min_aspect]
  int count = 1;            // boxes per erased image, each of area share in [min, max] / count
};

/// Erases boxes of `images` [B, C, H, W] (floating point, any device) in place as timm does:
/// per sample with probability `prob`, `count` boxes (10 attempts each; kept when h < H, w < W),
/// filled with standard normal noise. Sample i draws from SampleRng(f(seed, i)), its noise from a
/// CPU generator seeded from that stream: results depend on (seed, i), not on the device.
void random_erasing_(torch::Tensor& images, const RandomErasingOptions& options, uint64_t seed);

/// timm's Mixup(mixup_alpha, cutmix_alpha, prob, switch_prob, mode='batch', correct_lam=True,
/// label_smoothing, num_classes) (MAE: 0.8, 1.0, 1.0, 0.5, smoothing 0.1).
struct MixupOptions {
  double mixup_alpha = 0.8, cutmix_alpha = 1.0;
  double prob = 1.0, switch_prob = 0.5;
  double label_smoothing = 0.1;
  int64_t num_classes = 0;  // required: > 0
};

/// timm's `mixup_active`: either alpha is positive (then the loss is soft-target cross-entropy).
bool mixup_active(const MixupOptions& options);

struct MixedBatch {
  torch::Tensor images;   // [B, C, H, W], images' dtype and device
  torch::Tensor targets;  // [B, num_classes] float32 soft targets, on images' device
  double lam = 1.0;       // the weight of each sample's own image and label
  bool cutmix = false;
};

/// timm's Mixup in mode 'batch', one draw per batch from SampleRng(seed): with probability
/// `prob` the batch is mixed with x.flip(0) by CutMix or Mixup (CutMix with probability
/// switch_prob when both alphas are positive), λ ~ Beta(α, α) of the chosen one. CutMix pastes
/// timm's rand_bbox of flip(x), λ = 1 − box share. Targets: λ·y + (1 − λ)·flip(y), y smoothed
/// one-hot; unmixed: the same images, λ = 1. Any B ≥ 1 (timm asserts an even B; with B odd the
/// middle sample mixes with itself). labels: [B] class indices in [0, num_classes), any device.
MixedBatch mix_batch(const torch::Tensor& images, const torch::Tensor& labels,
                     const MixupOptions& options, uint64_t seed);

/// timm's SoftTargetCrossEntropy: mean over rows of Σ_c −targets · log_softmax(logits), both
/// [B, C], as a 0-dim tensor; in float32 (float64 for float64 logits), so bf16 does not round it.
torch::Tensor soft_target_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace ocl::data
