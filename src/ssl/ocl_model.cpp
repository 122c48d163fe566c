// The OCL pre-training step (paper Algorithm 1), see include/ocl/ssl/ocl_model.h.
#include "ocl/ssl/ocl_model.h"

#include <cmath>

namespace ocl::ssl {

OCLImpl::OCLImpl(const nn::VisionTransformerOptions& encoder_options_, const OCLOptions& options_)
    : encoder_options(encoder_options_), options(options_) {
  reset();
}

void OCLImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(std::isfinite(o.temperature()) && o.temperature() > 0.0,
              "temperature must be finite and > 0, got ", o.temperature());
  TORCH_CHECK(o.max_logit_scale() >= 1.0 / o.temperature(), "max logit scale ", o.max_logit_scale(),
              " is below the initial scale 1/T = ", 1.0 / o.temperature());
  tsp_similarity(torch::zeros({1}), o.kappa());  // validates κ now, not at the first step
  encoder = register_module("encoder", nn::VisionTransformer(encoder_options));
  kept_tokens(encoder->num_patches(), o.mask_ratio());  // validates r against N now
  logit_scale =
      o.learnable_temperature()
          ? register_parameter("logit_scale", torch::tensor(std::log(1.0 / o.temperature())))
          : torch::Tensor();
}

torch::Tensor OCLImpl::scale() const {
  if (logit_scale.defined()) return logit_scale_from_log(logit_scale, options.max_logit_scale());
  // Filled on the device (no copy from the host: a captured step holds it).
  return torch::full({}, 1.0 / options.temperature(),
                     encoder->cls_token.options().requires_grad(false));
}

int64_t OCLImpl::tokens_per_group() const {
  return kept_tokens(encoder->num_patches(), options.mask_ratio()) / 2;
}

torch::Tensor OCLImpl::draw_noise(int64_t batch, at::Generator generator) const {
  return torch::rand({batch, encoder->num_patches()}, generator,
                     torch::TensorOptions().device(encoder->cls_token.device()));
}

OCLOutput OCLImpl::forward(const torch::Tensor& images, const torch::Tensor& noise,
                           const FeatureGather& gather, const torch::Tensor& images_b) {
  TORCH_CHECK(noise.dim() == 2 && noise.size(0) == images.size(0) &&
                  noise.size(1) == encoder->num_patches(),
              "mask noise must be [B, N] = [", images.size(0), ", ", encoder->num_patches(),
              "], got ", noise.sizes());
  TORCH_CHECK(!images_b.defined() || images_b.sizes() == images.sizes(),
              "group B's images must have the shape of group A's ", images.sizes(), ", got ",
              images_b.defined() ? images_b.sizes() : images.sizes());
  auto tokens = encoder->embed_patches(images);  // [B, N, D]
  // Independent group views: group B reads the second copy's tokens at its own indices.
  auto tokens_b = images_b.defined() ? encoder->embed_patches(images_b) : tokens;
  auto split = mask_and_split(noise, options.mask_ratio());  // 2 × [B, L/2]
  // Both groups in one encoder call: [2B, L/2, D] → [2B, 1 + L/2, D] → CLS rows [2B, D].
  auto groups = torch::cat({nn::VisionTransformerImpl::gather_tokens(tokens, split.ids_a),
                            nn::VisionTransformerImpl::gather_tokens(tokens_b, split.ids_b)},
                           0);
  auto cls = encoder->encode_tokens(groups).select(1, 0);
  const int64_t B = images.size(0);
  auto cls_a = cls.narrow(0, 0, B), cls_b = cls.narrow(0, B, B);

  GatheredFeatures gathered;
  if (gather) gathered = gather(cls_a, cls_b);
  auto figures = symmetric_tsp_loss(cls_a, cls_b, scale(), options.kappa(), gathered.a_all,
                                    gathered.b_all, gathered.offset);
  return {figures.loss, figures, cls_a, cls_b, split};
}

void OCLImpl::pretty_print(std::ostream& stream) const {
  stream << "ocl::ssl::OCL(mask_ratio=" << options.mask_ratio() << ", kappa=" << options.kappa()
         << ", tokens_per_group=" << tokens_per_group()
         << ", learnable_temperature=" << std::boolalpha << options.learnable_temperature() << ")";
}

}  // namespace ocl::ssl
