// LARS against steps computed by hand (MAE's util/lars.py rules).
#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/optim/lars.h>

namespace {

TEST(Lars, HandComputedSteps) {
  auto opts = torch::TensorOptions(torch::kFloat64).requires_grad(true);
  auto w = torch::tensor({{3.0, 4.0}}, opts);  // ‖w‖ = 5
  auto b = torch::tensor({1.0, 2.0}, opts);
  ocl::optim::Lars lars({w, b}, {/*lr=*/2.0, /*momentum=*/0.9, /*trust=*/0.001, /*wd=*/0.1});
  auto set_grads = [&] {
    w.mutable_grad() = torch::tensor({{0.6, 0.8}}, torch::kFloat64);
    b.mutable_grad() = torch::tensor({0.5, -0.5}, torch::kFloat64);
  };
  set_grads();
  lars.step();
  // w: d = g + 0.1·w = (0.9, 1.2), ‖d‖ = 1.5, q = 0.001·5/1.5; μ = q·d = (0.003, 0.004);
  // w ← w − 2·μ = (2.994, 3.992).
  EXPECT_TRUE(torch::allclose(w, torch::tensor({{2.994, 3.992}}, torch::kFloat64), 0, 1e-12));
  // b (1-D): no decay, no trust factor: μ = g, b ← b − 2·g = (0, 3).
  EXPECT_TRUE(torch::allclose(b, torch::tensor({0.0, 3.0}, torch::kFloat64), 0, 1e-12));

  set_grads();
  lars.step();
  // w = 0.998·(3, 4): d = (0.6, 0.8) + 0.0998·(3, 4) = 0.2998·(3, 4), ‖d‖ = 1.499,
  // q = 0.001·4.99/1.499, q·d = 0.000998·(3, 4) = (0.002994, 0.003992);
  // μ = 0.9·(0.003, 0.004) + (0.002994, 0.003992) = (0.005694, 0.007592);
  // w ← (2.994, 3.992) − 2·μ = (2.982612, 3.976816).
  EXPECT_TRUE(torch::allclose(w, torch::tensor({{2.982612, 3.976816}}, torch::kFloat64), 0, 1e-12));
  // b: μ = 0.9·g + g = 1.9·g = (0.95, −0.95); b ← (0, 3) − 2·μ = (−1.9, 4.9).
  EXPECT_TRUE(torch::allclose(b, torch::tensor({-1.9, 4.9}, torch::kFloat64), 0, 1e-12));

  lars.zero_grad();
  EXPECT_EQ(w.grad().abs().sum().item<double>(), 0.0);
}

TEST(Lars, ZeroWeightsOrGradientsKeepTheFactorOne) {
  auto w = torch::zeros({2, 2}, torch::TensorOptions(torch::kFloat64).requires_grad(true));
  ocl::optim::Lars lars({w}, {/*lr=*/1.0});
  w.mutable_grad() = torch::ones({2, 2}, torch::kFloat64);
  lars.step();  // ‖w‖ = 0: factor 1, w ← −g
  EXPECT_TRUE(torch::allclose(w, -torch::ones({2, 2}, torch::kFloat64)));
  OCL_EXPECT_THROW_WITH(ocl::optim::Lars({torch::zeros({2})}, {}), "must require grad");
}

}  // namespace
