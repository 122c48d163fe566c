// Data sets of labelled images for pre-training and evaluation: the interface every source
// (synthetic, ImageFolder, CIFAR binary, later packed shards) implements, and the image type the
// transforms and the loader pass around. No LibTorch here: decoding is plain C++ and OpenCV.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ocl::data {

/// An 8-bit RGB image, row-major HWC, `pixels.size() == height · width · 3`.
struct Image {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;
};

/// One failed read: which sample, which file (may be empty), and why.
struct BadSample {
  int64_t index = 0;
  std::string path;
  std::string reason;
};

/// A fixed, indexable set of labelled images. `load` must be safe to call from several threads
/// at once.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  /// Class names in label order (label i is class_names()[i]).
  virtual const std::vector<std::string>& class_names() const = 0;
  int64_t num_classes() const { return static_cast<int64_t>(class_names().size()); }
  /// Label of sample `index` in [0, num_classes()), known without decoding.
  virtual int64_t label(int64_t index) const = 0;
  /// Decodes sample `index` as 8-bit RGB. An unreadable, truncated or empty file returns
  /// std::nullopt and fills `error` (the loader skips and counts it); an index out of range
  /// throws std::out_of_range.
  virtual std::optional<Image> load(int64_t index, BadSample* error = nullptr) const = 0;
  /// One line for logs: kind, location, size, classes.
  virtual std::string describe() const = 0;
};

}  // namespace ocl::data
