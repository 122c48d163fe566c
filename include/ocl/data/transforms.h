// Image transforms of the pre-training and evaluation pipelines (torchvision's semantics):
// RandomResizedCrop + horizontal flip, Resize + CenterCrop, and the ImageNet normalisation that
// runs once per batch on the device. Randomness comes from a per-sample seed, never from a
// shared generator, so a sample's augmentation does not depend on which thread made it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ocl/data/dataset.h"

namespace ocl::data {

enum class Interpolation { Nearest, Bilinear, Bicubic, Area };
/// "nearest" | "bilinear" | "bicubic" | "area"; throws std::invalid_argument naming the value.
Interpolation parse_interpolation(const std::string& name);

/// The seed of sample `index` in `epoch` of a run seeded `seed` (a 64-bit mix of the three).
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

/// The generator behind every per-sample draw: splitmix64 with its own integer and real
/// conversions, the same stream on every platform (unlike std::uniform_*_distribution).
class SampleRng {
 public:
  explicit SampleRng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), n ≥ 1 (Lemire's multiply-shift; bias < n / 2⁶⁴).
  int64_t below(int64_t n) {
    return static_cast<int64_t>(
        (static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(n)) >> 64);
  }
  /// Uniform integer in [lo, hi] (inclusive, torch.randint(lo, hi + 1)'s range).
  int64_t between(int64_t lo, int64_t hi) { return lo + below(hi - lo + 1); }

 private:
  uint64_t state_;
};

/// Image → image of a fixed output size. `apply` is const and thread-safe.
class Transform {
 public:
  virtual ~Transform() = default;
  /// The output for `sample_seed`; transforms that plan regions accept a partial `window`.
  virtual Image apply(const Image& image, uint64_t sample_seed) const = 0;
  /// Copies of the output per sample: 1, or 2 (one crop, independent photometric.h augmentation).
  virtual int views() const { return 1; }
  /// All views() outputs for `sample_seed`; the first is apply()'s.
  virtual std::vector<Image> apply_views(const Image& image, uint64_t sample_seed) const {
    return {apply(image, sample_seed)};
  }
  /// The part of a height × width source apply(·, sample_seed) reads (zero-size: all of it).
  virtual DecodeRegion region(int height, int width, uint64_t sample_seed) const {
    (void)height, (void)width, (void)sample_seed;
    return {};
  }
  virtual int output_height() const = 0;
  virtual int output_width() const = 0;
  virtual std::string describe() const = 0;
};

/// A transform of the pixels of another's output: the other reads the source (what to decode)
/// and sets the output's size. Throws std::invalid_argument, naming `what`, for a null base.
class PixelTransform : public Transform {
 public:
  PixelTransform(std::shared_ptr<const Transform> base, const char* what);
  DecodeRegion region(int height, int width, uint64_t sample_seed) const override {
    return base_->region(height, width, sample_seed);
  }
  int output_height() const override { return base_->output_height(); }
  int output_width() const override { return base_->output_width(); }

 protected:
  std::shared_ptr<const Transform> base_;
};

/// What of a JPEG the crop lets the decoder skip: nothing (Full), what lies outside it (Region:
/// the same output), or also detail: Reduced decodes at 1/2, 1/4 or 1/8 for a crop ≥ 2× (4×, 8×)
/// the output, in place of the antialiasing shrink (crop edges move ≤ half a decoded pixel).
enum class RegionDecode { Full, Region, Reduced };
/// "full" | "region" | "reduced"; throws std::invalid_argument naming the value.
RegionDecode parse_region_decode(const std::string& name);

/// torchvision's RandomResizedCrop(size, scale, ratio, interpolation), then a p = 0.5 flip if
/// hflip.
struct RandomResizedCropOptions {
  int size = 224;
  double scale_min = 0.2, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  Interpolation interpolation = Interpolation::Bicubic;
  bool hflip = true;
  RegionDecode decode = RegionDecode::Reduced;
};
std::shared_ptr<const Transform> random_resized_crop(const RandomResizedCropOptions& options);

/// torchvision's Resize(resize) (shorter side to `resize`, aspect kept) + CenterCrop(size).
/// resize = 0 means size · 256 / 224 rounded (MAE's evaluation ratio).
std::shared_ptr<const Transform> resize_center_crop(
    int size, int resize = 0, Interpolation interpolation = Interpolation::Bicubic);

/// `image` resized to height × width, antialiased beyond a 2× shrink as the transforms above.
Image resize_image(const Image& image, int height, int width, Interpolation interpolation);

/// ImageNet's channel mean and std (RGB, on [0, 1]).
inline constexpr double kImageNetMean[3] = {0.485, 0.456, 0.406};
inline constexpr double kImageNetStd[3] = {0.229, 0.224, 0.225};

/// uint8 [B, 3, H, W] (any device) → (x/255 − mean)/std as `dtype` on `device`, copied as uint8.
torch::Tensor normalize_images(const torch::Tensor& images_u8, const torch::Device& device,
                               torch::Dtype dtype = torch::kFloat32);

}  // namespace ocl::data
