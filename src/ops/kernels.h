// The fused kernels behind ocl::ops' kernel path, with one signature for both of their
// implementations: the CUDA kernels (kernels.cu, in builds against a CUDA LibTorch) and the
// host emulation (host_kernels.cpp) that runs the same arithmetic (fused_math.h) on CPU tensors,
// so that the kernels' row statistics and column reductions are tested without a GPU.
//
// Shapes: rows R = the product of the leading dimensions, width D (or H); every tensor given is
// contiguous. Row statistics are in the accumulation dtype (float32, or float64 for float64
// residuals); the column partials are [partial_count(R), D] in that dtype, summed by the caller.
#pragma once

#include <utility>

#include <ATen/core/Tensor.h>

namespace ocl::ops::kernels {

struct LayerNormForward {
  at::Tensor residual, normed, mean, rstd;
};

struct LayerNormBackward {
  at::Tensor grad_residual;  // in the residual's dtype
  at::Tensor grad_h;         // in h's dtype where it differs from the residual's, else undefined
  at::Tensor weight_partials, bias_partials;
};

/// x [R, D], h [R, D] or undefined, weight and bias [D] in the accumulation dtype.
/// residual = x + h in `residual_dtype`, normed in `normed_dtype`.
using LayerNormForwardFn = LayerNormForward (*)(const at::Tensor& x, const at::Tensor& h,
                                                const at::Tensor& weight, const at::Tensor& bias,
                                                double eps, at::ScalarType residual_dtype,
                                                at::ScalarType normed_dtype);
/// grad_normed [R, D], grad_residual [R, D] or undefined (nothing reached y directly), the
/// forward's residual, mean and rstd, weight [D]; h_dtype: the dtype h's gradient is wanted in.
using LayerNormBackwardFn = LayerNormBackward (*)(const at::Tensor& grad_normed,
                                                  const at::Tensor& grad_residual,
                                                  const at::Tensor& residual,
                                                  const at::Tensor& mean, const at::Tensor& rstd,
                                                  const at::Tensor& weight, at::ScalarType h_dtype);
/// grad_out, pre [R, H] (pre: the linear's output before GELU) → grad_pre [R, H] in pre's
/// dtype, and the bias gradient's partials.
using GeluBackwardFn = std::pair<at::Tensor, at::Tensor> (*)(const at::Tensor& grad_out,
                                                             const at::Tensor& pre);

/// grad_out [R, N], x [R, K] (a linear's input) → the weight's gradient grad_outᵀ·x [N, K] and
/// the bias's Σ_rows grad_out [N], both in grad_out's dtype (x's is the same): on CUDA one
/// cuBLASLt GEMM whose epilogue reduces the bias gradient (BGRADB), where cuBLASLt offers it.
using WeightBiasGradFn = std::pair<at::Tensor, at::Tensor> (*)(const at::Tensor& grad_out,
                                                               const at::Tensor& x);

struct Kernels {
  LayerNormForwardFn layer_norm_forward;
  LayerNormBackwardFn layer_norm_backward;
  GeluBackwardFn gelu_backward;
  WeightBiasGradFn weight_bias_grad;
};

/// Weight-gradient GEMMs whose bias gradient took a separate reduction because cuBLASLt had no
/// algorithm with the epilogue for them (or the dtype has none), since the process started.
int64_t weight_bias_grad_fallbacks();

/// The host emulation (float32 and float64 tensors of one dtype).
const Kernels& host();
/// The CUDA kernels, or nullptr in a build without them.
const Kernels* cuda();
/// The implementation for tensors on `x`'s device; throws naming the device where none exists.
const Kernels& for_tensor(const at::Tensor& x);

}  // namespace ocl::ops::kernels
