// compat.h: attention paths agree, the autocast guard sets and restores state, zero_grad keeps
// gradient storage.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/compat.h>

TEST(Compat, VersionStringMatchesHeaders) {
  EXPECT_EQ(ocl::compat::torch_version().substr(0, 2), std::to_string(TORCH_VERSION_MAJOR) + ".");
}

TEST(Compat, AttentionEqualsExplicitSoftmax) {
  torch::manual_seed(1);
  auto q = torch::randn({2, 3, 5, 8}, torch::kFloat64),
       k = torch::randn({2, 3, 5, 8}, torch::kFloat64),
       v = torch::randn({2, 3, 5, 8}, torch::kFloat64);
  auto expected = ocl::compat::attention_explicit(q, k, v);
  EXPECT_TRUE(torch::allclose(ocl::compat::attention(q, k, v), expected, 1e-12, 1e-12));
  // Hand-computed for one query: softmax over scaled dot products, then the weighted values.
  auto w = torch::softmax(torch::matmul(q[0][0][0], k[0][0].t()) / std::sqrt(8.0), 0);
  EXPECT_TRUE(torch::allclose(expected[0][0][0], torch::matmul(w, v[0][0]), 1e-12, 1e-12));
}

TEST(Compat, AttentionRejectsWrongRank) {
  auto x = torch::randn({2, 5, 8});
  EXPECT_THROW(ocl::compat::attention(x, x, x), c10::Error);
}

TEST(Compat, AutocastGuardEnablesAndRestores) {
  const auto before = ocl::compat::autocast_enabled(c10::kCPU);
  auto a = torch::randn({4, 4}), b = torch::randn({4, 4});
  {
    ocl::compat::AutocastGuard on(c10::kCPU, true, torch::kBFloat16);
    EXPECT_TRUE(ocl::compat::autocast_enabled(c10::kCPU));
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      ocl::compat::AutocastGuard off(c10::kCPU, false);
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(ocl::compat::autocast_enabled(c10::kCPU), before);
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32);
}

TEST(Compat, AutocastGuardRejectsFloat32) {
  EXPECT_THROW(ocl::compat::AutocastGuard(c10::kCPU, true, torch::kFloat32), c10::Error);
}

TEST(Compat, LayerNormAcceptsReducedPrecisionInput) {
  torch::manual_seed(3);
  auto x = torch::randn({2, 5, 8}), w = torch::randn({8}), b = torch::randn({8});
  auto expected = at::layer_norm(x.to(torch::kBFloat16).to(torch::kFloat32), {8}, w, b, 1e-6);
  auto out = ocl::compat::layer_norm(x.to(torch::kBFloat16), w, b, 1e-6);
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(out, expected, 1e-6, 1e-6));
  EXPECT_TRUE(
      torch::equal(ocl::compat::layer_norm(x, w, b, 1e-6), at::layer_norm(x, {8}, w, b, 1e-6)));
}

TEST(Compat, ZeroGradZeroesInPlace) {
  auto p = torch::randn({3}, torch::requires_grad());
  auto q = torch::randn({2}, torch::requires_grad());  // never gets a gradient
  (p * p).sum().backward();
  const void* storage = p.grad().data_ptr();
  ocl::compat::zero_grad({p, q});
  ASSERT_TRUE(p.grad().defined());
  EXPECT_EQ(p.grad().data_ptr(), storage);
  EXPECT_EQ(p.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(q.grad().defined());
}
