// The threaded loader: workers build whole batches into a reorder buffer bounded by `prefetch`,
// the consumer takes them in order; everything a batch holds is fixed by (seed, epoch, step).
#include "ocl/data/loader.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>

#include <torch/cuda.h>
#include <torch/torch.h>

namespace ocl::data {
// A named namespace, not an anonymous one: Loader::Impl holds these (GCC's subobject-linkage
// check, which a unity build turns on for the included file).
namespace loader_detail {

// What a worker hands over for one step: the batch or the exception that stopped it, and the
// unreadable samples met on the way (counted by the consumer, in step order, so that the count
// and the moment the limit trips do not depend on thread timing).
struct Result {
  std::optional<Batch> batch;
  std::exception_ptr error;
  std::vector<BadSample> bad;
};

struct Plan {
  int64_t epoch = 0;
  int64_t steps = 0;
  std::vector<int64_t> indices;  // this rank's share of the epoch's padded permutation
};

}  // namespace loader_detail
using loader_detail::Plan;
using loader_detail::Result;

struct Loader::Impl {
  std::shared_ptr<const Dataset> dataset;
  std::shared_ptr<const Transform> transform;
  LoaderOptions o;
  bool pin = false;

  std::mutex m;
  std::condition_variable work_cv, ready_cv;
  bool stop = false;
  bool active = false;
  std::shared_ptr<const Plan> plan;
  int64_t claim_next = 0;    // the next step a worker takes
  int64_t consume_next = 0;  // the next step next() returns
  std::map<int64_t, Result> ready;
  // Bumped by start_epoch and the destructor: a worker whose batch belongs to an older
  // generation drops it, and checks between samples so that cancelling is quick.
  std::atomic<uint64_t> generation{0};

  std::set<int64_t> bad_indices;     // distinct unreadable samples, consumer side
  std::vector<BadSample> first_bad;  // the first few, for the error message
  std::mutex callback_mutex;

  std::vector<std::thread> threads;

  int64_t steps() const { return batches_per_epoch(dataset->size(), o); }

  double bad_limit() const { return o.max_bad_fraction * static_cast<double>(dataset->size()); }

  std::shared_ptr<const Plan> make_plan(int64_t epoch) const {
    auto p = std::make_shared<Plan>();
    p->epoch = epoch;
    p->steps = steps();
    const int64_t n = dataset->size();
    if (n == 0) return p;
    std::vector<int64_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), int64_t{0});
    if (o.shuffle) {
      // Fisher–Yates from a generator of (seed, epoch) alone; index −1 is no sample's, so this
      // stream is apart from every augmentation stream.
      SampleRng rng(sample_seed(o.seed, epoch, -1));
      for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
    }
    // DistributedSampler: pad by wrapping to a multiple of W, rank r takes r, r + W, ...
    const int64_t take = std::min((n + o.world_size - 1) / o.world_size, p->steps * o.batch_size);
    p->indices.resize(static_cast<size_t>(take));
    for (int64_t k = 0; k < take; ++k) p->indices[k] = perm[(o.rank + k * o.world_size) % n];
    return p;
  }

  void report(const BadSample& bad) {
    if (!o.on_bad_sample) return;
    std::lock_guard<std::mutex> lock(callback_mutex);
    o.on_bad_sample(bad);
  }

  // Loads dataset index `index`, or the first readable one after it (wrapping), recording the
  // failures. std::nullopt when cancelled or when the chain of failures alone passes the limit.
  // With a transform, only the region it will read is decoded (Dataset::load_region).
  std::optional<std::pair<int64_t, Image>> load_readable(int64_t index, int64_t epoch, uint64_t gen,
                                                         Result& r) {
    const int64_t n = dataset->size();
    for (int64_t tries = 0; tries < n; ++tries) {
      if (generation.load(std::memory_order_relaxed) != gen) return std::nullopt;
      const int64_t j = (index + tries) % n;
      BadSample bad;
      std::optional<Image> image;
      if (transform) {
        const uint64_t seed = sample_seed(o.seed, epoch, j);
        image = dataset->load_region(
            j, [&](int h, int w) { return transform->region(h, w, seed); }, &bad);
      } else {
        image = dataset->load(j, &bad);
      }
      if (image) return std::make_pair(j, std::move(*image));
      bad.index = j;
      if (bad.reason.empty()) bad.reason = "unreadable";
      report(bad);
      r.bad.push_back(std::move(bad));
      if (static_cast<double>(tries + 1) > bad_limit()) return std::nullopt;
    }
    throw std::runtime_error("data: no readable sample in the whole data set (" +
                             std::to_string(n) + " tried)");
  }

  Result build(const Plan& p, int64_t step, uint64_t gen) {
    Result r;
    try {
      const int64_t begin = step * o.batch_size;
      const int64_t count =
          std::min<int64_t>(o.batch_size, static_cast<int64_t>(p.indices.size()) - begin);
      BatchWriter writer(transform.get(), count, pin);
      for (int64_t i = 0; i < count; ++i) {
        auto loaded = load_readable(p.indices[static_cast<size_t>(begin + i)], p.epoch, gen, r);
        if (!loaded) return r;  // cancelled, or too many unreadable (next() reports it)
        const int64_t index = loaded->first;
        writer.put(i, loaded->second, sample_seed(o.seed, p.epoch, index), dataset->label(index),
                   index);
      }
      r.batch = writer.finish(step);
    } catch (...) {
      r.error = std::current_exception();
    }
    return r;
  }

  void work() {
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      work_cv.wait(lock, [&] {
        return stop ||
               (active && claim_next < plan->steps && claim_next < consume_next + o.prefetch);
      });
      if (stop) return;
      const int64_t step = claim_next++;
      const uint64_t gen = generation.load();
      const std::shared_ptr<const Plan> p = plan;
      lock.unlock();
      Result r = build(*p, step, gen);
      lock.lock();
      if (stop) return;
      if (gen != generation.load()) continue;  // the epoch was restarted meanwhile
      ready.emplace(step, std::move(r));
      ready_cv.notify_all();
    }
  }

  // Counts a delivered batch's unreadable samples; throws once they pass the limit.
  void account(const std::vector<BadSample>& bad) {
    for (const auto& b : bad) {
      if (!bad_indices.insert(b.index).second) continue;
      if (first_bad.size() < 5) first_bad.push_back(b);
    }
    const auto count = static_cast<int64_t>(bad_indices.size());
    if (static_cast<double>(count) <= bad_limit()) return;
    std::ostringstream msg;
    msg << "data: " << count << " unreadable samples, more than the limit of " << bad_limit()
        << " (data.max_bad_fraction = " << o.max_bad_fraction << " of " << dataset->size()
        << " samples); first:";
    for (const auto& b : first_bad) {
      msg << " " << (b.path.empty() ? "#" + std::to_string(b.index) : b.path) << " (" << b.reason
          << ");";
    }
    throw std::runtime_error(msg.str());
  }
};

BatchWriter::BatchWriter(const Transform* transform, int64_t count, bool pin)
    : transform_(transform),
      count_(count),
      pin_(pin),
      labels_(torch::empty({count}, torch::kInt64)),
      indices_(torch::empty({count}, torch::kInt64)) {
  images_.resize(static_cast<size_t>(transform ? transform->views() : 1));
  if (transform) allocate(transform->output_height(), transform->output_width());
}

void BatchWriter::allocate(int64_t h, int64_t w) {
  h_ = h, w_ = w;
  for (auto& t : images_)
    t = torch::empty({count_, 3, h, w},
                     torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(pin_));
}

void BatchWriter::put(int64_t row, const Image& decoded, uint64_t seed, int64_t label,
                      int64_t index) {
  const int views = static_cast<int>(images_.size());
  std::vector<Image> outputs;
  if (!transform_) {
    outputs.push_back(decoded);
  } else if (views == 1) {
    outputs.push_back(transform_->apply(decoded, seed));
  } else {
    outputs = transform_->apply_views(decoded, seed);
  }
  if (static_cast<int>(outputs.size()) != views) {
    throw std::logic_error("data: the transform made " + std::to_string(outputs.size()) +
                           " views of sample " + std::to_string(index) + ", expected " +
                           std::to_string(views));
  }
  if (!images_[0].defined()) allocate(outputs[0].height, outputs[0].width);
  const int64_t h = h_, w = w_;
  for (size_t v = 0; v < outputs.size(); ++v) {
    const Image& image = outputs[v];
    if (image.height != h || image.width != w ||
        image.pixels.size() != static_cast<size_t>(h * w * 3))
      throw std::runtime_error("data: sample " + std::to_string(index) + " is " +
                               std::to_string(image.height) + "x" + std::to_string(image.width) +
                               ", the batch is " + std::to_string(h) + "x" + std::to_string(w) +
                               " (use a transform with a fixed size)");
    // HWC → CHW.
    uint8_t* dst = images_[v].data_ptr<uint8_t>() + row * 3 * h * w;
    const uint8_t* src = image.pixels.data();
    const int64_t hw = h * w;
    for (int64_t q = 0; q < hw; ++q) {
      dst[q] = src[3 * q];
      dst[hw + q] = src[3 * q + 1];
      dst[2 * hw + q] = src[3 * q + 2];
    }
  }
  labels_.data_ptr<int64_t>()[row] = label;
  indices_.data_ptr<int64_t>()[row] = index;
}

Batch BatchWriter::finish(int64_t step) {
  Batch batch{images_[0], labels_, indices_, step};
  if (images_.size() == 2) batch.second_view = images_[1];
  return batch;
}

Loader::Loader(std::shared_ptr<const Dataset> dataset, std::shared_ptr<const Transform> transform,
               LoaderOptions options)
    : dataset_(std::move(dataset)), impl_(std::make_unique<Impl>()) {
  const LoaderOptions& o = options;
  if (!dataset_) throw std::invalid_argument("Loader: no data set");
  if (o.batch_size < 1 || o.workers < 1 || o.prefetch < 1 || o.world_size < 1 || o.rank < 0 ||
      o.rank >= o.world_size || o.max_steps_per_epoch < 0 || !(o.max_bad_fraction >= 0)) {
    std::ostringstream msg;
    msg << "Loader: needs batch_size, workers, prefetch, world_size >= 1, 0 <= rank < "
           "world_size, max_steps_per_epoch >= 0 and max_bad_fraction >= 0, got batch_size "
        << o.batch_size << ", workers " << o.workers << ", prefetch " << o.prefetch << ", rank "
        << o.rank << " of " << o.world_size << ", max_steps_per_epoch " << o.max_steps_per_epoch
        << ", max_bad_fraction " << o.max_bad_fraction;
    throw std::invalid_argument(msg.str());
  }
  if (transform && transform->views() != 1 && transform->views() != 2) {
    throw std::invalid_argument("Loader: a transform makes 1 or 2 views per sample, got " +
                                std::to_string(transform->views()));
  }
  impl_->dataset = dataset_;
  impl_->transform = std::move(transform);
  impl_->o = std::move(options);
  impl_->pin = impl_->o.pin_memory && torch::cuda::is_available();
  impl_->threads.reserve(static_cast<size_t>(impl_->o.workers));
  try {
    for (int64_t i = 0; i < impl_->o.workers; ++i) {
      impl_->threads.emplace_back([impl = impl_.get()] { impl->work(); });
    }
  } catch (...) {
    shutdown();  // no destructor runs for a constructor that throws: join what was started
    throw;
  }
}

void Loader::shutdown() {
  {
    std::lock_guard<std::mutex> lock(impl_->m);
    impl_->stop = true;
    impl_->generation.fetch_add(1);
  }
  impl_->work_cv.notify_all();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

Loader::~Loader() { shutdown(); }

int64_t batches_per_epoch(int64_t dataset_size, const LoaderOptions& o) {
  const int64_t n = (dataset_size + o.world_size - 1) / o.world_size;
  int64_t s = o.drop_last ? n / o.batch_size : (n + o.batch_size - 1) / o.batch_size;
  if (o.max_steps_per_epoch > 0) s = std::min(s, o.max_steps_per_epoch);
  return s;
}

int64_t Loader::steps_per_epoch() const { return impl_->steps(); }

void Loader::start_epoch(int64_t epoch, int64_t first_step) {
  if (first_step < 0) {
    throw std::invalid_argument("Loader::start_epoch: first_step must be >= 0, got " +
                                std::to_string(first_step));
  }
  auto plan = impl_->make_plan(epoch);  // outside the lock: a 1.3 M shuffle takes a while
  {
    std::lock_guard<std::mutex> lock(impl_->m);
    impl_->generation.fetch_add(1);
    impl_->ready.clear();
    impl_->plan = std::move(plan);
    impl_->active = true;
    impl_->claim_next = impl_->consume_next = std::min(first_step, impl_->plan->steps);
  }
  impl_->work_cv.notify_all();
}

std::optional<Batch> Loader::next() {
  std::unique_lock<std::mutex> lock(impl_->m);
  if (!impl_->active) throw std::logic_error("Loader::next: call start_epoch(epoch) first");
  if (impl_->consume_next >= impl_->plan->steps) return std::nullopt;
  const int64_t step = impl_->consume_next;
  impl_->ready_cv.wait(lock, [&] { return impl_->ready.count(step) > 0; });
  Result r = std::move(impl_->ready.extract(step).mapped());
  ++impl_->consume_next;
  impl_->work_cv.notify_all();
  impl_->account(r.bad);
  if (r.error) std::rethrow_exception(r.error);
  if (!r.batch) throw std::logic_error("Loader: batch " + std::to_string(step) + " missing");
  return std::move(r.batch);
}

int64_t Loader::bad_samples() const {
  std::lock_guard<std::mutex> lock(impl_->m);
  return static_cast<int64_t>(impl_->bad_indices.size());
}

}  // namespace ocl::data
