// timm's RandAugment on 8-bit RGB: the Pillow ops it calls, rewritten to give Pillow 9's pixels
// (same float/double arithmetic, truncations and border rules), the level → argument mapping,
// the op and magnitude draws, and the Transform that adds it after a crop.
#include "ocl/data/rand_augment.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "ocl/data/mixing.h"
#include "ocl/io/spec.h"

namespace ocl::data {
namespace {

constexpr double kLevelDenom = 10.0;  // timm's _LEVEL_DENOM: magnitudes are on a 0..10 scale
constexpr double kPythonPi = 3.141592653589793;  // Py_MATH_PI, as math.radians uses

// ---- point ops: one 256-entry table per channel ----------------------------------------------

using Lut = std::array<std::array<uint8_t, 256>, 3>;

void apply_lut(Image& image, const Lut& lut) {
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = lut[i % 3][image.pixels[i]];
}

std::array<std::array<int64_t, 256>, 3> histograms(const Image& image) {
  std::array<std::array<int64_t, 256>, 3> h{};
  for (size_t i = 0; i < image.pixels.size(); ++i) ++h[i % 3][image.pixels[i]];
  return h;
}

// ImageOps.autocontrast(image) with cutoff 0: each channel's [lo, hi] stretched to [0, 255],
// int() truncation of ix·scale + offset; a channel with hi ≤ lo is left as it is.
void autocontrast(Image& image) {
  const auto hist = histograms(image);
  Lut lut;
  for (int c = 0; c < 3; ++c) {
    int lo = 0, hi = 255;
    while (lo < 256 && hist[c][lo] == 0) ++lo;
    while (hi >= 0 && hist[c][hi] == 0) --hi;
    const double scale = hi > lo ? 255.0 / (hi - lo) : 0.0;
    const double offset = -lo * scale;
    for (int ix = 0; ix < 256; ++ix) {
      lut[c][ix] = static_cast<uint8_t>(
          hi <= lo ? ix : std::clamp(static_cast<int>(ix * scale + offset), 0, 255));
    }
  }
  apply_lut(image, lut);
}

// ImageOps.equalize(image): per channel, step = (count − count of the top used value) // 256
// and lut[i] = (step // 2 + Σ_{j<i} h[j]) // step; identity when one value or step is 0. Above
// the top used value the table passes 255, which Image.point clips to 255.
void equalize(Image& image) {
  const auto hist = histograms(image);
  Lut lut;
  for (int c = 0; c < 3; ++c) {
    int64_t total = 0, last = 0, used = 0;
    for (int i = 0; i < 256; ++i) {
      if (hist[c][i] == 0) continue;
      total += hist[c][i];
      last = hist[c][i];
      ++used;
    }
    const int64_t step = used <= 1 ? 0 : (total - last) / 256;
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      lut[c][i] = static_cast<uint8_t>(step == 0 ? i : std::min<int64_t>(n / step, 255));
      n += hist[c][i];
    }
  }
  apply_lut(image, lut);
}

// The same table for every channel: Invert; ImageOps.posterize (keeps the `arg` high bits; timm:
// ≥ 8 a no-op); ImageOps.solarize (inverts from the threshold up); timm's solarize_add (adds below
// 128, saturating).
Lut point_table(AugmentOp op, int arg) {
  Lut t;
  for (int i = 0; i < 256; ++i) {
    int v = i;
    if (op == AugmentOp::Invert) {
      v = 255 - i;
    } else if (op == AugmentOp::Posterize) {
      v = arg >= 8 ? i : i & ~((1 << (8 - std::max(arg, 0))) - 1);
    } else if (op == AugmentOp::Solarize) {
      v = i < arg ? i : 255 - i;
    } else if (op == AugmentOp::SolarizeAdd) {
      v = i < 128 ? std::min(255, i + arg) : i;
    }
    t[0][i] = t[1][i] = t[2][i] = static_cast<uint8_t>(v);
  }
  return t;
}

// ---- enhance ops: Image.blend(degenerate, image, factor) -------------------------------------

// ImagingBlend: alpha is a C float and the arithmetic float; inside [0, 1] the result is
// truncated, outside it is clipped to [0, 255] first. 0 and 1 are exact copies.
void blend_into(Image& image, const std::vector<uint8_t>& degenerate, double factor) {
  const float alpha = static_cast<float>(factor);
  if (alpha == 0.0f) {
    image.pixels = degenerate;
    return;
  }
  if (alpha == 1.0f) return;
  const bool interpolate = alpha >= 0 && alpha <= 1.0f;
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const int in1 = degenerate[i], in2 = image.pixels[i];
    const float v = static_cast<float>(in1) + alpha * static_cast<float>(in2 - in1);
    if (interpolate) {
      image.pixels[i] = static_cast<uint8_t>(v);
    } else {
      image.pixels[i] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : static_cast<uint8_t>(v);
    }
  }
}

// Pillow 9's RGB → L conversion (Convert.c, L24): ITU-R 601-2 weights in 16-bit fixed point,
// rounded (the older (299 R + 587 G + 114 B) / 1000 truncates: ~half the colours differ).
uint8_t luma(const uint8_t* rgb) {
  return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

std::vector<uint8_t> grayscale_rgb(const Image& image) {
  std::vector<uint8_t> out(image.pixels.size());
  for (size_t i = 0; i < out.size(); i += 3)
    out[i] = out[i + 1] = out[i + 2] = luma(&image.pixels[i]);
  return out;
}

// ImageEnhance.Contrast's degenerate: a flat grey at int(mean of L + 0.5).
std::vector<uint8_t> mean_gray(const Image& image) {
  int64_t sum = 0;
  for (size_t i = 0; i < image.pixels.size(); i += 3) sum += luma(&image.pixels[i]);
  const double mean = static_cast<double>(sum) / (static_cast<double>(image.pixels.size()) / 3);
  return std::vector<uint8_t>(image.pixels.size(),
                              static_cast<uint8_t>(static_cast<int>(mean + 0.5)));
}

// ImageFilter.SMOOTH through ImagingFilter3x3: kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 held as
// floats, float accumulation from offset 0.5 in Pillow's order (row below, row, row above),
// truncated after clipping; the outermost rows and columns are copied.
std::vector<uint8_t> smooth(const Image& image) {
  const float k_side = static_cast<float>(1.0 / 13.0), k_mid = static_cast<float>(5.0 / 13.0);
  const float k[9] = {k_side, k_side, k_side, k_side, k_mid, k_side, k_side, k_side, k_side};
  const int h = image.height, w = image.width;
  std::vector<uint8_t> out = image.pixels;
  const uint8_t* px = image.pixels.data();
  auto at = [&](int y, int x, int c) {
    return static_cast<float>(px[(static_cast<size_t>(y) * w + x) * 3 + c]);
  };
  for (int y = 1; y < h - 1; ++y) {
    for (int x = 1; x < w - 1; ++x) {
      for (int c = 0; c < 3; ++c) {
        float ss = 0.5f;
        ss += at(y + 1, x - 1, c) * k[0] + at(y + 1, x, c) * k[1] + at(y + 1, x + 1, c) * k[2];
        ss += at(y, x - 1, c) * k[3] + at(y, x, c) * k[4] + at(y, x + 1, c) * k[5];
        ss += at(y - 1, x - 1, c) * k[6] + at(y - 1, x, c) * k[7] + at(y - 1, x + 1, c) * k[8];
        ss = ss < 0.0f ? 0.0f : ss;
        ss = ss > 255.0f ? 255.0f : ss;
        out[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(ss);
      }
    }
  }
  return out;
}

// ---- affine ops: Image.transform(AFFINE) with Pillow's bilinear / bicubic filters ------------

// Source point (xin, yin), shifted by −0.5 to pixel centres, → the three channel values, as
// Geometry.c's BILINEAR/BICUBIC: rows past the bottom repeat the previous row's, columns clamp.
struct Sampler {
  const Image& im;
  double sample(int y, int x, int c) const {
    x = std::clamp(x, 0, im.width - 1);
    return im.pixels[(static_cast<size_t>(y) * im.width + x) * 3 + c];
  }
  bool inside(double xin, double yin) const {
    return !(xin < 0.0 || xin >= im.width || yin < 0.0 || yin >= im.height);
  }

  void bilinear(double xin, double yin, uint8_t* out) const {
    const int x = static_cast<int>(std::floor(xin)), y = static_cast<int>(std::floor(yin));
    const double dx = xin - x, dy = yin - y;
    const int y0 = std::clamp(y, 0, im.height - 1);
    for (int c = 0; c < 3; ++c) {
      const double a0 = sample(y0, x, c), b0 = sample(y0, x + 1, c);
      double v1 = a0 + (b0 - a0) * dx, v2 = v1;
      if (y + 1 >= 0 && y + 1 < im.height) {
        const double a1 = sample(y + 1, x, c), b1 = sample(y + 1, x + 1, c);
        v2 = a1 + (b1 - a1) * dx;
      }
      out[c] = static_cast<uint8_t>(v1 + (v2 - v1) * dy);
    }
  }

  // Pillow's cubic convolution with a = −1, in its Horner form.
  static double cubic(double v1, double v2, double v3, double v4, double d) {
    const double p1 = v2, p2 = -v1 + v3, p3 = 2 * (v1 - v2) + v3 - v4, p4 = -v1 + v2 - v3 + v4;
    return p1 + d * (p2 + d * (p3 + d * p4));
  }

  void bicubic(double xin, double yin, uint8_t* out) const {
    const int x = static_cast<int>(std::floor(xin)) - 1, y = static_cast<int>(std::floor(yin)) - 1;
    const double dx = xin - (x + 1), dy = yin - (y + 1);
    for (int c = 0; c < 3; ++c) {
      auto row = [&](int yy) {
        return cubic(sample(yy, x, c), sample(yy, x + 1, c), sample(yy, x + 2, c),
                     sample(yy, x + 3, c), dx);
      };
      double v[4];
      v[0] = row(std::clamp(y, 0, im.height - 1));
      for (int j = 1; j < 4; ++j) v[j] = (y + j >= 0 && y + j < im.height) ? row(y + j) : v[j - 1];
      const double r = cubic(v[0], v[1], v[2], v[3], dy);
      out[c] = r <= 0.0 ? 0 : r >= 255.0 ? 255 : static_cast<uint8_t>(r);
    }
  }
};

// Output pixel (x, y) reads the source at m · (x + 0.5, y + 0.5, 1) (Pillow's affine_transform).
void affine(Image& image, const std::array<double, 6>& m, std::array<uint8_t, 3> fill,
            AffineResample resample) {
  const Image src = image;
  const Sampler s{src};
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      const double xi = x + 0.5, yi = y + 0.5;
      const double xin = m[0] * xi + m[1] * yi + m[2];
      const double yin = m[3] * xi + m[4] * yi + m[5];
      uint8_t* out = &image.pixels[(static_cast<size_t>(y) * image.width + x) * 3];
      if (!s.inside(xin, yin)) {
        std::copy(fill.begin(), fill.end(), out);  // the source point lies outside the image
      } else if (resample == AffineResample::Bilinear) {
        s.bilinear(xin - 0.5, yin - 0.5, out);
      } else {
        s.bicubic(xin - 0.5, yin - 0.5, out);
      }
    }
  }
}

// Python's round(x, 15), near enough: Pillow's on the rotation matrix, so cos(90°) is exactly 0.
double round15(double v) { return std::nearbyint(v * 1e15) / 1e15; }

// Image.rotate(degrees, expand=False): about (w/2, h/2), counter-clockwise for positive angles;
// the angle reduced mod 360 first, as Pillow does (the matrix's last bits for negative angles).
std::array<double, 6> rotation_matrix(double degrees, int width, int height) {
  double angle = std::fmod(degrees, 360.0);
  if (angle < 0) angle += 360.0;  // Python's float %: the divisor's sign
  const double rad = -(angle * (kPythonPi / 180.0));
  std::array<double, 6> m = {round15(std::cos(rad)),  round15(std::sin(rad)), 0.0,
                             round15(-std::sin(rad)), round15(std::cos(rad)), 0.0};
  const double cx = width / 2.0, cy = height / 2.0;
  m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
  m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
  return m;
}

void apply_affine_op(Image& image, AugmentOp op, double arg, std::array<uint8_t, 3> fill,
                     AffineResample resample) {
  if (resample == AffineResample::Random)
    throw std::invalid_argument("apply_augment_op: resample must be Bilinear or Bicubic");
  std::array<double, 6> m = {1, 0, 0, 0, 1, 0};
  if (op == AugmentOp::Rotate) {
    if (std::fmod(arg, 360.0) == 0.0) return;  // Pillow leaves the image unchanged
    m = rotation_matrix(arg, image.width, image.height);
  } else if (op == AugmentOp::ShearX) {
    m[1] = arg;
  } else if (op == AugmentOp::ShearY) {
    m[3] = arg;
  } else if (op == AugmentOp::TranslateXRel) {
    m[2] = arg * image.width;
  } else if (op == AugmentOp::TranslateYRel) {
    m[5] = arg * image.height;
  } else {
    return;
  }
  affine(image, m, fill, resample);
}

void check_options(const RandAugmentOptions& o) {
  if (o.num_ops < 0 || !(o.prob >= 0 && o.prob <= 1) || !(o.magnitude >= 0) ||
      !(o.magnitude_std >= 0) || !(o.magnitude_max >= 0)) {
    std::ostringstream msg;
    msg << "rand_augment: needs num_ops >= 0, prob in [0, 1] and magnitude, magnitude_std, "
           "magnitude_max >= 0, got n="
        << o.num_ops << ", p=" << o.prob << ", m=" << o.magnitude << ", mstd=" << o.magnitude_std
        << ", mmax=" << o.magnitude_max;
    throw std::invalid_argument(msg.str());
  }
}

class RandAugmentTransform : public PixelTransform {
 public:
  RandAugmentTransform(std::shared_ptr<const Transform> base, RandAugmentOptions options)
      : PixelTransform(std::move(base), "with_rand_augment"), o_(options) {
    check_options(o_);
  }

  Image apply(const Image& image, uint64_t seed) const override {
    Image out = base_->apply(image, seed);
    // The base seeds SampleRng(seed) itself; a salted, re-mixed seed gives an unrelated stream.
    SampleRng rng(SampleRng(seed ^ 0x72616e6461756721ULL).next());  // "randaug!"
    rand_augment(out, o_, rng);
    return out;
  }
  std::string describe() const override {
    std::ostringstream s;
    s << base_->describe() << " + RandAugment(n=" << o_.num_ops << ", m=" << o_.magnitude
      << ", mstd=" << o_.magnitude_std << ", mmax=" << o_.magnitude_max
      << ", inc=" << (o_.increasing ? 1 : 0) << ", p=" << o_.prob << ", "
      << (o_.resample == AffineResample::Bilinear  ? "bilinear"
          : o_.resample == AffineResample::Bicubic ? "bicubic"
                                                   : "random")
      << " resampling)";
    return s.str();
  }

 private:
  RandAugmentOptions o_;
};

}  // namespace

const char* augment_op_name(AugmentOp op) {
  static const char* const names[kNumAugmentOps] = {
      "AutoContrast", "Equalize",    "Invert", "Rotate",        "Posterize",
      "Solarize",     "SolarizeAdd", "Color",  "Contrast",      "Brightness",
      "Sharpness",    "ShearX",      "ShearY", "TranslateXRel", "TranslateYRel"};
  return names[static_cast<int>(op)];
}

RandAugmentOptions parse_rand_augment(const std::string& spec) {
  const io::RandAugmentSpec s = io::parse_rand_augment_spec(spec);
  return {s.num_ops, s.magnitude, s.magnitude_std, s.magnitude_max, s.increasing, s.prob};
}

double augment_level_to_arg(AugmentOp op, double m, bool increasing, bool negate) {
  const double level = m / kLevelDenom;
  const double sign = negate ? -1.0 : 1.0;
  switch (op) {
    case AugmentOp::Rotate:
      return sign * level * 30.0;
    case AugmentOp::ShearX:
    case AugmentOp::ShearY:
      return sign * level * 0.3;
    case AugmentOp::TranslateXRel:
    case AugmentOp::TranslateYRel:
      return sign * level * 0.45;
    case AugmentOp::Posterize: {
      const int bits = static_cast<int>(level * 4);
      return increasing ? 4 - bits : bits;
    }
    case AugmentOp::Solarize: {
      const int threshold = static_cast<int>(level * 256);
      return increasing ? 256 - threshold : threshold;
    }
    case AugmentOp::SolarizeAdd:
      return static_cast<int>(level * 110);
    case AugmentOp::Color:
    case AugmentOp::Contrast:
    case AugmentOp::Brightness:
    case AugmentOp::Sharpness:
      return increasing ? std::max(0.1, 1.0 + sign * level * 0.9) : level * 1.8 + 0.1;
    default:
      return 0.0;
  }
}

void apply_augment_op(Image& image, AugmentOp op, double arg, std::array<uint8_t, 3> fill,
                      AffineResample resample) {
  check_rgb(image, "rand_augment");
  switch (op) {
    case AugmentOp::AutoContrast:
      return autocontrast(image);
    case AugmentOp::Equalize:
      return equalize(image);
    case AugmentOp::Invert:
    case AugmentOp::Posterize:
    case AugmentOp::Solarize:
    case AugmentOp::SolarizeAdd:
      return apply_lut(image, point_table(op, static_cast<int>(arg)));
    case AugmentOp::Color:
      return blend_into(image, grayscale_rgb(image), arg);
    case AugmentOp::Contrast:
      return blend_into(image, mean_gray(image), arg);
    case AugmentOp::Brightness:
      return blend_into(image, std::vector<uint8_t>(image.pixels.size(), 0), arg);
    case AugmentOp::Sharpness:
      return blend_into(image, smooth(image), arg);
    default:
      return apply_affine_op(image, op, arg, fill, resample);
  }
}

void rand_augment(Image& image, const RandAugmentOptions& o, SampleRng& rng) {
  check_options(o);
  check_rgb(image, "rand_augment");
  const double upper = o.magnitude_max;
  for (int i = 0; i < o.num_ops; ++i) {
    const auto op = static_cast<AugmentOp>(rng.below(kNumAugmentOps));
    // timm's AugmentOp.__call__: skip with probability 1 − prob, then the magnitude draw.
    if (o.prob < 1.0 && rng.uniform() > o.prob) continue;
    double m = o.magnitude;
    if (std::isinf(o.magnitude_std)) {
      m = rng.uniform(0, o.magnitude);
    } else if (o.magnitude_std > 0) {
      m = o.magnitude + o.magnitude_std * sample_normal(rng);
    }
    m = std::max(0.0, std::min(m, upper));
    // timm's _randomly_negate, drawn for every op (timm: signed ones only): fixed draws per op.
    const bool negate = rng.uniform() > 0.5;
    const double arg = augment_level_to_arg(op, m, o.increasing, negate);
    AffineResample resample = o.resample;
    const bool affine = op == AugmentOp::Rotate || op == AugmentOp::ShearX ||
                        op == AugmentOp::ShearY || op == AugmentOp::TranslateXRel ||
                        op == AugmentOp::TranslateYRel;
    if (resample == AffineResample::Random && affine)
      resample = rng.uniform() < 0.5 ? AffineResample::Bilinear : AffineResample::Bicubic;
    apply_augment_op(image, op, arg, o.fill, resample);
  }
}

std::shared_ptr<const Transform> with_rand_augment(std::shared_ptr<const Transform> base,
                                                   RandAugmentOptions options) {
  return std::make_shared<RandAugmentTransform>(std::move(base), options);
}

}  // namespace ocl::data
