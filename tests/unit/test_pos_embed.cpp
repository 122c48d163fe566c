// Sin-cos positions: MAE's layout (x in the first half, y in the second), zero CLS row; bicubic
// resampling keeps the prefix and is the identity on the same grid. Values against PyTorch are
// in the reference suite.
#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/nn/pos_embed.h>

using ocl::nn::resample_pos_embed;
using ocl::nn::sincos_pos_embed_2d;

TEST(PosEmbed, ShapeAndZeroClsRow) {
  auto t = sincos_pos_embed_2d(16, 3, 5);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{1 + 15, 16}));
  EXPECT_EQ(t[0].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(sincos_pos_embed_2d(16, 3, 5, /*cls_row=*/false).size(0), 15);
  EXPECT_LE(t.abs().max().item<double>(), 1.0);
}

TEST(PosEmbed, FirstHalfEncodesColumnSecondHalfRow) {
  const int64_t D = 16, H = 3, W = 5;
  auto t = sincos_pos_embed_2d(D, H, W, false, torch::kFloat64);
  for (int64_t r = 0; r < H; ++r) {
    for (int64_t c = 0; c < W; ++c) {
      auto row = t[r * W + c];
      // Frequency 0 is 1: channel 0 = sin(x), channel D/4 = cos(x); D/2 and 3D/4 the same for y.
      EXPECT_NEAR(row[0].item<double>(), std::sin(static_cast<double>(c)), 1e-12);
      EXPECT_NEAR(row[D / 4].item<double>(), std::cos(static_cast<double>(c)), 1e-12);
      EXPECT_NEAR(row[D / 2].item<double>(), std::sin(static_cast<double>(r)), 1e-12);
      EXPECT_NEAR(row[3 * D / 4].item<double>(), std::cos(static_cast<double>(r)), 1e-12);
      // Channel 1: frequency 1/10000^(1/(D/4)).
      EXPECT_NEAR(row[1].item<double>(), std::sin(c / std::pow(10000.0, 1.0 / (D / 4))), 1e-12);
    }
  }
}

TEST(PosEmbed, RejectsWidthNotDivisibleByFour) {
  OCL_EXPECT_THROW_WITH(sincos_pos_embed_2d(30, 2, 2), "30");
}

TEST(PosEmbed, ResampleSameGridIsIdentityAndKeepsClsRow) {
  auto table = torch::randn({1, 1 + 16, 8});
  EXPECT_TRUE(torch::equal(resample_pos_embed(table, 4, 4, 4, 4), table));
  auto bigger = resample_pos_embed(table, 4, 4, 7, 5);
  EXPECT_EQ(bigger.sizes(), (std::vector<int64_t>{1, 1 + 35, 8}));
  EXPECT_TRUE(torch::equal(bigger[0][0], table[0][0]));
}

TEST(PosEmbed, ResampleOfConstantTableIsConstant) {
  auto table = torch::full({1, 1 + 9, 4}, 0.25, torch::kFloat64);
  auto out = resample_pos_embed(table, 3, 3, 6, 6);
  EXPECT_NEAR((out - 0.25).abs().max().item<double>(), 0.0, 1e-12);
}

TEST(PosEmbed, ResampleRejectsWrongRowCount) {
  auto table = torch::randn({1, 1 + 15, 8});
  OCL_EXPECT_THROW_WITH(resample_pos_embed(table, 4, 4, 6, 6), "16 rows");
}
