// The fused kernels' arithmetic on the host (see kernels.h): row by row and partial by partial
// in the order the CUDA kernels split the work, through the same functions of fused_math.h.
#include <algorithm>

#include "fused_math.h"
#include "kernels.h"
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace ocl::ops::kernels {
namespace {

void check_host(const at::Tensor& t, at::ScalarType dtype, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == dtype,
              "ocl::ops host kernels: ", what, " must be a contiguous CPU tensor of ", dtype,
              ", got ", t.device(), " ", t.scalar_type(), t.is_contiguous() ? "" : " (strided)");
}

template <typename T>
LayerNormForward layer_norm_forward(const at::Tensor& x, const at::Tensor& h,
                                    const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const int64_t D = x.size(-1), R = x.numel() / D;
  LayerNormForward out{at::empty_like(x), at::empty_like(x), at::empty({R}, x.options()),
                       at::empty({R}, x.options())};
  const T *px = x.data_ptr<T>(), *ph = h.defined() ? h.data_ptr<T>() : nullptr;
  const T *w = weight.data_ptr<T>(), *b = bias.data_ptr<T>();
  T *y = out.residual.data_ptr<T>(), *n = out.normed.data_ptr<T>();
  for (int64_t r = 0; r < R; ++r) {
    const int64_t o = r * D;
    T sum = 0;
    for (int64_t c = 0; c < D; ++c) {
      y[o + c] = px[o + c] + (ph ? ph[o + c] : T(0));
      sum += y[o + c];
    }
    const T mean = sum / static_cast<T>(D);
    T squares = 0;
    for (int64_t c = 0; c < D; ++c) squares += (y[o + c] - mean) * (y[o + c] - mean);
    const T rstd = math::layer_norm_rstd(squares, D, eps);
    for (int64_t c = 0; c < D; ++c) n[o + c] = (y[o + c] - mean) * rstd * w[c] + b[c];
    out.mean.data_ptr<T>()[r] = mean;
    out.rstd.data_ptr<T>()[r] = rstd;
  }
  return out;
}

template <typename T>
LayerNormBackward layer_norm_backward(const at::Tensor& grad_normed, const at::Tensor& grad_y,
                                      const at::Tensor& residual, const at::Tensor& mean_t,
                                      const at::Tensor& rstd_t, const at::Tensor& weight) {
  const int64_t D = residual.size(-1), R = residual.numel() / D, P = math::partial_count(R);
  LayerNormBackward out{at::empty_like(residual), at::Tensor(),
                        at::zeros({P, D}, residual.options()),
                        at::zeros({P, D}, residual.options())};
  const T *gn = grad_normed.data_ptr<T>(), *gy = grad_y.defined() ? grad_y.data_ptr<T>() : nullptr;
  const T *y = residual.data_ptr<T>(), *w = weight.data_ptr<T>();
  const T *mean = mean_t.data_ptr<T>(), *rstd = rstd_t.data_ptr<T>();
  T* gx = out.grad_residual.data_ptr<T>();
  for (int64_t r = 0; r < R; ++r) {  // the row kernel: one warp a row on the GPU
    const int64_t o = r * D;
    T sum_d = 0, sum_d_xhat = 0;
    for (int64_t c = 0; c < D; ++c) {
      const T xhat = (y[o + c] - mean[r]) * rstd[r], d = gn[o + c] * w[c];
      sum_d += d;
      sum_d_xhat += d * xhat;
    }
    const T mean_d = sum_d / static_cast<T>(D), mean_d_xhat = sum_d_xhat / static_cast<T>(D);
    for (int64_t c = 0; c < D; ++c) {
      const T xhat = (y[o + c] - mean[r]) * rstd[r];
      gx[o + c] = math::layer_norm_grad(gn[o + c] * w[c], xhat, mean_d, mean_d_xhat, rstd[r],
                                        gy ? gy[o + c] : T(0));
    }
  }
  T *wp = out.weight_partials.data_ptr<T>(), *bp = out.bias_partials.data_ptr<T>();
  for (int64_t p = 0; p < P; ++p) {  // the column kernel: one thread a column and partial
    for (int64_t r = p * math::kRowsPerPartial; r < std::min(R, (p + 1) * math::kRowsPerPartial);
         ++r) {
      for (int64_t c = 0; c < D; ++c) {
        wp[p * D + c] += gn[r * D + c] * (y[r * D + c] - mean[r]) * rstd[r];
        bp[p * D + c] += gn[r * D + c];
      }
    }
  }
  return out;
}

template <typename T>
std::pair<at::Tensor, at::Tensor> gelu_backward(const at::Tensor& grad_out, const at::Tensor& pre) {
  const int64_t H = pre.size(-1), R = pre.numel() / H, P = math::partial_count(R);
  auto grad_pre = at::empty_like(pre);
  auto partials = at::zeros({P, H}, pre.options());
  const T *go = grad_out.data_ptr<T>(), *v = pre.data_ptr<T>();
  T *gp = grad_pre.data_ptr<T>(), *bp = partials.data_ptr<T>();
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t r = p * math::kRowsPerPartial; r < std::min(R, (p + 1) * math::kRowsPerPartial);
         ++r) {
      for (int64_t c = 0; c < H; ++c) {
        gp[r * H + c] = go[r * H + c] * math::gelu_grad(v[r * H + c]);
        bp[p * H + c] += gp[r * H + c];
      }
    }
  }
  return {grad_pre, partials};
}

// The host emulation runs in one dtype: float32 or float64 throughout.
at::ScalarType host_dtype(const at::Tensor& x) {
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble,
              "ocl::ops host kernels run in float32 or float64, got ", t);
  return t;
}

LayerNormForward host_layer_norm_forward(const at::Tensor& x, const at::Tensor& h,
                                         const at::Tensor& weight, const at::Tensor& bias,
                                         double eps, at::ScalarType residual_dtype,
                                         at::ScalarType normed_dtype) {
  const auto t = host_dtype(x);
  TORCH_CHECK(residual_dtype == t && normed_dtype == t,
              "ocl::ops host kernels: residual and normed dtypes must be the input's ", t);
  check_host(x, t, "x");
  if (h.defined()) check_host(h, t, "h");
  check_host(weight, t, "weight");
  check_host(bias, t, "bias");
  return t == at::kFloat ? layer_norm_forward<float>(x, h, weight, bias, eps)
                         : layer_norm_forward<double>(x, h, weight, bias, eps);
}

LayerNormBackward host_layer_norm_backward(const at::Tensor& grad_normed,
                                           const at::Tensor& grad_residual,
                                           const at::Tensor& residual, const at::Tensor& mean,
                                           const at::Tensor& rstd, const at::Tensor& weight,
                                           at::ScalarType h_dtype) {
  const auto t = host_dtype(residual);
  TORCH_CHECK(h_dtype == t, "ocl::ops host kernels: h's dtype must be the residual's ", t);
  for (const auto* g : {&grad_normed, &residual, &mean, &rstd, &weight}) check_host(*g, t, "input");
  if (grad_residual.defined()) check_host(grad_residual, t, "grad_residual");
  return t == at::kFloat
             ? layer_norm_backward<float>(grad_normed, grad_residual, residual, mean, rstd, weight)
             : layer_norm_backward<double>(grad_normed, grad_residual, residual, mean, rstd,
                                           weight);
}

std::pair<at::Tensor, at::Tensor> host_gelu_backward(const at::Tensor& grad_out,
                                                     const at::Tensor& pre) {
  const auto t = host_dtype(pre);
  check_host(pre, t, "pre");
  check_host(grad_out, t, "grad_out");
  return t == at::kFloat ? gelu_backward<float>(grad_out, pre)
                         : gelu_backward<double>(grad_out, pre);
}

// The GEMM and the column sums, in the kernel's dtype.
std::pair<at::Tensor, at::Tensor> host_weight_bias_grad(const at::Tensor& grad_out,
                                                        const at::Tensor& x) {
  const auto t = host_dtype(grad_out);
  check_host(grad_out, t, "grad_out");
  check_host(x, t, "x");
  return {at::mm(grad_out.t(), x), grad_out.sum(0)};
}

}  // namespace

const Kernels& host() {
  static const Kernels kernels{host_layer_norm_forward, host_layer_norm_backward,
                               host_gelu_backward, host_weight_bias_grad};
  return kernels;
}

const Kernels& for_tensor(const at::Tensor& x) {
  if (x.device().is_cpu()) return host();
  const Kernels* k = x.device().is_cuda() ? cuda() : nullptr;
  TORCH_CHECK(k, "ocl::ops: no fused kernels for ", x.device(),
              x.device().is_cuda() ? " in this build (a CPU LibTorch, or no nvcc)" : "");
  return *k;
}

}  // namespace ocl::ops::kernels
