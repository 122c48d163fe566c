// T-SP similarity and the symmetric contrastive loss: the properties docs/method.md states, a
// hand example, a finite-difference gradient check in float64, fp32 under autocast, clear errors.
#include <limits>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/ssl/tsp_loss.h>

using ocl::ssl::symmetric_tsp_loss;
using ocl::ssl::tsp_similarity;

TEST(TSP, EndpointsMonotoneAndLimit) {
  for (double kappa : {0.5, 4.0, 64.0}) {
    auto ends = tsp_similarity(torch::tensor({-1.0, 1.0}, torch::kFloat64), kappa);
    EXPECT_DOUBLE_EQ(ends[0].item<double>(), -1.0);
    EXPECT_DOUBLE_EQ(ends[1].item<double>(), 1.0);
    auto c = torch::linspace(-1, 1, 1001, torch::kFloat64);
    auto phi = tsp_similarity(c, kappa);
    EXPECT_TRUE((phi.diff() > 0).all().item<bool>()) << "not increasing at kappa " << kappa;
    EXPECT_TRUE((phi <= c + 1e-15).all().item<bool>());  // the denominator is ≥ 1
  }
  auto c = torch::linspace(-1, 1, 101, torch::kFloat64);
  EXPECT_LT((tsp_similarity(c, 1e9) - c).abs().max().item<double>(), 1e-8);
  // Smaller κ concentrates: an orthogonal pair scores lower.
  EXPECT_LT(tsp_similarity(torch::zeros({1}), 4.0).item<double>(),
            tsp_similarity(torch::zeros({1}), 64.0).item<double>());
  // Hand value: c = 0, κ = 4 → 1/(1 + 1/4) − 1 = −0.2.
  EXPECT_NEAR(tsp_similarity(torch::zeros({1}, torch::kFloat64), 4.0).item<double>(), -0.2, 1e-15);
}

TEST(TSP, RejectsBadKappa) {
  auto c = torch::zeros({2});
  OCL_EXPECT_THROW_WITH(tsp_similarity(c, std::numeric_limits<double>::infinity()), "inf");
  OCL_EXPECT_THROW_WITH(tsp_similarity(c, std::nan("")), "nan");
  OCL_EXPECT_THROW_WITH(tsp_similarity(c, 0.0), "got 0");
}

TEST(ContrastiveLoss, HandExample) {
  // a = b = e1, e2: positives have cos 1, negatives 0.
  auto e = torch::eye(2, torch::kFloat64);
  auto scale = torch::tensor(10.0, torch::kFloat64);
  auto out = symmetric_tsp_loss(e, e, scale, 4.0);
  // Logits per row: s·(φ+1)/2 = [10, 10·(−0.2+1)/2 = 4]; CE = log(1 + e^(4−10)).
  EXPECT_NEAR(out.loss.item<double>(), std::log1p(std::exp(-6.0)), 1e-14);
  EXPECT_DOUBLE_EQ(out.pos_cos.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(out.neg_cos.item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(out.accuracy.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(out.temperature.item<double>(), 0.1);
}

TEST(ContrastiveLoss, SymmetricInSwappingGroups) {
  torch::manual_seed(0);
  auto a = torch::randn({6, 8}, torch::kFloat64), b = torch::randn({6, 8}, torch::kFloat64);
  auto s = torch::tensor(14.0, torch::kFloat64);
  EXPECT_NEAR(symmetric_tsp_loss(a, b, s, 64).loss.item<double>(),
              symmetric_tsp_loss(b, a, s, 64).loss.item<double>(), 1e-14);
  // …and invariant to the feature norms (cosines only).
  EXPECT_NEAR(symmetric_tsp_loss(a * 3.0, b * 0.5, s, 64).loss.item<double>(),
              symmetric_tsp_loss(a, b, s, 64).loss.item<double>(), 1e-14);
}

TEST(ContrastiveLoss, FiniteDifferenceGradients) {
  torch::manual_seed(1);
  auto a = torch::randn({3, 4}, torch::kFloat64).requires_grad_();
  auto b = torch::randn({3, 4}, torch::kFloat64).requires_grad_();
  auto log_s = torch::tensor(std::log(5.0), torch::kFloat64).requires_grad_();
  auto loss_of = [&] {
    return symmetric_tsp_loss(a, b, ocl::ssl::logit_scale_from_log(log_s), 8.0).loss;
  };
  loss_of().backward();
  const double h = 1e-6;
  torch::NoGradGuard ng;
  for (auto* t : {&a, &b, &log_s}) {
    auto grad = t->grad().clone();
    auto flat = t->view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double x0 = flat[i].item<double>();
      flat[i].fill_(x0 + h);
      const double up = loss_of().item<double>();
      flat[i].fill_(x0 - h);
      const double down = loss_of().item<double>();
      flat[i].fill_(x0);
      const double numeric = (up - down) / (2 * h);
      // Central differences in float64: truncation ~h² and rounding ~1e-16/h, so ≤ 1e-8.
      EXPECT_NEAR(grad.view({-1})[i].item<double>(), numeric, 1e-8);
    }
  }
}

TEST(ContrastiveLoss, ScaleIsClampedAtMaximum) {
  auto log_s = torch::tensor(std::log(200.0), torch::kFloat64).requires_grad_();
  auto s = ocl::ssl::logit_scale_from_log(log_s, 100.0);
  EXPECT_DOUBLE_EQ(s.item<double>(), 100.0);
  auto a = torch::randn({4, 8}, torch::kFloat64), b = torch::randn({4, 8}, torch::kFloat64);
  symmetric_tsp_loss(a, b, s, 64).loss.backward();
  EXPECT_EQ(log_s.grad().item<double>(), 0.0);  // clamped: the scale stops growing
}

TEST(ContrastiveLoss, Float32WhateverTheInputAndUnderAutocast) {
  torch::manual_seed(2);
  auto a = torch::randn({8, 16}), b = torch::randn({8, 16});
  auto s = torch::tensor(14.0);
  auto plain = symmetric_tsp_loss(a, b, s, 64);
  EXPECT_EQ(plain.loss.scalar_type(), torch::kFloat32);
  EXPECT_EQ(
      symmetric_tsp_loss(a.to(torch::kBFloat16), b.to(torch::kBFloat16), s, 64).loss.scalar_type(),
      torch::kFloat32);
  ocl::compat::AutocastGuard bf16(c10::kCPU, true, torch::kBFloat16);
  auto under = symmetric_tsp_loss(a, b, s, 64);
  EXPECT_EQ(under.loss.scalar_type(), torch::kFloat32);
  EXPECT_EQ(under.loss.item<float>(), plain.loss.item<float>());  // autocast is off inside
}

TEST(ContrastiveLoss, GlobalNegativesWithOwnRowsOnlyEqualLocal) {
  torch::manual_seed(3);
  auto a = torch::randn({4, 8}, torch::kFloat64), b = torch::randn({4, 8}, torch::kFloat64);
  auto s = torch::tensor(14.0, torch::kFloat64);
  EXPECT_NEAR(symmetric_tsp_loss(a, b, s, 64, a, b, 0).loss.item<double>(),
              symmetric_tsp_loss(a, b, s, 64).loss.item<double>(), 1e-14);
  // More negatives at the right offset: rows 4..7 of 12 are ours.
  auto a_all =
      torch::cat({torch::randn({4, 8}, torch::kFloat64), a, torch::randn({4, 8}, torch::kFloat64)});
  auto b_all =
      torch::cat({torch::randn({4, 8}, torch::kFloat64), b, torch::randn({4, 8}, torch::kFloat64)});
  auto global = symmetric_tsp_loss(a, b, s, 64, a_all, b_all, 4);
  EXPECT_GT(global.loss.item<double>(), symmetric_tsp_loss(a, b, s, 64).loss.item<double>());
}

TEST(ContrastiveLoss, ClearErrors) {
  auto a = torch::randn({4, 8}), s = torch::tensor(10.0);
  OCL_EXPECT_THROW_WITH(symmetric_tsp_loss(a, torch::randn({4, 6}), s, 64), "[4, 6]");
  OCL_EXPECT_THROW_WITH(symmetric_tsp_loss(torch::randn({1, 8}), torch::randn({1, 8}), s, 64),
                        "at least 2");
  OCL_EXPECT_THROW_WITH(
      symmetric_tsp_loss(a, a, s, 64, torch::randn({6, 8}), torch::randn({6, 8}), 4), "[4, 8)");
  OCL_EXPECT_THROW_WITH(symmetric_tsp_loss(a, a, torch::ones({1}), 64), "0-d");
}
