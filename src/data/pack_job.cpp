// ocl_pack's job: one split at a time, images encoded on threads a chunk at a time and written in
// order, as packed shards or WebDataset tar shards.
#include "ocl/data/pack_job.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "ocl/data/cifar.h"
#include "ocl/data/image_folder.h"
#include "ocl/data/packed.h"
#include "ocl/data/tar_writer.h"
#include "ocl/data/webdataset.h"
#include "ocl/io/console.h"
#include "ocl/io/files.h"

namespace ocl::data {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::shared_ptr<const Dataset> open_source(const PackJobOptions& s, const std::string& split) {
  if (s.from == "imagefolder") {
    const fs::path root = fs::path(s.source) / split;
    if (!fs::is_directory(root))
      throw std::runtime_error("--source: no folder " + root.string() + " (expected <source>/" +
                               split + "/<class>/<image>)");
    ImageFolderOptions o;
    o.use_cache = false;  // one pass: a cache would only be written
    return std::make_shared<ImageFolderDataset>(root.string(), o);
  }
  if (split != "train" && split != "val")
    throw std::runtime_error("--split " + split + ": CIFAR has train and val (test) only");
  return std::make_shared<CifarDataset>(
      s.source, s.from == "cifar10" ? CifarVariant::Cifar10 : CifarVariant::Cifar100,
      split == "train");
}

// The payload of one source image: shrunk and encoded, or nothing when it cannot be read.
struct Encoded {
  std::vector<uint8_t> bytes;
  int height = 0, width = 0;
  bool ok = false;
  BadSample bad;
};

Encoded encode(const Dataset& set, int64_t index, const PackJobOptions& s) {
  Encoded e;
  auto image = set.load(index, &e.bad);
  if (!image) return e;
  const auto small = shrink_to_short_side(*image, s.short_side, Interpolation::Area);
  e.height = small.height;
  e.width = small.width;
  e.bytes = s.encoding == "raw" ? small.pixels : encode_jpeg(small, s.quality);
  e.ok = true;
  return e;
}

// Images [base, base + count) of `set` encoded by `threads` threads into slots[0, count).
void encode_chunk(const Dataset& set, int64_t base, int64_t count, int threads,
                  const PackJobOptions& s, std::vector<Encoded>& slots) {
  std::atomic<int64_t> next{0};
  std::vector<std::thread> pool;
  std::exception_ptr error;
  std::mutex error_mutex;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int64_t i = next++; i < count; i = next++) {
        try {
          slots[static_cast<size_t>(i)] = encode(set, base + i, s);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// Images [first, size) of `set` encoded a chunk at a time and handed in order to `write`; an
// unreadable one is skipped, named on stderr and counted in `bad`. `after_chunk(done)` follows
// each chunk. Returns how far it got: set.size(), or less when stopped.
int64_t encode_in_order(const Dataset& set, int64_t first, const PackJobOptions& s,
                        const std::atomic<int>* stop, int64_t& bad,
                        const std::function<void(int64_t, const Encoded&)>& write,
                        const std::function<void(int64_t)>& after_chunk) {
  const int threads = s.threads > 0
                          ? s.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t n = set.size();
  const int64_t chunk = int64_t{threads} * 8;  // images decoded in parallel, then written in order
  std::vector<Encoded> slots(static_cast<size_t>(chunk));
  for (int64_t base = first; base < n; base += chunk) {
    const int64_t count = std::min(chunk, n - base);
    encode_chunk(set, base, count, threads, s, slots);
    for (int64_t i = 0; i < count; ++i) {
      auto& e = slots[static_cast<size_t>(i)];
      if (e.ok) {
        write(base + i, e);
      } else {
        ++bad;
        std::fprintf(stderr, "ocl_pack: skipped unreadable image %lld (%s): %s\n",
                     static_cast<long long>(base + i), e.bad.path.c_str(), e.bad.reason.c_str());
      }
      e = Encoded{};
    }
    const int64_t done = base + count;
    after_chunk(done);
    const bool stop_now = (stop != nullptr && stop->load() != 0) ||
                          (s.stop_after > 0 && done - first >= s.stop_after);
    if (stop_now && done < n) return done;
  }
  return n;
}

// The split's output folder made ready: --overwrite clears a pack there, an interrupted pack
// needs --resume, a finished one --overwrite.
void prepare_folder(const PackJobOptions& s, const std::string& folder) {
  if (s.overwrite && fs::exists(folder)) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      const auto name = entry.path().filename().string();
      if (name == "index.ocl" || name == "progress.ocl" || name.rfind("shard-", 0) == 0)
        fs::remove(entry.path());
    }
  }
  if (!s.resume && fs::exists(pack_progress_path(folder)))
    throw std::runtime_error("'" + folder +
                             "' holds an interrupted pack: add --resume to continue it, or "
                             "--overwrite to start again");
  if (fs::exists(pack_index_path(folder)))
    throw std::runtime_error("'" + folder +
                             "' already holds a finished pack: add --overwrite to replace it");
}

PackWriterOptions writer_options(const PackJobOptions& s, const std::string& split) {
  PackWriterOptions o;
  o.encoding = s.encoding == "raw" ? PackEncoding::Raw : PackEncoding::Jpeg;
  o.max_shard_bytes = static_cast<uint64_t>(s.shard_mb * (1 << 20));
  o.description = "from=" + s.from + " source=" + fs::absolute(s.source).string() +
                  " split=" + split + " short_side=" + std::to_string(s.short_side) +
                  " encoding=" + s.encoding +
                  (s.encoding == "jpeg" ? " quality=" + std::to_string(s.quality) : "");
  return o;
}

std::string short_side_text(const PackJobOptions& s) {
  return s.short_side > 0 ? "<= " + std::to_string(s.short_side) : "as is";
}

// WebDataset shard `n` of a split.
std::string shard_path(const PackJobOptions& s, const std::string& split, int64_t n) {
  char name[32];
  std::snprintf(name, sizeof(name), "-%06lld.tar", static_cast<long long>(n));
  return (fs::path(s.output) / (split + name)).string();
}

// The output folder made ready for a split's shards: earlier ones (and their indexes) are
// refused, or removed with --overwrite.
void prepare_shard_folder(const PackJobOptions& s, const std::string& split) {
  io::make_dirs(s.output);
  const std::string prefix = split + "-";
  for (const auto& name : io::list_dir(s.output)) {
    const bool shard_file = name.rfind(prefix, 0) == 0 &&
                            (name.size() > 4 && (name.compare(name.size() - 4, 4, ".tar") == 0 ||
                                                 name.find(".tar.ocl-index") != std::string::npos));
    if (!shard_file) continue;
    if (!s.overwrite)
      throw std::runtime_error("'" + s.output + "' already holds " + split + " shards (" + name +
                               "): add --overwrite to replace them");
    fs::remove(fs::path(s.output) / name);
  }
}

// sizes.json beside the shards (OpenCLIP's file: shard file name → samples), which streamed
// shards take their epoch's length from (data/streaming.h): the split's entries replaced.
void write_sizes(const PackJobOptions& s, const std::string& split,
                 const std::vector<int64_t>& counts) {
  const std::string path = (fs::path(s.output) / "sizes.json").string();
  nlohmann::json sizes = nlohmann::json::object();
  if (fs::exists(path)) {
    try {
      sizes = nlohmann::json::parse(io::read_text_file(path));
    } catch (const nlohmann::json::exception&) {
      sizes = nlohmann::json::object();  // not ours: written anew
    }
  }
  for (auto it = sizes.begin(); it != sizes.end();)
    it = it.key().rfind(split + "-", 0) == 0 ? sizes.erase(it) : std::next(it);
  for (size_t n = 0; n < counts.size(); ++n)
    sizes[fs::path(shard_path(s, split, static_cast<int64_t>(n))).filename().string()] = counts[n];
  io::write_text_atomic(path, sizes.dump(1) + "\n");
}

// Writes one split as WebDataset shards; returns false when stopped.
bool write_shards(const PackJobOptions& s, const std::string& split, const std::atomic<int>* stop) {
  const auto set = open_source(s, split);
  prepare_shard_folder(s, split);
  const int64_t n = set->size();
  std::printf("%s: %lld images, %lld classes -> %s (webdataset, jpeg q%d, shorter side %s)\n",
              split.c_str(), static_cast<long long>(n), static_cast<long long>(set->num_classes()),
              shard_path(s, split, 0).c_str(), s.quality, short_side_text(s).c_str());
  std::fflush(stdout);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  TarBuilder tar(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  const uint64_t shard_bytes = static_cast<uint64_t>(s.shard_mb * (1 << 20));
  int64_t shards = 0, bad = 0;
  std::vector<int64_t> counts;  // samples per shard
  auto close_shard = [&] {
    if (tar.members() == 0) return;
    counts.push_back(static_cast<int64_t>(tar.members() / 2));  // a .jpg and a .cls each
    io::write_file_atomic(shard_path(s, split, shards++), tar.finish());
  };
  auto write = [&](int64_t index, const Encoded& e) {
    char key[24];
    std::snprintf(key, sizeof(key), "%08lld", static_cast<long long>(index));
    const std::string label = std::to_string(set->label(index));
    tar.add(std::string(key) + ".jpg", e.bytes.data(), e.bytes.size());
    tar.add(std::string(key) + ".cls", reinterpret_cast<const uint8_t*>(label.data()),
            label.size());
    if (tar.size() >= shard_bytes) close_shard();
  };
  const int64_t done = encode_in_order(*set, 0, s, stop, bad, write, [](int64_t) {});
  close_shard();
  if (done < n) {
    std::fprintf(stderr,
                 "ocl_pack: stopped after %lld of %lld %s images; the %lld shards written are "
                 "whole; rerun with --overwrite to write them all\n",
                 static_cast<long long>(done), static_cast<long long>(n), split.c_str(),
                 static_cast<long long>(shards));
    return false;
  }
  if (shards == 0) throw std::runtime_error(split + ": no readable image to write");
  write_sizes(s, split, counts);

  // The written shards opened as data.dataset webdataset reads them, and their pattern printed.
  char last[24];
  std::snprintf(last, sizeof(last), "%06lld", static_cast<long long>(shards - 1));
  const std::string pattern =
      (fs::path(s.output) / (split + "-{000000.." + last + "}.tar")).string();
  WebDatasetOptions o;
  o.progress = false;
  WebDataset check(pattern, o);
  std::printf("%s: done: %s; %lld unreadable images skipped\n%s: data.path %s\n", split.c_str(),
              check.describe().c_str(), static_cast<long long>(bad), split.c_str(),
              pattern.c_str());
  std::fflush(stdout);
  return true;
}

// Packs one split; returns false when stopped.
bool pack_split(const PackJobOptions& s, const std::string& split, const std::atomic<int>* stop) {
  const auto set = open_source(s, split);
  const std::string folder = (fs::path(s.output) / split).string();
  prepare_folder(s, folder);
  PackWriter writer(folder, set->class_names(), writer_options(s, split), s.resume);
  const int64_t n = set->size();
  const int64_t first = writer.next_source();
  std::printf("%s: %lld images, %lld classes -> %s (%s%s, shorter side %s)%s\n", split.c_str(),
              static_cast<long long>(n), static_cast<long long>(set->num_classes()), folder.c_str(),
              s.encoding.c_str(),
              s.encoding == "jpeg" ? (" q" + std::to_string(s.quality)).c_str() : "",
              short_side_text(s).c_str(),
              first > 0 ? (", resuming at image " + std::to_string(first)).c_str() : "");
  std::fflush(stdout);

  const auto start = Clock::now();
  auto last_report = start;
  auto report = [&](int64_t done) {
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_report).count() < 2.0 && done != n) return;
    const double seconds = std::chrono::duration<double>(now - start).count();
    const double rate = static_cast<double>(done - first) / std::max(seconds, 1e-9);
    std::printf("%s: %lld / %lld images, %.0f img/s, ETA %s\n", split.c_str(),
                static_cast<long long>(done), static_cast<long long>(n), rate,
                io::format_duration(static_cast<double>(n - done) / std::max(rate, 1e-9)).c_str());
    std::fflush(stdout);
    last_report = now;
  };
  auto write = [&](int64_t index, const Encoded& e) {
    writer.add(e.bytes.data(), e.bytes.size(), static_cast<int32_t>(set->label(index)), e.height,
               e.width, index);
  };
  int64_t bad = 0;
  const int64_t done = encode_in_order(*set, first, s, stop, bad, write, report);
  if (done < n) {
    writer.flush();
    std::fprintf(stderr,
                 "ocl_pack: stopped after %lld of %lld %s images; rerun with --resume to "
                 "continue\n",
                 static_cast<long long>(done), static_cast<long long>(n), split.c_str());
    return false;
  }
  writer.finish();
  PackedDataset check(folder);
  std::printf("%s: done: %s; %lld unreadable images skipped (this run)\n", split.c_str(),
              check.describe().c_str(), static_cast<long long>(bad));
  std::fflush(stdout);
  return true;
}

}  // namespace

bool run_pack_job(const PackJobOptions& options, const std::atomic<int>* stop) {
  for (const auto& split : options.splits) {
    const bool finished = options.format == "webdataset" ? write_shards(options, split, stop)
                                                         : pack_split(options, split, stop);
    if (!finished) return false;
  }
  return true;
}

}  // namespace ocl::data
