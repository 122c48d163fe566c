// A torch::nn::Linear applied as one fused operation, for the transformer's hot path.
//
// LibTorch's C++ Linear (torch::nn::functional::linear) runs a matmul and then adds the bias in
// place whenever the input has more than two dimensions: a second pass over the whole output,
// which under bf16 autocast also converts the fp32 bias element by element (measured on an H100:
// about a fifth of ViT-L/16's step, docs/performance.md). at::linear, what PyTorch's F.linear
// calls, folds the leading dimensions into one GEMM whose epilogue adds the bias.
#pragma once

#include <torch/nn/modules/linear.h>

namespace ocl::nn {

inline torch::Tensor linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  return torch::linear(x, layer->weight, layer->bias);
}

}  // namespace ocl::nn
