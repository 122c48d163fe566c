// Transformer block, MLP, LayerScale and stochastic depth (see include/ocl/nn/block.h).
#include "ocl/nn/block.h"

#include <torch/nn/functional/activation.h>

#include "ocl/compat.h"
#include "ocl/ops/linear.h"
#include "ocl/ops/linear_gelu.h"

namespace ocl::nn {

torch::Tensor drop_path(const torch::Tensor& x, double drop_prob, bool training) {
  TORCH_CHECK(drop_prob >= 0.0 && drop_prob < 1.0, "drop path probability must be in [0, 1), got ",
              drop_prob);
  if (!training || drop_prob == 0.0) return x;
  const double keep = 1.0 - drop_prob;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);  // one draw per sample, broadcast over tokens and channels
  auto mask = torch::empty(shape, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

MlpImpl::MlpImpl(const MlpOptions& options_) : options(options_) { reset(); }

void MlpImpl::reset() {
  fc1 = register_module("fc1", torch::nn::Linear(options.dim(), options.hidden_dim()));
  fc2 = register_module("fc2", torch::nn::Linear(options.hidden_dim(), options.dim()));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  // GELU without the tanh approximation: timm's and MAE's default, and what checkpoints expect.
  const auto plain = ops::Path::kComposite;
  return ops::linear(torch::gelu(ops::linear(x, fc1->weight, fc1->bias, plain)), fc2->weight,
                     fc2->bias, plain);
}

LayerScaleImpl::LayerScaleImpl(int64_t dim_, double init_value_)
    : dim(dim_), init_value(init_value_) {
  reset();
}

void LayerScaleImpl::reset() {
  gamma = register_parameter("gamma", torch::full({dim}, init_value));
}

BlockImpl::BlockImpl(const BlockOptions& options_) : options(options_) { reset(); }

void BlockImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.mlp_ratio() > 0, "MLP ratio must be positive, got ", o.mlp_ratio());
  TORCH_CHECK(o.drop_path() >= 0.0 && o.drop_path() < 1.0, "drop path rate must be in [0, 1), got ",
              o.drop_path());
  auto ln = [&] {
    return torch::nn::LayerNorm(
        torch::nn::LayerNormOptions({o.dim()}).eps(kLayerNormEps).elementwise_affine(true));
  };
  norm1 = register_module("norm1", ln());
  attn = register_module(
      "attn", Attention(AttentionOptions(o.dim(), o.num_heads()).qkv_bias(o.qkv_bias())));
  if (o.layer_scale_init() > 0)
    ls1 = register_module("ls1", LayerScale(o.dim(), o.layer_scale_init()));
  norm2 = register_module("norm2", ln());
  const auto hidden = static_cast<int64_t>(static_cast<double>(o.dim()) * o.mlp_ratio());
  mlp = register_module("mlp", Mlp(MlpOptions(o.dim(), hidden)));
  if (o.layer_scale_init() > 0)
    ls2 = register_module("ls2", LayerScale(o.dim(), o.layer_scale_init()));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  auto h = attn(compat::layer_norm(x, norm1->weight, norm1->bias, kLayerNormEps));
  if (ls1) h = ls1(h);
  auto y = x + drop_path(h, options.drop_path(), is_training());
  h = mlp(compat::layer_norm(y, norm2->weight, norm2->bias, kLayerNormEps));
  if (ls2) h = ls2(h);
  return y + drop_path(h, options.drop_path(), is_training());
}

ops::ResidualNorm BlockImpl::forward_fused(const ops::ResidualNorm& in,
                                           const torch::nn::LayerNorm& next,
                                           at::ScalarType next_dtype) {
  const auto path = ops::fused_path(true, in.residual);
  auto h = attn->forward_fused(in.normed, path);
  if (ls1) h = ls1(h);
  h = drop_path(h, options.drop_path(), is_training());
  const auto mid = ops::residual_layer_norm(in.residual, h, norm2->weight, norm2->bias,
                                            kLayerNormEps, ops::compute_dtype(in.residual), path);
  h = ops::linear(ops::linear_gelu(mid.normed, mlp->fc1->weight, mlp->fc1->bias, path),
                  mlp->fc2->weight, mlp->fc2->bias, path);
  if (ls2) h = ls2(h);
  h = drop_path(h, options.drop_path(), is_training());
  if (!next) return {mid.residual + h, torch::Tensor()};
  return ops::residual_layer_norm(mid.residual, h, next->weight, next->bias, kLayerNormEps,
                                  next_dtype, path);
}

void BlockImpl::pretty_print(std::ostream& stream) const {
  stream << "ocl::nn::Block(dim=" << options.dim() << ", num_heads=" << options.num_heads()
         << ", mlp_ratio=" << options.mlp_ratio() << ", drop_path=" << options.drop_path()
         << ", layer_scale_init=" << options.layer_scale_init() << ")";
}

}  // namespace ocl::nn
