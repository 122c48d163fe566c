// timm's RandomErasing ('pixel'), Mixup/CutMix ('batch') and SoftTargetCrossEntropy on
// normalised float batches, with deterministic samplers on SampleRng.
#include "ocl/data/mixing.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace ocl::data {
namespace {

constexpr double kTwoPi = 6.283185307179586;
constexpr int64_t kErasingSalt = 0x6572617365;  // "erase": keeps erasing's streams apart

// Python's round() for the box sides: half to even.
int64_t round_to_int64(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

// One erased box of timm's RandomErasing._erase, or h = 0 when all 10 attempts failed.
struct Box {
  int64_t top = 0, left = 0, h = 0, w = 0;
};

Box erasing_box(int64_t img_h, int64_t img_w, int count, const RandomErasingOptions& o,
                SampleRng& rng) {
  const double area = static_cast<double>(img_h) * img_w;
  const double log_lo = std::log(o.min_aspect), log_hi = std::log(1.0 / o.min_aspect);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = rng.uniform(o.min_area, o.max_area) * area / count;
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    const int64_t h = round_to_int64(std::sqrt(target_area * aspect));
    const int64_t w = round_to_int64(std::sqrt(target_area / aspect));
    if (w < img_w && h < img_h) {
      const int64_t top = rng.between(0, img_h - h);
      const int64_t left = rng.between(0, img_w - w);
      return {top, left, h, w};
    }
  }
  return {};
}

// timm's rand_bbox + cutmix_bbox_and_lam(correct_lam=True): flip(x) into x's box; λ = 1 − share.
double cutmix(torch::Tensor& x, double lam, SampleRng& rng) {
  const int64_t img_h = x.size(2), img_w = x.size(3);
  const double ratio = std::sqrt(1.0 - lam);
  const int64_t cut_h = static_cast<int64_t>(img_h * ratio);
  const int64_t cut_w = static_cast<int64_t>(img_w * ratio);
  const int64_t cy = rng.below(img_h), cx = rng.below(img_w);
  const int64_t yl = std::clamp<int64_t>(cy - cut_h / 2, 0, img_h);
  const int64_t yh = std::clamp<int64_t>(cy + cut_h / 2, 0, img_h);
  const int64_t xl = std::clamp<int64_t>(cx - cut_w / 2, 0, img_w);
  const int64_t xh = std::clamp<int64_t>(cx + cut_w / 2, 0, img_w);
  if (yh > yl && xh > xl) {
    using torch::indexing::Slice;
    const auto box = std::initializer_list<torch::indexing::TensorIndex>{
        Slice(), Slice(), Slice(yl, yh), Slice(xl, xh)};
    x.index_put_(box, x.flip(0).index(box));
  }
  return 1.0 - static_cast<double>((yh - yl) * (xh - xl)) / static_cast<double>(img_h * img_w);
}

}  // namespace

double sample_normal(SampleRng& rng) {
  const double u1 = 1.0 - rng.uniform();  // (0, 1]: log stays finite
  const double u2 = rng.uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

double sample_gamma(double shape, SampleRng& rng) {
  if (!(shape > 0) || !std::isfinite(shape))
    throw std::invalid_argument("sample_gamma: shape must be positive and finite, got " +
                                std::to_string(shape));
  if (shape < 1.0) {
    // Boosting (Marsaglia–Tsang §6): Gamma(a) = Gamma(a + 1) · U^(1/a).
    const double u = 1.0 - rng.uniform();
    return sample_gamma(shape + 1.0, rng) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = sample_normal(rng);
    double v = 1.0 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    const double u = rng.uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;  // the cheap squeeze
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

double sample_beta(double a, double b, SampleRng& rng) {
  const double x = sample_gamma(a, rng), y = sample_gamma(b, rng);
  if (x + y > 0) return x / (x + y);
  return rng.uniform() < a / (a + b) ? 1.0 : 0.0;
}

void random_erasing_(torch::Tensor& images, const RandomErasingOptions& o, uint64_t seed) {
  TORCH_CHECK(images.dim() == 4 && images.is_floating_point(),
              "random_erasing_: expected floating point [B, C, H, W], got ", images.scalar_type(),
              " ", images.sizes());
  if (!(o.prob >= 0 && o.prob <= 1) || !(o.min_area > 0) || !(o.min_area <= o.max_area) ||
      !(o.min_aspect > 0) || o.count < 1) {
    throw std::invalid_argument(
        "random_erasing_: needs prob in [0, 1], 0 < min_area <= max_area, min_aspect > 0 and "
        "count >= 1, got prob " +
        std::to_string(o.prob) + ", area [" + std::to_string(o.min_area) + ", " +
        std::to_string(o.max_area) + "], min_aspect " + std::to_string(o.min_aspect) + ", count " +
        std::to_string(o.count));
  }
  const int64_t img_h = images.size(2), img_w = images.size(3);
  for (int64_t i = 0; i < images.size(0); ++i) {
    SampleRng rng(sample_seed(seed, kErasingSalt, i));
    if (rng.uniform() > o.prob) continue;  // timm: erase unless random() > probability
    for (int k = 0; k < o.count; ++k) {
      const Box box = erasing_box(img_h, img_w, o.count, o, rng);
      if (box.h == 0 || box.w == 0) continue;
      // The noise comes from a CPU generator, so CPU and CUDA runs erase with the same values.
      auto gen = at::make_generator<at::CPUGeneratorImpl>(rng.next());
      auto noise = torch::randn({images.size(1), box.h, box.w}, gen, torch::kFloat32);
      images[i]
          .narrow(1, box.top, box.h)
          .narrow(2, box.left, box.w)
          .copy_(noise.to(images.device(), images.scalar_type()));
    }
  }
}

bool mixup_active(const MixupOptions& o) { return o.mixup_alpha > 0 || o.cutmix_alpha > 0; }

MixedBatch mix_batch(const torch::Tensor& images, const torch::Tensor& labels,
                     const MixupOptions& o, uint64_t seed) {
  TORCH_CHECK(images.dim() == 4 && images.is_floating_point(),
              "mix_batch: expected floating point images [B, C, H, W], got ", images.scalar_type(),
              " ", images.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0) && !labels.is_floating_point(),
              "mix_batch: expected integer labels [B] with B = ", images.size(0), ", got ",
              labels.scalar_type(), " ", labels.sizes());
  TORCH_CHECK(o.num_classes > 0, "mix_batch: num_classes must be > 0, got ", o.num_classes);
  TORCH_CHECK(o.prob >= 0 && o.prob <= 1 && o.switch_prob >= 0 && o.switch_prob <= 1 &&
                  o.label_smoothing >= 0 && o.label_smoothing <= 1,
              "mix_batch: prob, switch_prob and label_smoothing must be in [0, 1], got ", o.prob,
              ", ", o.switch_prob, ", ", o.label_smoothing);

  // timm's Mixup._params_per_batch.
  MixedBatch out;
  SampleRng rng(seed);
  if (mixup_active(o) && rng.uniform() < o.prob) {
    const bool both = o.mixup_alpha > 0 && o.cutmix_alpha > 0;
    out.cutmix = both ? rng.uniform() < o.switch_prob : o.cutmix_alpha > 0;
    const double alpha = out.cutmix ? o.cutmix_alpha : o.mixup_alpha;
    out.lam = sample_beta(alpha, alpha, rng);
  }

  // timm's Mixup._mix_batch.
  if (out.lam == 1.0) {
    out.cutmix = false;
    out.images = images;
  } else if (out.cutmix) {
    out.images = images.clone();
    out.lam = cutmix(out.images, out.lam, rng);
  } else {
    out.images = images * out.lam + images.flip(0) * (1.0 - out.lam);
  }
  // Smoothed one-hot rows: off = s / C everywhere, on = 1 − s + off at the label.
  const double off = o.label_smoothing / static_cast<double>(o.num_classes);
  const auto idx = labels.to(images.device(), torch::kLong).view({-1, 1});
  const auto y = torch::full({idx.size(0), o.num_classes}, off,
                             torch::TensorOptions().dtype(torch::kFloat32).device(images.device()))
                     .scatter_(1, idx, 1.0 - o.label_smoothing + off);
  out.targets = out.lam == 1.0 ? y : y * out.lam + y.flip(0) * (1.0 - out.lam);
  return out;
}

torch::Tensor soft_target_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  TORCH_CHECK(logits.dim() == 2 && logits.sizes() == targets.sizes(),
              "soft_target_cross_entropy: expected logits and targets [B, C] of one shape, got ",
              logits.sizes(), " and ", targets.sizes());
  const auto dtype = logits.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const auto log_p = torch::log_softmax(logits.to(dtype), -1);
  return (-targets.to(dtype) * log_p).sum(-1).mean();
}

}  // namespace ocl::data
