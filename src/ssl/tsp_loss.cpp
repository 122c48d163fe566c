// T-SP similarity and the symmetric contrastive loss (see include/ocl/ssl/tsp_loss.h).
#include "ocl/ssl/tsp_loss.h"

#include <cmath>

#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/normalization.h>

#include "ocl/compat.h"

namespace ocl::ssl {

namespace F = torch::nn::functional;

torch::Tensor tsp_similarity(const torch::Tensor& cos, double kappa) {
  TORCH_CHECK(std::isfinite(kappa) && kappa > 0.0, "T-SP kappa must be finite and > 0, got ",
              kappa);
  return (1.0 + cos) / (1.0 + (1.0 - cos) / kappa) - 1.0;
}

torch::Tensor logit_scale_from_log(const torch::Tensor& log_scale, double max_scale) {
  TORCH_CHECK(log_scale.dim() == 0, "log scale must be a 0-d tensor, got ", log_scale.sizes());
  return log_scale.exp().clamp_max(max_scale);
}

namespace {
torch::Tensor unit_rows(const torch::Tensor& x, torch::Dtype dtype) {
  return F::normalize(x.to(dtype), F::NormalizeFuncOptions().p(2).dim(-1));
}
}  // namespace

ContrastiveLoss symmetric_tsp_loss(const torch::Tensor& a, const torch::Tensor& b,
                                   const torch::Tensor& scale, double kappa,
                                   const torch::Tensor& a_all, const torch::Tensor& b_all,
                                   int64_t offset) {
  TORCH_CHECK(a.dim() == 2 && a.sizes() == b.sizes(),
              "contrastive loss expects a and b of the same shape [B, D], got a ", a.sizes(),
              " and b ", b.sizes());
  TORCH_CHECK(a_all.defined() == b_all.defined(), "pass both a_all and b_all, or neither");
  TORCH_CHECK(scale.dim() == 0, "logit scale must be a 0-d tensor, got ", scale.sizes());
  const int64_t B = a.size(0);
  // Reduced-precision encoders still get an fp32 loss: an fp16/bf16 softmax over thousands of
  // negatives loses the positive's logit in rounding.
  const auto dtype = a.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  compat::AutocastGuard no_autocast(a.device().type(), /*enabled=*/false);

  auto a_n = unit_rows(a, dtype), b_n = unit_rows(b, dtype);
  auto a_cols = a_all.defined() ? unit_rows(a_all, dtype) : a_n;
  auto b_cols = b_all.defined() ? unit_rows(b_all, dtype) : b_n;
  TORCH_CHECK(b_cols.dim() == 2 && b_cols.size(1) == a.size(1) && a_cols.sizes() == b_cols.sizes(),
              "gathered features must be [M, ", a.size(1), "], got a_all ", a_cols.sizes(),
              " and b_all ", b_cols.sizes());
  const int64_t M = b_cols.size(0);
  TORCH_CHECK(offset >= 0 && offset + B <= M, "this batch's rows [", offset, ", ", offset + B,
              ") do not fit in the ", M, " gathered rows");
  TORCH_CHECK(M >= 2, "a contrastive loss needs at least 2 images for negatives, got ", M);

  auto s = scale.to(dtype);
  auto cos_ab = torch::matmul(a_n, b_cols.t());  // [B, M]
  auto cos_ba = torch::matmul(b_n, a_cols.t());  // [B, M]
  auto logits_ab = s * (tsp_similarity(cos_ab, kappa) + 1.0) / 2.0;
  auto logits_ba = s * (tsp_similarity(cos_ba, kappa) + 1.0) / 2.0;
  auto labels = torch::arange(offset, offset + B,
                              torch::TensorOptions().dtype(torch::kLong).device(a.device()));
  auto loss = (F::cross_entropy(logits_ab, labels) + F::cross_entropy(logits_ba, labels)) / 2.0;

  ContrastiveLoss out;
  out.loss = loss;
  torch::NoGradGuard no_grad;
  auto pos = cos_ab.gather(1, labels.unsqueeze(1));
  out.pos_cos = pos.mean();
  out.neg_cos = (cos_ab.sum() - pos.sum()) / static_cast<double>(B * M - B);
  out.accuracy = cos_ab.argmax(1).eq(labels).to(dtype).mean();
  out.temperature = 1.0 / s.detach();
  return out;
}

}  // namespace ocl::ssl
