// The synthetic data set: deterministic per (seed, split, index), its colour and nuisance switches,
// balanced labels, and classes that differ in more than colour.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <ocl/data/synthetic.h>

using namespace ocl::data;

TEST(Synthetic, DeterministicAndSplitsDiffer) {
  SyntheticOptions o;
  o.size = 64;
  o.image_size = 32;
  o.seed = 11;
  SyntheticDataset a(o), b(o);
  o.train = false;
  SyntheticDataset val(o);
  for (int64_t i = 0; i < 64; ++i) {
    const Image x = *a.load(i);
    EXPECT_EQ(x.pixels, b.load(i)->pixels) << i;
    EXPECT_EQ(x.pixels, a.load(i)->pixels) << i;
    EXPECT_NE(x.pixels, val.load(i)->pixels) << i;
    EXPECT_EQ(a.label(i), val.label(i));
  }
  o.train = true;
  o.seed = 12;
  EXPECT_NE(SyntheticDataset(o).load(0)->pixels, a.load(0)->pixels);
  EXPECT_THROW(a.load(64), std::out_of_range);
  EXPECT_THROW(a.label(-1), std::out_of_range);
}

// The hard-colour variant: the same concepts with per-image colours. An image's most common
// colour (its background, quantised to 8 levels per channel) takes a handful of values over a
// palette set and nearly one per image over a random one.
TEST(Synthetic, RandomColoursGiveEveryImageItsOwnColours) {
  SyntheticOptions o;
  o.size = 40;
  o.image_size = 32;
  o.seed = 5;
  SyntheticDataset palette(o);
  o.colours = SyntheticColours::Random;
  SyntheticDataset random(o);
  EXPECT_NE(random.describe().find("random per-image colours"), std::string::npos);
  EXPECT_EQ(palette.describe().find("random"), std::string::npos);
  auto commonest = [](const Image& im) {
    std::map<int, int> counts;
    for (size_t i = 0; i < im.pixels.size(); i += 3)
      counts[(im.pixels[i] / 32) * 64 + (im.pixels[i + 1] / 32) * 8 + im.pixels[i + 2] / 32] += 1;
    return std::max_element(counts.begin(), counts.end(),
                            [](const auto& a, const auto& b) { return a.second < b.second; })
        ->first;
  };
  std::set<int> palette_backgrounds, random_backgrounds;
  for (int64_t i = 0; i < o.size; ++i) {
    const Image a = *palette.load(i), b = *random.load(i);
    EXPECT_EQ(a.height, b.height);
    EXPECT_EQ(palette.label(i), random.label(i));
    EXPECT_NE(a.pixels, b.pixels);
    EXPECT_EQ(b.pixels, random.load(i)->pixels);  // deterministic
    palette_backgrounds.insert(commonest(a));
    random_backgrounds.insert(commonest(b));
  }
  EXPECT_LE(palette_backgrounds.size(), 6u);
  EXPECT_GE(random_backgrounds.size(), 25u);
  EXPECT_EQ(parse_synthetic_colours("random"), SyntheticColours::Random);
  EXPECT_THROW(parse_synthetic_colours("rgb"), std::invalid_argument);
}

// The per-image nuisances: each on its own switch, drawn from its own stream, so switching one on
// changes what it adds and nothing else, and any mix is the sum of its parts.
TEST(Synthetic, EachNuisanceIsItsOwnSwitch) {
  SyntheticOptions o;
  o.size = 40;
  o.image_size = 32;
  o.seed = 3;
  const SyntheticDataset plain(o);
  auto with = [&](double noise, double gradient, int strokes) {
    SyntheticOptions n = o;
    n.noise = noise;
    n.gradient = gradient;
    n.strokes = strokes;
    return SyntheticDataset(n);
  };
  const auto noisy = with(32, 0, 0), lit = with(0, 96, 0), stroked = with(0, 0, 3),
             lit_noisy = with(32, 96, 0);
  EXPECT_NE(noisy.describe().find("pixel noise sigma U[0, 32]"), std::string::npos);
  EXPECT_NE(lit.describe().find("lighting gradient +-96"), std::string::npos);
  EXPECT_NE(stroked.describe().find("3 clutter strokes"), std::string::npos);
  EXPECT_EQ(plain.describe().find("noise"), std::string::npos);
  std::vector<double> noise_levels, ramp_spans;
  for (int64_t i = 0; i < o.size; ++i) {
    const Image p = *plain.load(i), n = *noisy.load(i), g = *lit.load(i), s = *stroked.load(i),
                gn = *lit_noisy.load(i);
    EXPECT_EQ(n.pixels, noisy.load(i)->pixels);  // deterministic in (seed, split, index)
    // Strokes: a few lines over the image; every other pixel as it was (the object, its place
    // and the clutter are drawn from the image's own stream, which the strokes do not touch).
    size_t changed = 0;
    for (size_t k = 0; k < p.pixels.size(); k += 3)
      changed += p.pixels[k] != s.pixels[k] || p.pixels[k + 1] != s.pixels[k + 1] ||
                 p.pixels[k + 2] != s.pixels[k + 2];
    EXPECT_GT(changed, 10u) << i;
    EXPECT_LT(changed, p.pixels.size() / 3 / 2) << i;
    // Noise and gradient: per channel value, what each adds; where nothing was clipped, the
    // noise added to the lit image is the noise added to the plain one, value for value.
    double squares = 0;
    int counted = 0, lo = 255, hi = -255;
    for (size_t k = 0; k < p.pixels.size(); ++k) {
      const int dn = n.pixels[k] - p.pixels[k], dg = g.pixels[k] - p.pixels[k];
      const bool unclipped = n.pixels[k] > 0 && n.pixels[k] < 255 && g.pixels[k] > 0 &&
                             g.pixels[k] < 255 && gn.pixels[k] > 0 && gn.pixels[k] < 255;
      if (!unclipped) continue;
      ASSERT_EQ(gn.pixels[k] - g.pixels[k], dn) << i << " at " << k;
      squares += dn * dn;
      ++counted;
      lo = std::min(lo, dg);
      hi = std::max(hi, dg);
    }
    ASSERT_GT(counted, 1000) << i;
    noise_levels.push_back(std::sqrt(squares / counted));
    ramp_spans.push_back(hi - lo);
  }
  // Each image its own noise level over [0, 32] and its own light: spans up to 2 · 96 · √2/2.
  const auto [nmin, nmax] = std::minmax_element(noise_levels.begin(), noise_levels.end());
  EXPECT_LT(*nmin, 8);
  EXPECT_GT(*nmax, 24);
  EXPECT_LE(*nmax, 34);
  const auto [gmin, gmax] = std::minmax_element(ramp_spans.begin(), ramp_spans.end());
  EXPECT_LT(*gmin, 60);
  EXPECT_GT(*gmax, 100);
  EXPECT_LE(*gmax, 2 * 96 * 0.7072 + 2);
  // Out of range: refused naming the values.
  SyntheticOptions bad = o;
  bad.strokes = 17;
  EXPECT_THROW(SyntheticDataset{bad}, std::invalid_argument);
  bad.strokes = 0;
  bad.noise = -1;
  EXPECT_THROW(SyntheticDataset{bad}, std::invalid_argument);
}

TEST(Synthetic, LabelsAreBalancedAndNamed) {
  SyntheticOptions o;
  o.size = 160;
  o.num_classes = 16;
  SyntheticDataset ds(o);
  EXPECT_GE(SyntheticDataset::max_classes(), 16);
  ASSERT_EQ(ds.num_classes(), 16);
  std::vector<int> count(16, 0);
  for (int64_t i = 0; i < ds.size(); ++i) {
    EXPECT_EQ(ds.label(i), i % 16);
    ++count[static_cast<size_t>(ds.label(i))];
  }
  for (int c : count) EXPECT_EQ(c, 10);
  EXPECT_EQ(std::set<std::string>(ds.class_names().begin(), ds.class_names().end()).size(), 16u);
  o.num_classes = SyntheticDataset::max_classes() + 1;
  EXPECT_THROW(SyntheticDataset{o}, std::invalid_argument);
  o.num_classes = 10;
  o.image_size = 8;
  EXPECT_THROW(SyntheticDataset{o}, std::invalid_argument);
}

TEST(Synthetic, EveryClassDrawsAtEverySize) {
  for (int size : {16, 32, 64, 224}) {
    SyntheticOptions o;
    o.size = 32;
    o.num_classes = 16;
    o.image_size = size;
    SyntheticDataset ds(o);
    for (int64_t i = 0; i < 32; ++i) {
      const auto im = ds.load(i);
      ASSERT_TRUE(im.has_value());
      ASSERT_EQ(im->height, size);
      ASSERT_EQ(im->width, size);
      ASSERT_EQ(im->pixels.size(), static_cast<size_t>(size) * size * 3);
      // Not a flat image: the object and the background differ by more than the noise.
      const auto [lo, hi] = std::minmax_element(im->pixels.begin(), im->pixels.end());
      EXPECT_GT(*hi - *lo, 60) << "size " << size << " index " << i;
    }
  }
}

namespace {
// A colour-invariant description of an image: the histogram of gradient orientations (8 bins over
// 180°, magnitude-weighted, normalised) and the shares of edge and strong-edge pixels.
std::vector<double> gradient_statistics(const Image& im) {
  std::vector<double> grey(static_cast<size_t>(im.height) * im.width);
  for (size_t p = 0; p < grey.size(); ++p) {
    grey[p] =
        0.299 * im.pixels[3 * p] + 0.587 * im.pixels[3 * p + 1] + 0.114 * im.pixels[3 * p + 2];
  }
  std::vector<double> d(10, 0.0);
  double total = 1e-9;
  const double pi = std::acos(-1.0);
  for (int y = 1; y + 1 < im.height; ++y) {
    for (int x = 1; x + 1 < im.width; ++x) {
      auto g = [&](int yy, int xx) { return grey[static_cast<size_t>(yy) * im.width + xx]; };
      const double gx = g(y, x + 1) - g(y, x - 1), gy = g(y + 1, x) - g(y - 1, x);
      const double mag = std::hypot(gx, gy);
      double angle = std::atan2(gy, gx);
      if (angle < 0) angle += pi;
      d[std::min(7, static_cast<int>(angle / pi * 8))] += mag;
      total += mag;
      d[8] += mag > 40;
      d[9] += mag > 120;
    }
  }
  for (int k = 0; k < 8; ++k) d[k] /= total;
  d[8] /= static_cast<double>(grey.size());
  d[9] /= static_cast<double>(grey.size());
  return d;
}
}  // namespace

TEST(Synthetic, ClassesDifferInColourInvariantStatistics) {
  // Colour, position, scale and rotation are random, so per-class mean images all tend to the
  // same blur; gradient statistics are colour- and position-free. A nearest-class-mean rule on
  // them must beat chance clearly (it reaches ~0.2 of 16 classes: telling the concepts apart
  // well needs a learned encoder, which is the point of the data set).
  SyntheticOptions o;
  o.size = 16 * 120;
  o.num_classes = 16;
  o.image_size = 64;
  SyntheticDataset ds(o);
  const int K = 16, per = 60;
  std::vector<std::vector<double>> mean(K, std::vector<double>(10, 0.0));
  for (int64_t i = 0; i < K * per; ++i) {
    const auto d = gradient_statistics(*ds.load(i));
    for (int k = 0; k < 10; ++k) mean[static_cast<size_t>(i % K)][k] += d[k] / per;
  }
  int correct = 0;
  for (int64_t i = K * per; i < 2 * K * per; ++i) {
    const auto d = gradient_statistics(*ds.load(i));
    int best = 0;
    double best_distance = 1e300;
    for (int c = 0; c < K; ++c) {
      double s = 0;
      for (int k = 0; k < 10; ++k) s += (d[k] - mean[c][k]) * (d[k] - mean[c][k]);
      if (s < best_distance) {
        best_distance = s;
        best = c;
      }
    }
    correct += best == i % K;
  }
  const double accuracy = static_cast<double>(correct) / (K * per);
  EXPECT_GT(accuracy, 2.5 / K) << "nearest-class-mean accuracy " << accuracy;
  // Orientation is the concept for stripes: horizontal stripes have vertical gradients (bins
  // around 90°), vertical stripes horizontal ones (bins around 0° and 180°).
  auto vertical = [](const std::vector<double>& m) { return m[3] + m[4]; };
  auto horizontal = [](const std::vector<double>& m) { return m[0] + m[7]; };
  EXPECT_GT(vertical(mean[6]), 2 * horizontal(mean[6]));
  EXPECT_GT(horizontal(mean[7]), 2 * vertical(mean[7]));
  // No two classes have the same statistics.
  for (int a = 0; a < K; ++a) {
    for (int b = a + 1; b < K; ++b) EXPECT_NE(mean[a], mean[b]) << a << " " << b;
  }
}
