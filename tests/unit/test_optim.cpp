// Parameter groups, the warmup + cosine schedule, gradient norm and clipping against
// LibTorch's clip_grad_norm_, and AdamW state round trips through named tensors.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/io/checkpoint.h>
#include <ocl/optim/adamw_state.h>
#include <ocl/optim/param_groups.h>
#include <ocl/optim/schedule.h>
#include <ocl/ssl/ocl_model.h>

namespace {

ocl::ssl::OCL tiny_model() {
  torch::manual_seed(0);
  return ocl::ssl::OCL(ocl::nn::VisionTransformerOptions(16, 4, 16, 2, 2), ocl::ssl::OCLOptions());
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(ParamGroups, DecayOnlyMatricesAndNeverFrozenParameters) {
  auto model = tiny_model();
  auto groups = ocl::optim::weight_decay_groups(*model, 0.05);
  ASSERT_EQ(groups.size(), 2u);
  const auto& decay = groups[0];
  const auto& no_decay = groups[1];
  EXPECT_EQ(decay.weight_decay, 0.05);
  EXPECT_EQ(no_decay.weight_decay, 0.0);
  EXPECT_TRUE(contains(decay.names, "encoder.blocks.0.attn.qkv.weight"));
  EXPECT_TRUE(contains(decay.names, "encoder.blocks.1.mlp.fc2.weight"));
  EXPECT_TRUE(contains(no_decay.names, "encoder.blocks.0.attn.qkv.bias"));
  EXPECT_TRUE(contains(no_decay.names, "encoder.blocks.0.norm1.weight"));
  EXPECT_TRUE(contains(no_decay.names, "encoder.norm.weight"));
  EXPECT_TRUE(contains(no_decay.names, "encoder.cls_token"));  // 3-D, excluded by name
  EXPECT_TRUE(contains(no_decay.names, "logit_scale"));        // 0-d
  for (const auto& g : groups) {
    EXPECT_FALSE(contains(g.names, "encoder.patch_embed.proj.weight")) << "frozen by default";
    EXPECT_EQ(g.names.size(), g.params.size());
    for (const auto& p : g.params) EXPECT_TRUE(p.requires_grad());
  }
  size_t trainable = 0;
  for (const auto& p : model->parameters()) trainable += p.requires_grad();
  EXPECT_EQ(decay.params.size() + no_decay.params.size(), trainable);
}

TEST(ParamGroups, UnfrozenPatchEmbeddingWeightIsDecayed) {
  auto model =
      ocl::ssl::OCL(ocl::nn::VisionTransformerOptions(16, 4, 16, 1, 2).freeze_patch_embed(false),
                    ocl::ssl::OCLOptions());
  auto groups = ocl::optim::weight_decay_groups(*model, 0.1);
  EXPECT_TRUE(contains(groups[0].names, "encoder.patch_embed.proj.weight"));
  EXPECT_TRUE(contains(groups[1].names, "encoder.patch_embed.proj.bias"));
}

TEST(ParamGroups, LearningRateFollowsGroupScale) {
  auto model = tiny_model();
  auto groups = ocl::optim::weight_decay_groups(*model, 0.05);
  groups[1].lr_scale = 0.5;
  auto opt = ocl::optim::make_adamw(groups, {1e-3, 0.9, 0.95, 1e-8});
  ocl::optim::set_learning_rate(*opt, groups, 2e-3);
  auto lr = [&](size_t i) {
    return static_cast<torch::optim::AdamWOptions&>(opt->param_groups()[i].options()).lr();
  };
  EXPECT_DOUBLE_EQ(lr(0), 2e-3);
  EXPECT_DOUBLE_EQ(lr(1), 1e-3);
  auto& o0 = static_cast<torch::optim::AdamWOptions&>(opt->param_groups()[0].options());
  EXPECT_DOUBLE_EQ(std::get<1>(o0.betas()), 0.95);
  EXPECT_DOUBLE_EQ(o0.weight_decay(), 0.05);
}

TEST(CosineSchedule, WarmupThenHalfCosineToTheFloor) {
  ocl::optim::CosineSchedule s{1e-3, 1e-5, 4, 20};
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(1), 2.5e-4);
  EXPECT_DOUBLE_EQ(s.at(4), 1e-3);
  EXPECT_NEAR(s.at(12), 1e-5 + (1e-3 - 1e-5) * 0.5, 1e-15);  // halfway through the cosine
  EXPECT_NEAR(s.at(20), 1e-5, 1e-15);
  EXPECT_NEAR(s.at(25), 1e-5, 1e-15);  // clamped past the end
  double previous = s.at(4);
  for (double e = 4.5; e <= 20; e += 0.5) {
    EXPECT_LE(s.at(e), previous);
    previous = s.at(e);
  }
  ocl::optim::CosineSchedule no_warmup{1.0, 0.0, 0, 10};
  EXPECT_DOUBLE_EQ(no_warmup.at(0), 1.0);
}

TEST(GradNorm, MatchesLibTorchClipGradNorm) {
  torch::manual_seed(1);
  std::vector<torch::Tensor> a, b;
  for (auto shape : {std::vector<int64_t>{3, 4}, {5}, {2, 2, 2}}) {
    auto p = torch::randn(shape, torch::requires_grad());
    p.mutable_grad() = torch::randn(shape) * 3;
    auto q = p.detach().clone().requires_grad_(true);
    q.mutable_grad() = p.grad().clone();
    a.push_back(p);
    b.push_back(q);
  }
  auto no_grad = torch::randn({2}, torch::requires_grad());  // undefined gradient: counts as 0
  a.push_back(no_grad);
  auto norm = ocl::optim::grad_norm(a);
  const double expected = torch::nn::utils::clip_grad_norm_(b, 1.0);
  EXPECT_NEAR(norm.item<double>(), expected, 1e-5 * expected);
  ocl::optim::clip_grads(a, norm, 1.0);
  for (size_t i = 0; i < b.size(); ++i)
    EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-6, 1e-7));
  EXPECT_NEAR(ocl::optim::grad_norm(a).item<double>(), 1.0, 1e-5);
  // Below the threshold nothing changes.
  auto before = a[0].grad().clone();
  ocl::optim::clip_grads(a, ocl::optim::grad_norm(a), 10.0);
  EXPECT_TRUE(torch::equal(a[0].grad(), before));
}

TEST(AdamWState, RoundTripContinuesExactly) {
  auto run_step = [](ocl::ssl::OCL& m, torch::optim::AdamW& opt, int64_t seed) {
    torch::manual_seed(seed);
    auto images = torch::randn({4, 3, 16, 16});
    auto noise = torch::rand({4, 16});
    opt.zero_grad();
    m->forward(images, noise).loss.backward();
    opt.step();
  };
  auto a = tiny_model();
  auto ga = ocl::optim::weight_decay_groups(*a, 0.05);
  auto oa = ocl::optim::make_adamw(ga, {1e-3, 0.9, 0.95, 1e-8});
  run_step(a, *oa, 10);
  run_step(a, *oa, 11);
  auto saved = ocl::optim::adamw_state(*oa, ga);
  EXPECT_EQ(saved.at("optim.logit_scale.step").item<int64_t>(), 2);
  EXPECT_EQ(saved.count("optim.encoder.patch_embed.proj.weight.exp_avg"), 0u);  // frozen

  auto b = tiny_model();
  {
    torch::NoGradGuard no_grad;
    auto src = a->named_parameters();
    for (auto& p : b->named_parameters()) p.value().copy_(src[p.key()]);
  }
  auto gb = ocl::optim::weight_decay_groups(*b, 0.05);
  auto ob = ocl::optim::make_adamw(gb, {1e-3, 0.9, 0.95, 1e-8});
  ocl::optim::load_adamw_state(*ob, gb, saved);
  run_step(a, *oa, 12);
  run_step(b, *ob, 12);
  auto pa = a->named_parameters();
  for (const auto& p : b->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), pa[p.key()])) << p.key();
  }
}

TEST(AdamWState, MismatchedShapeNamesTheParameter) {
  auto a = tiny_model();
  auto ga = ocl::optim::weight_decay_groups(*a, 0.05);
  auto oa = ocl::optim::make_adamw(ga, {1e-3, 0.9, 0.95, 1e-8});
  ocl::io::TensorMap bad{{"optim.logit_scale.exp_avg", torch::zeros({2})},
                         {"optim.logit_scale.exp_avg_sq", torch::zeros({2})},
                         {"optim.logit_scale.step", torch::tensor(int64_t{1})}};
  try {
    ocl::optim::load_adamw_state(*oa, ga, bad);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("logit_scale"), std::string::npos) << e.what();
  }
}

}  // namespace
