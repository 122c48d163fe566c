// Photometric augmentations: the enhance operations are rand_augment.cpp's Pillow blends; hue and
// blur are here, in the arithmetic of the code they reproduce (Pillow's Convert.c HSV with its
// float/double mix; torchvision's float32 kernel): a different rounding gives different pixels.
#include "ocl/data/photometric.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "ocl/data/rand_augment.h"

namespace ocl::data {
namespace {

bool probability(double p) { return std::isfinite(p) && p >= 0.0 && p <= 1.0; }

void check_options(const PhotometricOptions& o) {
  const auto& j = o.jitter;
  std::ostringstream msg;
  if (!(j.brightness >= 0 && j.contrast >= 0 && j.saturation >= 0) ||
      !std::isfinite(j.brightness) || !std::isfinite(j.contrast) || !std::isfinite(j.saturation)) {
    msg << "colour jitter strengths must be finite and >= 0, got brightness " << j.brightness
        << ", contrast " << j.contrast << ", saturation " << j.saturation;
  } else if (!(j.hue >= 0 && j.hue <= 0.5)) {
    msg << "colour jitter hue must be in [0, 0.5], got " << j.hue;
  } else if (!probability(j.prob) || !probability(o.grayscale_prob) || !probability(o.blur_prob) ||
             !probability(o.solarize_prob) || !probability(o.illumination_prob) ||
             !probability(o.noise_prob)) {
    msg << "probabilities must be in [0, 1], got jitter " << j.prob << ", grayscale "
        << o.grayscale_prob << ", blur " << o.blur_prob << ", solarize " << o.solarize_prob
        << ", illumination " << o.illumination_prob << ", noise " << o.noise_prob;
  } else if (!(o.blur_sigma_min > 0 && o.blur_sigma_min <= o.blur_sigma_max) ||
             !std::isfinite(o.blur_sigma_max)) {
    msg << "blur sigma range must satisfy 0 < min <= max, got [" << o.blur_sigma_min << ", "
        << o.blur_sigma_max << "]";
  } else if (o.blur_kernel < 0 || (o.blur_kernel > 0 && o.blur_kernel % 2 == 0)) {
    msg << "blur kernel must be odd (or 0 for 10 % of the image side), got " << o.blur_kernel;
  } else if (o.solarize_threshold < 0 || o.solarize_threshold > 256) {
    msg << "solarize threshold must be in [0, 256], got " << o.solarize_threshold;
  } else if (!(o.illumination_strength >= 0 && o.illumination_strength <= 255)) {
    msg << "illumination strength must be in [0, 255] levels, got " << o.illumination_strength;
  } else if (!(o.noise_sigma_max >= 0 && o.noise_sigma_max <= 255)) {
    msg << "noise sigma must be in [0, 255] levels, got " << o.noise_sigma_max;
  } else {
    return;
  }
  throw std::invalid_argument("photometric augmentation: " + msg.str());
}

uint8_t clip8(int v) { return static_cast<uint8_t>(std::clamp(v, 0, 255)); }

// Pillow's rgb2hsv_row: float h, s (the hue wrapped by fmod in double), scaled by 255, truncated.
void rgb_to_hsv(const uint8_t* rgb, uint8_t* hsv) {
  const uint8_t r = rgb[0], g = rgb[1], b = rgb[2];
  const uint8_t maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
  uint8_t uh = 0, us = 0;
  if (minc != maxc) {
    const float cr = static_cast<float>(maxc - minc);
    const float s = cr / static_cast<float>(maxc);
    const float rc = static_cast<float>(maxc - r) / cr;
    const float gc = static_cast<float>(maxc - g) / cr;
    const float bc = static_cast<float>(maxc - b) / cr;
    float h;
    if (r == maxc) {
      h = bc - gc;
    } else if (g == maxc) {
      h = static_cast<float>(2.0 + rc - bc);
    } else {
      h = static_cast<float>(4.0 + gc - rc);
    }
    h = static_cast<float>(std::fmod(h / 6.0 + 1.0, 1.0));
    uh = clip8(static_cast<int>(h * 255.0));
    us = clip8(static_cast<int>(s * 255.0));
  }
  hsv[0] = uh;
  hsv[1] = us;
  hsv[2] = maxc;
}

// Pillow's hsv2rgb: sector, remainder in double to int / float; p, q, t rounded half away from 0.
void hsv_to_rgb(const uint8_t* hsv, uint8_t* rgb) {
  const uint8_t h = hsv[0], s = hsv[1], v = hsv[2];
  if (s == 0) {
    rgb[0] = rgb[1] = rgb[2] = v;
    return;
  }
  const int i = static_cast<int>(std::floor(static_cast<float>(h) * 6.0 / 255.0));
  const float f = static_cast<float>(static_cast<float>(h) * 6.0 / 255.0 - static_cast<float>(i));
  const float fs = static_cast<float>(static_cast<float>(s) / 255.0);
  const float fv = static_cast<float>(v);
  const uint8_t up = clip8(static_cast<int>(std::round(fv * (1.0 - fs))));
  const uint8_t uq = clip8(static_cast<int>(std::round(fv * (1.0 - fs * f))));
  const uint8_t ut = clip8(static_cast<int>(std::round(fv * (1.0 - fs * (1.0 - f)))));
  // Per sector of the hue circle, which of (v, p, q, t) each of R, G, B takes.
  static constexpr int kSector[6][3] = {{0, 3, 1}, {2, 0, 1}, {1, 0, 3},
                                        {1, 2, 0}, {3, 1, 0}, {0, 1, 2}};
  const uint8_t values[4] = {v, up, uq, ut};
  for (int c = 0; c < 3; ++c) rgb[c] = values[kSector[i % 6][c]];
}

// torchvision's _get_gaussian_kernel1d in float32: the pdf at linspace(−(k−1)/2, (k−1)/2, k), /
// sum.
std::vector<float> gaussian_kernel(int size, double sigma) {
  std::vector<float> k(static_cast<size_t>(size));
  const float half = static_cast<float>((size - 1) * 0.5);
  const float s = static_cast<float>(sigma);
  float sum = 0;
  for (int i = 0; i < size; ++i) {
    // torch.linspace's float32 steps: start + i · step, the step (end − start)/(k − 1).
    const float x = size == 1 ? -half : -half + static_cast<float>(i) * ((2 * half) / (size - 1));
    const float z = x / s;
    k[static_cast<size_t>(i)] = std::exp(-0.5f * z * z);
    sum += k[static_cast<size_t>(i)];
  }
  for (auto& v : k) v /= sum;
  return k;
}

// Reflect padding's source index (no edge repeat), for |offset| < n.
int reflect(int i, int n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// One separable blur pass over H×W×3: kernel-weighted sums along x (along_x) or y, reflect-padded.
template <typename In>
void blur_pass(const In* src, float* dst, int h, int w, const std::vector<float>& kernel,
               bool along_x) {
  const int r = static_cast<int>(kernel.size()) / 2;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        float acc = 0;
        for (int t = -r; t <= r; ++t) {
          const int sy = along_x ? y : reflect(y + t, h), sx = along_x ? reflect(x + t, w) : x;
          acc += kernel[static_cast<size_t>(t + r)] *
                 static_cast<float>(src[(static_cast<size_t>(sy) * w + sx) * 3 + c]);
        }
        dst[(static_cast<size_t>(y) * w + x) * 3 + c] = acc;
      }
    }
  }
}

int blur_kernel_for(const Image& image, int kernel) {
  if (kernel == 0) {
    kernel = static_cast<int>(0.1 * std::min(image.height, image.width));
    if (kernel % 2 == 0) kernel += 1;
    kernel = std::max(kernel, 3);
  }
  // Reflect padding needs kernel / 2 < each side.
  const int largest = 2 * (std::min(image.height, image.width) - 1) + 1;
  return std::min(kernel, std::max(largest, 1));
}

class PhotometricTransform : public PixelTransform {
 public:
  PhotometricTransform(std::shared_ptr<const Transform> base, std::vector<PhotometricOptions> views)
      : PixelTransform(std::move(base), "with_photometric"), views_(std::move(views)) {
    if (views_.size() != 1 && views_.size() != 2)
      throw std::invalid_argument("with_photometric: 1 or 2 views, got " +
                                  std::to_string(views_.size()));
    for (const auto& v : views_) check_options(v);
  }

  Image apply(const Image& image, uint64_t seed) const override {
    Image out = base_->apply(image, seed);
    draw(out, 0, seed);
    return out;
  }
  std::vector<Image> apply_views(const Image& image, uint64_t seed) const override {
    std::vector<Image> out(views_.size(), base_->apply(image, seed));
    for (size_t v = 0; v < out.size(); ++v) draw(out[v], static_cast<int>(v), seed);
    return out;
  }
  int views() const override { return static_cast<int>(views_.size()); }
  std::string describe() const override {
    std::ostringstream s;
    s << base_->describe() << " + photometric (";
    for (size_t v = 0; v < views_.size(); ++v) {
      const auto& o = views_[v];
      if (v > 0) s << "; ";
      if (views_.size() > 1) s << "view " << v << ": ";
      s << "jitter " << o.jitter.brightness << "/" << o.jitter.contrast << "/"
        << o.jitter.saturation << "/" << o.jitter.hue << " p " << o.jitter.prob << ", grayscale p "
        << o.grayscale_prob << ", blur p " << o.blur_prob << " sigma [" << o.blur_sigma_min << ", "
        << o.blur_sigma_max << "], solarize p " << o.solarize_prob;
      if (o.illuminates())
        s << ", illumination " << o.illumination_strength << " p " << o.illumination_prob;
      if (o.adds_noise()) s << ", noise sigma [0, " << o.noise_sigma_max << "] p " << o.noise_prob;
    }
    s << ")";
    return s.str();
  }

 private:
  // View v's stream: the seed salted and mixed with v, apart from the base's and RandAugment's.
  void draw(Image& image, int view, uint64_t seed) const {
    SampleRng rng(sample_seed(seed ^ 0x70686f746f6d6574ULL, 0, view));  // "photomet"
    photometric_augment(image, views_[static_cast<size_t>(view)], rng);
  }

  std::vector<PhotometricOptions> views_;
};

}  // namespace

PhotometricOptions no_photometric() {
  PhotometricOptions o;
  o.jitter.prob = 0;
  o.grayscale_prob = o.blur_prob = o.solarize_prob = o.illumination_prob = o.noise_prob = 0;
  return o;
}

PhotometricOptions byol_view(int view, int image_size) {
  if (view != 0 && view != 1)
    throw std::invalid_argument("byol_view: view must be 0 or 1, got " + std::to_string(view));
  if (image_size < 1)
    throw std::invalid_argument("byol_view: image size must be >= 1, got " +
                                std::to_string(image_size));
  PhotometricOptions o;  // the defaults are BYOL's first view at 224 pixels
  const double scale = image_size / 224.0;
  o.blur_sigma_min *= scale;
  o.blur_sigma_max *= scale;
  if (view == 1) {
    o.blur_prob = 0.1;
    o.solarize_prob = 0.2;
  }
  return o;
}

std::vector<PhotometricOptions> photometric_preset(const std::string& name, int views,
                                                   int image_size) {
  if (views != 1 && views != 2)
    throw std::invalid_argument("photometric_preset: views must be 1 or 2, got " +
                                std::to_string(views));
  std::vector<PhotometricOptions> out;
  for (int v = 0; v < views; ++v) {
    if (name == "none") {
      out.push_back(no_photometric());
    } else if (name == "byol") {
      out.push_back(byol_view(v, image_size));
    } else if (name == "colour") {
      out.emplace_back();
      out.back().blur_prob = out.back().solarize_prob = 0;
    } else if (name == "simclr") {
      out.push_back(byol_view(0, image_size));
      auto& j = out.back().jitter;
      j.brightness = j.contrast = j.saturation = 0.8;
      j.hue = 0.2;
      out.back().blur_prob = 0.5;
    } else {
      throw std::invalid_argument(
          "data.photometric: expected none | byol | colour | simclr, got '" + name + "'");
    }
  }
  return out;
}

void adjust_brightness(Image& image, double factor) {
  apply_augment_op(image, AugmentOp::Brightness, factor, {0, 0, 0});
}

void adjust_contrast(Image& image, double factor) {
  apply_augment_op(image, AugmentOp::Contrast, factor, {0, 0, 0});
}

void adjust_saturation(Image& image, double factor) {
  apply_augment_op(image, AugmentOp::Color, factor, {0, 0, 0});
}

void adjust_hue(Image& image, double hue_factor) {
  check_rgb(image, "adjust_hue");
  if (!(hue_factor >= -0.5 && hue_factor <= 0.5))
    throw std::invalid_argument("adjust_hue: factor must be in [-0.5, 0.5], got " +
                                std::to_string(hue_factor));
  // np.uint8(hue_factor * 255): truncated toward zero, then taken modulo 256.
  const auto shift = static_cast<uint8_t>(static_cast<int64_t>(hue_factor * 255.0) & 0xff);
  for (size_t i = 0; i < image.pixels.size(); i += 3) {
    uint8_t hsv[3];
    rgb_to_hsv(&image.pixels[i], hsv);
    hsv[0] = static_cast<uint8_t>(hsv[0] + shift);
    hsv_to_rgb(hsv, &image.pixels[i]);
  }
}

void to_grayscale(Image& image) {
  check_rgb(image, "to_grayscale");
  apply_augment_op(image, AugmentOp::Color, 0.0, {0, 0, 0});  // the blend's degenerate: L
}

void gaussian_blur(Image& image, int kernel_size, double sigma) {
  check_rgb(image, "gaussian_blur");
  if (kernel_size < 1 || kernel_size % 2 == 0 || !(sigma > 0) || !std::isfinite(sigma)) {
    std::ostringstream msg;
    msg << "gaussian_blur: needs an odd kernel size >= 1 and sigma > 0, got " << kernel_size
        << " and " << sigma;
    throw std::invalid_argument(msg.str());
  }
  const int k = blur_kernel_for(image, kernel_size);
  const auto kernel = gaussian_kernel(k, sigma);
  const int h = image.height, w = image.width;
  // Separable, rows then columns, in float32 (torchvision's one pass with the outer product sums
  // differently in the last bits: a value within ~1e-4 of a half can move by one step).
  std::vector<float> rows(image.pixels.size()), both(image.pixels.size());
  blur_pass(image.pixels.data(), rows.data(), h, w, kernel, /*along_x=*/true);
  blur_pass(rows.data(), both.data(), h, w, kernel, /*along_x=*/false);
  // torch.round: half to even (the default rounding mode's nearbyint).
  for (size_t i = 0; i < both.size(); ++i)
    image.pixels[i] = clip8(static_cast<int>(std::nearbyint(both[i])));
}

void solarize(Image& image, int threshold) {
  check_rgb(image, "solarize");
  for (auto& v : image.pixels) {
    if (v >= threshold) v = static_cast<uint8_t>(255 - v);
  }
}

void illumination_gradient(Image& image, double angle, const std::array<double, 3>& amplitude) {
  check_rgb(image, "illumination_gradient");
  if (!std::isfinite(angle) || !std::isfinite(amplitude[0]) || !std::isfinite(amplitude[1]) ||
      !std::isfinite(amplitude[2]))
    throw std::invalid_argument("illumination_gradient: angle and amplitudes must be finite");
  const double dx = std::cos(angle), dy = std::sin(angle);
  const int h = image.height, w = image.width;
  uint8_t* px = image.pixels.data();
  for (int y = 0; y < h; ++y) {
    const double ty = ((y + 0.5) / h - 0.5) * dy;
    for (int x = 0; x < w; ++x, px += 3) {
      const double t = ((x + 0.5) / w - 0.5) * dx + ty;
      for (int c = 0; c < 3; ++c)
        px[c] = clip8(px[c] + static_cast<int>(std::lround(amplitude[static_cast<size_t>(c)] * t)));
    }
  }
}

void add_gaussian_noise(Image& image, double sigma, SampleRng& rng) {
  check_rgb(image, "add_gaussian_noise");
  if (!(sigma >= 0) || !std::isfinite(sigma))
    throw std::invalid_argument("add_gaussian_noise: sigma must be finite and >= 0, got " +
                                std::to_string(sigma));
  if (sigma == 0) return;
  auto& v = image.pixels;
  for (size_t i = 0; i < v.size(); i += 2) {
    // Box–Muller: two uniforms give two independent standard normals; 1 − u keeps log(·) finite.
    const double r = std::sqrt(-2.0 * std::log(1.0 - rng.uniform()));
    const double a = 2 * 3.14159265358979323846 * rng.uniform();
    v[i] = clip8(static_cast<int>(std::lround(v[i] + sigma * r * std::cos(a))));
    if (i + 1 < v.size())
      v[i + 1] = clip8(static_cast<int>(std::lround(v[i + 1] + sigma * r * std::sin(a))));
  }
}

void photometric_augment(Image& image, const PhotometricOptions& o, SampleRng& rng) {
  check_options(o);
  check_rgb(image, "photometric_augment");
  // Every draw is made whether or not its step applies: no step shifts the next one's draws.
  const bool jitter = rng.uniform() < o.jitter.prob;
  std::array<int, 4> order = {0, 1, 2, 3};  // torch.randperm(4) in torchvision
  for (int i = 3; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  const auto& j = o.jitter;
  const double brightness = rng.uniform(std::max(0.0, 1 - j.brightness), 1 + j.brightness);
  const double contrast = rng.uniform(std::max(0.0, 1 - j.contrast), 1 + j.contrast);
  const double saturation = rng.uniform(std::max(0.0, 1 - j.saturation), 1 + j.saturation);
  const double hue = rng.uniform(-j.hue, j.hue);
  const bool gray = rng.uniform() < o.grayscale_prob;
  const bool blur = rng.uniform() < o.blur_prob;
  const double sigma = rng.uniform(o.blur_sigma_min, o.blur_sigma_max);
  const bool solar = rng.uniform() < o.solarize_prob;
  // Drawn after the torchvision steps, and only when enabled: a pipeline without them draws
  // what it always drew. The noise's per-pixel draws come last.
  bool lit = false;
  double angle = 0;
  std::array<double, 3> amplitude{};
  if (o.illuminates()) {
    lit = rng.uniform() < o.illumination_prob;
    angle = rng.uniform(0, 2 * 3.14159265358979323846);
    for (auto& a : amplitude) a = rng.uniform(-o.illumination_strength, o.illumination_strength);
  }
  bool noisy = false;
  double noise_sigma = 0;
  if (o.adds_noise()) {
    noisy = rng.uniform() < o.noise_prob;
    noise_sigma = rng.uniform(0, o.noise_sigma_max);
  }

  if (lit) illumination_gradient(image, angle, amplitude);
  if (jitter) {
    for (int op : order) {
      // torchvision skips a factor whose range is the single value (0 strength).
      if (op == 0 && j.brightness > 0) adjust_brightness(image, brightness);
      if (op == 1 && j.contrast > 0) adjust_contrast(image, contrast);
      if (op == 2 && j.saturation > 0) adjust_saturation(image, saturation);
      if (op == 3 && j.hue > 0) adjust_hue(image, hue);
    }
  }
  if (gray) to_grayscale(image);
  if (blur) gaussian_blur(image, blur_kernel_for(image, o.blur_kernel), sigma);
  if (solar) solarize(image, o.solarize_threshold);
  if (noisy) add_gaussian_noise(image, noise_sigma, rng);
}

std::shared_ptr<const Transform> with_photometric(std::shared_ptr<const Transform> base,
                                                  std::vector<PhotometricOptions> views) {
  return std::make_shared<PhotometricTransform>(std::move(base), std::move(views));
}

}  // namespace ocl::data
