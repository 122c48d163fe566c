// A torch::nn::Linear applied as one GEMM whose epilogue adds the bias (as PyTorch's F.linear):
// LibTorch's C++ Linear adds it in a second pass over a >2-D output, under bf16 autocast about a
// fifth of ViT-L/16's step on an H100 (docs/performance.md).
#pragma once

#include <torch/nn/modules/linear.h>

namespace ocl::nn {

inline torch::Tensor linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  return torch::linear(x, layer->weight, layer->bias);
}

}  // namespace ocl::nn
