// ocl::ops: each fused operation's kernel path (on the CPU: the kernels' own arithmetic, row by
// row and partial by partial, emulated on the host) against its ATen composite, forward and
// backward, in float64; the kernel path's gradients against central finite differences; the
// ViT with model.fused on against the plain ViT. The CUDA kernels against the composites are
// in tests/gpu/test_gpu.cpp.
#include <functional>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/nn/vision_transformer.h>
#include <ocl/ops/linear.h>
#include <ocl/ops/linear_gelu.h>
#include <ocl/ops/residual_layer_norm.h>

namespace {

using ocl::ops::Path;

torch::TensorOptions f64() { return torch::TensorOptions().dtype(torch::kFloat64); }

// The gradients of sum(outputs · upstream) with respect to `inputs`.
std::vector<torch::Tensor> grads_of(const std::vector<torch::Tensor>& outputs,
                                    const std::vector<torch::Tensor>& upstream,
                                    const std::vector<torch::Tensor>& inputs) {
  torch::Tensor total = torch::zeros({}, outputs[0].options());
  for (size_t i = 0; i < outputs.size(); ++i) total = total + (outputs[i] * upstream[i]).sum();
  return torch::autograd::grad({total}, inputs);
}

// Central differences of f (a scalar function of `inputs`) for every element of inputs[which].
torch::Tensor finite_difference(const std::function<torch::Tensor()>& f, const torch::Tensor& input,
                                double step = 1e-6) {
  torch::NoGradGuard no_grad;
  auto grad = torch::zeros_like(input);
  auto flat = input.view({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double v = flat[i].item<double>();
    flat[i] = v + step;
    const double up = f().item<double>();
    flat[i] = v - step;
    const double down = f().item<double>();
    flat[i] = v;
    grad.view({-1})[i] = (up - down) / (2 * step);
  }
  return grad;
}

struct LayerNormCase {
  torch::Tensor x, h, w, b;
};

// Rows 3 × 45 = 135: three column partials, the last one short (64 rows a partial).
LayerNormCase layer_norm_case(int64_t rows_a = 3, int64_t rows_b = 45, int64_t D = 24) {
  torch::manual_seed(7);
  return {torch::randn({rows_a, rows_b, D}, f64()).requires_grad_(),
          torch::randn({rows_a, rows_b, D}, f64()).requires_grad_(),
          (1 + 0.3 * torch::randn({D}, f64())).requires_grad_(),
          (0.2 * torch::randn({D}, f64())).requires_grad_()};
}

TEST(ResidualLayerNorm, KernelArithmeticEqualsTheComposite) {
  auto c = layer_norm_case();
  const std::vector<torch::Tensor> inputs = {c.x, c.h, c.w, c.b};
  auto up_y = torch::randn(c.x.sizes(), f64()), up_n = torch::randn(c.x.sizes(), f64());
  auto ref =
      ocl::ops::residual_layer_norm(c.x, c.h, c.w, c.b, 1e-6, torch::kFloat64, Path::kComposite);
  auto got =
      ocl::ops::residual_layer_norm(c.x, c.h, c.w, c.b, 1e-6, torch::kFloat64, Path::kKernel);
  // The composite is at::layer_norm itself: the kernel's formulas must give its values.
  EXPECT_TRUE(torch::allclose(got.residual, c.x + c.h, 0, 0));
  EXPECT_TRUE(torch::allclose(got.normed, ref.normed, 1e-12, 1e-12));
  auto g_ref = grads_of({ref.residual, ref.normed}, {up_y, up_n}, inputs);
  auto g_got = grads_of({got.residual, got.normed}, {up_y, up_n}, inputs);
  const char* names[] = {"x", "h", "weight", "bias"};
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_TRUE(torch::allclose(g_got[i], g_ref[i], 1e-10, 1e-10))
        << names[i] << ": max difference " << (g_got[i] - g_ref[i]).abs().max().item<double>();
}

TEST(ResidualLayerNorm, KernelGradientsMatchFiniteDifferences) {
  auto c = layer_norm_case(2, 3, 8);
  auto up_y = torch::randn(c.x.sizes(), f64()), up_n = torch::randn(c.x.sizes(), f64());
  auto loss = [&] {
    auto r =
        ocl::ops::residual_layer_norm(c.x, c.h, c.w, c.b, 1e-6, torch::kFloat64, Path::kKernel);
    return (r.residual * up_y).sum() + (r.normed * up_n).sum();
  };
  auto grads = torch::autograd::grad({loss()}, {c.x, c.h, c.w, c.b});
  const std::vector<torch::Tensor> inputs = {c.x, c.h, c.w, c.b};
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto fd = finite_difference(loss, inputs[i]);
    EXPECT_TRUE(torch::allclose(grads[i], fd, 1e-6, 1e-7))
        << "input " << i << ": max difference " << (grads[i] - fd).abs().max().item<double>();
  }
}

TEST(ResidualLayerNorm, WithoutBranchOrWithOneOutputUnused) {
  auto c = layer_norm_case();
  // No h: LayerNorm of x alone, and x's gradient through both outputs.
  auto ref =
      ocl::ops::residual_layer_norm(c.x, {}, c.w, c.b, 1e-6, torch::kFloat64, Path::kComposite);
  auto got = ocl::ops::residual_layer_norm(c.x, {}, c.w, c.b, 1e-6, torch::kFloat64, Path::kKernel);
  EXPECT_TRUE(torch::allclose(got.normed, ref.normed, 1e-12, 1e-12));
  auto up = torch::randn(c.x.sizes(), f64());
  auto gr = grads_of({ref.normed}, {up}, {c.x, c.w});
  auto gg = grads_of({got.normed}, {up}, {c.x, c.w});
  EXPECT_TRUE(torch::allclose(gg[0], gr[0], 1e-10, 1e-10));
  EXPECT_TRUE(torch::allclose(gg[1], gr[1], 1e-10, 1e-10));
  // Only the residual used: the gradient passes straight to x and h, none to the norm's weights.
  auto r = ocl::ops::residual_layer_norm(c.x, c.h, c.w, c.b, 1e-6, torch::kFloat64, Path::kKernel);
  auto g = torch::autograd::grad({(r.residual * up).sum()}, {c.x, c.h, c.w}, {}, false, false,
                                 /*allow_unused=*/true);
  EXPECT_TRUE(torch::equal(g[0], up));
  EXPECT_TRUE(torch::equal(g[1], up));
  EXPECT_TRUE(!g[2].defined() || g[2].abs().max().item<double>() == 0.0);
}

TEST(ResidualLayerNorm, NormedOutputInTheGemmDtypeAndClearErrors) {
  auto c = layer_norm_case();
  auto r = ocl::ops::residual_layer_norm(c.x.to(torch::kFloat32), c.h.to(torch::kFloat32), c.w, c.b,
                                         1e-6, torch::kBFloat16, Path::kComposite);
  EXPECT_EQ(r.residual.scalar_type(), torch::kFloat32);
  EXPECT_EQ(r.normed.scalar_type(), torch::kBFloat16);
  OCL_EXPECT_THROW_WITH(ocl::ops::residual_layer_norm(c.x, c.h.narrow(1, 0, 2), c.w, c.b, 1e-6,
                                                      torch::kFloat64, Path::kKernel),
                        "h must be x's shape");
  OCL_EXPECT_THROW_WITH(ocl::ops::residual_layer_norm(c.x, c.h, c.w.narrow(0, 0, 3), c.b, 1e-6,
                                                      torch::kFloat64, Path::kKernel),
                        "weight and bias [D]");
  // The host emulation runs in one dtype; a bf16 branch is for the CUDA kernels.
  OCL_EXPECT_THROW_WITH(
      ocl::ops::residual_layer_norm(c.x.to(torch::kFloat32), c.h.to(torch::kBFloat16), c.w, c.b,
                                    1e-6, torch::kFloat32, Path::kKernel),
      "host kernels");
}

TEST(LinearGelu, KernelArithmeticEqualsTheCompositeAndFiniteDifferences) {
  torch::manual_seed(3);
  // 2 × 70 = 140 rows: three partials of the bias gradient, the last one short.
  auto x = torch::randn({2, 70, 12}, f64()).requires_grad_();
  auto w = (0.3 * torch::randn({20, 12}, f64())).requires_grad_();
  auto b = (0.1 * torch::randn({20}, f64())).requires_grad_();
  auto up = torch::randn({2, 70, 20}, f64());
  auto ref = ocl::ops::linear_gelu(x, w, b, Path::kComposite);
  auto got = ocl::ops::linear_gelu(x, w, b, Path::kKernel);
  EXPECT_TRUE(torch::allclose(got, ref, 1e-12, 1e-12));
  auto g_ref = grads_of({ref}, {up}, {x, w, b});
  auto g_got = grads_of({got}, {up}, {x, w, b});
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(torch::allclose(g_got[i], g_ref[i], 1e-10, 1e-10))
        << "input " << i << ": max difference " << (g_got[i] - g_ref[i]).abs().max().item<double>();
  auto xs = torch::randn({3, 5}, f64()).requires_grad_();
  auto ws = torch::randn({4, 5}, f64()).requires_grad_();
  auto bs = torch::randn({4}, f64()).requires_grad_();
  auto ups = torch::randn({3, 4}, f64());
  auto loss = [&] { return (ocl::ops::linear_gelu(xs, ws, bs, Path::kKernel) * ups).sum(); };
  auto grads = torch::autograd::grad({loss()}, {xs, ws, bs});
  const std::vector<torch::Tensor> inputs = {xs, ws, bs};
  for (size_t i = 0; i < 3; ++i) {
    auto fd = finite_difference(loss, inputs[i]);
    EXPECT_TRUE(torch::allclose(grads[i], fd, 1e-6, 1e-7)) << "input " << i;
  }
}

// ops::linear's kernel path (on the CPU: its weight-gradient GEMM and bias sums on the host,
// the arithmetic the CUDA path hands to cuBLASLt): at::linear's output and gradients, and float64
// finite differences; without a bias it is at::linear. float32 inputs keep their gradients'
// dtypes.
TEST(Linear, KernelPathEqualsTheCompositeAndFiniteDifferences) {
  torch::manual_seed(4);
  auto x = torch::randn({2, 7, 12}, f64()).requires_grad_();
  auto w = (0.3 * torch::randn({20, 12}, f64())).requires_grad_();
  auto b = (0.1 * torch::randn({20}, f64())).requires_grad_();
  auto up = torch::randn({2, 7, 20}, f64());
  auto ref = ocl::ops::linear(x, w, b, Path::kComposite);
  auto got = ocl::ops::linear(x, w, b, Path::kKernel);
  EXPECT_TRUE(torch::allclose(got, ref, 1e-13, 1e-13));
  auto g_ref = grads_of({ref}, {up}, {x, w, b});
  auto g_got = grads_of({got}, {up}, {x, w, b});
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(torch::allclose(g_got[i], g_ref[i], 1e-12, 1e-12)) << "input " << i;
  auto xs = torch::randn({3, 5}, f64()).requires_grad_();
  auto ws = torch::randn({4, 5}, f64()).requires_grad_();
  auto bs = torch::randn({4}, f64()).requires_grad_();
  auto ups = torch::randn({3, 4}, f64());
  auto loss = [&] { return (ocl::ops::linear(xs, ws, bs, Path::kKernel) * ups).sum(); };
  auto grads = torch::autograd::grad({loss()}, {xs, ws, bs});
  const std::vector<torch::Tensor> inputs = {xs, ws, bs};
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(torch::allclose(grads[i], finite_difference(loss, inputs[i]), 1e-6, 1e-7))
        << "input " << i;
  EXPECT_TRUE(torch::equal(ocl::ops::linear(xs, ws, torch::Tensor(), Path::kKernel),
                           torch::linear(xs, ws)));
  auto xf = torch::randn({6, 5}).requires_grad_(), wf = torch::randn({4, 5}).requires_grad_(),
       bf = torch::randn({4}).requires_grad_();
  ocl::ops::linear(xf, wf, bf, Path::kKernel).sum().backward();
  EXPECT_EQ(wf.grad().scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(bf.grad(), torch::full({4}, 6.0f)));
  OCL_EXPECT_THROW_WITH(ocl::ops::linear(xf, wf, torch::zeros({3}), Path::kKernel),
                        "ops::linear: x [..., K], weight [N, K] and bias [N] or none");
}

// model.fused on the CPU takes the composites: the same function as the plain blocks, value for
// value, forward and backward, with LayerScale and without a final norm too.
TEST(FusedEncoder, EqualsThePlainEncoder) {
  for (const int variant : {0, 1, 2}) {
    const bool layer_scale = variant == 1;
    auto options =
        ocl::nn::VisionTransformerOptions(32, 8, 24, 3, 4)
            .freeze_patch_embed(false)
            .layer_scale_init(layer_scale ? 0.1 : 0.0)
            .global_pool(variant == 2 ? ocl::nn::GlobalPool::Avg : ocl::nn::GlobalPool::Token);
    torch::manual_seed(11);
    ocl::nn::VisionTransformer plain(options);
    ocl::nn::VisionTransformer fused(ocl::nn::VisionTransformerOptions(options).fused(true));
    {
      torch::NoGradGuard no_grad;
      auto src = plain->named_parameters();
      for (auto& p : fused->named_parameters()) p.value().copy_(src[p.key()]);
    }
    plain->to(torch::kFloat64);
    fused->to(torch::kFloat64);
    auto images = torch::randn({3, 3, 32, 32}, f64());
    auto a = plain->forward_features(images), b = fused->forward_features(images);
    EXPECT_TRUE(torch::allclose(a, b, 1e-13, 1e-13)) << "variant " << variant;
    (a * a).sum().backward();
    (b * b).sum().backward();
    auto pg = plain->named_parameters();
    for (const auto& p : fused->named_parameters()) {
      if (!p.value().grad().defined()) continue;
      EXPECT_TRUE(torch::allclose(p.value().grad(), pg[p.key()].grad(), 1e-11, 1e-11)) << p.key();
    }
  }
}

// model.residual (VisionTransformerOptions::float32_residual): without autocast the encoder is
// unchanged to the bit; under bf16 autocast the stream between blocks keeps the patch
// embedding's bf16 by default and is float32 with the option (seen where no final norm follows,
// global_pool avg), the two within bf16 rounding, the parameters' gradients float32 either way,
// on the plain and the fused blocks alike.
TEST(Fp32Residual, ChangesNothingWithoutAutocastAndKeepsTheStreamInFloat32UnderIt) {
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused blocks" : "plain blocks");
    const auto options = ocl::nn::VisionTransformerOptions(32, 8, 32, 2, 2)
                             .freeze_patch_embed(false)
                             .global_pool(ocl::nn::GlobalPool::Avg)
                             .fused(fused);
    torch::manual_seed(12);
    ocl::nn::VisionTransformer bf16(options);
    ocl::nn::VisionTransformer fp32(
        ocl::nn::VisionTransformerOptions(options).float32_residual(true));
    {
      torch::NoGradGuard no_grad;
      auto src = bf16->named_parameters();
      for (auto& p : fp32->named_parameters()) p.value().copy_(src[p.key()]);
    }
    const auto images = torch::randn({3, 3, 32, 32});
    EXPECT_TRUE(torch::equal(bf16->forward_features(images), fp32->forward_features(images)));

    torch::Tensor a, b;
    {
      ocl::compat::AutocastGuard autocast(torch::kCPU, true);
      a = bf16->forward_features(images);
      b = fp32->forward_features(images);
    }
    EXPECT_EQ(a.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(b.scalar_type(), torch::kFloat32);
    const double scale = b.abs().max().item<double>();
    const double diff = (a.to(torch::kFloat32) - b).abs().max().item<double>();
    EXPECT_GT(diff, 0.0);
    EXPECT_LT(diff, 3e-2 * scale) << "more than bf16 rounding apart";
    b.square().sum().backward();
    for (const auto& p : fp32->named_parameters()) {
      if (!p.value().requires_grad() || p.key().rfind("fc_norm", 0) == 0) continue;
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat32) << p.key();
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    }
  }
}

}  // namespace
