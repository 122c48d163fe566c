// The residual stream's add and the LayerNorm in front of the next attention or MLP as one
// operation: y = x + h, n = LayerNorm(y) written in the dtype the next GEMM reads.
#pragma once

#include <ATen/core/Tensor.h>

#include "ocl/ops/path.h"

namespace ocl::ops {

struct ResidualNorm {
  at::Tensor residual;  // y = x + h, in their promoted dtype (x itself when h is undefined)
  at::Tensor normed;    // LayerNorm(y)·weight + bias over the last dimension, in normed_dtype
};

/// x, h: [..., D] (h may be undefined: LayerNorm(x) alone); weight, bias: [D]. The statistics
/// are taken in float32 (float64 for float64 inputs) whatever the inputs' dtype, as LayerNorm
/// under autocast does. Differentiable in x, h, weight and bias on either path.
ResidualNorm residual_layer_norm(const at::Tensor& x, const at::Tensor& h, const at::Tensor& weight,
                                 const at::Tensor& bias, double eps, at::ScalarType normed_dtype,
                                 Path path);

}  // namespace ocl::ops
