// PatchEmbed (see include/ocl/nn/patch_embed.h).
#include "ocl/nn/patch_embed.h"

#include <torch/nn/init.h>

namespace ocl::nn {

PatchEmbedImpl::PatchEmbedImpl(const PatchEmbedOptions& options_) : options(options_) { reset(); }

void PatchEmbedImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.patch_size() > 0, "patch size must be positive, got ", o.patch_size());
  TORCH_CHECK(o.img_size() > 0 && o.img_size() % o.patch_size() == 0, "image size ", o.img_size(),
              " is not divisible by the patch size ", o.patch_size());
  TORCH_CHECK(o.in_chans() > 0, "input channels must be positive, got ", o.in_chans());
  TORCH_CHECK(o.embed_dim() > 0, "embedding width must be positive, got ", o.embed_dim());
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                                       o.in_chans(), o.embed_dim(), o.patch_size())
                                                       .stride(o.patch_size())
                                                       .bias(true)));
  reset_parameters();
  set_frozen(o.frozen());
}

void PatchEmbedImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  // Xavier on the 4-D conv weight would count the p×p receptive field in fan_out too
  // (fan_out = D·p²); MAE initialises the projection as the Linear on flattened patches it is.
  // The view shares storage, so this initialises the conv weight itself.
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
  // [B, D, h, w] → [B, h·w, D]
  return proj(images).flatten(2).transpose(1, 2);
}

void PatchEmbedImpl::pretty_print(std::ostream& stream) const {
  stream << "ocl::nn::PatchEmbed(img_size=" << options.img_size()
         << ", patch_size=" << options.patch_size() << ", in_chans=" << options.in_chans()
         << ", embed_dim=" << options.embed_dim() << ", frozen=" << std::boolalpha
         << options.frozen() << ")";
}

}  // namespace ocl::nn
