// Pre-norm transformer block (timm's `Block`): x + DropPath(LS(Attn(LN(x)))), then the same with
// an exact-GELU MLP. Submodule names are timm's: norm1, attn, ls1, norm2, mlp.fc1, mlp.fc2, ls2.
#pragma once

#include <cstdint>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "ocl/nn/attention.h"
#include "ocl/ops/residual_layer_norm.h"

namespace ocl::nn {

/// LayerNorm epsilon used throughout (timm / MAE ViTs use 1e-6, not LibTorch's 1e-5 default).
inline constexpr double kLayerNormEps = 1e-6;

/// Stochastic depth: in training, zeroes the residual branch of each sample with probability
/// `drop_prob` and scales the kept ones by 1/(1−drop_prob). Identity in eval or when prob is 0.
torch::Tensor drop_path(const torch::Tensor& x, double drop_prob, bool training);

struct MlpOptions {
  MlpOptions(int64_t dim, int64_t hidden_dim) : dim_(dim), hidden_dim_(hidden_dim) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, hidden_dim);
};

/// fc1 [hidden, D] → exact (erf) GELU → fc2 [D, hidden].
class MlpImpl : public torch::nn::Cloneable<MlpImpl> {
 public:
  explicit MlpImpl(const MlpOptions& options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);

  MlpOptions options;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

/// Per-channel scale `gamma` [D] (CaiT's LayerScale), initialised to a small constant.
class LayerScaleImpl : public torch::nn::Cloneable<LayerScaleImpl> {
 public:
  LayerScaleImpl(int64_t dim, double init_value);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x) { return x * gamma; }

  int64_t dim;
  double init_value;
  torch::Tensor gamma;
};
TORCH_MODULE(LayerScale);

struct BlockOptions {
  BlockOptions(int64_t dim, int64_t num_heads) : dim_(dim), num_heads_(num_heads) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, num_heads);
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, drop_path) = 0.0;
  /// LayerScale initial value; 0 disables LayerScale (no ls1/ls2 parameters).
  TORCH_ARG(double, layer_scale_init) = 0.0;
};

/// x [B, T, D] → [B, T, D].
class BlockImpl : public torch::nn::Cloneable<BlockImpl> {
 public:
  explicit BlockImpl(const BlockOptions& options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// The same block through ocl::ops: `in` holds the residual stream x and norm1(x); returns the
  /// stream after this block and `next`'s LayerNorm of it in `next_dtype` (the following block's
  /// norm1 or the final norm; undefined when `next` is null).
  ops::ResidualNorm forward_fused(const ops::ResidualNorm& in, const torch::nn::LayerNorm& next,
                                  at::ScalarType next_dtype);
  void pretty_print(std::ostream& stream) const override;

  BlockOptions options;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
  LayerScale ls1{nullptr}, ls2{nullptr};  // null when LayerScale is off
};
TORCH_MODULE(Block);

}  // namespace ocl::nn
