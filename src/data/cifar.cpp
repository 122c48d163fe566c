// CIFAR-10/100 binary batches read whole into memory (60 000 records of 3 KiB: 180 MiB at
// most), pixels kept as stored (R, G, B planes) and interleaved to HWC on load.
#include "ocl/data/cifar.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace ocl::data {
namespace fs = std::filesystem;
namespace {

constexpr int kSide = 32;
constexpr size_t kPlane = kSide * kSide;
constexpr size_t kPixels = 3 * kPlane;

const char* const kCifar10Names[] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                     "dog",      "frog",       "horse", "ship", "truck"};

// One non-empty name per line (the files end in blank lines; some have Windows line ends).
std::vector<std::string> read_names(const fs::path& path) {
  std::vector<std::string> names;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

}  // namespace

CifarDataset::CifarDataset(const std::string& dir, CifarVariant variant, bool train)
    : dir_(dir), variant_(variant), train_(train) {
  const bool c10 = variant == CifarVariant::Cifar10;
  std::vector<std::string> files{c10 ? "test_batch.bin" : train ? "train.bin" : "test.bin"};
  if (c10 && train)
    files = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
             "data_batch_5.bin"};
  // The archives unpack into a sub-folder; accept the folder above it too.
  fs::path base(dir);
  const fs::path nested = base / (c10 ? "cifar-10-batches-bin" : "cifar-100-binary");
  std::error_code ec;
  if (!fs::exists(base / files[0], ec) && fs::exists(nested / files[0], ec)) base = nested;
  dir_ = base.string();

  const size_t label_bytes = c10 ? 1 : 2;
  const size_t record = label_bytes + kPixels;
  const int64_t num_classes = c10 ? 10 : 100;
  for (const auto& name : files) {
    const fs::path path = base / name;
    std::ifstream in(path, std::ios::binary);
    if (!in)
      throw std::runtime_error("CIFAR: cannot open " + path.string() + " (expected the " +
                               (c10 ? "CIFAR-10" : "CIFAR-100") + " binary version)");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    if (bytes.empty() || bytes.size() % record != 0)
      throw std::runtime_error(fmt::format(
          "CIFAR: {} holds {} bytes, not a whole number of {}-byte records (truncated?)",
          path.string(), bytes.size(), record));
    const size_t n = bytes.size() / record;
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* r = bytes.data() + i * record;
      const int32_t label = r[label_bytes - 1];  // CIFAR-100: (coarse, fine), the fine one
      if (label >= num_classes)
        throw std::runtime_error(fmt::format("CIFAR: {} record {} has label {}, expected < {}",
                                             path.string(), i, label, num_classes));
      labels_.push_back(label);
      pixels_.insert(pixels_.end(), r + label_bytes, r + record);
    }
  }

  classes_ = read_names(base / (c10 ? "batches.meta.txt" : "fine_label_names.txt"));
  if (static_cast<int64_t>(classes_.size()) != num_classes) {
    classes_.clear();
    for (int64_t c = 0; c < num_classes; ++c)
      classes_.push_back(c10 ? kCifar10Names[c] : "class_" + std::to_string(c));
  }
}

int64_t CifarDataset::label(int64_t index) const {
  if (index < 0 || index >= size())
    throw std::out_of_range("CIFAR: index " + std::to_string(index) + " out of range [0, " +
                            std::to_string(size()) + ")");
  return labels_[static_cast<size_t>(index)];
}

std::optional<Image> CifarDataset::load(int64_t index, BadSample*) const {
  label(index);
  Image image;
  image.height = image.width = kSide;
  image.pixels.resize(kPixels);
  const uint8_t* planes = pixels_.data() + static_cast<size_t>(index) * kPixels;
  for (size_t p = 0; p < kPlane; ++p) {
    for (size_t c = 0; c < 3; ++c) image.pixels[3 * p + c] = planes[c * kPlane + p];
  }
  return image;
}

std::string CifarDataset::describe() const {
  return fmt::format("{}: {}, {}, {} images, {} classes",
                     variant_ == CifarVariant::Cifar10 ? "cifar10" : "cifar100", dir_,
                     train_ ? "train" : "test", size(), classes_.size());
}

}  // namespace ocl::data
