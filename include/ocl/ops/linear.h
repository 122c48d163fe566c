// A linear layer, x·Wᵀ + b, whose backward takes the bias gradient from the weight gradient's GEMM
// (cuBLASLt's bias-gradient epilogue) instead of a separate pass over the output's gradient.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "ocl/ops/path.h"

namespace ocl::ops {

/// x [..., K], weight [N, K], bias [N] or undefined → [..., N]. Under autocast the GEMMs run in
/// the autocast dtype, as at::linear's do. Differentiable in x, weight and bias on either path.
/// Both paths add the bias in the forward GEMM's epilogue, as PyTorch's F.linear does (LibTorch's
/// C++ torch::nn::Linear adds it in a second pass over a >2-D output: under bf16 autocast about
/// a fifth of ViT-L/16's step on an H100, docs/performance.md).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, Path path);

/// Kernel-path backward passes on the GPU whose bias gradient took a separate reduction since
/// the process started, because cuBLASLt offered no algorithm with the epilogue for the shapes
/// and dtype (0 where every one was fused; tests and benchmarks read it).
int64_t linear_bias_grad_fallbacks();

}  // namespace ocl::ops
