// The MLP's first linear and its exact (erf) GELU as one operation: gelu(x·Wᵀ + b). The kernel
// path keeps the forward's GEMM with the bias in its epilogue and fuses the backward's GELU
// derivative with the bias gradient (one pass over the hidden activations instead of two).
#pragma once

#include <ATen/core/Tensor.h>

#include "ocl/ops/path.h"

namespace ocl::ops {

/// x [..., K], weight [H, K], bias [H] → [..., H]. Under autocast the GEMM runs in the
/// autocast dtype, as at::linear would. Differentiable in x, weight and bias on either path.
at::Tensor linear_gelu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       Path path);

}  // namespace ocl::ops
