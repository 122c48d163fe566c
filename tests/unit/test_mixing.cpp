// Batch-level augmentations of the fine-tuning recipe: Mixup/CutMix targets and λ worked by
// hand, the Beta and Gamma samplers' moments, RandomErasing's boxes and determinism, and
// SoftTargetCrossEntropy against PyTorch's label-smoothed cross-entropy.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/mixing.h>

using namespace ocl::data;

namespace {

// [B, 3, H, W] with sample i filled with the value i + 1: which sample a pixel came from is
// readable from its value.
torch::Tensor numbered_batch(int64_t b, int64_t h, int64_t w) {
  return (torch::arange(1, b + 1, torch::kFloat32).view({b, 1, 1, 1}) *
          torch::ones({b, 3, h, w}, torch::kFloat32))
      .contiguous();
}

struct Moments {
  double mean = 0, var = 0;
};

template <typename Draw>
Moments moments(int n, Draw draw) {
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double v = draw();
    sum += v;
    sum2 += v * v;
  }
  const double mean = sum / n;
  return {mean, sum2 / n - mean * mean};
}

}  // namespace

// labels [0, 1, 2, 3], C = 5, s = 0.1: off = 0.02, on = 0.92; the partner of row i is row
// 3 − i. Mixup only (cutmix_alpha = 0), so λ is the first Beta draw after the prob draw.
TEST(Mixup, TargetsAndImagesWorkedByHand) {
  MixupOptions o;
  o.cutmix_alpha = 0;
  o.num_classes = 5;
  const auto images = torch::randn({4, 3, 6, 6}, torch::kFloat32);
  const auto labels = torch::tensor({0, 1, 2, 3}, torch::kLong);
  const uint64_t seed = 11;
  const auto mixed = mix_batch(images, labels, o, seed);

  SampleRng rng(seed);
  ASSERT_LT(rng.uniform(), o.prob);
  const double lam = sample_beta(0.8, 0.8, rng);
  EXPECT_EQ(mixed.lam, lam);
  EXPECT_FALSE(mixed.cutmix);
  ASSERT_GT(lam, 0.0);
  ASSERT_LT(lam, 1.0);

  const double on = 0.92, off = 0.02, l = lam, r = 1 - lam;
  const std::vector<std::vector<double>> want = {
      {l * on + r * off, off, off, l * off + r * on, off},
      {off, l * on + r * off, l * off + r * on, off, off},
      {off, l * off + r * on, l * on + r * off, off, off},
      {l * off + r * on, off, off, l * on + r * off, off},
  };
  ASSERT_EQ(mixed.targets.sizes(), torch::IntArrayRef({4, 5}));
  EXPECT_EQ(mixed.targets.scalar_type(), torch::kFloat32);
  for (int i = 0; i < 4; ++i) {
    for (int c = 0; c < 5; ++c) {
      EXPECT_NEAR(mixed.targets[i][c].item<double>(), want[i][c], 1e-6) << i << "," << c;
    }
  }
  EXPECT_TRUE(torch::allclose(mixed.images, images * lam + images.flip(0) * (1 - lam)));
  EXPECT_TRUE(torch::allclose(mixed.targets.sum(1), torch::ones({4})));
}

// CutMix only: the pasted box holds the partner's value, and λ must be exactly the share of
// pixels that kept their own (timm's correct_lam).
TEST(Mixup, CutMixLambdaIsTheKeptAreaShare) {
  MixupOptions o;
  o.mixup_alpha = 0;
  o.num_classes = 3;
  const int64_t h = 20, w = 28;
  const auto images = numbered_batch(4, h, w);
  const auto labels = torch::tensor({0, 1, 2, 0}, torch::kLong);
  int boxes = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto mixed = mix_batch(images, labels, o, seed);
    ASSERT_TRUE(mixed.cutmix);
    for (int64_t i = 0; i < 4; ++i) {
      const auto own = (mixed.images[i] == static_cast<float>(i + 1)).all(0);  // [H, W]
      const auto partner = (mixed.images[i] == static_cast<float>(4 - i)).all(0);
      EXPECT_TRUE((own | partner).all().item<bool>());
      const double kept = own.sum().item<double>() / static_cast<double>(h * w);
      EXPECT_DOUBLE_EQ(kept, mixed.lam) << "seed " << seed << " sample " << i;
    }
    boxes += mixed.lam < 1.0;
    // The targets mix with the same λ: row 0 (label 0, partner label 0) keeps all its mass.
    const double off = 0.1 / 3, on = 1 - 0.1 + off;
    EXPECT_NEAR(mixed.targets[1][1].item<double>(), mixed.lam * on + (1 - mixed.lam) * off, 1e-6);
    EXPECT_NEAR(mixed.targets[0][0].item<double>(), on, 1e-6);
  }
  EXPECT_GE(boxes, 15);
  EXPECT_TRUE(images.equal(numbered_batch(4, h, w)));  // the input is not modified
}

TEST(Mixup, ProbabilityZeroLeavesTheImagesAndSmoothsTheLabels) {
  MixupOptions o;
  o.prob = 0;
  o.num_classes = 4;
  const auto images = torch::randn({3, 3, 5, 5});
  const auto mixed = mix_batch(images, torch::tensor({3, 0, 1}, torch::kLong), o, 5);
  EXPECT_EQ(mixed.lam, 1.0);
  EXPECT_FALSE(mixed.cutmix);
  EXPECT_TRUE(mixed.images.equal(images));
  const auto want = torch::tensor(
      {{0.025, 0.025, 0.025, 0.925}, {0.925, 0.025, 0.025, 0.025}, {0.025, 0.925, 0.025, 0.025}},
      torch::kFloat32);
  EXPECT_TRUE(torch::allclose(mixed.targets, want));
}

// timm asserts an even batch; 'batch' mode works for any B: the middle of an odd batch is its
// own partner and stays as it was.
TEST(Mixup, OddBatchMixesTheMiddleSampleWithItself) {
  MixupOptions o;
  o.cutmix_alpha = 0;
  o.num_classes = 3;
  const auto images = torch::randn({3, 3, 4, 4});
  const auto mixed = mix_batch(images, torch::tensor({0, 1, 2}, torch::kLong), o, 2);
  ASSERT_LT(mixed.lam, 1.0);
  EXPECT_TRUE(torch::allclose(mixed.images[1], images[1]));
  EXPECT_NEAR(mixed.targets[1][1].item<double>(), 1 - 0.1 + 0.1 / 3, 1e-6);
  EXPECT_FALSE(torch::allclose(mixed.images[0], images[0]));
}

TEST(Mixup, BothAlphasSwitchBetweenMixupAndCutMix) {
  MixupOptions o;  // MAE: 0.8 / 1.0, switch_prob 0.5
  o.num_classes = 10;
  const auto images = torch::randn({2, 3, 8, 8});
  const auto labels = torch::tensor({1, 7}, torch::kLong);
  int cutmix = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) cutmix += mix_batch(images, labels, o, seed).cutmix;
  EXPECT_GT(cutmix, 70);  // Binomial(200, 0.5): 70..130 holds with probability > 0.9999
  EXPECT_LT(cutmix, 130);
  const auto a = mix_batch(images, labels, o, 9), b = mix_batch(images, labels, o, 9);
  EXPECT_EQ(a.lam, b.lam);
  EXPECT_TRUE(a.images.equal(b.images));
  EXPECT_TRUE(mixup_active(o));
  o.mixup_alpha = o.cutmix_alpha = 0;
  EXPECT_FALSE(mixup_active(o));
  o.num_classes = 0;
  EXPECT_THROW(mix_batch(images, labels, o, 0), c10::Error);
}

// Beta(α, α): mean 1/2, variance 1/(4(2α + 1)). 200k draws: the mean's standard error is
// ≤ 0.0012 and the variance's ≤ 0.0004, so 0.005 and 0.002 are ≥ 4 standard errors.
TEST(Mixup, BetaSamplerHasTheRightMoments) {
  for (double alpha : {0.2, 0.8, 1.0, 3.0}) {
    SampleRng rng(42);
    const Moments m = moments(200000, [&] { return sample_beta(alpha, alpha, rng); });
    EXPECT_NEAR(m.mean, 0.5, 0.005) << "alpha " << alpha;
    EXPECT_NEAR(m.var, 1.0 / (4 * (2 * alpha + 1)), 0.002) << "alpha " << alpha;
  }
  // Gamma(k): mean and variance k (the boosted path below 1, Marsaglia–Tsang above).
  for (double k : {0.5, 2.5}) {
    SampleRng rng(7);
    const Moments m = moments(200000, [&] { return sample_gamma(k, rng); });
    EXPECT_NEAR(m.mean, k, 0.02 * k) << "k " << k;
    EXPECT_NEAR(m.var, k, 0.05 * k) << "k " << k;
  }
  SampleRng rng(1);
  const Moments n = moments(200000, [&] { return sample_normal(rng); });
  EXPECT_NEAR(n.mean, 0.0, 0.01);
  EXPECT_NEAR(n.var, 1.0, 0.01);
  EXPECT_THROW(sample_gamma(0.0, rng), std::invalid_argument);
}

// Erased pixels hold N(0, 1) noise, so on an all-zero batch they are the non-zero ones.
// Box sides are rounded: |h·w − A| ≤ (h* + w*)/2 + 1/4 for the unrounded sides h*, w*; on
// 96×96 with areas ≤ 1/3 and aspect ≤ 1/0.3 that is ≤ 66 pixels, 0.0072 of the image.
TEST(RandomErasing, ErasedShareWithinTheAreaRange) {
  RandomErasingOptions o;
  o.prob = 1;
  auto images = torch::zeros({64, 3, 96, 96});
  random_erasing_(images, o, 123);
  const auto erased = (images != 0).any(1).flatten(1).sum(1).to(torch::kDouble) / (96.0 * 96.0);
  const double slack = 0.0072;
  for (int64_t i = 0; i < 64; ++i) {
    const double share = erased[i].item<double>();
    EXPECT_GE(share, o.min_area - slack) << "sample " << i;
    EXPECT_LE(share, o.max_area + slack) << "sample " << i;
  }
  // Each box is one rectangle across all channels: the noise there is standard normal.
  const auto noise = images.masked_select(images != 0);
  EXPECT_NEAR(noise.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(noise.std().item<double>(), 1.0, 0.01);
  EXPECT_EQ(((images != 0).any(1) != (images != 0).all(1)).sum().item<int64_t>(), 0);
}

TEST(RandomErasing, ProbabilityDecidesWhichSamplesChange) {
  const auto original = torch::randn({32, 3, 40, 40});
  RandomErasingOptions o;
  o.prob = 0;
  auto x = original.clone();
  random_erasing_(x, o, 9);
  EXPECT_TRUE(x.equal(original));

  o.prob = 1;
  x = original.clone();
  random_erasing_(x, o, 9);
  for (int64_t i = 0; i < 32; ++i) EXPECT_FALSE(x[i].equal(original[i])) << "sample " << i;

  o.prob = 0.25;
  x = original.clone();
  random_erasing_(x, o, 9);
  int changed = 0;
  for (int64_t i = 0; i < 32; ++i) changed += !x[i].equal(original[i]);
  EXPECT_GT(changed, 0);
  EXPECT_LT(changed, 20);  // Binomial(32, 0.25) ≥ 20: probability < 1e-6
}

TEST(RandomErasing, DeterministicPerSeedAndSamplePosition) {
  const auto original = torch::randn({8, 3, 24, 24});
  RandomErasingOptions o;
  o.prob = 1;
  auto a = original.clone(), b = original.clone(), c = original.clone();
  random_erasing_(a, o, 77);
  random_erasing_(b, o, 77);
  random_erasing_(c, o, 78);
  EXPECT_TRUE(a.equal(b));
  EXPECT_FALSE(a.equal(c));
  // Sample i depends on (seed, i) only: the first half of the batch erased alone is the same.
  auto half = original.slice(0, 0, 4).clone();
  random_erasing_(half, o, 77);
  EXPECT_TRUE(half.equal(a.slice(0, 0, 4)));

  auto ints = torch::zeros({2, 3, 8, 8}, torch::kLong);
  EXPECT_THROW(random_erasing_(ints, o, 0), c10::Error);
  o.min_area = 0.5;
  o.max_area = 0.1;
  EXPECT_THROW(random_erasing_(a, o, 0), std::invalid_argument);
}

TEST(RandomErasing, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto original = torch::randn({6, 3, 32, 32});
  RandomErasingOptions o;
  o.prob = 1;
  auto cpu = original.clone();
  auto gpu = original.to(torch::kCUDA);
  random_erasing_(cpu, o, 5);
  random_erasing_(gpu, o, 5);
  EXPECT_TRUE(gpu.cpu().equal(cpu));
  MixupOptions m;
  m.num_classes = 4;
  const auto labels = torch::tensor({0, 1, 2, 3, 0, 1}, torch::kLong);
  const auto mc = mix_batch(cpu, labels, m, 3), mg = mix_batch(gpu, labels.cuda(), m, 3);
  EXPECT_EQ(mc.lam, mg.lam);
  EXPECT_TRUE(torch::allclose(mg.images.cpu(), mc.images));
  EXPECT_TRUE(torch::allclose(mg.targets.cpu(), mc.targets));
  EXPECT_TRUE(mg.targets.is_cuda());
}

// For smoothed one-hot targets soft-target cross-entropy is PyTorch's label-smoothed
// cross-entropy; worked by hand: logits [1, 2, 3], target class 2 → log(e + e² + e³) − 3.
TEST(Mixup, SoftTargetCrossEntropyMatchesLabelSmoothing) {
  const auto logits = torch::tensor({{1.0, 2.0, 3.0}}, torch::kFloat64);
  const auto hard = torch::tensor({{0.0, 0.0, 1.0}}, torch::kFloat64);
  const double want = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  EXPECT_NEAR(soft_target_cross_entropy(logits, hard).item<double>(), want, 1e-12);
  // Uniform targets: the mean of −log_softmax, log(Σe^x) − mean(x) = want + 3 − 2.
  const auto uniform = torch::full({1, 3}, 1.0 / 3, torch::kFloat64);
  EXPECT_NEAR(soft_target_cross_entropy(logits, uniform).item<double>(), want + 1.0, 1e-12);

  const auto x = torch::randn({6, 10}, torch::kFloat64);
  const auto labels = torch::tensor({0, 3, 9, 9, 4, 1}, torch::kLong);
  MixupOptions o;
  o.prob = 0;
  o.num_classes = 10;
  const auto targets = mix_batch(torch::zeros({6, 3, 2, 2}), labels, o, 0).targets;
  namespace F = torch::nn::functional;
  const auto ref = F::cross_entropy(x, labels, F::CrossEntropyFuncOptions().label_smoothing(0.1));
  EXPECT_NEAR(soft_target_cross_entropy(x, targets.to(torch::kFloat64)).item<double>(),
              ref.item<double>(), 1e-6);  // targets were rounded to float32

  // bf16 logits: the loss is float32 arithmetic on the bf16 values, not a bf16 result.
  const auto xb = x.to(torch::kBFloat16);
  const auto lb = soft_target_cross_entropy(xb, targets);
  EXPECT_EQ(lb.scalar_type(), torch::kFloat32);
  EXPECT_NEAR(lb.item<double>(),
              soft_target_cross_entropy(xb.to(torch::kFloat64), targets).item<double>(), 1e-5);
  EXPECT_THROW(soft_target_cross_entropy(x, targets.slice(1, 0, 5)), c10::Error);
}
