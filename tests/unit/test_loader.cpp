// The loader's order, sharding, resume, bad-sample and shutdown behaviour, and the factory that
// builds the data set and transform a config names.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/factory.h>
#include <ocl/data/loader.h>
#include <ocl/data/synthetic.h>
#include <ocl/data/transforms.h>

using namespace ocl::data;

namespace {

std::shared_ptr<const Dataset> tiny_synthetic(int64_t size, int image_size = 16) {
  SyntheticOptions o;
  o.size = size;
  o.image_size = image_size;
  o.seed = 5;
  return std::make_shared<SyntheticDataset>(o);
}

std::vector<Batch> drain(Loader& loader) {
  std::vector<Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

std::vector<int64_t> indices_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) {
    for (int64_t i = 0; i < b.indices.size(0); ++i) out.push_back(b.indices[i].item<int64_t>());
  }
  return out;
}

// Wraps a data set: some indices are unreadable, one may throw, loads may be slow.
class FaultyDataset : public Dataset {
 public:
  FaultyDataset(std::shared_ptr<const Dataset> inner, std::set<int64_t> bad, int64_t throws = -1,
                int sleep_us = 0)
      : inner_(std::move(inner)), bad_(std::move(bad)), throws_(throws), sleep_us_(sleep_us) {}
  int64_t size() const override { return inner_->size(); }
  const std::vector<std::string>& class_names() const override { return inner_->class_names(); }
  int64_t label(int64_t index) const override { return inner_->label(index); }
  std::optional<Image> load(int64_t index, BadSample* error) const override {
    if (sleep_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    if (index == throws_) throw std::runtime_error("boom at " + std::to_string(index));
    if (bad_.count(index)) {
      if (error) *error = BadSample{index, "bad/" + std::to_string(index) + ".jpg", "corrupt"};
      return std::nullopt;
    }
    return inner_->load(index, error);
  }
  std::string describe() const override { return "faulty"; }

 private:
  std::shared_ptr<const Dataset> inner_;
  std::set<int64_t> bad_;
  int64_t throws_;
  int sleep_us_;
};

std::shared_ptr<const Transform> small_rrc() {
  RandomResizedCropOptions o;
  o.size = 12;
  return random_resized_crop(o);
}

}  // namespace

TEST(Loader, StepsPerEpoch) {
  auto ds = tiny_synthetic(10);
  auto steps = [&](int64_t batch, bool drop_last, int64_t cap, int64_t world) {
    LoaderOptions o;
    o.batch_size = batch;
    o.drop_last = drop_last;
    o.max_steps_per_epoch = cap;
    o.world_size = world;
    o.workers = 1;
    return Loader(ds, nullptr, o).steps_per_epoch();
  };
  EXPECT_EQ(steps(3, true, 0, 1), 3);
  EXPECT_EQ(steps(3, false, 0, 1), 4);
  EXPECT_EQ(steps(3, false, 2, 1), 2);
  EXPECT_EQ(steps(3, true, 5, 1), 3);
  EXPECT_EQ(steps(3, true, 0, 3), 1);  // ceil(10 / 3) = 4 per rank
  EXPECT_EQ(steps(3, false, 0, 3), 2);
  EXPECT_EQ(steps(20, true, 0, 1), 0);

  LoaderOptions o;
  o.batch_size = 3;
  o.drop_last = false;
  o.shuffle = false;
  Loader loader(ds, nullptr, o);
  EXPECT_THROW(loader.next(), std::logic_error);
  loader.start_epoch(0);
  const auto batches = drain(loader);
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches.back().images.sizes(), (std::vector<int64_t>{1, 3, 16, 16}));
  EXPECT_EQ(indices_of(batches), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_FALSE(loader.next().has_value());
  o.rank = 3;
  o.world_size = 3;
  EXPECT_THROW(Loader(ds, nullptr, o), std::invalid_argument);
}

TEST(Loader, BatchesMatchTheDataSetAndTheTransform) {
  auto ds = tiny_synthetic(12);
  auto tf = small_rrc();
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 77;
  Loader loader(ds, tf, o);
  loader.start_epoch(3);
  const auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->step, 0);
  ASSERT_EQ(b->images.sizes(), (std::vector<int64_t>{4, 3, 12, 12}));
  EXPECT_EQ(b->images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(b->labels.scalar_type(), torch::kInt64);
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t index = b->indices[i].item<int64_t>();
    EXPECT_EQ(b->labels[i].item<int64_t>(), ds->label(index));
    const Image expected = tf->apply(*ds->load(index), sample_seed(77, 3, index));
    auto hwc =
        torch::from_blob(const_cast<uint8_t*>(expected.pixels.data()), {12, 12, 3}, torch::kUInt8);
    EXPECT_TRUE(torch::equal(b->images[i], hwc.permute({2, 0, 1}))) << "sample " << i;
  }
}

TEST(Loader, OrderAndContentDoNotDependOnWorkers) {
  auto ds = tiny_synthetic(40);
  auto tf = small_rrc();
  auto run = [&](int64_t workers, int64_t prefetch) {
    LoaderOptions o;
    o.batch_size = 6;
    o.workers = workers;
    o.prefetch = prefetch;
    o.seed = 3;
    o.drop_last = false;
    Loader loader(ds, tf, o);
    std::vector<std::vector<Batch>> epochs;
    for (int64_t e = 0; e < 2; ++e) {
      loader.start_epoch(e);
      epochs.push_back(drain(loader));
    }
    return epochs;
  };
  const auto one = run(1, 1), three = run(3, 4);
  ASSERT_EQ(one.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    ASSERT_EQ(one[e].size(), 7u);
    ASSERT_EQ(three[e].size(), 7u);
    for (size_t s = 0; s < one[e].size(); ++s) {
      EXPECT_EQ(one[e][s].step, static_cast<int64_t>(s));
      EXPECT_EQ(three[e][s].step, static_cast<int64_t>(s));
      EXPECT_TRUE(torch::equal(one[e][s].images, three[e][s].images)) << e << "/" << s;
      EXPECT_TRUE(torch::equal(one[e][s].labels, three[e][s].labels));
      EXPECT_TRUE(torch::equal(one[e][s].indices, three[e][s].indices));
    }
  }
}

TEST(Loader, EpochsArePermutationsThatDiffer) {
  auto ds = tiny_synthetic(50);
  LoaderOptions o;
  o.batch_size = 5;
  o.workers = 2;
  o.seed = 1;
  Loader loader(ds, nullptr, o);
  std::vector<std::vector<int64_t>> orders;
  for (int64_t e = 0; e < 3; ++e) {
    loader.start_epoch(e);
    orders.push_back(indices_of(drain(loader)));
    auto sorted = orders.back();
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << e;
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  loader.start_epoch(1);
  EXPECT_EQ(indices_of(drain(loader)), orders[1]);  // an epoch is a function of (seed, epoch)
  o.seed = 2;
  Loader other(ds, nullptr, o);
  other.start_epoch(1);
  EXPECT_NE(indices_of(drain(other)), orders[1]);
}

TEST(Loader, ResumeMidEpochGivesTheSameBatches) {
  auto ds = tiny_synthetic(30);
  auto tf = small_rrc();
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 2;
  Loader loader(ds, tf, o);
  loader.start_epoch(5);
  const auto full = drain(loader);
  ASSERT_EQ(full.size(), 7u);
  Loader resumed(ds, tf, o);
  resumed.start_epoch(5, 3);
  const auto rest = drain(resumed);
  ASSERT_EQ(rest.size(), 4u);
  for (size_t s = 0; s < rest.size(); ++s) {
    EXPECT_EQ(rest[s].step, static_cast<int64_t>(s + 3));
    EXPECT_TRUE(torch::equal(rest[s].images, full[s + 3].images));
    EXPECT_TRUE(torch::equal(rest[s].indices, full[s + 3].indices));
  }
  resumed.start_epoch(5, 100);
  EXPECT_FALSE(resumed.next().has_value());
  EXPECT_THROW(resumed.start_epoch(5, -1), std::invalid_argument);
}

TEST(Loader, ShardsAreDisjointAndCoverThePaddedPermutation) {
  auto ds = tiny_synthetic(10);
  const int64_t W = 3;
  std::vector<std::vector<int64_t>> shards;
  for (int64_t r = 0; r < W; ++r) {
    LoaderOptions o;
    o.batch_size = 2;
    o.drop_last = false;
    o.rank = r;
    o.world_size = W;
    o.seed = 4;
    Loader loader(ds, nullptr, o);
    loader.start_epoch(2);
    shards.push_back(indices_of(drain(loader)));
    ASSERT_EQ(shards.back().size(), 4u);  // ceil(10 / 3)
  }
  // Interleaving the shards rebuilds the padded permutation: a permutation of 0..9 followed by
  // its own first two entries (DistributedSampler's wrap-around padding).
  std::vector<int64_t> padded;
  for (size_t k = 0; k < 4; ++k) {
    for (int64_t r = 0; r < W; ++r) padded.push_back(shards[r][k]);
  }
  std::vector<int64_t> head(padded.begin(), padded.begin() + 10);
  std::sort(head.begin(), head.end());
  std::vector<int64_t> all(10);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(head, all);
  EXPECT_EQ(padded[10], padded[0]);
  EXPECT_EQ(padded[11], padded[1]);
  LoaderOptions single;
  single.batch_size = 10;
  single.seed = 4;
  Loader whole(ds, nullptr, single);
  whole.start_epoch(2);
  const auto order = indices_of(drain(whole));
  EXPECT_EQ(std::vector<int64_t>(padded.begin(), padded.begin() + 10), order);
}

TEST(Loader, UnreadableSamplesAreReplacedAndCounted) {
  auto inner = tiny_synthetic(20);
  auto ds = std::make_shared<FaultyDataset>(inner, std::set<int64_t>{3, 7, 8});
  LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = false;
  o.workers = 3;
  o.max_bad_fraction = 0.2;  // 4 of 20
  std::mutex m;
  std::vector<std::string> reported;
  o.on_bad_sample = [&](const BadSample& b) {
    std::lock_guard<std::mutex> lock(m);
    reported.push_back(b.path);
  };
  Loader loader(ds, nullptr, o);
  loader.start_epoch(0);
  const auto batches = drain(loader);
  // 3 → 4; 7 and 8 → 9 (the next readable index).
  EXPECT_EQ(indices_of(batches), (std::vector<int64_t>{0,  1,  2,  4,  4,  5,  6,  9,  9,  9,
                                                       10, 11, 12, 13, 14, 15, 16, 17, 18, 19}));
  EXPECT_EQ(batches[0].labels[3].item<int64_t>(), inner->label(4));
  EXPECT_EQ(loader.bad_samples(), 3);
  EXPECT_EQ(reported.size(), 4u);  // 7, 8 (for 7's slot), 8 again (its own slot), 3
  // A second epoch meets the same files: they are counted once.
  loader.start_epoch(1);
  drain(loader);
  EXPECT_EQ(loader.bad_samples(), 3);
}

TEST(Loader, TooManyUnreadableSamplesStopTheRun) {
  auto ds = std::make_shared<FaultyDataset>(tiny_synthetic(20), std::set<int64_t>{2, 5, 11, 12});
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.max_bad_fraction = 0.1;  // 2 of 20 tolerated
  Loader loader(ds, nullptr, o);
  loader.start_epoch(0);
  EXPECT_TRUE(loader.next().has_value());  // 2
  EXPECT_TRUE(loader.next().has_value());  // 5: two so far, at the limit
  try {
    loader.next();  // 11, 12
    FAIL() << "the limit did not stop the loader";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("4 unreadable"), std::string::npos) << what;
    EXPECT_NE(what.find("data.max_bad_fraction"), std::string::npos) << what;
    EXPECT_NE(what.find("bad/2.jpg"), std::string::npos) << what;
    EXPECT_NE(what.find("limit of 2"), std::string::npos) << what;
  }
  // A data set with nothing readable stops at the limit, without trying every file.
  std::set<int64_t> everything;
  for (int64_t i = 0; i < 1000; ++i) everything.insert(i);
  auto broken = std::make_shared<FaultyDataset>(tiny_synthetic(1000), everything);
  Loader doomed(broken, nullptr, o);
  doomed.start_epoch(0);
  EXPECT_THROW(doomed.next(), std::runtime_error);
  EXPECT_EQ(doomed.bad_samples(), 101);
}

TEST(Loader, WorkerExceptionsSurfaceInOrder) {
  auto ds = std::make_shared<FaultyDataset>(tiny_synthetic(20), std::set<int64_t>{}, 9);
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.workers = 3;
  Loader loader(ds, nullptr, o);
  loader.start_epoch(0);
  EXPECT_TRUE(loader.next().has_value());
  EXPECT_TRUE(loader.next().has_value());
  try {
    loader.next();
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom at 9");
  }
  // The epoch goes on after it; a new epoch starts cleanly.
  EXPECT_TRUE(loader.next().has_value());
  loader.start_epoch(1, 3);
  EXPECT_EQ(loader.next()->step, 3);
}

TEST(Loader, DestructionAndRestartMidEpochArePrompt) {
  // Slow samples (2 ms each), a full reorder buffer, workers mid-batch: the destructor and
  // start_epoch must not wait for the epoch to finish.
  auto ds = std::make_shared<FaultyDataset>(tiny_synthetic(2000), std::set<int64_t>{}, -1, 2000);
  LoaderOptions o;
  o.batch_size = 16;
  o.workers = 3;
  o.prefetch = 2;
  auto started = std::chrono::steady_clock::now();
  {
    Loader loader(ds, nullptr, o);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // the buffer fills up
    loader.start_epoch(1);
    loader.start_epoch(2);
    const auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->step, 0);
    started = std::chrono::steady_clock::now();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(seconds, 0.5);
  { Loader never_started(ds, nullptr, o); }
}

TEST(Loader, FactoryBuildsTheConfiguredPipeline) {
  ocl::io::DataConfig config;
  config.synthetic_train_size = 40;
  config.synthetic_val_size = 20;
  config.synthetic_classes = 12;
  auto train = make_dataset(config, 32, true, 9);
  auto val = make_dataset(config, 32, false, 9);
  EXPECT_EQ(train->size(), 40);
  EXPECT_EQ(val->size(), 20);
  EXPECT_EQ(train->num_classes(), 12);
  EXPECT_NE(train->load(0)->pixels, val->load(0)->pixels);
  auto augment = make_transform(config, 32, true);
  EXPECT_NE(augment->describe().find("RandomResizedCrop"), std::string::npos);
  EXPECT_NE(make_transform(config, 32, false)->describe().find("CenterCrop"), std::string::npos);
  config.augment = "none";
  EXPECT_NE(make_transform(config, 32, true)->describe().find("CenterCrop"), std::string::npos);
  config.interpolation = "lanczos";
  EXPECT_THROW(make_transform(config, 32, true), std::invalid_argument);
  config.dataset = "imagefolder";
  config.path = "/no/such/ocl/data";
  try {
    make_dataset(config, 32, true, 0);
    FAIL() << "a missing folder was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("data.path"), std::string::npos) << e.what();
  }
  config.dataset = "cifar10";
  EXPECT_THROW(make_dataset(config, 32, true, 0), std::runtime_error);
  config.dataset = "mnist";
  EXPECT_THROW(make_dataset(config, 32, true, 0), std::invalid_argument);
}
