// ocl_pack: converts a data set into packed shards (include/ocl/data/packed.h, memory-mapped by
// `data.dataset: packed`) or, with --format webdataset, WebDataset tar shards (data/tar_writer.h).
//
//   ocl_pack --source /data/imagenet --output /data/imagenet-pack             (train/ and val/)
//   ocl_pack --source /data/imagenet --output /data/in-raw --encoding raw --short-side 160
//   ocl_pack --source /data/cifar10 --from cifar10 --output /data/cifar10-pack --short-side 0
//   ocl_pack ... --resume                          (continue an interrupted run)
//   ocl_pack --source /data/imagenet --output /data/in-wds --format webdataset --shard-mb 512
//
// Images are shrunk to --short-side and stored as JPEG or raw RGB in the source's order;
// unreadable ones are skipped and named. A signal closes the open shard first, so that --resume
// loses nothing; nothing is overwritten without --overwrite. docs/pretraining.md says more.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "app_common.h"
#include <CLI/CLI.hpp>

#include <ocl/data/cifar.h>
#include <ocl/data/image_folder.h>
#include <ocl/data/packed.h>
#include <ocl/data/tar_writer.h>
#include <ocl/data/webdataset.h>
#include <ocl/io/console.h>
#include <ocl/io/files.h>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct PackSettings {
  std::string source, output, from = "imagefolder", encoding = "jpeg", format = "packed";
  std::vector<std::string> splits = {"train", "val"};
  int short_side = 256, quality = 90, threads = 0;
  int64_t stop_after = 0;  // testing: stop as if signalled after this many images
  double shard_mb = 1024;
  bool resume = false, overwrite = false;
};

std::shared_ptr<const ocl::data::Dataset> open_source(const PackSettings& s,
                                                      const std::string& split) {
  if (s.from == "imagefolder") {
    const fs::path root = fs::path(s.source) / split;
    if (!fs::is_directory(root))
      throw std::runtime_error("--source: no folder " + root.string() + " (expected <source>/" +
                               split + "/<class>/<image>)");
    ocl::data::ImageFolderOptions o;
    o.use_cache = false;  // one pass: a cache would only be written
    return std::make_shared<ocl::data::ImageFolderDataset>(root.string(), o);
  }
  if (split != "train" && split != "val")
    throw std::runtime_error("--split " + split + ": CIFAR has train and val (test) only");
  return std::make_shared<ocl::data::CifarDataset>(
      s.source,
      s.from == "cifar10" ? ocl::data::CifarVariant::Cifar10 : ocl::data::CifarVariant::Cifar100,
      split == "train");
}

// The payload of one source image: shrunk and encoded, or nothing when it cannot be read.
struct Encoded {
  std::vector<uint8_t> bytes;
  int height = 0, width = 0;
  bool ok = false;
  ocl::data::BadSample bad;
};

Encoded encode(const ocl::data::Dataset& set, int64_t index, const PackSettings& s) {
  Encoded e;
  auto image = set.load(index, &e.bad);
  if (!image) return e;
  const auto small =
      ocl::data::shrink_to_short_side(*image, s.short_side, ocl::data::Interpolation::Area);
  e.height = small.height;
  e.width = small.width;
  e.bytes = s.encoding == "raw" ? small.pixels : ocl::data::encode_jpeg(small, s.quality);
  e.ok = true;
  return e;
}

// The split's output folder made ready: --overwrite clears a pack there, an interrupted pack
// needs --resume, a finished one --overwrite.
void prepare_folder(const PackSettings& s, const std::string& folder) {
  if (s.overwrite && fs::exists(folder)) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      const auto name = entry.path().filename().string();
      if (name == "index.ocl" || name == "progress.ocl" || name.rfind("shard-", 0) == 0)
        fs::remove(entry.path());
    }
  }
  if (!s.resume && fs::exists(ocl::data::pack_progress_path(folder)))
    throw std::runtime_error("'" + folder +
                             "' holds an interrupted pack: add --resume to continue it, or "
                             "--overwrite to start again");
  if (fs::exists(ocl::data::pack_index_path(folder)))
    throw std::runtime_error("'" + folder +
                             "' already holds a finished pack: add --overwrite to replace it");
}

ocl::data::PackWriterOptions writer_options(const PackSettings& s, const std::string& split) {
  ocl::data::PackWriterOptions o;
  o.encoding = s.encoding == "raw" ? ocl::data::PackEncoding::Raw : ocl::data::PackEncoding::Jpeg;
  o.max_shard_bytes = static_cast<uint64_t>(s.shard_mb * (1 << 20));
  o.description = "from=" + s.from + " source=" + fs::absolute(s.source).string() +
                  " split=" + split + " short_side=" + std::to_string(s.short_side) +
                  " encoding=" + s.encoding +
                  (s.encoding == "jpeg" ? " quality=" + std::to_string(s.quality) : "");
  return o;
}

// Images [base, base + count) of `set` encoded by `threads` threads into slots[0, count).
void encode_chunk(const ocl::data::Dataset& set, int64_t base, int64_t count, int threads,
                  const PackSettings& s, std::vector<Encoded>& slots) {
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

// The encoded slots written in order (an unreadable image is skipped and named); returns how
// many were skipped.
int64_t write_chunk(const ocl::data::Dataset& set, int64_t base, int64_t count,
                    std::vector<Encoded>& slots, ocl::data::PackWriter& writer) {
  int64_t bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    auto& e = slots[static_cast<size_t>(i)];
    if (e.ok) {
      writer.add(e.bytes.data(), e.bytes.size(), static_cast<int32_t>(set.label(base + i)),
                 e.height, e.width, base + i);
    } else {
      ++bad;
      std::fprintf(stderr, "ocl_pack: skipped unreadable image %lld (%s): %s\n",
                   static_cast<long long>(base + i), e.bad.path.c_str(), e.bad.reason.c_str());
    }
    e = Encoded{};
  }
  return bad;
}

// WebDataset shard `n` of a split.
std::string shard_path(const PackSettings& s, const std::string& split, int64_t n) {
  char name[32];
  std::snprintf(name, sizeof(name), "-%06lld.tar", static_cast<long long>(n));
  return (fs::path(s.output) / (split + name)).string();
}

// The output folder made ready for a split's shards: earlier ones (and their indexes) are
// refused, or removed with --overwrite.
void prepare_shard_folder(const PackSettings& s, const std::string& split) {
  ocl::io::make_dirs(s.output);
  const std::string prefix = split + "-";
  for (const auto& name : ocl::io::list_dir(s.output)) {
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

// The written shards opened as data.dataset webdataset reads them, and their pattern printed.
void report_shards(const PackSettings& s, const std::string& split, int64_t shards, int64_t bad) {
  char last[24];
  std::snprintf(last, sizeof(last), "%06lld", static_cast<long long>(shards - 1));
  const std::string pattern =
      (fs::path(s.output) / (split + "-{000000.." + last + "}.tar")).string();
  ocl::data::WebDatasetOptions o;
  o.progress = false;
  ocl::data::WebDataset check(pattern, o);
  std::printf("%s: done: %s; %lld unreadable images skipped\n%s: data.path %s\n", split.c_str(),
              check.describe().c_str(), static_cast<long long>(bad), split.c_str(),
              pattern.c_str());
  std::fflush(stdout);
}

// Writes one split as WebDataset shards; returns false when stopped by a signal.
bool write_shards(const PackSettings& s, const std::string& split, const std::atomic<int>* stop) {
  const auto set = open_source(s, split);
  prepare_shard_folder(s, split);
  const int64_t n = set->size();
  const int threads = s.threads > 0
                          ? s.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const uint64_t shard_bytes = static_cast<uint64_t>(s.shard_mb * (1 << 20));
  std::printf("%s: %lld images, %lld classes -> %s (webdataset, jpeg q%d, shorter side %s)\n",
              split.c_str(), static_cast<long long>(n), static_cast<long long>(set->num_classes()),
              shard_path(s, split, 0).c_str(), s.quality,
              s.short_side > 0 ? ("<= " + std::to_string(s.short_side)).c_str() : "as is");
  std::fflush(stdout);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  ocl::data::TarBuilder tar(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  int64_t shards = 0, bad = 0;
  auto close_shard = [&] {
    if (tar.members() == 0) return;
    ocl::io::write_file_atomic(shard_path(s, split, shards++), tar.finish());
  };
  const int64_t chunk = int64_t{threads} * 8;
  std::vector<Encoded> slots(static_cast<size_t>(chunk));
  for (int64_t base = 0; base < n; base += chunk) {
    const int64_t count = std::min(chunk, n - base);
    encode_chunk(*set, base, count, threads, s, slots);
    for (int64_t i = 0; i < count; ++i) {
      auto& e = slots[static_cast<size_t>(i)];
      if (!e.ok) {
        ++bad;
        std::fprintf(stderr, "ocl_pack: skipped unreadable image %lld (%s): %s\n",
                     static_cast<long long>(base + i), e.bad.path.c_str(), e.bad.reason.c_str());
        continue;
      }
      char key[24];
      std::snprintf(key, sizeof(key), "%08lld", static_cast<long long>(base + i));
      const std::string label = std::to_string(set->label(base + i));
      tar.add(std::string(key) + ".jpg", e.bytes.data(), e.bytes.size());
      tar.add(std::string(key) + ".cls", reinterpret_cast<const uint8_t*>(label.data()),
              label.size());
      e = Encoded{};
      if (tar.size() >= shard_bytes) close_shard();
    }
    const int64_t done = base + count;
    const bool stop_now =
        (stop != nullptr && stop->load() != 0) || (s.stop_after > 0 && done >= s.stop_after);
    if (stop_now && done < n) {
      close_shard();
      std::fprintf(stderr,
                   "ocl_pack: stopped after %lld of %lld %s images; the %lld shards written are "
                   "whole; rerun with --overwrite to write them all\n",
                   static_cast<long long>(done), static_cast<long long>(n), split.c_str(),
                   static_cast<long long>(shards));
      return false;
    }
  }
  close_shard();
  if (shards == 0) throw std::runtime_error(split + ": no readable image to write");
  report_shards(s, split, shards, bad);
  return true;
}

// Packs one split; returns false when stopped by a signal.
bool pack_split(const PackSettings& s, const std::string& split, const std::atomic<int>* stop) {
  const auto set = open_source(s, split);
  const std::string folder = (fs::path(s.output) / split).string();
  prepare_folder(s, folder);
  ocl::data::PackWriter writer(folder, set->class_names(), writer_options(s, split), s.resume);
  const int64_t n = set->size();
  const int64_t first = writer.next_source();
  const int threads = s.threads > 0
                          ? s.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::printf("%s: %lld images, %lld classes -> %s (%s%s, shorter side %s)%s\n", split.c_str(),
              static_cast<long long>(n), static_cast<long long>(set->num_classes()), folder.c_str(),
              s.encoding.c_str(),
              s.encoding == "jpeg" ? (" q" + std::to_string(s.quality)).c_str() : "",
              s.short_side > 0 ? ("<= " + std::to_string(s.short_side)).c_str() : "as is",
              first > 0 ? (", resuming at image " + std::to_string(first)).c_str() : "");
  std::fflush(stdout);

  const int64_t chunk = int64_t{threads} * 8;  // images decoded in parallel, then written in order
  std::vector<Encoded> slots(static_cast<size_t>(chunk));
  int64_t bad = 0, done = first;
  const auto start = Clock::now();
  auto last_report = start;
  for (int64_t base = first; base < n; base += chunk) {
    const int64_t count = std::min(chunk, n - base);
    encode_chunk(*set, base, count, threads, s, slots);
    bad += write_chunk(*set, base, count, slots, writer);
    done = base + count;
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_report).count() >= 2.0 || done == n) {
      const double seconds = std::chrono::duration<double>(now - start).count();
      const double rate = static_cast<double>(done - first) / std::max(seconds, 1e-9);
      std::printf(
          "%s: %lld / %lld images, %.0f img/s, ETA %s\n", split.c_str(),
          static_cast<long long>(done), static_cast<long long>(n), rate,
          ocl::io::format_duration(static_cast<double>(n - done) / std::max(rate, 1e-9)).c_str());
      std::fflush(stdout);
      last_report = now;
    }
    const bool stop_now = (stop != nullptr && stop->load() != 0) ||
                          (s.stop_after > 0 && done - first >= s.stop_after);
    if (stop_now && done < n) {
      writer.flush();
      std::fprintf(stderr,
                   "ocl_pack: stopped after %lld of %lld %s images; rerun with --resume to "
                   "continue\n",
                   static_cast<long long>(done), static_cast<long long>(n), split.c_str());
      return false;
    }
  }
  writer.finish();
  ocl::data::PackedDataset check(folder);
  std::printf("%s: done: %s; %lld unreadable images skipped (this run)\n", split.c_str(),
              check.describe().c_str(), static_cast<long long>(bad));
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ocl_pack: packs a data set into memory-mappable shards (data.dataset: packed)"};
  PackSettings s;
  app.add_option("--source", s.source,
                 "the data set: an ImageFolder root (train/, val/) or a "
                 "CIFAR folder")
      ->required();
  app.add_option("--output", s.output, "the pack folder (one sub-folder per split)")->required();
  app.add_option("--from", s.from, "the source's layout")
      ->check(CLI::IsMember({"imagefolder", "cifar10", "cifar100"}));
  app.add_option("--split", s.splits, "splits to pack (repeatable; default train and val)");
  app.add_option("--short-side", s.short_side,
                 "shrink so the shorter side is at most this (0: keep the size)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--encoding", s.encoding, "jpeg or raw (uint8 RGB)")
      ->check(CLI::IsMember({"jpeg", "raw"}));
  app.add_option("--quality", s.quality, "JPEG quality")->check(CLI::Range(1, 100));
  app.add_option("--shard-mb", s.shard_mb, "largest shard in MiB")->check(ocl::apps::at_least(1));
  app.add_option("--threads", s.threads, "decoding threads (0: one per core)")
      ->check(ocl::apps::at_least(0));
  app.add_flag("--resume", s.resume, "continue an interrupted pack");
  app.add_option("--stop-after-images", s.stop_after,
                 "stop as if interrupted after about this many images (testing)")
      ->check(ocl::apps::at_least(0));
  app.add_flag("--overwrite", s.overwrite, "replace an existing pack");
  app.add_option("--format", s.format, "packed (data.dataset: packed) or webdataset (tar shards)")
      ->check(CLI::IsMember({"packed", "webdataset"}));
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;
  if (s.resume && s.overwrite) {
    std::fprintf(stderr, "ocl_pack: --resume and --overwrite exclude each other\n");
    return 2;
  }
  if (s.format == "webdataset" && (s.resume || s.encoding == "raw")) {
    std::fprintf(stderr, "ocl_pack: --format webdataset writes JPEG shards whole: %s\n",
                 s.resume ? "--resume is the packed format's (rerun with --overwrite)"
                          : "--encoding raw is the packed format's");
    return 2;
  }
  return ocl::apps::run_reporting_errors("ocl_pack", [&] {
    const auto* stop = ocl::apps::install_stop_handlers("ocl_pack");
    for (const auto& split : s.splits) {
      const bool finished =
          s.format == "webdataset" ? write_shards(s, split, stop) : pack_split(s, split, stop);
      if (!finished) return 0;
    }
    return 0;
  });
}
