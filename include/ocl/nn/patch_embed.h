// Patch embedding: a p×p stride-p convolution from images to patch tokens, initialised as MAE
// does and frozen by default for OCL pre-training (paper §2.1, MoCo v3's stop-gradient trick).
#pragma once

#include <cstdint>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

namespace ocl::nn {

struct PatchEmbedOptions {
  PatchEmbedOptions(int64_t img_size, int64_t patch_size, int64_t embed_dim)
      : img_size_(img_size), patch_size_(patch_size), embed_dim_(embed_dim) {}
  TORCH_ARG(int64_t, img_size);
  TORCH_ARG(int64_t, patch_size);
  TORCH_ARG(int64_t, embed_dim);
  TORCH_ARG(int64_t, in_chans) = 3;
  /// Fixed for the whole run: no gradient, never updated (the paper's default).
  TORCH_ARG(bool, frozen) = true;
};

/// images [B, C, H, W] → tokens [B, N, D], N = (H/p)·(W/p), row-major over the patch grid.
/// Submodule `proj` (a Conv2d), so parameters are timm's `proj.weight [D, C, p, p]`, `proj.bias`.
class PatchEmbedImpl : public torch::nn::Cloneable<PatchEmbedImpl> {
 public:
  explicit PatchEmbedImpl(const PatchEmbedOptions& options);
  void reset() override;
  /// Xavier-uniform on the weight viewed as [D, C·p·p] (fan_in C·p², fan_out D), bias 0.
  void reset_parameters();
  /// Turns the gradient of proj.weight/bias off (frozen) or on.
  void set_frozen(bool frozen);
  torch::Tensor forward(const torch::Tensor& images);
  int64_t grid_size() const { return options.img_size() / options.patch_size(); }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  void pretty_print(std::ostream& stream) const override;

  PatchEmbedOptions options;
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

}  // namespace ocl::nn
