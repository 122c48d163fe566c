// The built-in synthetic data set (the quickstart's and the tests'): procedurally drawn labelled
// images, deterministic in (seed, split, index), at any size. Each class is a visual concept (a
// shape, texture or layout) under nuisance variation (position, scale, rotation, clutter,
// occlusion), so a random encoder separates the classes badly and a trained one well. Optional
// per-image cues that both token groups share reproduce a shortcut (docs/shortcuts.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

/// Where an image's colours come from: Palette (small shared palettes, the default: shape is
/// what tells images apart) or Random (a per-image background gradient and foreground hue: colour
/// alone identifies an image, the shortcut a contrastive method falls for; "hard colour").
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
  /// Acquisition signatures of real data, each off by default and drawn from a stream of its own
  /// (switching one on leaves the rest of an image as it was).
  /// Pixel noise: every image draws σ ~ U[0, noise] levels, then Gaussian noise of σ on every
  /// value (data::add_gaussian_noise), after everything else. [0, 128]; 0 = off.
  double noise = 0;
  /// A lighting gradient over the whole image, object included (data::illumination_gradient in
  /// a random direction, U[-gradient, gradient] levels per channel). [0, 255]; 0 = off.
  double gradient = 0;
  /// Clutter strokes: this many long thin lines (0.6-1.2 of the side, 1 px at 32 px) across the
  /// image in a random place, direction and clutter colour, over the object. [0, 16]; 0 = off.
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
