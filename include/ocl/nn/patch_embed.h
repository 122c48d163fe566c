// Patch embedding: a p×p stride-p convolution from images to patch tokens, initialised as MAE
// does and frozen by default (paper §2.1). InputNorm::Patch first standardises each patch, taking
// away the flat colour by which OCL's two token groups could find each other.
#pragma once

#include <cstdint>
#include <string>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace ocl::nn {

/// What the patch embedding does to the pixels of a patch before projecting them.
enum class InputNorm {
  None,   // the pixels as they come (timm, MAE, the paper)
  Patch,  // per patch and channel: (x − mean) / sqrt(var + eps) over the p×p pixels
};
/// "none" | "patch" (the config's spelling), and back; the parse throws naming the known values.
std::string input_norm_name(InputNorm norm);
InputNorm parse_input_norm(const std::string& name);

/// Standardises every p×p patch of every channel of `images` [B, C, H, W]: (x − mean) /
/// sqrt(var + eps), var biased; eps (in pixel units) keeps a faint patch faint.
torch::Tensor standardize_patches(const torch::Tensor& images, int64_t patch_size, double eps);

struct PatchEmbedOptions {
  PatchEmbedOptions(int64_t img_size, int64_t patch_size, int64_t embed_dim)
      : img_size_(img_size), patch_size_(patch_size), embed_dim_(embed_dim) {}
  TORCH_ARG(int64_t, img_size);
  TORCH_ARG(int64_t, patch_size);
  TORCH_ARG(int64_t, embed_dim);
  TORCH_ARG(int64_t, in_chans) = 3;
  /// Fixed for the whole run: no gradient, never updated (the paper's default).
  TORCH_ARG(bool, frozen) = true;
  /// Standardise each patch before the projection (see InputNorm); eps > 0.
  TORCH_ARG(InputNorm, input_norm) = InputNorm::None;
  TORCH_ARG(double, input_norm_eps) = 0.25;
};

/// images [B, C, H, W] → tokens [B, N, D], N = (H/p)·(W/p), row-major over the patch grid. The
/// parameters are timm's `proj.weight [D, C, p, p]` and `proj.bias` with or without InputNorm.
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
