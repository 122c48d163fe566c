// Streamed WebDataset shards for training (see include/ocl/data/streaming.h).
#include "ocl/data/streaming.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "ocl/data/image_folder.h"  // decode_image
#include "ocl/data/tar_index.h"
#include "ocl/data/webdataset.h"  // parse_class_index

namespace ocl::data {
// Named, not anonymous: StreamingLoader::Impl holds these (GCC's subobject-linkage check under
// a unity build).
namespace streaming_detail {

constexpr uint64_t kMaxImageBytes = uint64_t{1} << 28;  // a larger member is damaged data

// One sample as it comes off a shard: its image's encoded bytes and its label.
struct RawSample {
  std::string where;  // "<redacted shard>:<key>"
  std::vector<uint8_t> image;
  int64_t label = 0;
};

// Thrown out of a shard's tar walk when the worker is to stop: its batches are made, or the
// epoch was restarted or the loader is closing. Not an std::exception: the retry loop, which
// catches those, lets it through.
struct Stop {};

struct BatchResult {
  std::optional<Batch> batch;
  std::exception_ptr error;
  std::vector<BadSample> bad;
};

bool is_image(const std::string& ext) {
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "webp";
}

// Streams one shard once, handing each whole sample to `emit` in archive order (WebDataset's
// grouping: consecutive members sharing a key). Only the image and .cls members are read; a
// sample is handed over once the next one starts or the archive ends, so a cut stream never
// yields a sample short of a member.
void stream_shard(const std::string& shard, const ShardStreamOptions& options,
                  const std::function<void(RawSample&&)>& emit) {
  const auto stream = open_shard_stream(shard, options);
  const std::string what = redact(shard);
  const ByteReader read = forward_reader(*stream);
  RawSample current;
  std::string key;
  bool open = false, has_image = false;
  std::unordered_set<std::string> keys;
  auto flush = [&] {
    if (!open) return;
    if (!has_image)
      throw std::runtime_error(what + ": sample '" + printable(key) +
                               "' has no image (.jpg, .jpeg, .png or .webp)");
    emit(std::move(current));
    current = RawSample{}, open = has_image = false;
  };
  index_tar(read, stream->size(), what, nullptr, [&](const TarMember& m) {
    auto [k, ext] = sample_key(m.name);
    const std::string where = what + ": member '" + printable(m.name) + "'";
    if (ext.empty()) throw std::runtime_error(where + " has no extension");
    if (!open || k != key) {
      flush();
      if (!keys.insert(k).second)
        throw std::runtime_error(where + ": its key comes back after other samples");
      key = k, open = true;
      current.where = what + ":" + printable(k);
    }
    if (!is_image(ext) && ext != "cls") return;  // passed over unread
    if (m.size > (is_image(ext) ? kMaxImageBytes : 64))
      throw std::runtime_error(where + " holds " + std::to_string(m.size) + " bytes");
    std::vector<uint8_t> bytes(static_cast<size_t>(m.size));
    if (read(m.offset, bytes.size(), bytes.data()) != bytes.size())
      throw std::runtime_error(where + ": the stream ends inside it (truncated)");
    if (is_image(ext)) {
      if (has_image) throw std::runtime_error(where + ": a second image in its sample");
      current.image = std::move(bytes), has_image = true;
    } else {
      current.label = parse_class_index(std::string(bytes.begin(), bytes.end()), where);
    }
  });
  flush();
  // The rest (tar's padding) read to the end, so that a command's exit status is checked.
  uint8_t tail[4096];
  for (size_t drained = 0; drained < (size_t{1} << 20);) {
    const size_t n = stream->read(tail, sizeof(tail));
    if (n == 0) break;
    drained += n;
  }
}

}  // namespace streaming_detail
using namespace streaming_detail;

struct StreamingLoader::Impl {
  std::vector<std::string> shards;
  std::shared_ptr<const Transform> transform;
  StreamingOptions so;
  const LoaderOptions& o = so.loader;
  bool pin = false;

  std::mutex m;
  std::condition_variable cv;
  uint64_t generation = 0;
  bool stop = false;
  int64_t epoch = 0, consume_next = 0;
  bool active = false;
  std::vector<std::deque<std::pair<int64_t, BatchResult>>> queues;  // per worker, in step order
  std::vector<std::thread> threads;

  int64_t bad_count = 0, bad_shard_count = 0, max_buffered = 0;
  std::set<std::string> bad_shard_names;
  std::vector<BadSample> first_bad;
  std::mutex callback_mutex;

  int64_t steps() const {
    int64_t s = so.samples_per_epoch / o.world_size / o.batch_size;
    if (o.max_steps_per_epoch > 0) s = std::min(s, o.max_steps_per_epoch);
    return s;
  }
  size_t queue_limit() const {
    return static_cast<size_t>(std::max<int64_t>(1, (o.prefetch + o.workers - 1) / o.workers));
  }
  bool current(uint64_t gen) {
    std::lock_guard<std::mutex> lock(m);
    return !stop && gen == generation;
  }

  // Worker `w`'s shards in pass `pass` of `epoch`.
  std::vector<std::string> share(int64_t ep, int64_t pass, int64_t w) const {
    std::vector<size_t> perm(shards.size());
    std::iota(perm.begin(), perm.end(), size_t{0});
    if (o.shuffle) {
      SampleRng rng(sample_seed(sample_seed(o.seed, ep, -2), pass, 0));
      for (size_t i = perm.size() - 1; i > 0; --i)
        std::swap(perm[i], perm[static_cast<size_t>(rng.below(static_cast<int64_t>(i) + 1))]);
    }
    std::vector<std::string> out;
    const size_t slots = static_cast<size_t>(o.world_size * o.workers);
    for (size_t i = static_cast<size_t>(o.rank * o.workers + w); i < perm.size(); i += slots)
      out.push_back(shards[perm[i]]);
    return out;
  }

  void report(const BadSample& bad) {
    if (!o.on_bad_sample) return;
    std::lock_guard<std::mutex> lock(callback_mutex);
    o.on_bad_sample(bad);
  }

  // Hands worker w's batch `step` over; waits for room. Throws Stop when the epoch is over.
  void post(int64_t w, uint64_t gen, int64_t step, BatchResult r) {
    std::unique_lock<std::mutex> lock(m);
    auto& q = queues[static_cast<size_t>(w)];
    cv.wait(lock, [&] { return stop || gen != generation || q.size() < queue_limit(); });
    if (stop || gen != generation) throw Stop{};
    q.emplace_back(step, std::move(r));
    cv.notify_all();
  }

  BatchResult build(int64_t ep, int64_t step, std::vector<RawSample>& samples) {
    BatchResult r;
    try {
      const int64_t n = static_cast<int64_t>(samples.size());
      std::vector<std::optional<Image>> images(samples.size());
      std::vector<uint64_t> seeds(samples.size());
      std::vector<int64_t> ids(samples.size());
      auto decode = [&](const RawSample& s, uint64_t seed, std::string* reason) {
        if (!transform) return decode_image(s.image.data(), s.image.size(), reason);
        return decode_image(
            s.image.data(), s.image.size(),
            [&](int h, int w) { return transform->region(h, w, seed); }, reason);
      };
      for (int64_t i = 0; i < n; ++i) {
        ids[i] = (step * o.world_size + o.rank) * o.batch_size + i;
        seeds[i] = sample_seed(o.seed, ep, ids[i]);
        std::string reason;
        images[i] = decode(samples[i], seeds[i], &reason);
        if (!images[i]) {
          BadSample bad{ids[i], samples[i].where, reason.empty() ? "unreadable" : reason};
          report(bad);
          r.bad.push_back(std::move(bad));
        }
      }
      BatchWriter writer(transform.get(), n, pin);
      for (int64_t i = 0; i < n; ++i) {
        int64_t j = i;  // a bad sample's place goes to the next readable one of the batch
        for (int64_t k = 1; k < n && !images[j]; ++k) j = (i + k) % n;
        if (!images[j])
          throw std::runtime_error("data: every sample of batch " + std::to_string(step) +
                                   " is unreadable (first: " + samples[0].where + ")");
        std::optional<Image> own =
            j == i ? std::move(images[i]) : decode(samples[j], seeds[i], nullptr);
        writer.put(i, own.value(), seeds[i], samples[j].label, ids[i]);
      }
      r.batch = writer.finish(step);
    } catch (...) {
      r.error = std::current_exception();
    }
    return r;
  }

  // One worker's epoch: its shards' samples through its shuffle buffer into its batches.
  void work(int64_t w, int64_t ep, int64_t first_step, uint64_t gen) {
    const int64_t total = steps();
    int64_t step = first_step + ((w - first_step % o.workers) + o.workers) % o.workers;
    if (step >= total) return;
    int64_t skip = (step / o.workers) * o.batch_size;  // the samples of its earlier batches
    const size_t cap = static_cast<size_t>(o.shuffle ? so.shuffle_buffer : 1);
    SampleRng rng(sample_seed(sample_seed(o.seed, ep, -3), o.rank, w));
    std::vector<RawSample> buffer, pending;
    auto take = [&](RawSample&& s) {
      if (skip > 0) {
        --skip;
        return;
      }
      pending.push_back(std::move(s));
      if (static_cast<int64_t>(pending.size()) < o.batch_size) return;
      BatchResult r = build(ep, step, pending);
      const bool failed = r.error != nullptr;
      pending.clear();
      post(w, gen, step, std::move(r));
      step += o.workers;
      if (failed || step >= total) throw Stop{};
    };
    auto add = [&](RawSample&& s) {
      if (!current(gen)) throw Stop{};
      if (cap <= 1) return take(std::move(s));
      if (buffer.size() < cap) {
        buffer.push_back(std::move(s));
        std::lock_guard<std::mutex> lock(m);
        max_buffered = std::max<int64_t>(max_buffered, static_cast<int64_t>(buffer.size()));
        return;
      }
      std::swap(buffer[static_cast<size_t>(rng.below(static_cast<int64_t>(cap)))], s);
      take(std::move(s));
    };
    try {
      for (int64_t pass = 0;; ++pass) {
        int64_t samples = 0;
        for (const auto& shard : share(ep, pass, w))
          samples += stream_with_retries(shard, gen, add);
        // The pass's last samples leave the buffer in random order: each pass delivers its
        // samples once (an epoch of every sample sees each once).
        while (!buffer.empty()) {
          const auto j = static_cast<size_t>(rng.below(static_cast<int64_t>(buffer.size())));
          RawSample last = std::move(buffer[j]);
          buffer[j] = std::move(buffer.back());
          buffer.pop_back();
          take(std::move(last));
        }
        if (samples == 0) {
          throw std::runtime_error("data: worker " + std::to_string(w) + " of rank " +
                                   std::to_string(o.rank) + " read no sample from its shards");
        }
      }
    } catch (const Stop&) {
    } catch (...) {
      BatchResult r;
      r.error = std::current_exception();
      try {
        post(w, gen, step, std::move(r));
      } catch (const Stop&) {
      }
    }
  }

  // Streams `shard`, new tries skipping what earlier ones delivered; returns the samples
  // delivered. A shard still failing is counted bad; past the limit that stops the run.
  int64_t stream_with_retries(const std::string& shard, uint64_t gen,
                              const std::function<void(RawSample&&)>& add) {
    int64_t delivered = 0;
    std::string reason;
    for (int64_t attempt = 0; attempt <= so.retries; ++attempt) {
      if (attempt > 0) {
        const auto until = std::chrono::steady_clock::now() +
                           std::chrono::duration<double>(so.retry_delay_s *
                                                         (1 << std::min<int64_t>(attempt - 1, 6)));
        std::unique_lock<std::mutex> lock(m);
        if (cv.wait_until(lock, until, [&] { return stop || gen != generation; })) throw Stop{};
      }
      int64_t seen = 0;
      ShardStreamOptions stream = so.stream;  // a stopped epoch abandons a waiting read
      stream.interrupt = [this, gen] {
        if (!current(gen)) throw Stop{};
      };
      try {
        stream_shard(shard, stream, [&](RawSample&& s) {
          if (seen++ < delivered) return;
          ++delivered;
          add(std::move(s));
        });
        return delivered;
      } catch (const std::exception& e) {
        reason = e.what();
      }
    }
    const std::string name = redact(shard);
    report(BadSample{-1, name, reason});
    std::lock_guard<std::mutex> lock(m);
    bad_shard_names.insert(shard);  // a shard failing in every pass counts once
    bad_shard_count = static_cast<int64_t>(bad_shard_names.size());
    if (static_cast<double>(bad_shard_count) >
        o.max_bad_fraction * static_cast<double>(shards.size())) {
      throw std::runtime_error(
          "data: shard '" + name + "' failed " + std::to_string(so.retries + 1) +
          " times (data.stream_retries = " + std::to_string(so.retries) + "): " + reason + "; " +
          std::to_string(bad_shard_count) + " of " + std::to_string(shards.size()) +
          " shards failed, more than data.max_bad_fraction allows");
    }
    return delivered;
  }

  void halt() {
    {
      std::lock_guard<std::mutex> lock(m);
      ++generation;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
    threads.clear();
    for (auto& q : queues) q.clear();
  }

  // Counts a delivered batch's unreadable samples; throws past the limit.
  void account(const std::vector<BadSample>& bad) {
    for (const auto& b : bad) {
      ++bad_count;
      if (first_bad.size() < 5) first_bad.push_back(b);
    }
    const double limit = o.max_bad_fraction * static_cast<double>(so.samples_per_epoch);
    if (static_cast<double>(bad_count) <= limit) return;
    std::ostringstream msg;
    msg << "data: " << bad_count << " unreadable samples, more than the limit of " << limit
        << " (data.max_bad_fraction = " << o.max_bad_fraction << " of " << so.samples_per_epoch
        << " samples per epoch); first:";
    for (const auto& b : first_bad) msg << " " << b.path << " (" << b.reason << ");";
    throw std::runtime_error(msg.str());
  }
};

StreamingLoader::StreamingLoader(std::vector<std::string> shards,
                                 std::shared_ptr<const Transform> transform,
                                 StreamingOptions options)
    : impl_(std::make_unique<Impl>()) {
  const LoaderOptions& o = options.loader;
  if (o.batch_size < 1 || o.workers < 1 || o.prefetch < 1 || o.world_size < 1 || o.rank < 0 ||
      o.rank >= o.world_size || o.max_steps_per_epoch < 0 || !(o.max_bad_fraction >= 0) ||
      options.samples_per_epoch < 1 || options.shuffle_buffer < 1 || options.retries < 0 ||
      !(options.stream.timeout_s > 0)) {
    throw std::invalid_argument(
        "StreamingLoader: needs batch_size, workers, prefetch, world_size, samples_per_epoch, "
        "shuffle_buffer >= 1, 0 <= rank < world_size, retries >= 0 and timeout_s > 0");
  }
  const auto slots = o.world_size * o.workers;
  if (static_cast<int64_t>(shards.size()) < slots) {
    throw std::invalid_argument(
        "data: " + std::to_string(shards.size()) + " shards for " + std::to_string(o.world_size) +
        " ranks x " + std::to_string(o.workers) + " data.workers = " + std::to_string(slots) +
        " streams: streamed shards are shared out whole, so each stream needs one at least "
        "(fewer data.workers, or more, smaller shards)");
  }
  impl_->shards = std::move(shards);
  impl_->transform = std::move(transform);
  impl_->so = std::move(options);
  impl_->pin = o.pin_memory && torch::cuda::is_available();
  impl_->queues.resize(static_cast<size_t>(impl_->o.workers));
}

StreamingLoader::~StreamingLoader() {
  {
    std::lock_guard<std::mutex> lock(impl_->m);
    impl_->stop = true;
  }
  impl_->halt();
}

int64_t StreamingLoader::steps_per_epoch() const { return impl_->steps(); }

int64_t StreamingLoader::samples_per_epoch() const { return impl_->so.samples_per_epoch; }

void StreamingLoader::start_epoch(int64_t epoch, int64_t first_step) {
  if (first_step < 0) throw std::invalid_argument("StreamingLoader::start_epoch: first_step < 0");
  impl_->halt();
  std::lock_guard<std::mutex> lock(impl_->m);
  impl_->epoch = epoch;
  impl_->consume_next = std::min(first_step, impl_->steps());
  impl_->active = true;
  const uint64_t gen = impl_->generation;
  for (int64_t w = 0; w < impl_->o.workers; ++w) {
    impl_->threads.emplace_back(
        [impl = impl_.get(), w, epoch, first_step, gen] { impl->work(w, epoch, first_step, gen); });
  }
}

std::optional<Batch> StreamingLoader::next() {
  std::unique_lock<std::mutex> lock(impl_->m);
  if (!impl_->active) throw std::logic_error("StreamingLoader::next: call start_epoch first");
  if (impl_->consume_next >= impl_->steps()) return std::nullopt;
  const int64_t step = impl_->consume_next;
  auto& q = impl_->queues[static_cast<size_t>(step % impl_->o.workers)];
  impl_->cv.wait(lock, [&] { return !q.empty(); });
  auto [got, r] = std::move(q.front());
  q.pop_front();
  ++impl_->consume_next;
  impl_->cv.notify_all();
  if (r.error) std::rethrow_exception(r.error);
  if (got != step)
    throw std::logic_error("StreamingLoader: batch " + std::to_string(step) + " missing");
  impl_->account(r.bad);
  return std::move(r.batch);
}

int64_t StreamingLoader::bad_samples() const {
  std::lock_guard<std::mutex> lock(impl_->m);
  return impl_->bad_count;
}

int64_t StreamingLoader::bad_shards() const {
  std::lock_guard<std::mutex> lock(impl_->m);
  return impl_->bad_shard_count;
}

int64_t StreamingLoader::max_buffered() const {
  std::lock_guard<std::mutex> lock(impl_->m);
  return impl_->max_buffered;
}

std::string shard_file_name(const std::string& shard) {
  size_t end = std::string::npos;
  for (size_t at = shard.find(".tar"); at != std::string::npos; at = shard.find(".tar", at + 1)) {
    const size_t after = at + 4;
    if (after == shard.size() || std::string(" \t?#'\"").find(shard[after]) != std::string::npos)
      end = after;
  }
  if (end == std::string::npos) return "";
  const size_t begin = shard.find_last_of("/ :\t'\"", end - 1);
  return shard.substr(begin == std::string::npos ? 0 : begin + 1,
                      end - (begin == std::string::npos ? 0 : begin + 1));
}

int64_t count_samples(const std::vector<std::string>& shards, const ShardStreamOptions& options,
                      std::string* where) {
  std::map<std::string, nlohmann::json> files;  // sizes.json by its location
  int64_t total = 0;
  for (const auto& shard : shards) {
    const std::string name = shard_file_name(shard);
    if (name.empty()) return 0;
    std::string location = shard;
    location.replace(location.rfind(name), name.size(), "sizes.json");
    auto it = files.find(location);
    if (it == files.end()) {
      std::string text;
      try {
        text = read_all(*open_shard_stream(location, options), size_t{64} << 20);
      } catch (const StreamError&) {
        return 0;  // no such file (or it cannot be read): the caller asks for samples_per_epoch
      }
      try {
        it = files.emplace(location, nlohmann::json::parse(text)).first;
      } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(redact(location) +
                                 ": not a sizes.json ({\"<shard>.tar\": "
                                 "<samples>, ...}): " +
                                 e.what());
      }
    }
    if (where) *where = redact(location);
    const auto& j = it->second;
    if (!j.is_object() || !j.contains(name) || !j[name].is_number_integer() ||
        j[name].get<int64_t>() < 0)
      throw std::runtime_error(redact(location) + " gives no sample count for '" + name + "'");
    total += j[name].get<int64_t>();
  }
  return total;
}

}  // namespace ocl::data
