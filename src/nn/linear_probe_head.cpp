// The linear probe's head (see include/ocl/nn/linear_probe_head.h).
#include "ocl/nn/linear_probe_head.h"

#include <torch/nn/init.h>

namespace ocl::nn {

LinearProbeHeadImpl::LinearProbeHeadImpl(const LinearProbeHeadOptions& options_)
    : options(options_) {
  reset();
}

void LinearProbeHeadImpl::reset() {
  TORCH_CHECK(options.dim() >= 1 && options.num_classes() >= 1,
              "linear probe head: needs dim, num_classes >= 1, got ", options.dim(), ", ",
              options.num_classes());
  TORCH_CHECK(options.bn_eps() > 0 && options.init_std() >= 0,
              "linear probe head: needs bn_eps > 0 and init_std >= 0, got ", options.bn_eps(), ", ",
              options.init_std());
  bn = register_module(
      "bn", torch::nn::BatchNorm1d(
                torch::nn::BatchNormOptions(options.dim()).affine(false).eps(options.bn_eps())));
  fc = register_module("fc", torch::nn::Linear(options.dim(), options.num_classes()));
  reset_parameters();
}

void LinearProbeHeadImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(fc->weight, 0.0, options.init_std());
  torch::nn::init::zeros_(fc->bias);
}

torch::Tensor LinearProbeHeadImpl::forward(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 2 && features.size(1) == options.dim(),
              "linear probe head: features must be [B, ", options.dim(), "], got ",
              features.sizes());
  return fc->forward(bn->forward(features));
}

}  // namespace ocl::nn
