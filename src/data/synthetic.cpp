// The procedural data set: 16 concepts drawn with OpenCV's anti-aliased primitives over a
// cluttered background, every nuisance from one generator seeded by (seed, split, index). Colours
// come from small shared palettes on purpose: a per-image colour, seen by both of OCL's patch
// groups, identifies the image alone and keeps kNN at a random encoder's level (~12 % top-1 of 10
// classes after 8 quickstart epochs). SyntheticColours::Random brings that shortcut back.
#include "ocl/data/synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "ocl/data/photometric.h"
#include "ocl/data/transforms.h"

namespace ocl::data {
namespace {

constexpr double kPi = 3.14159265358979323846;
// OpenCV draws in fixed point with `shift` fractional bits: small objects do not snap to pixels.
constexpr int kShift = 4;
constexpr double kFixed = 1 << kShift;

const std::array<const char*, 16> kConcepts = {
    "circle",         "ring",      "square",    "triangle",     "star",
    "cross",          "h_stripes", "v_stripes", "checkerboard", "concentric_rings",
    "diagonal_lines", "dot_grid",  "crescent",  "arrow",        "ellipse_pair",
    "spiral"};

enum Concept {
  kCircle,
  kRing,
  kSquare,
  kTriangle,
  kStar,
  kCross,
  kHStripes,
  kVStripes,
  kCheckerboard,
  kConcentricRings,
  kDiagonalLines,
  kDotGrid,
  kCrescent,
  kArrow,
  kEllipsePair,
  kSpiral
};

cv::Point fixed(cv::Point2d p) {
  return {static_cast<int>(std::lround(p.x * kFixed)), static_cast<int>(std::lround(p.y * kFixed))};
}
int fixed(double v) { return static_cast<int>(std::lround(v * kFixed)); }

using Rgb = std::array<double, 3>;

// Foregrounds lie ≥ 110 from every background and far apart (texture patch vs. texture).
const std::array<Rgb, 2> kBackgrounds = {{{95, 95, 95}, {35, 35, 45}}};
const std::array<Rgb, 2> kForegrounds = {{{225, 45, 40}, {40, 190, 70}}};

cv::Scalar scalar(const Rgb& c) { return cv::Scalar(c[0], c[1], c[2]); }

// HSV (h in [0, 1), s and v in [0, 1]) → RGB on [0, 255].
Rgb from_hsv(double h, double s, double v) {
  const double h6 = std::fmod(h, 1.0) * 6.0;
  const int sector = static_cast<int>(h6) % 6;
  const double f = h6 - std::floor(h6);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const std::array<Rgb, 6> rgb = {
      {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}}};
  Rgb out = rgb[static_cast<size_t>(sector)];
  for (auto& c : out) c = std::round(255.0 * c);
  return out;
}

// A saturated, bright colour of random hue (foregrounds, clutter with random colours).
Rgb random_vivid(SampleRng& rng, double hue) {
  return from_hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0));
}

// The image's colours: drawn from the palettes, or per image (SyntheticColours::Random).
struct Colours {
  SyntheticColours mode;
  double hue = 0;  // Random: the foreground's hue, drawn with the background

  // A flat palette colour (a gradient would identify an image in any patch), or a dark gradient.
  void background(cv::Mat& image, SampleRng& rng) {
    if (mode == SyntheticColours::Palette) {
      image.setTo(scalar(kBackgrounds[static_cast<size_t>(rng.below(kBackgrounds.size()))]));
      return;
    }
    Rgb a, b;
    for (auto& c : a) c = rng.uniform(10, 130);
    for (auto& c : b) c = rng.uniform(10, 130);
    const double angle = rng.uniform(0, 2 * kPi), dx = std::cos(angle), dy = std::sin(angle);
    hue = rng.uniform();
    const int S = image.rows;
    for (int y = 0; y < S; ++y) {
      uint8_t* px = image.ptr<uint8_t>(y);
      for (int x = 0; x < S; ++x, px += 3) {
        // Projection on the direction, mapped to [0, 1] over the image's extent.
        const double t = 0.5 + ((x + 0.5) / S - 0.5) * dx + ((y + 0.5) / S - 0.5) * dy;
        const double w = std::clamp(t, 0.0, 1.0);
        for (int k = 0; k < 3; ++k)
          px[k] = static_cast<uint8_t>(std::lround(a[k] + (b[k] - a[k]) * w));
      }
    }
  }
  // Clutter and occluders.
  Rgb other(SampleRng& rng) {
    if (mode == SyntheticColours::Palette)
      return kForegrounds[static_cast<size_t>(rng.below(kForegrounds.size()))];
    return random_vivid(rng, rng.uniform());
  }
  // The object's colour and its texture patch's.
  std::pair<Rgb, Rgb> object(SampleRng& rng) {
    if (mode == SyntheticColours::Palette) {
      const size_t fg = static_cast<size_t>(rng.below(kForegrounds.size()));
      return {kForegrounds[fg], kForegrounds[(fg + 1) % kForegrounds.size()]};
    }
    return {random_vivid(rng, hue), random_vivid(rng, hue + 0.5)};
  }
};

// The object's frame: unit (u, v) ∈ [-1, 1]² to pixels by rotation, mild anisotropy and radius.
struct Frame {
  double cx, cy, r, ax, ay, angle;  // angle in radians
  cv::Point2d map(double u, double v) const {
    const double x = u * ax * r, y = v * ay * r;
    return {cx + std::cos(angle) * x - std::sin(angle) * y,
            cy + std::sin(angle) * x + std::cos(angle) * y};
  }
  cv::Point at(double u, double v) const { return fixed(map(u, v)); }
  int px(double t) const { return std::max(1, static_cast<int>(std::lround(t * r))); }
  double degrees() const { return angle * 180.0 / kPi; }
};

void polygon(cv::Mat& mask, const Frame& f, const std::vector<cv::Point2d>& uv,
             double value = 255) {
  std::vector<cv::Point> pts;
  pts.reserve(uv.size());
  for (const auto& p : uv) pts.push_back(f.at(p.x, p.y));
  cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{pts}, cv::Scalar(value), cv::LINE_AA,
               kShift);
}

void ellipse(cv::Mat& mask, const Frame& f, double u, double v, double a, double b, int thickness,
             double value = 255) {
  cv::ellipse(mask, f.at(u, v), cv::Size(fixed(a * f.ax * f.r), fixed(b * f.ay * f.r)), f.degrees(),
              0, 360, cv::Scalar(value), thickness, cv::LINE_AA, kShift);
}

// A polygonal concept's outline (square, triangle, star, cross, arrow) in the unit frame, or {}.
std::vector<cv::Point2d> concept_outline(int kind) {
  std::vector<cv::Point2d> pts;
  switch (kind) {
    case kSquare:
      return {{-0.78, -0.78}, {0.78, -0.78}, {0.78, 0.78}, {-0.78, 0.78}};
    case kTriangle:
      for (int k = 0; k < 3; ++k) {
        const double a = -kPi / 2 + 2 * kPi * k / 3;
        pts.push_back({std::cos(a), std::sin(a) + 0.15});
      }
      return pts;
    case kStar:
      for (int k = 0; k < 10; ++k) {
        const double a = -kPi / 2 + kPi * k / 5, rad = k % 2 == 0 ? 1.0 : 0.42;
        pts.push_back({rad * std::cos(a), rad * std::sin(a)});
      }
      return pts;
    case kCross: {
      const double w = 0.28;
      return {{-w, -1}, {w, -1}, {w, -w}, {1, -w}, {1, w},   {w, w},
              {w, 1},   {-w, 1}, {-w, w}, {-1, w}, {-1, -w}, {-w, -w}};
    }
    case kArrow:
      return {{-1, -0.17},  {0.15, -0.17}, {0.15, -0.58}, {1, 0},
              {0.15, 0.58}, {0.15, 0.17},  {-1, 0.17}};
  }
  return pts;
}

// A texture concept (stripes, diagonal lines, checkerboard) into `shape`, and the patch behind
// it into `region`: an ellipse or a rectangle, so the outline says nothing about the class.
void draw_texture(int kind, Frame f, cv::Mat& shape, cv::Mat& region, SampleRng& rng) {
  if (rng.uniform() < 0.5) {
    ellipse(region, f, 0, 0, 1.0, 1.0, cv::FILLED);
  } else {
    polygon(region, f, {{-0.85, -0.85}, {0.85, -0.85}, {0.85, 0.85}, {-0.85, 0.85}});
  }
  if (kind == kCheckerboard) {
    const int n = static_cast<int>(rng.between(3, 5));
    const int parity = static_cast<int>(rng.below(2));
    const double cell = 2.0 / n;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        if ((i + j) % 2 != parity) continue;
        const double u0 = -1 + i * cell, v0 = -1 + j * cell;
        polygon(shape, f, {{u0, v0}, {u0 + cell, v0}, {u0 + cell, v0 + cell}, {u0, v0 + cell}});
      }
    }
    return;
  }
  // Stripes: bands of `width` every `period` along the frame's u axis; diagonal lines: thin lines
  // (always at least a pixel), closer together.
  const bool lines = kind == kDiagonalLines;
  const double period = lines ? rng.uniform(0.26, 0.36) : rng.uniform(0.4, 0.6);
  const double width = lines ? 0 : period * rng.uniform(0.4, 0.55);
  const double phase = rng.uniform(0, period);
  for (double v = -1.4 + phase; v < 1.4; v += period) {
    if (lines) {
      cv::line(shape, f.at(-1.4, v), f.at(1.4, v), cv::Scalar(255), f.px(0.07), cv::LINE_AA,
               kShift);
    } else {
      polygon(shape, f, {{-1.4, v}, {1.4, v}, {1.4, v + width}, {-1.4, v + width}});
    }
  }
}

// Draws the concept into `shape` (alpha of the foreground colour) and, for textures, the patch
// behind it into `region` (alpha of a second colour). Returns whether `region` was used.
bool draw_concept(int kind, Frame f, cv::Mat& shape, cv::Mat& region, SampleRng& rng) {
  if (const auto outline = concept_outline(kind); !outline.empty()) {
    polygon(shape, f, outline);
    return false;
  }
  switch (kind) {
    case kCircle:
      ellipse(shape, f, 0, 0, 0.9, 0.9, cv::FILLED);
      return false;
    case kRing:
      ellipse(shape, f, 0, 0, 0.8, 0.8, f.px(0.28));
      return false;
    case kHStripes:
    case kVStripes:
    case kDiagonalLines:
    case kCheckerboard:
      draw_texture(kind, f, shape, region, rng);
      return true;
    case kConcentricRings:
      for (double rad : {1.0, 0.67, 0.34}) ellipse(shape, f, 0, 0, rad, rad, f.px(0.12));
      return false;
    case kDotGrid: {
      const int n = static_cast<int>(rng.between(3, 4));
      const double step = 1.6 / (n - 1), dot = step * 0.3;
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j)
          ellipse(shape, f, -0.8 + i * step, -0.8 + j * step, dot, dot, cv::FILLED);
      }
      return false;
    }
    case kCrescent:
      ellipse(shape, f, 0, 0, 1.0, 1.0, cv::FILLED);
      ellipse(shape, f, 0.45, -0.1, 0.8, 0.8, cv::FILLED, 0);
      return false;
    case kEllipsePair:
      ellipse(shape, f, -0.5, 0, 0.32, 0.72, cv::FILLED);
      ellipse(shape, f, 0.5, 0, 0.32, 0.72, cv::FILLED);
      return false;
    case kSpiral: {
      std::vector<cv::Point> pts;
      const double turns = 2.5, steps = 90;
      for (int k = 0; k <= steps; ++k) {
        const double t = k / steps, a = t * turns * 2 * kPi, rad = 0.1 + 0.9 * t;
        pts.push_back(f.at(rad * std::cos(a), rad * std::sin(a)));
      }
      cv::polylines(shape, std::vector<std::vector<cv::Point>>{pts}, false, cv::Scalar(255),
                    f.px(0.1), cv::LINE_AA, kShift);
      return false;
    }
  }
  return false;
}

// out = out + (colour − out) · alpha / 255, per pixel.
void composite(cv::Mat& image, const cv::Mat& alpha, const Rgb& colour) {
  const int c[3] = {static_cast<int>(colour[0]), static_cast<int>(colour[1]),
                    static_cast<int>(colour[2])};
  for (int y = 0; y < image.rows; ++y) {
    uint8_t* px = image.ptr<uint8_t>(y);
    const uint8_t* a = alpha.ptr<uint8_t>(y);
    for (int x = 0; x < image.cols; ++x, px += 3) {
      const int w = a[x];
      if (w == 0) continue;
      for (int k = 0; k < 3; ++k)
        px[k] = static_cast<uint8_t>((px[k] * (255 - w) + c[k] * w + 127) / 255);
    }
  }
}

// Clutter that belongs to no class: a few short lines and small blobs.
void draw_clutter(cv::Mat& image, Colours& colours, SampleRng& rng) {
  const int S = image.rows;
  const int clutter = static_cast<int>(rng.between(2, 5));
  for (int i = 0; i < clutter; ++i) {
    const Rgb colour = colours.other(rng);
    const cv::Point2d p(rng.uniform(0, S), rng.uniform(0, S));
    if (rng.uniform() < 0.5) {
      const double len = rng.uniform(0.1, 0.3) * S, a = rng.uniform(0, 2 * kPi);
      cv::line(image, fixed(p), fixed(p + cv::Point2d(len * std::cos(a), len * std::sin(a))),
               scalar(colour), std::max(1, S / 64), cv::LINE_AA, kShift);
    } else {
      cv::circle(image, fixed(p), std::max(fixed(1.0), fixed(rng.uniform(0.02, 0.05) * S)),
                 scalar(colour), cv::FILLED, cv::LINE_AA, kShift);
    }
  }
}

// The object's place in an S×S image: 0.35-0.8 of it, at most a sliver outside. Stripes and
// diagonal lines keep their orientation (a flip keeps their class); the rest rotate freely.
Frame object_frame(int kind, int S, SampleRng& rng) {
  Frame f{};
  f.r = rng.uniform(0.35, 0.8) * S / 2;
  const double margin = std::min(0.85 * f.r, S / 2.0);
  f.cx = rng.uniform(margin, S - margin);
  f.cy = rng.uniform(margin, S - margin);
  f.ax = std::exp(rng.uniform(-0.15, 0.15));
  f.ay = 1.0 / f.ax;
  const double jitter = rng.uniform(-1, 1);
  if (kind == kHStripes) {
    f.angle = jitter * kPi / 12;
  } else if (kind == kVStripes) {
    f.angle = kPi / 2 + jitter * kPi / 12;
  } else if (kind == kDiagonalLines) {
    f.angle = (rng.uniform() < 0.5 ? kPi / 4 : -kPi / 4) + jitter * kPi / 18;
  } else {
    f.angle = rng.uniform(0, 2 * kPi);
  }
  return f;
}

// Sometimes an occluder over part of the object: at most 15% of its bounding box.
void maybe_occlude(cv::Mat& image, const Frame& f, Colours& colours, SampleRng& rng) {
  if (rng.uniform() >= 0.35) return;
  const double area = rng.uniform(0.04, 0.15) * (2 * f.r) * (2 * f.r);
  const double aspect = std::exp(rng.uniform(std::log(0.5), std::log(2.0)));
  const double w = std::sqrt(area * aspect), h = std::sqrt(area / aspect);
  const double ox = f.cx + rng.uniform(-0.7, 0.7) * f.r, oy = f.cy + rng.uniform(-0.7, 0.7) * f.r;
  cv::rectangle(image, fixed({ox - w / 2, oy - h / 2}), fixed({ox + w / 2, oy + h / 2}),
                scalar(colours.other(rng)), cv::FILLED, cv::LINE_AA, kShift);
}

// Mild pixel noise, uniform in [-6, 6], eight values per 64-bit draw.
void add_pixel_noise(std::vector<uint8_t>& pixels, SampleRng& rng) {
  uint64_t bits = 0;
  for (size_t i = 0; i < pixels.size(); ++i) {
    if (i % 8 == 0) bits = rng.next();
    const int v = pixels[i] + static_cast<int>((bits & 0xff) % 13) - 6;
    bits >>= 8;
    pixels[i] = static_cast<uint8_t>(std::clamp(v, 0, 255));
  }
}

// The nuisances' own streams: one per switch, apart from the image's and from each other.
enum Nuisance : uint64_t { kStrokes = 1, kGradient = 2, kNoise = 3 };
SampleRng nuisance_rng(const SyntheticOptions& o, Nuisance which, int64_t index) {
  return SampleRng(sample_seed(o.seed ^ 0x6e756973616e6365ULL ^ (which << 56),  // "nuisance"
                               o.train ? 0 : 1, index));
}

// Long thin strokes across the image, over the object.
void draw_strokes(cv::Mat& image, int count, Colours& colours, SampleRng& rng) {
  const int S = image.rows;
  for (int i = 0; i < count; ++i) {
    const Rgb colour = colours.other(rng);
    const cv::Point2d c(rng.uniform(0, S), rng.uniform(0, S));
    const double half = rng.uniform(0.3, 0.6) * S, a = rng.uniform(0, 2 * kPi);
    const cv::Point2d d(half * std::cos(a), half * std::sin(a));
    cv::line(image, fixed(c - d), fixed(c + d), scalar(colour), std::max(1, S / 32), cv::LINE_AA,
             kShift);
  }
}

}  // namespace

int64_t SyntheticDataset::max_classes() { return static_cast<int64_t>(kConcepts.size()); }

SyntheticColours parse_synthetic_colours(const std::string& name) {
  if (name == "palette") return SyntheticColours::Palette;
  if (name == "random") return SyntheticColours::Random;
  throw std::invalid_argument("data.synthetic_colours: expected palette | random, got '" + name +
                              "'");
}

SyntheticDataset::SyntheticDataset(const SyntheticOptions& options) : options_(options) {
  if (options.size < 0 || options.image_size < 16 || options.num_classes < 2 ||
      options.num_classes > max_classes()) {
    throw std::invalid_argument(fmt::format(
        "synthetic data set: needs size >= 0, image_size >= 16 and 2 <= num_classes <= {}, got "
        "size {}, image_size {}, num_classes {}",
        max_classes(), options.size, options.image_size, options.num_classes));
  }
  if (!(options.noise >= 0 && options.noise <= 128) ||
      !(options.gradient >= 0 && options.gradient <= 255) || options.strokes < 0 ||
      options.strokes > 16) {
    std::ostringstream msg;
    msg << "synthetic data set: needs noise in [0, 128], gradient in [0, 255] and strokes in "
           "[0, 16], got noise "
        << options.noise << ", gradient " << options.gradient << ", strokes " << options.strokes;
    throw std::invalid_argument(msg.str());
  }
  names_.assign(kConcepts.begin(), kConcepts.begin() + options.num_classes);
}

int64_t SyntheticDataset::label(int64_t index) const {
  if (index < 0 || index >= options_.size)
    throw std::out_of_range("synthetic data set: index " + std::to_string(index) +
                            " out of range [0, " + std::to_string(options_.size) + ")");
  return index % options_.num_classes;
}

std::optional<Image> SyntheticDataset::load(int64_t index, BadSample*) const {
  const int kind = static_cast<int>(label(index));
  const int S = options_.image_size;
  // The salt keeps this stream apart from the loader's augmentation seeds (same mixer).
  SampleRng rng(sample_seed(options_.seed ^ 0x73796e7468657469ULL, options_.train ? 0 : 1, index));

  Image out{S, S, std::vector<uint8_t>(static_cast<size_t>(S) * S * 3), {}};
  cv::Mat image(S, S, CV_8UC3, out.pixels.data());

  Colours colours{options_.colours};
  colours.background(image, rng);
  draw_clutter(image, colours, rng);
  const Frame f = object_frame(kind, S, rng);
  // Texture concepts sit on a patch of the other foreground colour.
  const auto [foreground, patch] = colours.object(rng);
  // Plain constructors, not Mat::zeros: its lazily built singleton is a (benign) data race.
  cv::Mat shape(S, S, CV_8UC1, cv::Scalar(0)), region(S, S, CV_8UC1, cv::Scalar(0));
  if (draw_concept(kind, f, shape, region, rng)) {
    cv::min(shape, region, shape);
    composite(image, region, patch);
  }
  composite(image, shape, foreground);
  maybe_occlude(image, f, colours, rng);
  // The switched nuisances of the scene, before the sensor's noise: strokes, then the light.
  if (options_.strokes > 0) {
    SampleRng strokes_rng = nuisance_rng(options_, kStrokes, index);
    Colours stroke_colours{options_.colours};
    draw_strokes(image, options_.strokes, stroke_colours, strokes_rng);
  }
  if (options_.gradient > 0) {
    SampleRng light_rng = nuisance_rng(options_, kGradient, index);
    const double angle = light_rng.uniform(0, 2 * kPi);
    std::array<double, 3> amplitude{};
    for (auto& a : amplitude) a = light_rng.uniform(-options_.gradient, options_.gradient);
    illumination_gradient(out, angle, amplitude);
  }
  add_pixel_noise(out.pixels, rng);
  if (options_.noise > 0) {  // the switched sensor noise, last
    SampleRng noise_rng = nuisance_rng(options_, kNoise, index);
    add_gaussian_noise(out, noise_rng.uniform(0, options_.noise), noise_rng);
  }
  return out;
}

std::string SyntheticDataset::describe() const {
  std::ostringstream s;
  s << "synthetic: " << options_.size << " " << (options_.train ? "train" : "held-out")
    << " images, " << options_.num_classes << " classes, " << options_.image_size << "x"
    << options_.image_size << ", seed " << options_.seed
    << (options_.colours == SyntheticColours::Random ? ", random per-image colours" : "");
  if (options_.noise > 0) s << ", pixel noise sigma U[0, " << options_.noise << "]";
  if (options_.gradient > 0) s << ", lighting gradient +-" << options_.gradient;
  if (options_.strokes > 0) s << ", " << options_.strokes << " clutter strokes";
  return s.str();
}

}  // namespace ocl::data
