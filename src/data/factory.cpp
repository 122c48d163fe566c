// The data set and transform a run's DataConfig names, for its train and held-out splits.
#include "ocl/data/factory.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

#include "ocl/data/cifar.h"
#include "ocl/data/image_folder.h"
#include "ocl/data/packed.h"
#include "ocl/data/photometric.h"
#include "ocl/data/synthetic.h"
#include "ocl/data/webdataset.h"
#include "ocl/io/files.h"

namespace ocl::data {
namespace fs = std::filesystem;
namespace {

ShardStreamOptions stream_options(const io::DataConfig& config) {
  ShardStreamOptions o;
  o.timeout_s = config.stream_timeout_s;
  return o;
}

// Streamed shards copied whole, in order, into a shard cache (written under a temporary name and
// renamed, so that a copy is never part of a shard) until they hold `max_samples` samples. A copy
// that is there already (an earlier run's) is read again, not fetched: evaluation reads its
// samples at random and several times, which a stream cannot give.
std::vector<std::string> copy_shards(const std::vector<std::string>& shards,
                                     const io::DataConfig& config, int64_t max_samples) {
  const std::string folder =
      (fs::path(config.cache_dir.empty() ? fs::temp_directory_path().string() : config.cache_dir) /
       "ocl-streamed-shards")
          .string();
  io::make_dirs(folder);
  std::vector<std::string> copies;
  int64_t samples = 0;
  for (const auto& shard : shards) {
    char tag[24];
    std::snprintf(tag, sizeof(tag), "%016zx-", std::hash<std::string>{}(shard));
    const std::string name = shard_file_name(shard);
    const std::string copy = folder + "/" + tag + (name.empty() ? "shard.tar" : name);
    // Named by process: the ranks of a node may fill one cache at once.
    const std::string part = copy + ".part-" + std::to_string(::getpid());
    for (int64_t attempt = 0; !fs::exists(copy); ++attempt) {
      try {
        const auto stream = open_shard_stream(shard, stream_options(config));
        {
          std::ofstream out(part, std::ios::binary | std::ios::trunc);
          std::vector<uint8_t> chunk(size_t{1} << 20);
          while (const size_t n = stream->read(chunk.data(), chunk.size()))
            out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(n));
          if (!out.flush()) throw std::runtime_error("cannot write " + part);
        }
        fs::rename(part, copy);
      } catch (const std::exception& e) {  // no part-copy left behind (a full disk, a fault)
        std::error_code ignored;
        fs::remove(part, ignored);
        if (!dynamic_cast<const StreamError*>(&e) || attempt >= config.stream_retries) throw;
        std::this_thread::sleep_for(
            std::chrono::milliseconds(250 << std::min<int64_t>(attempt, 6)));
      }
    }
    copies.push_back(copy);
    WebDatasetOptions o;
    o.progress = false;
    samples += WebDataset(copy, o).size();
    if (max_samples > 0 && samples >= max_samples) break;
  }
  return copies;
}

}  // namespace

bool is_streamed(const io::DataConfig& config) {
  return config.dataset == "webdataset" &&
         (config.read == "stream" || is_remote_shard(config.path));
}

std::unique_ptr<StreamingLoader> make_streaming_loader(const io::DataConfig& config,
                                                       std::shared_ptr<const Transform> transform,
                                                       const LoaderOptions& options,
                                                       std::string* source) {
  set_max_image_pixels(config.max_image_pixels);
  try {
    auto shards = expand_shard_spec(config.path);
    StreamingOptions o;
    o.loader = options;
    o.shuffle_buffer = config.shuffle_buffer;
    o.retries = config.stream_retries;
    o.stream = stream_options(config);
    o.samples_per_epoch = config.samples_per_epoch;
    std::string where;
    if (o.samples_per_epoch > 0) {
      *source = "data.samples_per_epoch";
    } else if ((o.samples_per_epoch = count_samples(shards, o.stream, &where)) > 0) {
      *source = where;
    } else {
      throw std::runtime_error(
          "streamed shards have no index to count their samples: set data.samples_per_epoch, or "
          "put a sizes.json ({\"<shard>.tar\": <samples>, ...}, as ocl_pack --format webdataset "
          "writes it) beside the shards");
    }
    return std::make_unique<StreamingLoader>(std::move(shards), std::move(transform), o);
  } catch (const std::exception& e) {
    throw std::runtime_error("data.path = '" + redact(config.path) + "': " + e.what());
  }
}

std::shared_ptr<const Dataset> make_dataset(const io::DataConfig& config, int image_size,
                                            bool train, uint64_t seed, int64_t max_samples) {
  set_max_image_pixels(config.max_image_pixels);
  if (config.dataset == "synthetic") {
    SyntheticOptions o;
    o.size = train ? config.synthetic_train_size : config.synthetic_val_size;
    o.num_classes = config.synthetic_classes;
    o.image_size = image_size;
    o.seed = seed;
    o.train = train;
    o.colours = parse_synthetic_colours(config.synthetic_colours);
    o.noise = config.synthetic_noise;
    o.gradient = config.synthetic_gradient;
    o.strokes = static_cast<int>(config.synthetic_strokes);
    return std::make_shared<SyntheticDataset>(o);
  }
  const bool folder = config.dataset == "imagefolder";
  const bool packed = config.dataset == "packed";
  if (config.dataset == "webdataset") {
    const std::string& spec = train ? config.path : config.val_path;
    const char* key = train ? "data.path" : "data.val_path";
    if (spec.empty()) {
      throw std::runtime_error(std::string(key) + ": must name the " +
                               (train ? "training" : "held-out") +
                               " shards for data.dataset webdataset (a pattern such as "
                               "/data/val-{000000..000063}.tar, or a list file)" +
                               (train ? ""
                                      : "; the evaluation classifies them (give the "
                                        "training shards again if there are none)"));
    }
    WebDatasetOptions o;
    o.cache_dir = config.cache_dir;
    try {
      const auto shards = expand_shard_spec(spec);
      if (!is_remote_shard(shards[0])) return std::make_shared<WebDataset>(spec, o);
      std::string list;
      for (const auto& c : copy_shards(shards, config, max_samples)) list += c + "\n";
      const std::string list_file = fs::path(list.substr(0, list.find('\n'))).string() + ".list";
      io::write_text_atomic(list_file, list);
      return std::make_shared<WebDataset>(list_file, o);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string(key) + " = '" + redact(spec) + "': " + e.what());
    }
  }
  if (!folder && !packed && config.dataset != "cifar10" && config.dataset != "cifar100") {
    throw std::invalid_argument(
        "data.dataset: expected synthetic | imagefolder | packed | webdataset | cifar10 | "
        "cifar100, got '" +
        config.dataset + "'");
  }
  if (config.path.empty()) {
    throw std::runtime_error("data.path: must name the " + config.dataset + " folder");
  }
  // The library's messages name the file; this adds which setting pointed there.
  try {
    if (packed) {
      // ocl_pack writes <out>/train and <out>/val.
      return std::make_shared<PackedDataset>(
          (fs::path(config.path) / (train ? "train" : "val")).string());
    }
    if (folder) {
      const std::string split = train ? "train" : "val";
      const fs::path root = fs::path(config.path) / split;
      std::error_code ec;
      if (!fs::is_directory(root, ec)) {
        throw std::runtime_error("no folder " + root.string() +
                                 " (expected <path>/train/<class>/"
                                 "<image> and <path>/val/<class>/<image>)");
      }
      ImageFolderOptions o;
      // Beside the split folders, not inside them, so that the cache is not mistaken for data
      // and one folder holds both splits' lists.
      const std::string name = ".ocl-filelist-" + split + ".txt";
      o.cache_path =
          ((config.cache_dir.empty() ? fs::path(config.path) : fs::path(config.cache_dir)) / name)
              .string();
      return std::make_shared<ImageFolderDataset>(root.string(), o);
    }
    return std::make_shared<CifarDataset>(
        config.path, config.dataset == "cifar10" ? CifarVariant::Cifar10 : CifarVariant::Cifar100,
        train);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("data.path = '" + config.path + "': " + e.what());
  }
}

void require_same_classes(const Dataset& train, const Dataset& val) {
  const auto& a = train.class_names();
  const auto& b = val.class_names();
  if (a == b) return;
  // At most eight names a side: a message, not a listing of every class.
  auto only = [](const std::vector<std::string>& x, const std::vector<std::string>& y) {
    const std::set<std::string> other(y.begin(), y.end());
    std::string names;
    int64_t count = 0;
    for (const auto& c : x) {
      if (other.count(c)) continue;
      if (++count <= 8) names += (names.empty() ? "'" : ", '") + c.substr(0, 64) + "'";
    }
    if (count > 8) names += " and " + std::to_string(count - 8) + " more";
    return names.empty() ? std::string("none") : names;
  };
  throw std::runtime_error("the training and validation splits have different classes (" +
                           std::to_string(a.size()) + " and " + std::to_string(b.size()) +
                           "): only in training " + only(a, b) + "; only in validation " +
                           only(b, a) + "; every label after a missing class would shift (" +
                           train.describe() + "; " + val.describe() + ")");
}

std::shared_ptr<const Transform> make_transform(const io::DataConfig& config, int image_size,
                                                bool train) {
  if (config.augment != "rrc_flip" && config.augment != "none") {
    throw std::invalid_argument("data.augment: expected rrc_flip | none, got '" + config.augment +
                                "'");
  }
  const Interpolation interpolation = parse_interpolation(config.interpolation);
  if (train && config.augment == "rrc_flip") {
    RandomResizedCropOptions o;
    o.size = image_size;
    o.scale_min = config.crop_scale_min;
    o.scale_max = config.crop_scale_max;
    o.ratio_min = config.crop_ratio_min;
    o.ratio_max = config.crop_ratio_max;
    o.interpolation = interpolation;
    o.hflip = config.hflip;
    o.decode = parse_region_decode(config.decode);
    return random_resized_crop(o);
  }
  return resize_center_crop(image_size, 0, interpolation);
}

std::shared_ptr<const Transform> make_pretrain_transform(const io::DataConfig& config,
                                                         int image_size, int views) {
  auto base = make_transform(config, image_size, /*train=*/true);
  if (config.photometric == "none" && config.illumination == 0 && config.noise == 0 &&
      config.blur == 0)
    return base;
  auto pipelines = photometric_preset(config.photometric, views, image_size);
  for (auto& p : pipelines) {
    p.illumination_prob = config.illumination > 0 ? 1.0 : 0.0;
    p.illumination_strength = config.illumination;
    p.noise_prob = config.noise > 0 ? 1.0 : 0.0;
    p.noise_sigma_max = config.noise;
    if (config.blur > 0) {  // presets that blur are refused with it (io/config.cpp)
      p.blur_prob = 1.0;
      p.blur_sigma_min = std::min(0.1, config.blur);
      p.blur_sigma_max = config.blur;
      p.blur_kernel = 2 * static_cast<int>(std::ceil(3 * config.blur)) + 1;
    }
  }
  return with_photometric(std::move(base), std::move(pipelines));
}

}  // namespace ocl::data
