// The built-in synthetic data set (quickstart, tests): procedurally drawn images, deterministic in
// (seed, split, index). Each class is a shape, texture or layout under nuisances (position, scale,
// rotation, clutter, occlusion): a random encoder separates them badly, a trained one well.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

/// Where an image's colours come from: small shared palettes (shape tells images apart) or Random
/// per-image gradient and hue (colour alone identifies an image: the shortcut, "hard colour").
enum class SyntheticColours { Palette, Random };
/// "palette" | "random"; throws std::invalid_argument naming the value.
SyntheticColours parse_synthetic_colours(const std::string& name);

struct SyntheticOptions {
  int64_t size = 10000;      // images in this split
  int64_t num_classes = 10;  // 2 … max_classes() (16); run configs ask for ≥ 10
  int image_size = 64;       // side in pixels (square), ≥ 16
  uint64_t seed = 0;
  bool train = true;  // train and held-out splits draw from disjoint seed streams
  SyntheticColours colours = SyntheticColours::Palette;
  /// Acquisition signatures of real data, each 0 = off and drawn from a stream of its own
  /// (switching one on leaves the rest of an image as it was). Pixel noise, last: σ ~ U[0, noise]
  /// levels per image, then data::add_gaussian_noise. [0, 128].
  double noise = 0;
  /// data::illumination_gradient over the whole image in a random direction, U[-gradient,
  /// gradient] levels per channel. [0, 255].
  double gradient = 0;
  /// Long thin lines (0.6-1.2 of the side, 1 px at 32 px) over the object, in a random place,
  /// direction and clutter colour. [0, 16].
  int strokes = 0;
};

class SyntheticDataset : public Dataset {
 public:
  explicit SyntheticDataset(const SyntheticOptions& options);
  int64_t size() const override { return options_.size; }
  const std::vector<std::string>& class_names() const override { return names_; }
  /// Balanced: label(i) = i mod num_classes.
  int64_t label(int64_t index) const override;
  std::optional<Image> load(int64_t index, BadSample* error = nullptr) const override;
  std::string describe() const override;
  /// The most classes the generator can draw.
  static int64_t max_classes();

 private:
  SyntheticOptions options_;
  std::vector<std::string> names_;
};

}  // namespace ocl::data
