// The linear probe's head and its training rows in memory (the cached-features path of
// engine::LinearProbe): MAE's initialisation, ~100 % on linearly separable clusters, and the
// rows' order, sharding and resume.
#include <cmath>

#include "test_util.h"
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/engine/linprobe.h>

namespace {

using ocl::engine::Features;
using ocl::nn::LinearProbeHead;

TEST(LinearProbe, HeadInitialisation) {
  torch::manual_seed(0);
  LinearProbeHead head(768, 1000);
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
  // The options other than MAE's, and a clone with the same tensors.
  LinearProbeHead custom(ocl::nn::LinearProbeHeadOptions(8, 3).bn_eps(1e-5).init_std(0.0));
  EXPECT_DOUBLE_EQ(custom->bn->options.eps(), 1e-5);
  EXPECT_EQ(custom->fc->weight.abs().max().item<double>(), 0.0);
  const auto copy = std::dynamic_pointer_cast<ocl::nn::LinearProbeHeadImpl>(head->clone());
  ASSERT_NE(copy, nullptr);
  EXPECT_TRUE(copy->fc->weight.equal(head->fc->weight));
  EXPECT_NE(copy->fc->weight.data_ptr(), head->fc->weight.data_ptr());
  EXPECT_THROW(LinearProbeHead(0, 3), c10::Error);
}

// n points of each of 4 Gaussian clusters in 16-D (unit noise, centres ~N(0, 4²) apart), with
// an offset and scale far from BatchNorm's (0, 1) so that the BatchNorm has work to do.
Features clusters(const torch::Tensor& centres, int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto labels = torch::arange(4, torch::kInt64).repeat({n});
  auto x = centres.index_select(0, labels) + torch::randn({4 * n, 16}, gen);
  return {x * 5.0 + 30.0, labels};
}

// One epoch of plain head training on `rows` (what the shared loop does for the cached-features
// path, without its accumulation and logging): returns the mean loss.
double train_epoch(LinearProbeHead& head, ocl::optim::Lars& lars,
                   const ocl::optim::CosineSchedule& schedule, ocl::engine::FeatureRows& rows,
                   int64_t epoch) {
  const int64_t steps = rows.batches_per_epoch();
  rows.start_epoch(epoch, 0);
  head->train();
  double total = 0;
  for (int64_t s = 0; s < steps; ++s) {
    lars.set_lr(schedule.at(static_cast<double>(epoch) + static_cast<double>(s) / steps));
    lars.zero_grad();
    const auto batch = rows.next();
    auto loss = torch::nn::functional::cross_entropy(head->forward(batch.images), batch.labels);
    loss.backward();
    lars.step();
    total += loss.item<double>();
  }
  return total / static_cast<double>(steps);
}

TEST(LinearProbe, SeparableClustersReachFullAccuracy) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto centres = torch::randn({4, 16}, gen) * 4.0;
  const Features train = clusters(centres, 128, 1), val = clusters(centres, 64, 2);
  torch::manual_seed(0);
  LinearProbeHead head(16, 4);
  auto lars = ocl::engine::make_linprobe_lars(head, 0.0);
  ocl::engine::FeatureRows rows(train, /*batch_size=*/32, /*accum_iter=*/1, /*seed=*/0);
  EXPECT_EQ(rows.batches_per_epoch(), 16);  // 512 rows
  const int64_t epochs = 10;
  // MAE's lr at its batch of 16,384 (blr 0.1): LARS moves ‖w‖ by ~lr · 0.001 per step, whatever
  // the batch.
  ocl::optim::CosineSchedule schedule{6.4, 0.0, 1.0, static_cast<double>(epochs)};
  const auto before = ocl::engine::evaluate_head(head, val, torch::kCPU);
  EXPECT_EQ(before.images, 256);
  double first_loss = 0, last_loss = 0;
  for (int64_t e = 0; e < epochs; ++e) {
    const double loss = train_epoch(head, lars, schedule, rows, e);
    ASSERT_TRUE(std::isfinite(loss)) << "epoch " << e;
    if (e == 0) first_loss = loss;
    last_loss = loss;
  }
  EXPECT_LT(last_loss, first_loss);
  EXPECT_TRUE(head->is_training());  // evaluate_head restores the mode
  const auto after = ocl::engine::evaluate_head(head, val, torch::kCPU, nullptr, /*batch=*/7);
  EXPECT_GE(after.top1, 99.0) << "before training: " << before.top1 << " %";
  EXPECT_DOUBLE_EQ(after.top5, 100.0);  // 4 classes: top-4 always holds the truth
  // The mean cross-entropy over batches of 7 is the whole set's, by hand in float64.
  head->eval();
  torch::NoGradGuard no_grad;
  const auto logits = head->forward(val.features.to(torch::kFloat32)).to(torch::kFloat64);
  const double expected =
      (torch::logsumexp(logits, 1) - logits.gather(1, val.labels.view({-1, 1})).squeeze(1))
          .mean()
          .item<double>();
  EXPECT_GT(expected, 0.0);
  EXPECT_NEAR(after.loss, expected, 1e-5 * (1.0 + expected));
}

// The row order is a function of (seed, epoch); two ranks take between them exactly the rows
// one process takes, each micro-batch's every other row; a start mid-epoch continues the order;
// an epoch is whole global steps.
TEST(LinearProbe, FeatureRowsOrderShardingAndResume) {
  const int64_t n = 70;
  const Features all{torch::arange(n, torch::kFloat32).view({n, 1}),
                     torch::arange(n, torch::kInt64)};
  auto rows_of = [&](int64_t batch, int64_t rank, int64_t world, int64_t epoch, int64_t first) {
    ocl::engine::FeatureRows rows(all, batch, /*accum_iter=*/2, /*seed=*/11, rank, world);
    rows.start_epoch(epoch, first);
    std::vector<int64_t> seen;
    for (int64_t b = first; b < rows.batches_per_epoch(); ++b) {
      const auto batch_rows = rows.next();
      EXPECT_TRUE(torch::equal(batch_rows.images.view({-1}).to(torch::kInt64), batch_rows.labels));
      for (int64_t i = 0; i < batch_rows.labels.size(0); ++i)
        seen.push_back(batch_rows.labels[i].item<int64_t>());
    }
    return seen;
  };
  const auto one = rows_of(8, 0, 1, 0, 0);
  EXPECT_EQ(one.size(), 64u);  // 70 rows: 4 steps of 16, 6 rows dropped
  EXPECT_EQ(one, rows_of(8, 0, 1, 0, 0));
  EXPECT_NE(one, rows_of(8, 0, 1, 1, 0));
  const auto r0 = rows_of(4, 0, 2, 0, 0), r1 = rows_of(4, 1, 2, 0, 0);
  ASSERT_EQ(r0.size() + r1.size(), one.size());
  for (size_t i = 0; i < r0.size(); ++i) {
    EXPECT_EQ(r0[i], one[2 * i]) << i;
    EXPECT_EQ(r1[i], one[2 * i + 1]) << i;
  }
  const auto rest = rows_of(8, 0, 1, 0, 3);
  EXPECT_EQ(rest, std::vector<int64_t>(one.begin() + 24, one.end()));
  // Too few rows for one step of 2 × 64: no micro-batch at all.
  ocl::engine::FeatureRows big(all, 64, 2, 11);
  EXPECT_EQ(big.batches_per_epoch(), 0);
  OCL_EXPECT_THROW_WITH(big.next(), "no micro-batch left");
}

}  // namespace
