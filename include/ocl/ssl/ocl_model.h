// The OCL pre-training model: one ViT encoder, mask-and-split, T-SP contrastive loss; the paper's
// Algorithm 1 is `OCLImpl::forward`.
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/core/Generator.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ocl/nn/vision_transformer.h"
#include "ocl/ssl/mask.h"
#include "ocl/ssl/tsp_loss.h"

namespace ocl::ssl {

struct OCLOptions {
  /// Global mask ratio r: each group sees (1−r)/2 of the patches (ViT-B 0.3, ViT-L 0.4).
  TORCH_ARG(double, mask_ratio) = 0.3;
  /// T-SP concentration κ (paper Table 5: 64 is best).
  TORCH_ARG(double, kappa) = 64.0;
  /// Learn the temperature (CLIP-style log scale, paper) or keep it fixed (authors' code).
  TORCH_ARG(bool, learnable_temperature) = true;
  /// Initial (or fixed) temperature T; the logit scale is 1/T.
  TORCH_ARG(double, temperature) = 0.07;
  /// Upper bound of the learnable logit scale s = 1/T (CLIP's 100).
  TORCH_ARG(double, max_logit_scale) = 100.0;
};

/// Hook for global negatives: given this rank's CLS outputs a, b [B, D], return the gathered
/// a_all, b_all [W·B, D] (differentiable) and this rank's row offset. Empty = local negatives.
struct GatheredFeatures {
  torch::Tensor a_all, b_all;
  int64_t offset = 0;
};
using FeatureGather = std::function<GatheredFeatures(const torch::Tensor&, const torch::Tensor&)>;

/// Everything one step produces. cls_a/cls_b are the CLS outputs [B, D] of the two groups.
struct OCLOutput {
  torch::Tensor loss;
  ContrastiveLoss figures;  // figures.loss == loss
  torch::Tensor cls_a, cls_b;
  MaskSplit split;
};

/// Parameters: `encoder.*` (timm names under the prefix) and, with a learnable temperature,
/// `logit_scale` (0-d, log of the scale s = 1/T).
class OCLImpl : public torch::nn::Cloneable<OCLImpl> {
 public:
  OCLImpl(const nn::VisionTransformerOptions& encoder_options, const OCLOptions& options);
  void reset() override;

  /// images [B, C, H, W] (normalised) and noise [B, N] → loss and figures; both groups run as
  /// one batch of 2B sequences. `images_b` (independent group views, same shape): where group B
  /// takes its tokens (at the same indices); undefined: from `images`.
  OCLOutput forward(const torch::Tensor& images, const torch::Tensor& noise,
                    const FeatureGather& gather = nullptr,
                    const torch::Tensor& images_b = torch::Tensor());
  /// Uniform mask noise [B, N] from `generator`, on the encoder's device, float32.
  torch::Tensor draw_noise(int64_t batch, at::Generator generator) const;
  /// Current logit scale s (0-d): exp(logit_scale) clamped, or the fixed 1/T.
  torch::Tensor scale() const;
  /// Tokens each group holds (L/2) for this model's patch count and mask ratio.
  int64_t tokens_per_group() const;
  void pretty_print(std::ostream& stream) const override;

  nn::VisionTransformerOptions encoder_options;
  OCLOptions options;
  nn::VisionTransformer encoder{nullptr};
  torch::Tensor logit_scale;  // defined only with a learnable temperature
};
TORCH_MODULE(OCL);

}  // namespace ocl::ssl
