// Linear with its bias gradient in the weight gradient's GEMM (see include/ocl/ops/linear.h).
#include "ocl/ops/linear.h"

#include "kernels.h"
#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace ocl::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) {
    const auto dtype = compute_dtype(x);
    auto xc = x.to(dtype), wc = weight.to(dtype);
    ctx->save_for_backward({xc, wc});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(weight.scalar_type());
    return at::linear(xc, wc, bias.to(dtype));  // the bias added in the GEMM's epilogue
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &xc = saved[0], &wc = saved[1];
    const int64_t K = xc.size(-1), N = wc.size(0);
    const auto grad = grads[0].to(xc.scalar_type()).reshape({-1, N}).contiguous();
    auto [grad_w, grad_b] =
        kernels::for_tensor(grad).weight_bias_grad(grad, xc.reshape({-1, K}).contiguous());
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    auto grad_x = at::mm(grad, wc).view(xc.sizes());
    return {grad_x.to(static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt())),
            grad_w.to(w_dtype), grad_b.to(w_dtype)};
  }
};

}  // namespace

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  Path path) {
  TORCH_CHECK(x.dim() >= 1 && weight.dim() == 2 && weight.size(1) == x.size(-1) &&
                  (!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0))),
              "ops::linear: x [..., K], weight [N, K] and bias [N] or none, got x ", x.sizes(),
              ", weight ", weight.sizes(), ", bias ",
              bias.defined() ? bias.sizes() : at::IntArrayRef{});
  // Without a bias there is no reduction to fold into the GEMM.
  if (path == Path::kComposite || !bias.defined()) return at::linear(x, weight, bias);
  return LinearFunction::apply(x, weight, bias);
}

int64_t linear_bias_grad_fallbacks() { return kernels::weight_bias_grad_fallbacks(); }

}  // namespace ocl::ops
