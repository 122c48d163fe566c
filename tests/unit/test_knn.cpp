// The weighted kNN classifier on hand-made features, against votes computed by hand.
#include <cmath>
#include <memory>
#include <sstream>

#include "data_files.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <torch/torch.h>

#include <ocl/engine/knn.h>

namespace {

using ocl::engine::Features;

// Three bank rows on the unit circle: (0.6, 0.8) of class 1, (1, 0) and (0, 1) of class 0, and
// (−1, 0) of class 1. The query (0.8, 0.6), of class 0, has similarities 0.96, 0.8, 0.6, −0.8.
Features bank() {
  return {torch::tensor({{0.6f, 0.8f}, {1.0f, 0.0f}, {0.0f, 1.0f}, {-1.0f, 0.0f}}),
          torch::tensor({1, 0, 0, 1}, torch::kInt64)};
}

Features query() { return {torch::tensor({{0.8f, 0.6f}}), torch::tensor({0}, torch::kInt64)}; }

TEST(Knn, HandComputedVotes) {
  // k 1: the nearest (0.96) is class 1: wrong; top-5 over 2 classes holds both.
  auto r = ocl::engine::knn_classify(bank(), query(), 2, /*k=*/1, /*T=*/1.0);
  EXPECT_EQ(r.k, 1);
  EXPECT_DOUBLE_EQ(r.top1, 0.0);
  EXPECT_DOUBLE_EQ(r.top5, 100.0);
  // k 3, T 1: class 0 gets e^0.8 + e^0.6 = 4.048 > class 1's e^0.96 = 2.612: right.
  ASSERT_GT(std::exp(0.8) + std::exp(0.6), std::exp(0.96));
  EXPECT_DOUBLE_EQ(ocl::engine::knn_classify(bank(), query(), 2, 3, 1.0).top1, 100.0);
  // k 3, T 0.07: e^(0.96/0.07) outweighs e^(0.8/0.07) + e^(0.6/0.07): wrong again.
  ASSERT_GT(std::exp(0.96 / 0.07), std::exp(0.8 / 0.07) + std::exp(0.6 / 0.07));
  EXPECT_DOUBLE_EQ(ocl::engine::knn_classify(bank(), query(), 2, 3, 0.07).top1, 0.0);
  // k larger than the bank is clamped to it.
  EXPECT_EQ(ocl::engine::knn_classify(bank(), query(), 2, 20, 1.0).k, 4);
}

TEST(Knn, SeveralKAtOnceEqualOneAtATime) {
  torch::manual_seed(0);
  Features train{torch::nn::functional::normalize(torch::randn({50, 8})),
                 torch::randint(0, 6, {50}, torch::kInt64)};
  Features test{torch::nn::functional::normalize(torch::randn({7, 8})),  // 7 images, odd
                torch::randint(0, 6, {7}, torch::kInt64)};
  ocl::engine::KnnOptions o;
  o.ks = {1, 5, 20};
  o.temperature = 0.1;
  o.chunk = 3;  // 7 rows in blocks of 3, 3, 1
  const auto all = ocl::engine::knn_evaluate(train, test, 6, o);
  ASSERT_EQ(all.size(), 3u);
  for (size_t i = 0; i < o.ks.size(); ++i) {
    const auto one = ocl::engine::knn_classify(train, test, 6, o.ks[i], 0.1, 1024);
    EXPECT_EQ(all[i].k, one.k);
    EXPECT_DOUBLE_EQ(all[i].top1, one.top1) << "k " << o.ks[i];
    EXPECT_DOUBLE_EQ(all[i].top5, one.top5) << "k " << o.ks[i];
  }
  // A sample classified by itself: a test set equal to the bank is 100 % at k 1.
  EXPECT_DOUBLE_EQ(ocl::engine::knn_classify(train, train, 6, 1, 0.1).top1, 100.0);
}

TEST(Knn, OneSampleAndBadInput) {
  Features one{torch::tensor({{1.0f, 0.0f}}), torch::tensor({0}, torch::kInt64)};
  EXPECT_DOUBLE_EQ(ocl::engine::knn_classify(one, one, 1, 20, 0.07).top1, 100.0);
  Features wrong_d{torch::ones({2, 3}), torch::zeros({2}, torch::kInt64)};
  OCL_EXPECT_THROW_WITH(ocl::engine::knn_classify(one, wrong_d, 1), "same D");
  OCL_EXPECT_THROW_WITH(ocl::engine::knn_classify(one, one, 1, 0), "k must be >= 1");
}

}  // namespace

// Unlabelled data (one class: an ImageFolder of one folder, WebDataset shards without .cls) gives
// kNN a top-1 of 100 % whatever the encoder learned: opening it says so; two classes do not.
TEST(KnnData, OneClassIsNamedInAWarning) {
  ocl::test::TempDir dir;
  const auto image = ocl::test::png(2, 2, 2, 8, std::vector<uint16_t>(12, 100));
  for (const char* split : {"train", "val"}) {
    ocl::test::write_bytes(dir.path() + "/" + split + "/cat/a.png", image);
    ocl::test::write_bytes(dir.path() + "/" + split + "/cat/b.png", image);
  }
  std::ostringstream text;
  ocl::engine::Process process;
  process.log = std::make_shared<spdlog::logger>(
      "knn-data", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
  ocl::io::DataConfig data;
  data.dataset = "imagefolder";
  data.path = dir.path();
  ocl::engine::open_knn_data(process, data, 16, 0);
  EXPECT_NE(text.str().find("the data has 1 class: every neighbour votes for it"),
            std::string::npos)
      << text.str();

  ocl::test::TempDir labelled;  // a fresh folder: the first one's file lists are cached
  for (const char* split : {"train", "val"}) {
    for (const char* c : {"cat", "dog"})
      ocl::test::write_bytes(labelled.path() + "/" + split + "/" + c + "/a.png", image);
  }
  text.str("");
  data.path = labelled.path();
  const auto two = ocl::engine::open_knn_data(process, data, 16, 0);
  EXPECT_EQ(two.splits.train->num_classes(), 2);
  EXPECT_EQ(text.str().find("every neighbour votes"), std::string::npos) << text.str();
}
