// Attention (see include/ocl/nn/attention.h).
#include "ocl/nn/attention.h"

#include "ocl/compat.h"
#include "ocl/ops/linear.h"

namespace ocl::nn {

AttentionImpl::AttentionImpl(const AttentionOptions& options_) : options(options_) { reset(); }

void AttentionImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.dim() > 0 && o.num_heads() > 0 && o.dim() % o.num_heads() == 0, "attention width ",
              o.dim(), " is not divisible by the number of heads ", o.num_heads());
  qkv = register_module(
      "qkv", torch::nn::Linear(torch::nn::LinearOptions(o.dim(), 3 * o.dim()).bias(o.qkv_bias())));
  proj = register_module("proj", torch::nn::Linear(o.dim(), o.dim()));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  return forward_fused(x, ops::Path::kComposite);
}

torch::Tensor AttentionImpl::forward_fused(const torch::Tensor& x, ops::Path path) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.dim(), "Attention expects [B, T, ",
              options.dim(), "], got ", x.sizes());
  const int64_t B = x.size(0), T = x.size(1), H = options.num_heads();
  const int64_t hd = options.dim() / H;
  // [B, T, 3D] → 3 × [B, H, T, hd]. unbind, not three selects: its backward stacks the three
  // gradients, where each select's would zero a full-size tensor and add them up.
  auto qkv_heads = ops::linear(x, qkv->weight, qkv->bias, path)
                       .reshape({B, T, 3, H, hd})
                       .permute({2, 0, 3, 1, 4})
                       .unbind(0);
  auto out = compat::attention(qkv_heads[0], qkv_heads[1], qkv_heads[2]);  // [B, H, T, hd]
  return ops::linear(out.transpose(1, 2).reshape({B, T, options.dim()}), proj->weight, proj->bias,
                     path);
}

void AttentionImpl::pretty_print(std::ostream& stream) const {
  stream << "ocl::nn::Attention(dim=" << options.dim() << ", num_heads=" << options.num_heads()
         << ", qkv_bias=" << std::boolalpha << options.qkv_bias() << ")";
}

}  // namespace ocl::nn
