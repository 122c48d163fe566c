// RandomResizedCrop + flip and Resize + CenterCrop on 8-bit RGB images with OpenCV, matching
// torchvision's geometry and rounding, and the per-batch normalisation on the device.
#include "ocl/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

namespace ocl::data {
namespace {

// One splitmix64 step from state x: a full avalanche of x.
uint64_t mix64(uint64_t x) { return SampleRng(x).next(); }

// Python's round(): half to even (the current rounding mode, FE_TONEAREST by default).
int py_round(double x) { return static_cast<int>(std::nearbyint(x)); }

// In the order of enum Interpolation.
constexpr const char* kInterpolationNames[] = {"nearest", "bilinear", "bicubic", "area"};
constexpr int kCvFlags[] = {cv::INTER_NEAREST, cv::INTER_LINEAR, cv::INTER_CUBIC, cv::INTER_AREA};

int cv_flag(Interpolation interpolation) { return kCvFlags[static_cast<int>(interpolation)]; }

const char* name_of(Interpolation interpolation) {
  return kInterpolationNames[static_cast<int>(interpolation)];
}

// The index of `name` in `names`; otherwise throws "<what>: expected a | b | ..., got 'name'".
template <size_t N>
int parse_choice(const std::string& name, const char* const (&names)[N], const char* what) {
  std::string expected;
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) return static_cast<int>(i);
    expected += (i > 0 ? " | " : "") + std::string(names[i]);
  }
  throw std::invalid_argument(std::string(what) + ": expected " + expected + ", got '" + name +
                              "'");
}

// A read-only view of an Image's pixels (no copy; cv::Mat wants a non-const pointer).
cv::Mat view(const Image& image) {
  check_rgb(image, "transform");
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.pixels.data()));
}

// Resizes `src` into `out`. torchvision antialiases; OpenCV's linear and cubic kernels only
// sample, which aliases beyond a 2x shrink: a box (INTER_AREA) pre-shrink to twice the target
// keeps them within their support. cv::resize saturates, clipping bicubic overshoot as PIL does.
void resize_into(const cv::Mat& src, int height, int width, Interpolation interpolation,
                 Image& out) {
  out.height = height;
  out.width = width;
  out.pixels.resize(static_cast<size_t>(height) * width * 3);
  cv::Mat dst(height, width, CV_8UC3, out.pixels.data());
  const bool kernel =
      interpolation == Interpolation::Bilinear || interpolation == Interpolation::Bicubic;
  if (kernel && (src.cols > 2 * width || src.rows > 2 * height)) {
    cv::Mat half;
    cv::resize(src, half, cv::Size(std::min(src.cols, 2 * width), std::min(src.rows, 2 * height)),
               0, 0, cv::INTER_AREA);
    cv::resize(half, dst, dst.size(), 0, 0, cv_flag(interpolation));
  } else {
    cv::resize(src, dst, dst.size(), 0, 0, cv_flag(interpolation));
  }
}

void flip_horizontally(Image& image) {
  for (int y = 0; y < image.height; ++y) {
    uint8_t* row = image.pixels.data() + static_cast<size_t>(y) * image.width * 3;
    for (int l = 0, r = image.width - 1; l < r; ++l, --r)
      std::swap_ranges(row + 3 * l, row + 3 * l + 3, row + 3 * r);
  }
}

struct Crop {
  int top, left, height, width;
};

// torchvision.transforms.RandomResizedCrop.get_params, draw for draw.
Crop rrc_params(int height, int width, const RandomResizedCropOptions& o, SampleRng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(o.scale_min, o.scale_max);
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    const int w = py_round(std::sqrt(target_area * aspect));
    const int h = py_round(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int top = static_cast<int>(rng.between(0, height - h));
      const int left = static_cast<int>(rng.between(0, width - w));
      return {top, left, h, w};
    }
  }
  // Fallback: the whole image, cropped centrally to the nearest allowed aspect ratio.
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < std::min(o.ratio_min, o.ratio_max)) {
    h = py_round(w / std::min(o.ratio_min, o.ratio_max));
  } else if (in_ratio > std::max(o.ratio_min, o.ratio_max)) {
    w = py_round(h * std::max(o.ratio_min, o.ratio_max));
  }
  h = std::clamp(h, 1, height);
  w = std::clamp(w, 1, width);
  return {(height - h) / 2, (width - w) / 2, h, w};
}

// The crop `c` (source pixels) in the pixels of `image`: itself for a whole image; for a window
// decoded at 1/scale, its edges divided by the scale and rounded (exact at scale 1).
cv::Rect crop_in_window(const Crop& c, const Image& image) {
  const SourceWindow& win = image.window;
  if (!win.partial()) return {c.left, c.top, c.width, c.height};
  const double s = win.scale;
  auto edge = [&](int source, int offset, int lo, int hi) {
    return std::clamp(static_cast<int>(std::lround(source / s)) - offset, lo, hi);
  };
  const int x0 = edge(c.left, win.left, 0, image.width - 1);
  const int x1 = edge(c.left + c.width, win.left, x0 + 1, image.width);
  const int y0 = edge(c.top, win.top, 0, image.height - 1);
  const int y1 = edge(c.top + c.height, win.top, y0 + 1, image.height);
  return {x0, y0, x1 - x0, y1 - y0};
}

class RandomResizedCrop : public Transform {
 public:
  explicit RandomResizedCrop(const RandomResizedCropOptions& o) : o_(o) {
    if (o.size < 1 || !(o.scale_min > 0) || !(o.scale_min <= o.scale_max) || !(o.ratio_min > 0) ||
        !(o.ratio_min <= o.ratio_max)) {
      std::ostringstream msg;
      msg << "random_resized_crop: needs size >= 1, 0 < scale_min <= scale_max and "
             "0 < ratio_min <= ratio_max, got size "
          << o.size << ", scale [" << o.scale_min << ", " << o.scale_max << "], ratio ["
          << o.ratio_min << ", " << o.ratio_max << "]";
      throw std::invalid_argument(msg.str());
    }
  }

  Image apply(const Image& image, uint64_t seed) const override {
    const cv::Mat src = view(image);
    const SourceWindow& win = image.window;
    SampleRng rng(seed);
    // Drawn on the source's size, whether all of it was decoded or only region()'s window.
    const Crop c = win.partial() ? rrc_params(win.source_height, win.source_width, o_, rng)
                                 : rrc_params(image.height, image.width, o_, rng);
    Image out;
    resize_into(src(crop_in_window(c, image)), o_.size, o_.size, o_.interpolation, out);
    // RandomHorizontalFlip draws after the crop, as in Compose([RandomResizedCrop, Flip]).
    if (o_.hflip && rng.uniform() < 0.5) flip_horizontally(out);
    return out;
  }
  DecodeRegion region(int height, int width, uint64_t seed) const override {
    if (o_.decode == RegionDecode::Full) return {};
    SampleRng rng(seed);
    const Crop c = rrc_params(height, width, o_, rng);
    int scale = 1;
    while (o_.decode == RegionDecode::Reduced && scale < 8 && c.height >= 2 * scale * o_.size &&
           c.width >= 2 * scale * o_.size) {
      scale *= 2;
    }
    return {c.top, c.left, c.height, c.width, scale};
  }
  int output_height() const override { return o_.size; }
  int output_width() const override { return o_.size; }
  std::string describe() const override {
    std::ostringstream s;
    s << "RandomResizedCrop(" << o_.size << ", scale=(" << o_.scale_min << ", " << o_.scale_max
      << "), ratio=(" << o_.ratio_min << ", " << o_.ratio_max << "), " << name_of(o_.interpolation)
      << ")" << (o_.hflip ? " + RandomHorizontalFlip(0.5)" : "");
    return s.str();
  }

 private:
  RandomResizedCropOptions o_;
};

class ResizeCenterCrop : public Transform {
 public:
  ResizeCenterCrop(int size, int resize, Interpolation interpolation)
      : size_(size), resize_(resize), interpolation_(interpolation) {
    if (size < 1 || resize < 0)
      throw std::invalid_argument("resize_center_crop: needs size >= 1 and resize >= 0, got " +
                                  std::to_string(size) + " and " + std::to_string(resize));
    if (resize_ == 0) resize_ = static_cast<int>(std::lround(size * 256.0 / 224.0));
  }

  Image apply(const Image& image, uint64_t) const override {
    const cv::Mat src = view(image);
    // torchvision's Resize(int): the short side becomes `resize`, the long int(resize·long/short).
    const bool portrait = image.height > image.width;
    const int short_side = portrait ? image.width : image.height;
    const int long_side = portrait ? image.height : image.width;
    const int new_long = static_cast<int>(static_cast<int64_t>(resize_) * long_side / short_side);
    const int rh = portrait ? new_long : resize_, rw = portrait ? resize_ : new_long;
    Image resized;
    resize_into(src, rh, rw, interpolation_, resized);
    // CenterCrop: offsets int(round((in − out) / 2)); a side shorter than the crop is padded
    // with zeros, (out − in) // 2 before it, as torchvision pads.
    auto offset = [](int in, int out) {
      return in >= out ? py_round((in - out) / 2.0) : -((out - in) / 2);
    };
    const int top = offset(rh, size_), left = offset(rw, size_);
    Image out;
    out.height = out.width = size_;
    out.pixels.assign(static_cast<size_t>(size_) * size_ * 3, 0);
    const int x0 = std::max(0, -left), x1 = std::min(size_, rw - left);
    for (int y = 0; y < size_; ++y) {
      const int sy = y + top;
      if (sy < 0 || sy >= rh || x1 <= x0) continue;
      std::copy_n(resized.pixels.data() + (static_cast<size_t>(sy) * rw + x0 + left) * 3,
                  static_cast<size_t>(x1 - x0) * 3,
                  out.pixels.data() + (static_cast<size_t>(y) * size_ + x0) * 3);
    }
    return out;
  }
  int output_height() const override { return size_; }
  int output_width() const override { return size_; }
  std::string describe() const override {
    return "Resize(" + std::to_string(resize_) + ", " + name_of(interpolation_) +
           ") + CenterCrop(" + std::to_string(size_) + ")";
  }

 private:
  int size_, resize_;
  Interpolation interpolation_;
};

}  // namespace

Image resize_image(const Image& image, int height, int width, Interpolation interpolation) {
  if (height < 1 || width < 1)
    throw std::invalid_argument("resize_image: size " + std::to_string(height) + "x" +
                                std::to_string(width));
  Image out;
  resize_into(view(image), height, width, interpolation, out);
  return out;
}

Interpolation parse_interpolation(const std::string& name) {
  return static_cast<Interpolation>(parse_choice(name, kInterpolationNames, "interpolation"));
}

PixelTransform::PixelTransform(std::shared_ptr<const Transform> base, const char* what)
    : base_(std::move(base)) {
  if (!base_) throw std::invalid_argument(std::string(what) + ": base transform is null");
}

RegionDecode parse_region_decode(const std::string& name) {
  static constexpr const char* kNames[] = {"full", "region", "reduced"};  // enum RegionDecode's
  return static_cast<RegionDecode>(parse_choice(name, kNames, "decode"));
}

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  // A splitmix64 chain, each input fully avalanched before the next: neighbours are unrelated.
  uint64_t h = mix64(seed ^ 0x6f636c2d64617461ULL);  // "ocl-data"
  h = mix64(h ^ static_cast<uint64_t>(epoch));
  return mix64(h ^ static_cast<uint64_t>(index));
}

std::shared_ptr<const Transform> random_resized_crop(const RandomResizedCropOptions& options) {
  return std::make_shared<RandomResizedCrop>(options);
}

std::shared_ptr<const Transform> resize_center_crop(int size, int resize,
                                                    Interpolation interpolation) {
  return std::make_shared<ResizeCenterCrop>(size, resize, interpolation);
}

torch::Tensor normalize_images(const torch::Tensor& images_u8, const torch::Device& device,
                               torch::Dtype dtype) {
  TORCH_CHECK(
      images_u8.dim() == 4 && images_u8.size(1) == 3 && images_u8.scalar_type() == torch::kUInt8,
      "normalize_images: expected uint8 [B, 3, H, W], got ", images_u8.scalar_type(), " ",
      images_u8.sizes());
  // Pinned host memory lets the uint8 copy overlap with the previous step's kernels.
  auto x = images_u8.to(device, /*non_blocking=*/images_u8.is_pinned());
  // The arithmetic runs in fp32 (fp64 if asked) and rounds once into a narrower dtype.
  const auto math = dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto per_channel = [&](const double(&v)[3]) {
    return torch::tensor({v[0], v[1], v[2]}, torch::kFloat64).to(device, math).view({1, 3, 1, 1});
  };
  auto y = x.to(math).div_(255.0).sub_(per_channel(kImageNetMean)).div_(per_channel(kImageNetStd));
  return y.scalar_type() == dtype ? y : y.to(dtype);
}

}  // namespace ocl::data
