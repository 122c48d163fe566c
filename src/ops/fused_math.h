// The per-element and per-row arithmetic of ocl's fused kernels, written once for the host and
// the device: the CUDA kernels (kernels.cu) and their CPU emulation (the tests' way of checking
// the kernels' indexing and reductions without a GPU) call the same functions.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define OCL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define OCL_HOST_DEVICE inline
#endif

namespace ocl::ops::math {

/// LayerNorm's reciprocal standard deviation from a row's sum of squared deviations (the
/// biased variance, as LayerNorm uses).
template <typename A>
OCL_HOST_DEVICE A layer_norm_rstd(A squared_deviations, int64_t width, double eps) {
  using std::sqrt;
  return A(1) / sqrt(squared_deviations / static_cast<A>(width) + static_cast<A>(eps));
}

/// One LayerNorm input's gradient, from the row's two means: with x̂ = (y − mean)·rstd and
/// d = ∂L/∂n · weight, ∂L/∂y = rstd · (d − mean(d) − x̂ · mean(d · x̂)), plus what reaches y
/// directly (the residual stream's own gradient).
template <typename A>
OCL_HOST_DEVICE A layer_norm_grad(A d, A xhat, A mean_d, A mean_d_xhat, A rstd, A residual_grad) {
  return rstd * (d - mean_d - xhat * mean_d_xhat) + residual_grad;
}

/// The exact (erf) GELU, timm's and MAE's default, and its derivative.
template <typename A>
OCL_HOST_DEVICE A gelu(A v) {
  using std::erf;
  return A(0.5) * v * (A(1) + erf(v * static_cast<A>(0.70710678118654752440)));
}

template <typename A>
OCL_HOST_DEVICE A gelu_grad(A v) {
  using std::erf;
  using std::exp;
  const A cdf = A(0.5) * (A(1) + erf(v * static_cast<A>(0.70710678118654752440)));
  const A pdf = exp(A(-0.5) * v * v) * static_cast<A>(0.39894228040143267794);
  return cdf + v * pdf;
}

/// How the column reductions (the LayerNorm's weight and bias gradients, the bias gradient
/// behind GELU) split their rows: each partial sums this many consecutive rows, and the
/// partials are added up afterwards.
inline constexpr int64_t kRowsPerPartial = 64;

inline int64_t partial_count(int64_t rows) {
  return rows == 0 ? 1 : (rows + kRowsPerPartial - 1) / kRowsPerPartial;
}

}  // namespace ocl::ops::math
