// Photometric augmentations with torchvision's PIL semantics on 8-bit RGB (ColorJitter,
// RandomGrayscale, GaussianBlur, RandomSolarize) and the BYOL recipe. OCL needs none; drawn apart
// per token group (mask.group_views: independent) they hide a shared cue (docs/shortcuts.md).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"

namespace ocl::data {

/// torchvision's ColorJitter(brightness, contrast, saturation, hue) inside RandomApply(p = prob):
/// factors uniform on [max(0, 1 − v), 1 + v] (hue: [−hue, hue]), applied in a random order.
struct ColorJitterOptions {
  double brightness = 0.4, contrast = 0.4, saturation = 0.2;  // ≥ 0
  double hue = 0.1;                                           // [0, 0.5]
  double prob = 0.8;                                          // [0, 1]; 0 = off
};

/// One view's photometric pipeline, in torchvision's order: colour jitter, grayscale, blur,
/// solarisation; each applied with its probability.
struct PhotometricOptions {
  ColorJitterOptions jitter;
  double grayscale_prob = 0.2;  // RandomGrayscale(p), 3 channels out
  double blur_prob = 1.0;       // GaussianBlur(kernel, sigma ~ U[sigma_min, sigma_max]) with p
  double blur_sigma_min = 0.1, blur_sigma_max = 2.0;
  /// Odd kernel side; 0 = BYOL's rule, 10 % of the image side made odd (23 at 224), at least 3.
  int blur_kernel = 0;
  double solarize_prob = 0.0;  // RandomSolarize(threshold, p)
  int solarize_threshold = 128;
  /// illumination_gradient with p, first: each channel a ramp of U[-strength, strength] levels.
  double illumination_prob = 0.0;
  double illumination_strength = 0.0;  // [0, 255]
  /// Pixel noise (torchvision v2's GaussianNoise), applied last, with p: σ ~ U[0, noise_sigma_max]
  /// levels, then add_gaussian_noise. Per token group, it hides an image's own noise level.
  double noise_prob = 0.0;
  double noise_sigma_max = 0.0;  // [0, 255] levels
  /// Whether any step can change an image (some probability above 0).
  bool active() const {
    return jitter.prob > 0 || grayscale_prob > 0 || blur_prob > 0 || solarize_prob > 0 ||
           illuminates() || adds_noise();
  }
  /// Whether the gradient / the noise is on (probability and strength > 0; else no draws).
  bool illuminates() const { return illumination_prob > 0 && illumination_strength > 0; }
  bool adds_noise() const { return noise_prob > 0 && noise_sigma_max > 0; }
};

/// No augmentation (every probability 0).
PhotometricOptions no_photometric();
/// BYOL's two views (Grill et al. 2020, App. B; MoCo v3's too): jitter (0.4, 0.4, 0.2, 0.1) with
/// p 0.8, grayscale 0.2, blur σ ∈ [0.1, 2] · image_size / 224 (as the kernel, 10 % of the side)
/// with p 1.0 (view 0) / 0.1 (view 1), solarisation with p 0 / 0.2. `view` is 0 or 1.
PhotometricOptions byol_view(int view, int image_size = 224);
/// The views a config's `data.photometric` names, for `views` copies (1: view 0's pipeline; 2:
/// views 0 and 1) of `image_size` crops: "none"; "byol"; "colour" (BYOL's jitter and grayscale
/// alone); "simclr" (Chen et al. 2020, App. A, colour strength 1: BYOL's view 0 with jitter
/// (0.8, 0.8, 0.8, 0.2) and blur p 0.5; both views alike). Throws std::invalid_argument otherwise.
std::vector<PhotometricOptions> photometric_preset(const std::string& name, int views,
                                                   int image_size = 224);

// ---- the single operations (in place; each equals torchvision's F.* on a PIL RGB image) ------

/// F.adjust_brightness: ImageEnhance.Brightness(factor), factor ≥ 0.
void adjust_brightness(Image& image, double factor);
/// F.adjust_contrast: ImageEnhance.Contrast(factor), factor ≥ 0.
void adjust_contrast(Image& image, double factor);
/// F.adjust_saturation: ImageEnhance.Color(factor), factor ≥ 0.
void adjust_saturation(Image& image, double factor);
/// F.adjust_hue: RGB → Pillow's 8-bit HSV, H += uint8(hue_factor · 255) (wrapping), → RGB.
/// hue_factor in [−0.5, 0.5].
void adjust_hue(Image& image, double hue_factor);
/// F.rgb_to_grayscale(num_output_channels=3): Pillow's L in all three channels.
void to_grayscale(Image& image);
/// F.gaussian_blur(kernel_size, sigma): a normalised float32 Gaussian of `kernel_size` (odd)
/// taps, clamped to the image, reflect padding, rounded half to even.
void gaussian_blur(Image& image, int kernel_size, double sigma);
/// F.solarize: every channel value ≥ threshold becomes 255 − value.
void solarize(Image& image, int threshold);
/// An uneven light or colour cast (not in torchvision): channel c of pixel (x, y) gains
/// amplitude[c] · t, t = ((x + ½)/W − ½)·cos θ + ((y + ½)/H − ½)·sin θ, rounded (halves away
/// from zero) and clipped to [0, 255]. One drawn per token group hides such a cast from matching.
void illumination_gradient(Image& image, double angle, const std::array<double, 3>& amplitude);

/// Gaussian pixel noise of `sigma` levels (v2.GaussianNoise(0, σ / 255, clip=True) in levels):
/// every value v becomes clip(round(v + σ·z)), z standard normal (Box–Muller on `rng`, one z per
/// value in pixel order), halves away from zero. σ ≥ 0 and finite; σ = 0 draws nothing.
void add_gaussian_noise(Image& image, double sigma, SampleRng& rng);

/// One view's draws and operations on `image`, in place; deterministic in image, options, rng.
void photometric_augment(Image& image, const PhotometricOptions& options, SampleRng& rng);

/// `base`, then one photometric pipeline per view: views.size() is 1 (apply) or 2 (apply_views:
/// the base's output copied, each copy drawn apart). View k draws from its own stream of the
/// sample seed: view 0 is the same with or without a second view, the base's crop and flip too.
std::shared_ptr<const Transform> with_photometric(std::shared_ptr<const Transform> base,
                                                  std::vector<PhotometricOptions> views);

}  // namespace ocl::data
