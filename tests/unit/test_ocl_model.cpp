// The OCL model end to end on tiny sizes: names, shapes, determinism, learning on a fixed batch,
// bf16 autocast on CPU, and clear errors for bad configurations and inputs.
#include "test_util.h"
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/ocl.h>

using namespace ocl;

namespace {
nn::VisionTransformerOptions tiny_ocl() { return nn::VisionTransformerOptions(16, 4, 32, 2, 2); }
}  // namespace

TEST(OCLModel, ParametersShapesAndFigures) {
  torch::manual_seed(0);
  ssl::OCL model(tiny_ocl(), ssl::OCLOptions().mask_ratio(0.25));
  EXPECT_EQ(model->tokens_per_group(), 6);  // N = 16, L = 12
  auto params = model->named_parameters();
  EXPECT_TRUE(params.contains("logit_scale"));
  EXPECT_TRUE(params.contains("encoder.blocks.1.attn.qkv.weight"));
  EXPECT_NEAR(model->scale().item<double>(), 1 / 0.07, 1e-4);

  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  auto noise = model->draw_noise(5, gen);
  EXPECT_EQ(noise.sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_TRUE((noise >= 0).all().item<bool>() && (noise < 1).all().item<bool>());
  auto out = model->forward(torch::randn({5, 3, 16, 16}), noise);
  EXPECT_EQ(out.cls_a.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_EQ(out.split.ids_a.sizes(), (std::vector<int64_t>{5, 6}));
  EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
  EXPECT_TRUE(out.loss.equal(out.figures.loss));
  EXPECT_NEAR(out.figures.temperature.item<double>(), 0.07, 1e-6);
  EXPECT_FALSE(out.figures.accuracy.requires_grad());
}

TEST(OCLModel, FixedTemperatureHasNoParameter) {
  ssl::OCL model(tiny_ocl(), ssl::OCLOptions().learnable_temperature(false).temperature(0.2));
  EXPECT_FALSE(model->named_parameters().contains("logit_scale"));
  EXPECT_NEAR(model->scale().item<double>(), 5.0, 1e-6);
  EXPECT_FALSE(model->scale().requires_grad());
}

TEST(OCLModel, SameSeedSameLoss) {
  auto run = [] {
    torch::manual_seed(4);
    ssl::OCL model(tiny_ocl(), ssl::OCLOptions());
    auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
    auto images = torch::randn({4, 3, 16, 16}, gen);
    return model->forward(images, model->draw_noise(4, gen)).loss.item<double>();
  };
  EXPECT_EQ(run(), run());
}

TEST(OCLModel, LossFallsOnAFixedBatch) {
  torch::manual_seed(0);
  ssl::OCL model(tiny_ocl(), ssl::OCLOptions().mask_ratio(0.25));
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  torch::optim::AdamW opt(trainable, torch::optim::AdamWOptions(2e-3));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  auto images = torch::randn({16, 3, 16, 16}, gen);
  double first = 0, last_avg = 0;
  const int steps = 40;
  for (int i = 0; i < steps; ++i) {
    auto out = model->forward(images, model->draw_noise(16, gen));
    compat::zero_grad(trainable);
    out.loss.backward();
    opt.step();
    if (i == 0) first = out.loss.item<double>();
    if (i >= steps - 5) last_avg += out.loss.item<double>() / 5;
  }
  // Chance level for 16 images is log 16 ≈ 2.77; telling the images apart from occluded
  // views must bring the loss well below where it started.
  EXPECT_LT(last_avg, 0.6 * first) << "first " << first << ", last " << last_avg;
}

TEST(OCLModel, FrozenPatchEmbedIsNotTrainedButTheRestIs) {
  ssl::OCL model(tiny_ocl(), ssl::OCLOptions());
  auto out = model->forward(torch::randn({4, 3, 16, 16}), torch::rand({4, 16}));
  out.loss.backward();
  EXPECT_FALSE(model->encoder->patch_embed->proj->weight.grad().defined());
  EXPECT_TRUE(model->encoder->cls_token.grad().defined());
  EXPECT_TRUE(model->logit_scale.grad().defined());
}

TEST(OCLModel, Bfloat16AutocastOnCpu) {
  torch::manual_seed(0);
  ssl::OCL model(tiny_ocl(), ssl::OCLOptions());
  auto images = torch::randn({4, 3, 16, 16});
  auto noise = torch::rand({4, 16});
  const double fp32 = model->forward(images, noise).loss.item<double>();
  compat::AutocastGuard bf16(c10::kCPU, true, torch::kBFloat16);
  auto out = model->forward(images, noise);
  // The blocks ran in bf16 (their matmuls); the final LayerNorm upcasts, as on CUDA.
  EXPECT_EQ(out.cls_a.scalar_type(), torch::kFloat32);
  EXPECT_EQ(out.loss.scalar_type(), torch::kFloat32);  // the loss did not
  // bf16 keeps 8 bits of mantissa: the loss agrees to a few percent, but not exactly.
  EXPECT_NEAR(out.loss.item<double>(), fp32, 0.05 * fp32);
  EXPECT_NE(out.loss.item<double>(), fp32);
}

TEST(OCLModel, ClearErrors) {
  OCL_EXPECT_THROW_WITH(ssl::OCL(nn::VisionTransformerOptions(30, 8, 32, 1, 2), ssl::OCLOptions()),
                        "image size 30 is not divisible by the patch size 8");
  OCL_EXPECT_THROW_WITH(
      ssl::OCL(nn::VisionTransformerOptions(8, 4, 32, 1, 2), ssl::OCLOptions().mask_ratio(0.8)),
      "mask ratio 0.8 keeps 0 of 4");
  OCL_EXPECT_THROW_WITH(
      ssl::OCL(tiny_ocl(), ssl::OCLOptions().kappa(std::numeric_limits<double>::infinity())),
      "kappa must be finite and > 0, got inf");
  OCL_EXPECT_THROW_WITH(ssl::OCL(tiny_ocl(), ssl::OCLOptions().temperature(0.0)), "temperature");
  ssl::OCL model(tiny_ocl(), ssl::OCLOptions());
  OCL_EXPECT_THROW_WITH(model->forward(torch::randn({2, 4, 16, 16}), torch::rand({2, 16})),
                        "expects 3 input channels, got 4");
  OCL_EXPECT_THROW_WITH(model->forward(torch::randn({2, 3, 16, 16}), torch::rand({2, 9})),
                        "[2, 16]");
}
