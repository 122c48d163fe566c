// Linear + exact GELU (see include/ocl/ops/linear_gelu.h).
#include "ocl/ops/linear_gelu.h"

#include "kernels.h"
#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace ocl::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LinearGeluFunction : public torch::autograd::Function<LinearGeluFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) {
    const auto dtype = compute_dtype(x);
    auto xc = x.to(dtype), wc = weight.to(dtype);
    // The GEMM adds the bias in its epilogue, as at::linear does; the pre-activation is kept
    // for the backward's fused GELU derivative and bias gradient.
    auto pre = at::linear(xc, wc, bias.to(dtype));
    ctx->save_for_backward({xc, wc, pre});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(weight.scalar_type());
    return at::gelu(pre);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &xc = saved[0], &wc = saved[1], &pre = saved[2];
    const int64_t K = xc.size(-1), H = pre.size(-1);
    auto [grad_pre, bias_partials] = kernels::for_tensor(pre).gelu_backward(
        grads[0].to(pre.scalar_type()).reshape({-1, H}).contiguous(), pre.reshape({-1, H}));
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    auto grad_x = at::mm(grad_pre, wc).view(xc.sizes());
    auto grad_w = at::mm(grad_pre.t(), xc.reshape({-1, K}));
    return {grad_x.to(static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt())),
            grad_w.to(w_dtype), bias_partials.sum(0).to(w_dtype)};
  }
};

}  // namespace

at::Tensor linear_gelu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       Path path) {
  TORCH_CHECK(x.dim() >= 1 && weight.dim() == 2 && weight.size(1) == x.size(-1) &&
                  bias.dim() == 1 && bias.size(0) == weight.size(0),
              "linear_gelu: x [..., K], weight [H, K] and bias [H], got x ", x.sizes(), ", weight ",
              weight.sizes(), ", bias ", bias.sizes());
  if (path == Path::kComposite) return at::gelu(at::linear(x, weight, bias));
  return LinearGeluFunction::apply(x, weight, bias);
}

}  // namespace ocl::ops
