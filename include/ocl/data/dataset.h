// Data sets of labelled images for pre-training and evaluation: the interface every source
// (synthetic, ImageFolder, CIFAR, packed, WebDataset) implements, and the image type the
// transforms and the loader pass around. No LibTorch here.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ocl::data {

/// Where a partly decoded image's pixels (Dataset::load_region) sit in its source: pixel (y, x)
/// is source pixel (scale·(top + y), scale·(left + x)).
struct SourceWindow {
  int source_height = 0, source_width = 0;  // 0: the image is its whole source at scale 1
  int top = 0, left = 0;                    // in pixels of the scaled source
  int scale = 1;                            // the source was decoded at 1/scale (1, 2, 4 or 8)
  bool partial() const { return source_height > 0; }
};

/// An 8-bit RGB image, row-major HWC, `pixels.size() == height · width · 3`.
struct Image {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;
  SourceWindow window;
};

/// The part of a source image a transform will read, in source pixels, and the reduction
/// (1, 2, 4 or 8) it tolerates: a decoder may decode only that, that much smaller.
struct DecodeRegion {
  int top = 0, left = 0, height = 0, width = 0;  // height or width 0: the whole image
  int scale = 1;
};

/// Given a source's height and width (from its header), the region to decode.
using RegionPlanner = std::function<DecodeRegion(int height, int width)>;

/// The largest image (height × width) the JPEG and PNG decoders accept, checked on the header (a
/// 388 KB PNG may claim 20000 × 20000: 1.2 GB). Process-wide, set by data.max_image_pixels; the
/// default is Pillow's bomb limit. OpenCV has its own (OPENCV_IO_MAX_IMAGE_PIXELS, 2^30).
inline constexpr int64_t kDefaultMaxImagePixels = 178956970;
void set_max_image_pixels(int64_t pixels);  // ≥ 1
int64_t max_image_pixels();
/// "" when a height × width image is within the limit, else the reason naming the size and it.
std::string image_size_refusal(int64_t height, int64_t width);
/// Throws std::invalid_argument naming `what` unless `image` is non-empty, height · width · 3.
void check_rgb(const Image& image, const char* what);

/// One failed read: which sample, which file (may be empty), and why.
struct BadSample {
  int64_t index = 0;
  std::string path;
  std::string reason;
};

/// A fixed, indexable set of labelled images; `load` must be thread-safe.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  /// Class names in label order (label i is class_names()[i]).
  virtual const std::vector<std::string>& class_names() const = 0;
  int64_t num_classes() const { return static_cast<int64_t>(class_names().size()); }
  /// Label of sample `index` in [0, num_classes()), known without decoding.
  virtual int64_t label(int64_t index) const = 0;
  /// Decodes sample `index` as 8-bit RGB; std::nullopt with `error` for an unreadable, truncated
  /// or empty file (the loader skips it); std::out_of_range for an index out of range.
  virtual std::optional<Image> load(int64_t index, BadSample* error = nullptr) const = 0;
  /// As load(), for a transform that reads only part of the image: a data set that can decode a
  /// region (JPEG) may return only `plan`'s, with `window` filled in. The default decodes all.
  virtual std::optional<Image> load_region(int64_t index, const RegionPlanner& plan,
                                           BadSample* error = nullptr) const {
    (void)plan;
    return load(index, error);
  }
  /// One line for logs: kind, location, size, classes.
  virtual std::string describe() const = 0;
  /// Problems met while opening that did not stop it (an unlistable folder), one line each.
  virtual std::vector<std::string> warnings() const { return {}; }
};

}  // namespace ocl::data
