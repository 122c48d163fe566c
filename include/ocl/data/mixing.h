// Batch-level augmentations and the loss of MAE's fine-tuning recipe, as timm implements them:
// RandomErasing (mode 'pixel'), Mixup/CutMix (mode 'batch', with label smoothing) and
// SoftTargetCrossEntropy, on normalised float images [B, 3, H, W] on any device. Every draw comes
// from a SampleRng seeded by the caller (e.g. from the step): reproducible, device-independent.
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "ocl/data/transforms.h"

namespace ocl::data {

/// Standard normal draw (Box–Muller on two uniforms, the sine discarded): one fixed
/// algorithm, so a seed gives the same value everywhere (std::normal_distribution does not).
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

/// Erases boxes of `images` [B, C, H, W] (floating point, any device) in place, per sample as
/// timm does: with probability `prob`, `count` times up to 10 attempts at an area share uniform
/// in [min_area, max_area] / count and a log-uniform aspect ratio r, h = round(√(area·r)),
/// w = round(√(area/r)), kept when h < H and w < W, placed uniformly, filled with standard normal
/// noise (the images are normalised). Sample i draws from SampleRng(f(seed, i)) and its noise
/// from a CPU generator seeded from that stream: results depend on (seed, i), not the device.
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

/// timm's Mixup in mode 'batch': one draw for the whole batch from SampleRng(seed). With
/// probability `prob` the batch is mixed with its reverse (x.flip(0)): if both alphas are
/// positive, CutMix with probability switch_prob, else Mixup; λ ~ Beta(α, α) of the chosen one.
/// Mixup: x ← λ·x + (1 − λ)·flip(x). CutMix: timm's rand_bbox (sides int(H·√(1−λ)), int(W·√(1−λ))
/// centred at a uniform pixel, clipped) gets flip(x)'s pixels; λ = 1 − box area / image area.
/// Targets: smoothed one-hot y (off = s/C, on = 1 − s + off), λ·y + (1 − λ)·flip(y). Unmixed:
/// the same images tensor, targets y, λ = 1. Any B ≥ 1 (timm asserts an even B, which 'batch'
/// mode does not need: with B odd the middle sample is mixed with itself, unchanged).
/// labels: [B] integer class indices in [0, num_classes), any device.
MixedBatch mix_batch(const torch::Tensor& images, const torch::Tensor& labels,
                     const MixupOptions& options, uint64_t seed);

/// timm's SoftTargetCrossEntropy: mean over rows of Σ_c −targets · log_softmax(logits).
/// logits, targets: [B, C]. Computed in float32 (float64 for float64 logits) whatever the
/// logits' dtype, so a bf16 forward pass does not round the loss; returns a 0-dim tensor.
torch::Tensor soft_target_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace ocl::data
