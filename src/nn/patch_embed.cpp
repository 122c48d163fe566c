// PatchEmbed (see include/ocl/nn/patch_embed.h).
#include "ocl/nn/patch_embed.h"

#include <cmath>

#include <torch/nn/init.h>

namespace ocl::nn {

std::string input_norm_name(InputNorm norm) {
  TORCH_CHECK(norm == InputNorm::None || norm == InputNorm::Patch, "unknown InputNorm value ",
              static_cast<int>(norm));
  return norm == InputNorm::None ? "none" : "patch";
}

InputNorm parse_input_norm(const std::string& name) {
  if (name == "none") return InputNorm::None;
  if (name == "patch") return InputNorm::Patch;
  TORCH_CHECK(false, "unknown input normalisation '", name, "'; known: none, patch");
}

torch::Tensor standardize_patches(const torch::Tensor& images, int64_t patch_size, double eps) {
  TORCH_CHECK(images.dim() == 4, "standardize_patches expects images [B, C, H, W], got ",
              images.sizes());
  TORCH_CHECK(patch_size >= 1, "patch size must be positive, got ", patch_size);
  TORCH_CHECK(std::isfinite(eps) && eps > 0,
              "the standardisation's eps must be > 0 and finite, got ", eps);
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t p = patch_size;
  TORCH_CHECK(H % p == 0 && W % p == 0, "images of ", H, "x", W, " do not divide into patches of ",
              p, "x", p);
  // [B, C, h, p, w, p]: the pixels of patch (i, j) of channel c are [b, c, i, :, j, :].
  const auto patches = images.reshape({B, C, H / p, p, W / p, p});
  const auto mean = patches.mean({3, 5}, /*keepdim=*/true);
  const auto centred = patches - mean;
  const auto var = centred.square().mean({3, 5}, /*keepdim=*/true);
  return (centred / (var + eps).sqrt()).reshape({B, C, H, W});
}

PatchEmbedImpl::PatchEmbedImpl(const PatchEmbedOptions& options_) : options(options_) { reset(); }

void PatchEmbedImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.patch_size() > 0, "patch size must be positive, got ", o.patch_size());
  TORCH_CHECK(o.img_size() > 0 && o.img_size() % o.patch_size() == 0, "image size ", o.img_size(),
              " is not divisible by the patch size ", o.patch_size());
  TORCH_CHECK(o.in_chans() > 0, "input channels must be positive, got ", o.in_chans());
  TORCH_CHECK(o.embed_dim() > 0, "embedding width must be positive, got ", o.embed_dim());
  TORCH_CHECK(o.input_norm() == InputNorm::None || o.patch_size() >= 2,
              "the per-patch input standardisation needs patches of >= 2 pixels a side (a "
              "1x1 patch standardises to 0), got patch size ",
              o.patch_size());
  TORCH_CHECK(std::isfinite(o.input_norm_eps()) && o.input_norm_eps() > 0,
              "the input standardisation's eps must be > 0 and finite, got ", o.input_norm_eps());
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                                       o.in_chans(), o.embed_dim(), o.patch_size())
                                                       .stride(o.patch_size())
                                                       .bias(true)));
  reset_parameters();
  set_frozen(o.frozen());
}

void PatchEmbedImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  // As MAE: Xavier on the weight viewed as the Linear on flattened patches it is (fan_out D, not
  // D·p² as for a 4-D conv weight); the view shares the weight's storage.
  torch::nn::init::xavier_uniform_(proj->weight.view({options.embed_dim(), -1}));
  torch::nn::init::zeros_(proj->bias);
}

void PatchEmbedImpl::set_frozen(bool frozen) {
  options.frozen(frozen);
  proj->weight.set_requires_grad(!frozen);
  proj->bias.set_requires_grad(!frozen);
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4, "PatchEmbed expects images [B, C, H, W], got ", images.sizes());
  TORCH_CHECK(images.size(1) == options.in_chans(), "PatchEmbed expects ", options.in_chans(),
              " input channels, got ", images.size(1), " (images ", images.sizes(), ")");
  TORCH_CHECK(images.size(2) == options.img_size() && images.size(3) == options.img_size(),
              "input images are ", images.size(2), "x", images.size(3),
              " but the model was built for ", options.img_size(), "x", options.img_size());
  const auto pixels =
      options.input_norm() == InputNorm::Patch
          ? standardize_patches(images, options.patch_size(), options.input_norm_eps())
          : images;
  // [B, D, h, w] → [B, h·w, D]
  return proj(pixels).flatten(2).transpose(1, 2);
}

void PatchEmbedImpl::pretty_print(std::ostream& stream) const {
  stream << "ocl::nn::PatchEmbed(img_size=" << options.img_size()
         << ", patch_size=" << options.patch_size() << ", in_chans=" << options.in_chans()
         << ", embed_dim=" << options.embed_dim() << ", frozen=" << std::boolalpha
         << options.frozen();
  if (options.input_norm() != InputNorm::None) {
    stream << ", input_norm=" << input_norm_name(options.input_norm())
           << ", input_norm_eps=" << options.input_norm_eps();
  }
  stream << ")";
}

}  // namespace ocl::nn
