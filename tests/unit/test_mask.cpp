// Mask-and-split: group sizes (docs/method.md step 3), a hand-worked example, disjointness, the
// union being the kept set, the random order, keep frequencies and clear errors.
#include <set>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/ssl/mask.h>

using ocl::ssl::kept_tokens;
using ocl::ssl::mask_and_split;

TEST(Mask, KeptTokensAsInThePaper) {
  EXPECT_EQ(kept_tokens(196, 0.3), 136);   // 68 + 68
  EXPECT_EQ(kept_tokens(196, 0.35), 126);  // 63 + 63
  EXPECT_EQ(kept_tokens(196, 0.4), 116);   // 58 + 58
  EXPECT_EQ(kept_tokens(256, 0.4), 152);   // ViT-H/14 at 224²: floor(76.8) · 2
  EXPECT_EQ(kept_tokens(10, 0.6), 4);      // 10·0.4 is 3.9999… in floating point
  EXPECT_EQ(kept_tokens(7, 0.0), 6);       // odd N: one token is always dropped
}

TEST(Mask, HandWorkedExample) {
  // argsort([.5 .1 .9 .3 .7 .2]) = [1 5 3 0 4 2]; r = 1/3 keeps L = 4: A = {1, 5}, B = {3, 0}.
  auto noise = torch::tensor({0.5, 0.1, 0.9, 0.3, 0.7, 0.2}, torch::kFloat64).unsqueeze(0);
  auto split = mask_and_split(noise, 1.0 / 3.0);
  EXPECT_TRUE(torch::equal(split.ids_a, torch::tensor({1, 5}, torch::kLong).unsqueeze(0)));
  EXPECT_TRUE(torch::equal(split.ids_b, torch::tensor({3, 0}, torch::kLong).unsqueeze(0)));
  auto removed = ocl::ssl::removed_mask(split, 6);
  EXPECT_TRUE(torch::equal(removed, torch::tensor({0., 0., 1., 0., 1., 0.}).unsqueeze(0)));
}

TEST(Mask, GroupsAreDisjointEqualAndCoverTheKeptSet) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const int64_t B = 64, N = 49;
  auto noise = torch::rand({B, N}, gen);
  auto split = mask_and_split(noise, 0.35);
  const int64_t L = kept_tokens(N, 0.35);
  ASSERT_EQ(split.ids_a.sizes(), (std::vector<int64_t>{B, L / 2}));
  ASSERT_EQ(split.ids_b.sizes(), (std::vector<int64_t>{B, L / 2}));
  bool some_unsorted = false;
  for (int64_t i = 0; i < B; ++i) {
    auto a = split.ids_a[i], b = split.ids_b[i];
    std::set<int64_t> sa, sb;
    for (int64_t j = 0; j < L / 2; ++j) {
      sa.insert(a[j].item<int64_t>());
      sb.insert(b[j].item<int64_t>());
    }
    EXPECT_EQ(sa.size(), static_cast<size_t>(L / 2));  // no repeats within a group
    for (auto v : sa) EXPECT_FALSE(sb.count(v)) << "patch " << v << " in both groups";
    // The union is exactly the L patches with the smallest noise.
    auto kept = std::get<1>(noise[i].topk(L, 0, /*largest=*/false));
    std::set<int64_t> expected;
    for (int64_t j = 0; j < L; ++j) expected.insert(kept[j].item<int64_t>());
    std::set<int64_t> both(sa);
    both.insert(sb.begin(), sb.end());
    EXPECT_EQ(both, expected);
    some_unsorted |= !torch::equal(a, std::get<0>(a.sort()));
  }
  EXPECT_TRUE(some_unsorted) << "groups should keep the random order, not sorted indices";
}

TEST(Mask, EveryPatchKeptWithFrequencyOneMinusR) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const int64_t B = 20000, N = 16;
  auto split = mask_and_split(torch::rand({B, N}, gen), 0.25);  // L = 12 = (1 − r)·N exactly
  auto kept = 1.0 - ocl::ssl::removed_mask(split, N);
  auto freq = kept.mean(0);
  // Binomial std at p = 0.75, n = 20000 is 0.003: 0.015 is five sigmas.
  EXPECT_LT((freq - 0.75).abs().max().item<double>(), 0.015);
  auto in_a = torch::zeros({B, N}).scatter_(1, split.ids_a, 1.0).mean(0);
  EXPECT_LT((in_a - 0.375).abs().max().item<double>(), 0.015);
}

TEST(Mask, ClearErrors) {
  auto noise = torch::rand({2, 16});
  OCL_EXPECT_THROW_WITH(mask_and_split(noise, 0.95), "mask ratio 0.95 keeps 0 of 16");
  OCL_EXPECT_THROW_WITH(mask_and_split(noise, 1.0), "[0, 1)");
  OCL_EXPECT_THROW_WITH(mask_and_split(noise, -0.1), "-0.1");
  OCL_EXPECT_THROW_WITH(mask_and_split(noise, std::nan("")), "nan");
  OCL_EXPECT_THROW_WITH(mask_and_split(torch::rand({2, 4, 4}), 0.3), "[B, N]");
  OCL_EXPECT_THROW_WITH(mask_and_split(torch::zeros({2, 16}, torch::kLong), 0.3), "floating");
}
