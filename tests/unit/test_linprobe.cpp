// The linear probe's head and its training on in-memory features (the cached-features path of
// engine::LinearProbe): MAE's initialisation, and ~100 % on linearly separable clusters.
#include <cmath>

#include "test_util.h"
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/engine/linprobe.h>

namespace {

using ocl::engine::Features;
using ocl::engine::LinprobeHead;

TEST(LinearProbe, HeadInitialisation) {
  torch::manual_seed(0);
  LinprobeHead head(768, 1000);
  // Only the Linear is trainable: the BatchNorm has no affine parameters.
  const auto params = head->named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].key(), "fc.weight");
  EXPECT_EQ(params[1].key(), "fc.bias");
  EXPECT_FALSE(head->bn->options.affine());
  EXPECT_DOUBLE_EQ(head->bn->options.eps(), 1e-6);
  const auto& w = head->fc->weight;
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{1000, 768}));
  // 768,000 draws of N(0, 0.01²): the sample mean's sd is 1.1e-5 and the sample std's ~8e-6.
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 1e-4);
  EXPECT_NEAR(w.std().item<double>(), 0.01, 1e-4);
  // A plain normal: ~0.27 % beyond 3σ (a truncation at 2σ would leave none).
  const double beyond = (w.abs() > 0.03).to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(beyond, 0.0015);
  EXPECT_LT(beyond, 0.004);
  EXPECT_EQ(head->fc->bias.abs().max().item<double>(), 0.0);
  // LARS over exactly these two tensors.
  auto lars = ocl::engine::make_linprobe_lars(head, 0.0);
  EXPECT_EQ(lars.params().size(), 2u);
}

// n points of each of 4 Gaussian clusters in 16-D (unit noise, centres ~N(0, 4²) apart), with
// an offset and scale far from BatchNorm's (0, 1) so that the BatchNorm has work to do.
Features clusters(const torch::Tensor& centres, int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto labels = torch::arange(4, torch::kInt64).repeat({n});
  auto x = centres.index_select(0, labels) + torch::randn({4 * n, 16}, gen);
  return {x * 5.0 + 30.0, labels};
}

TEST(LinearProbe, SeparableClustersReachFullAccuracy) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto centres = torch::randn({4, 16}, gen) * 4.0;
  const Features train = clusters(centres, 128, 1), val = clusters(centres, 64, 2);
  torch::manual_seed(0);
  LinprobeHead head(16, 4);
  auto lars = ocl::engine::make_linprobe_lars(head, 0.0);
  ocl::engine::FeatureEpochOptions o;
  o.batch_size = 32;  // 512 rows: 16 steps per epoch
  EXPECT_EQ(ocl::engine::feature_steps_per_epoch(512, o), 16);
  const int64_t epochs = 10;
  // MAE's lr at its batch of 16,384 (blr 0.1): LARS moves ‖w‖ by ~lr · 0.001 per step, whatever
  // the batch.
  ocl::optim::CosineSchedule schedule{6.4, 0.0, 1.0, static_cast<double>(epochs)};
  const auto before = ocl::engine::evaluate_head(head, val, torch::kCPU);
  EXPECT_EQ(before.images, 256);
  double first_loss = 0, last_loss = 0;
  for (int64_t e = 0; e < epochs; ++e) {
    const double loss = ocl::engine::train_head_on_features(head, lars, schedule, train, e, o);
    ASSERT_TRUE(std::isfinite(loss)) << "epoch " << e;
    if (e == 0) first_loss = loss;
    last_loss = loss;
  }
  EXPECT_LT(last_loss, first_loss);
  EXPECT_TRUE(head->is_training());  // evaluate_head restores the mode
  const auto after = ocl::engine::evaluate_head(head, val, torch::kCPU, nullptr, /*batch=*/7);
  EXPECT_GE(after.top1, 99.0) << "before training: " << before.top1 << " %";
  EXPECT_DOUBLE_EQ(after.top5, 100.0);  // 4 classes: top-4 always holds the truth
}

TEST(LinearProbe, FeatureEpochIsDeterministic) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto centres = torch::randn({4, 16}, gen) * 4.0;
  const Features train = clusters(centres, 16, 1);
  ocl::optim::CosineSchedule schedule{1.0, 0.0, 0.0, 2.0};
  ocl::engine::FeatureEpochOptions o;
  o.batch_size = 8;
  o.accum_iter = 2;
  o.seed = 11;
  torch::Tensor weights[2];
  for (auto& w : weights) {
    torch::manual_seed(0);
    LinprobeHead head(16, 4);
    auto lars = ocl::engine::make_linprobe_lars(head, 1e-4);
    for (int64_t e = 0; e < 2; ++e)
      ocl::engine::train_head_on_features(head, lars, schedule, train, e, o);
    w = head->fc->weight.detach().clone();
  }
  EXPECT_TRUE(torch::equal(weights[0], weights[1]));
  // 64 rows, 16 per step: too few rows for a step of 128 is an error naming the sizes.
  o.batch_size = 64;
  torch::manual_seed(0);
  LinprobeHead head(16, 4);
  auto lars = ocl::engine::make_linprobe_lars(head, 0.0);
  OCL_EXPECT_THROW_WITH(ocl::engine::train_head_on_features(head, lars, schedule, train, 0, o),
                        "64 training rows do not fill one step of 128");
}

}  // namespace
