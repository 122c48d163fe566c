// Residual add + LayerNorm (see include/ocl/ops/residual_layer_norm.h).
#include "ocl/ops/residual_layer_norm.h"

#include "kernels.h"
#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace ocl::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::ScalarType accumulation_dtype(at::ScalarType residual) {
  return residual == at::kDouble ? at::kDouble : at::kFloat;
}

ResidualNorm composite(const at::Tensor& x, const at::Tensor& h, const at::Tensor& weight,
                       const at::Tensor& bias, double eps, at::ScalarType normed_dtype) {
  auto y = h.defined() ? x + h : x;
  const auto acc = accumulation_dtype(y.scalar_type());
  auto n = at::layer_norm(y.to(acc), {y.size(-1)}, weight.to(acc), bias.to(acc), eps);
  return {y, n.to(normed_dtype)};
}

// Inputs flattened to [R, D] and made contiguous; the kernel's outputs reshaped back.
class ResidualLayerNormFunction : public torch::autograd::Function<ResidualLayerNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& branch,
                               const at::Tensor& weight, const at::Tensor& bias, double eps,
                               int64_t normed_dtype) {
    const at::Tensor h = branch.numel() > 0 ? branch : at::Tensor();
    const auto& k = kernels::for_tensor(x);
    const int64_t D = x.size(-1);
    const auto residual_dtype =
        h.defined() ? at::promote_types(x.scalar_type(), h.scalar_type()) : x.scalar_type();
    const auto acc = accumulation_dtype(residual_dtype);
    auto fw = k.layer_norm_forward(x.reshape({-1, D}).contiguous(),
                                   h.defined() ? h.reshape({-1, D}).contiguous() : at::Tensor(),
                                   weight.to(acc).contiguous(), bias.to(acc).contiguous(), eps,
                                   residual_dtype, static_cast<at::ScalarType>(normed_dtype));
    ctx->save_for_backward({fw.residual, fw.mean, fw.rstd, weight});
    ctx->saved_data["h_dtype"] =
        static_cast<int64_t>(h.defined() ? h.scalar_type() : residual_dtype);
    ctx->saved_data["has_h"] = h.defined();
    ctx->saved_data["shape"] = x.sizes();
    return {fw.residual.view(x.sizes()), fw.normed.view(x.sizes())};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &residual = saved[0], &weight = saved[3];
    const int64_t D = residual.size(-1);
    const auto acc = accumulation_dtype(residual.scalar_type());
    const auto h_dtype = static_cast<at::ScalarType>(ctx->saved_data["h_dtype"].toInt());
    // An output nobody used has an undefined gradient: zero for the normed output, nothing for
    // the residual.
    auto grad_normed = grads[1].defined() ? grads[1].reshape({-1, D}).contiguous()
                                          : at::zeros({residual.size(0), D}, residual.options());
    auto grad_residual = grads[0].defined()
                             ? grads[0].to(residual.scalar_type()).reshape({-1, D}).contiguous()
                             : at::Tensor();
    auto bw = kernels::for_tensor(residual).layer_norm_backward(
        grad_normed, grad_residual, residual, saved[1], saved[2], weight.to(acc).contiguous(),
        h_dtype);
    const auto shape = ctx->saved_data["shape"].toIntVector();
    auto grad_x = bw.grad_residual.view(shape);
    at::Tensor grad_h;
    if (ctx->saved_data["has_h"].toBool())
      grad_h = bw.grad_h.defined() ? bw.grad_h.view(shape) : grad_x;
    return {grad_x,
            grad_h,
            bw.weight_partials.sum(0).to(weight.scalar_type()),
            bw.bias_partials.sum(0).to(weight.scalar_type()),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

ResidualNorm residual_layer_norm(const at::Tensor& x, const at::Tensor& h, const at::Tensor& weight,
                                 const at::Tensor& bias, double eps, at::ScalarType normed_dtype,
                                 Path path) {
  TORCH_CHECK(x.dim() >= 1 && weight.dim() == 1 && bias.dim() == 1 &&
                  weight.size(0) == x.size(-1) && bias.size(0) == x.size(-1),
              "residual_layer_norm: x [..., D] with weight and bias [D], got x ", x.sizes(),
              ", weight ", weight.sizes(), ", bias ", bias.sizes());
  TORCH_CHECK(!h.defined() || h.sizes() == x.sizes(), "residual_layer_norm: h must be x's shape ",
              x.sizes(), ", got ", h.sizes());
  if (path == Path::kComposite) return composite(x, h, weight, bias, eps, normed_dtype);
  // LibTorch 1.13's autograd functions cannot take an undefined tensor: no branch is an empty one.
  auto out = ResidualLayerNormFunction::apply(x, h.defined() ? h : x.new_empty({0}), weight, bias,
                                              eps, static_cast<int64_t>(normed_dtype));
  return {out[0], out[1]};
}

}  // namespace ocl::ops
