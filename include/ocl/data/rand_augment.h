// RandAugment as timm implements it (timm/data/auto_augment.py, `rand_augment_transform`), the
// per-sample augmentation of MAE's fine-tuning recipe. Each op reproduces the Pillow call timm
// makes on 8-bit RGB, rounding included, so that an op at a given argument gives Pillow's pixels.
// auto t = with_rand_augment(random_resized_crop({}), parse_rand_augment("rand-m9-mstd0.5-inc1"));
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"

namespace ocl::data {

/// The 15 ops of timm's `_RAND_TRANSFORMS` (`_RAND_INCREASING_TRANSFORMS` only changes the level
/// → argument mapping of Posterize, Solarize, Color, Contrast, Brightness and Sharpness).
enum class AugmentOp {
  AutoContrast,
  Equalize,
  Invert,
  Rotate,
  Posterize,
  Solarize,
  SolarizeAdd,
  Color,
  Contrast,
  Brightness,
  Sharpness,
  ShearX,
  ShearY,
  TranslateXRel,
  TranslateYRel,
};
inline constexpr int kNumAugmentOps = 15;
/// timm's name of the op ("AutoContrast", "Rotate", "TranslateXRel", ...).
const char* augment_op_name(AugmentOp op);

/// Pillow's resampling filters for the affine ops; Random draws one of the two per op (timm's
/// default). MAE's build_transform passes interpolation='bicubic', hence the options' default.
enum class AffineResample { Bilinear, Bicubic, Random };

struct RandAugmentOptions {
  int num_ops = 2;             // n: ops drawn per image, uniformly with replacement
  double magnitude = 9;        // m: on timm's 0..10 scale
  double magnitude_std = 0.5;  // mstd: magnitude ~ N(m, mstd) per op; +inf: uniform(0, m)
  double magnitude_max = 10;   // mmax: the drawn magnitude is clipped to [0, mmax]
  bool increasing = true;      // inc: the "increasing" level mapping
  double prob = 0.5;           // p: each drawn op is applied with this probability
  std::array<uint8_t, 3> fill{124, 116, 104};  // area uncovered by affine ops (timm's img_mean)
  AffineResample resample = AffineResample::Bicubic;
};

/// timm's RandAugment config string as options (grammar and timm's defaults: see
/// io::parse_rand_augment_spec). Throws std::invalid_argument for "", "none" or a malformed one.
RandAugmentOptions parse_rand_augment(const std::string& spec);

/// timm's level → argument function of `op` at `magnitude` (0..10 scale, already clipped):
///   Rotate            ±30·m/10 degrees          ShearX/Y          ±0.3·m/10
///   TranslateX/YRel   ±0.45·m/10 of the size    SolarizeAdd       int(110·m/10), below 128
///   Posterize         int(4·m/10) bits kept;    increasing: 4 − int(4·m/10)
///   Solarize          int(256·m/10) threshold;  increasing: 256 − int(256·m/10)
///   Color/Contrast/Brightness/Sharpness  1.8·m/10 + 0.1;  increasing: max(0.1, 1 ± 0.9·m/10)
///   AutoContrast, Equalize, Invert       no argument (0)
/// `negate` applies timm's random sign (`_randomly_negate`) to the signed arguments.
double augment_level_to_arg(AugmentOp op, double magnitude, bool increasing, bool negate);

/// Applies one op at `arg` in place, in Pillow 9's arithmetic: point ops as LUTs, enhance ops as
/// ImagingBlend's float32 blend with the degenerate image (grey L, mean grey, black, SMOOTH),
/// affine ops with `fill` outside the source. `resample` must be Bilinear or Bicubic.
void apply_augment_op(Image& image, AugmentOp op, double arg, std::array<uint8_t, 3> fill,
                      AffineResample resample = AffineResample::Bicubic);

/// RandAugment on one image, in place: num_ops ops drawn with replacement, each skipped with
/// probability 1 − prob, else applied at a drawn magnitude (see RandAugmentOptions) clipped to
/// [0, mmax]. Same image, options and rng state → same result.
void rand_augment(Image& image, const RandAugmentOptions& options, SampleRng& rng);

/// `base`, then RandAugment, which draws from its own stream (the sample seed salted and mixed),
/// so adding it leaves the base's output size, and its crop and flip for a seed, unchanged.
std::shared_ptr<const Transform> with_rand_augment(std::shared_ptr<const Transform> base,
                                                   RandAugmentOptions options);

}  // namespace ocl::data
