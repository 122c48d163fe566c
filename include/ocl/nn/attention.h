// Multi-head self-attention with a fused qkv projection, timm's layout (`qkv`, `proj`).
#pragma once

#include <cstdint>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ocl/ops/path.h"

namespace ocl::nn {

struct AttentionOptions {
  AttentionOptions(int64_t dim, int64_t num_heads) : dim_(dim), num_heads_(num_heads) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, num_heads);
  TORCH_ARG(bool, qkv_bias) = true;
};

/// x [B, T, D] → [B, T, D] through compat::attention; no mask (OCL's groups have equal lengths).
class AttentionImpl : public torch::nn::Cloneable<AttentionImpl> {
 public:
  explicit AttentionImpl(const AttentionOptions& options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// The same with its two linears through ops::linear on `path` (model.fused's blocks).
  torch::Tensor forward_fused(const torch::Tensor& x, ops::Path path);
  void pretty_print(std::ostream& stream) const override;

  AttentionOptions options;
  torch::nn::Linear qkv{nullptr};   // [3D, D]: rows are q, then k, then v, head-major inside each
  torch::nn::Linear proj{nullptr};  // [D, D]
};
TORCH_MODULE(Attention);

}  // namespace ocl::nn
