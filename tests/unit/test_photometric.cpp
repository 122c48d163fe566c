// Photometric augmentations: every operation against torchvision's output on PIL images
// (tests/fixtures/photometric_reference.safetensors, written by
// scripts/make_photometric_reference.py), the presets, the per-view draws of with_photometric
// and what the loader makes of a two-view transform.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "image_compare.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/factory.h>
#include <ocl/data/loader.h>
#include <ocl/data/photometric.h>
#include <ocl/data/synthetic.h>
#include <ocl/data/transforms.h>
#include <ocl/io/config.h>
#include <ocl/io/safetensors.h>

using namespace ocl::data;

namespace {

constexpr const char* kFixture = OCL_FIXTURE_DIR "/photometric_reference.safetensors";
constexpr const char* kFormatVersion = "1";

struct Case {
  std::string name;
  std::vector<double> args;
};

struct Reference {
  std::vector<std::string> images;
  std::vector<Case> cases;
  std::map<std::string, Image> tensors;  // "input.<image>", "<case>.<image>"
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(part);
  return out;
}

const Reference& reference() {
  static const Reference ref = [] {
    const auto file = ocl::io::read_safetensors(kFixture);
    EXPECT_EQ(file.metadata.at("format_version"), kFormatVersion)
        << "regenerate with /usr/bin/python3 scripts/make_photometric_reference.py";
    Reference r;
    r.images = split(file.metadata.at("images"), ',');
    for (const auto& entry : split(file.metadata.at("cases"), ',')) {
      auto parts = split(entry, ':');
      Case c{parts.at(0), {}};
      for (size_t i = 1; i < parts.size(); ++i) c.args.push_back(std::stod(parts[i]));
      r.cases.push_back(c);
    }
    for (const auto& [name, tensor] : file.tensors)
      r.tensors[name] = ocl::test::image_from_hwc(tensor);
    return r;
  }();
  return ref;
}

// Replays a fixture case on `image` with this library's operation.
void apply_case(const Case& c, Image& image) {
  const auto& a = c.args;
  const std::string kind = c.name.substr(0, c.name.find('_'));
  if (kind == "brightness") return adjust_brightness(image, a.at(0));
  if (kind == "contrast") return adjust_contrast(image, a.at(0));
  if (kind == "saturation") return adjust_saturation(image, a.at(0));
  if (kind == "hue") return adjust_hue(image, a.at(0));
  if (kind == "grayscale") return to_grayscale(image);
  if (kind == "blur") return gaussian_blur(image, static_cast<int>(a.at(0)), a.at(1));
  if (kind == "solarize") return solarize(image, static_cast<int>(a.at(0)));
  if (kind == "jitter") {
    for (int i = 0; i < 4; ++i) {
      const int op = static_cast<int>(a.at(i));
      const double f = a.at(4 + op);
      if (op == 0) adjust_brightness(image, f);
      if (op == 1) adjust_contrast(image, f);
      if (op == 2) adjust_saturation(image, f);
      if (op == 3) adjust_hue(image, f);
    }
    return;
  }
  FAIL() << "unknown fixture case " << c.name;
}

Image test_image(int h = 24, int w = 28) {
  Image im;
  im.height = h;
  im.width = w;
  im.pixels.resize(static_cast<size_t>(h * w * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &im.pixels[static_cast<size_t>((y * w + x) * 3)];
      p[0] = static_cast<uint8_t>(20 + 8 * x);
      p[1] = static_cast<uint8_t>(200 - 7 * y);
      p[2] = static_cast<uint8_t>((x * y * 13) % 256);
    }
  return im;
}

// An option switched off must leave BYOL's `view` drawing exactly what it drew before the option
// existed: the same pixels, and the random stream left at the same place.
void expect_off_option_draws_as_before(const Image& src, const PhotometricOptions& with_off,
                                       int view, uint64_t seed) {
  Image a = src, b = src;
  SampleRng ra(seed), rb(seed);
  photometric_augment(a, with_off, ra);
  photometric_augment(b, byol_view(view, 32), rb);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(ra.next(), rb.next());
}

}  // namespace

TEST(Photometric, EveryOperationEqualsTorchvision) {
  const auto& ref = reference();
  ASSERT_GE(ref.cases.size(), 30u);
  int exact_cases = 0;
  for (const auto& c : ref.cases) {
    for (const auto& img : ref.images) {
      Image got = ref.tensors.at("input." + img);
      apply_case(c, got);
      const auto d = ocl::test::compare_pixels(got, ref.tensors.at(c.name + "." + img));
      if (c.name.rfind("blur", 0) == 0) {
        // The blur sums 2k float32 products where torchvision sums k² of them: a value within
        // ~1e-4 of a half may round the other way. Anything else is a wrong kernel or border.
        EXPECT_LE(d.max_abs, 1) << c.name << " on " << img;
        EXPECT_LE(d.differing, static_cast<int64_t>(got.pixels.size() / 100))
            << c.name << " on " << img;
      } else {
        EXPECT_EQ(d.differing, 0) << c.name << " on " << img << ": " << d.differing
                                  << " values differ, max by " << d.max_abs;
        exact_cases += d.differing == 0;
      }
    }
  }
  EXPECT_GT(exact_cases, 40);
}

TEST(Photometric, IdentityFactorsLeaveTheImage) {
  const Image src = test_image();
  for (auto op : {adjust_brightness, adjust_contrast, adjust_saturation}) {
    Image im = src;
    op(im, 1.0);
    EXPECT_EQ(im.pixels, src.pixels);
  }
  Image im = src;
  solarize(im, 256);
  EXPECT_EQ(im.pixels, src.pixels);
}

TEST(Photometric, BadArgumentsAreRefused) {
  Image im = test_image();
  EXPECT_THROW(adjust_hue(im, 0.6), std::invalid_argument);
  EXPECT_THROW(gaussian_blur(im, 4, 1.0), std::invalid_argument);
  EXPECT_THROW(gaussian_blur(im, 3, 0.0), std::invalid_argument);
  PhotometricOptions o;
  o.grayscale_prob = 1.5;
  SampleRng rng(1);
  EXPECT_THROW(photometric_augment(im, o, rng), std::invalid_argument);
  EXPECT_THROW(photometric_preset("strong", 1), std::invalid_argument);
  EXPECT_THROW(with_photometric(resize_center_crop(16), {}), std::invalid_argument);
}

TEST(Photometric, PresetsAreByolsViews) {
  const auto byol = photometric_preset("byol", 2);
  ASSERT_EQ(byol.size(), 2u);
  for (const auto& v : byol) {
    EXPECT_DOUBLE_EQ(v.jitter.brightness, 0.4);
    EXPECT_DOUBLE_EQ(v.jitter.contrast, 0.4);
    EXPECT_DOUBLE_EQ(v.jitter.saturation, 0.2);
    EXPECT_DOUBLE_EQ(v.jitter.hue, 0.1);
    EXPECT_DOUBLE_EQ(v.jitter.prob, 0.8);
    EXPECT_DOUBLE_EQ(v.grayscale_prob, 0.2);
  }
  EXPECT_DOUBLE_EQ(byol[0].blur_prob, 1.0);
  EXPECT_DOUBLE_EQ(byol[1].blur_prob, 0.1);
  EXPECT_DOUBLE_EQ(byol[0].solarize_prob, 0.0);
  EXPECT_DOUBLE_EQ(byol[1].solarize_prob, 0.2);
  EXPECT_DOUBLE_EQ(byol[0].blur_sigma_min, 0.1);
  EXPECT_DOUBLE_EQ(byol[0].blur_sigma_max, 2.0);
  // The blur follows the crop size: at 32 pixels σ ∈ [0.1, 2] · 32 / 224.
  const auto small = photometric_preset("byol", 2, 32);
  EXPECT_DOUBLE_EQ(small[1].blur_sigma_min, 0.1 * 32 / 224);
  EXPECT_DOUBLE_EQ(small[1].blur_sigma_max, 2.0 * 32 / 224);
  EXPECT_DOUBLE_EQ(small[1].solarize_prob, 0.2);
  EXPECT_FALSE(photometric_preset("none", 1)[0].active());
  const auto colour = photometric_preset("colour", 1)[0];
  EXPECT_TRUE(colour.active());
  EXPECT_EQ(colour.blur_prob, 0.0);
  EXPECT_EQ(colour.solarize_prob, 0.0);
}

TEST(Photometric, DrawsAreDeterministicAndVary) {
  const Image src = test_image();
  const auto o = byol_view(1);
  std::set<std::vector<uint8_t>> outputs;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    Image a = src, b = src;
    SampleRng ra(seed), rb(seed);
    photometric_augment(a, o, ra);
    photometric_augment(b, o, rb);
    EXPECT_EQ(a.pixels, b.pixels) << "seed " << seed;
    outputs.insert(a.pixels);
  }
  EXPECT_GE(outputs.size(), 10u);  // p 0.8 jitter: almost every draw changes the image
  // Probability 0 everywhere: no change.
  Image c = src;
  SampleRng rc(3);
  photometric_augment(c, no_photometric(), rc);
  EXPECT_EQ(c.pixels, src.pixels);
}

TEST(Photometric, CertainStepsMatchTheirOperations) {
  // Grayscale with p 1 and nothing else gives to_grayscale's image; solarise with p 1 likewise.
  const Image src = test_image();
  auto o = no_photometric();
  o.grayscale_prob = 1.0;
  Image a = src, want = src;
  SampleRng rng(5);
  photometric_augment(a, o, rng);
  to_grayscale(want);
  EXPECT_EQ(a.pixels, want.pixels);
  o = no_photometric();
  o.solarize_prob = 1.0;
  Image b = src, want_b = src;
  photometric_augment(b, o, rng);
  solarize(want_b, 128);
  EXPECT_EQ(b.pixels, want_b.pixels);
}

TEST(Photometric, TwoViewsShareTheCropAndDifferOnlyInColour) {
  const Image src = test_image(40, 48);
  RandomResizedCropOptions rrc;
  rrc.size = 16;
  rrc.decode = RegionDecode::Full;
  const auto base = random_resized_crop(rrc);
  const auto plain = with_photometric(base, {no_photometric(), no_photometric()});
  const auto augmented = with_photometric(base, photometric_preset("byol", 2));
  EXPECT_EQ(augmented->views(), 2);
  EXPECT_EQ(with_photometric(base, {byol_view(0)})->views(), 1);
  int differ = 0;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const Image crop = base->apply(src, seed);
    // No augmentation: both copies are the base's crop, pixel for pixel.
    const auto same = plain->apply_views(src, seed);
    ASSERT_EQ(same.size(), 2u);
    EXPECT_EQ(same[0].pixels, crop.pixels);
    EXPECT_EQ(same[1].pixels, crop.pixels);
    // Augmented: view 0 is apply()'s image, the crop's geometry is kept (grayscale of both
    // copies of a flat-coloured crop would agree; here: the same size and a deterministic draw).
    const auto views = augmented->apply_views(src, seed);
    ASSERT_EQ(views.size(), 2u);
    EXPECT_EQ(views[0].pixels, augmented->apply(src, seed).pixels);
    EXPECT_EQ(views[0].height, crop.height);
    EXPECT_EQ(views[1].width, crop.width);
    EXPECT_EQ(augmented->apply_views(src, seed)[1].pixels, views[1].pixels);
    differ += views[0].pixels != views[1].pixels;
    // The second view is the crop with view 1's own draw: replayed by hand.
    Image by_hand = crop;
    SampleRng rng(sample_seed(seed ^ 0x70686f746f6d6574ULL, 0, 1));
    photometric_augment(by_hand, byol_view(1), rng);
    EXPECT_EQ(views[1].pixels, by_hand.pixels);
  }
  EXPECT_GE(differ, 7);
}

TEST(Photometric, LoaderDeliversTheSecondView) {
  SyntheticOptions so;
  so.size = 16;
  so.image_size = 16;
  auto set = std::make_shared<SyntheticDataset>(so);
  RandomResizedCropOptions rrc;
  rrc.size = 16;
  const auto base = random_resized_crop(rrc);
  LoaderOptions lo;
  lo.batch_size = 4;
  lo.workers = 2;
  lo.seed = 3;
  Loader one(set, with_photometric(base, {byol_view(0)}), lo);
  Loader two(set, with_photometric(base, photometric_preset("byol", 2)), lo);
  one.start_epoch(1);
  two.start_epoch(1);
  for (int s = 0; s < 4; ++s) {
    auto a = one.next(), b = two.next();
    ASSERT_TRUE(a && b);
    EXPECT_FALSE(a->second_view.defined());
    ASSERT_TRUE(b->second_view.defined());
    EXPECT_EQ(b->second_view.sizes(), b->images.sizes());
    // The first copy does not depend on whether a second is made.
    EXPECT_TRUE(torch::equal(a->images, b->images));
    EXPECT_FALSE(torch::equal(b->images, b->second_view));
  }
}

TEST(Photometric, IlluminationGradientAddsARampAlongItsDirection) {
  // Against the formula computed here in double: channel c gains amplitude[c] · t with
  // t = ((x + ½)/W − ½)·cos θ + ((y + ½)/H − ½)·sin θ, rounded half away from zero, clipped.
  const Image src = test_image(12, 20);
  const std::array<double, 3> amplitude = {90.0, -40.0, 255.0};
  for (double angle : {0.0, 0.7, 2.0, 4.5}) {
    Image im = src;
    illumination_gradient(im, angle, amplitude);
    for (int y = 0; y < im.height; ++y)
      for (int x = 0; x < im.width; ++x)
        for (int c = 0; c < 3; ++c) {
          const size_t i = static_cast<size_t>((y * im.width + x) * 3 + c);
          const double t = ((x + 0.5) / im.width - 0.5) * std::cos(angle) +
                           ((y + 0.5) / im.height - 0.5) * std::sin(angle);
          const double want = std::clamp(
              std::round(src.pixels[i] + amplitude[static_cast<size_t>(c)] * t), 0.0, 255.0);
          ASSERT_EQ(im.pixels[i], want) << "angle " << angle << " at " << y << "," << x << "," << c;
        }
  }
  // Along x (θ = 0) on a flat grey image the ramp rises left to right by ~amplitude in all.
  Image flat;
  flat.height = 4;
  flat.width = 64;
  flat.pixels.assign(4 * 64 * 3, 128);
  illumination_gradient(flat, 0.0, {100.0, 100.0, 100.0});
  EXPECT_EQ(flat.pixels[0], 128 - 49);                    // t = −0.4921875 → −49.2
  EXPECT_EQ(flat.pixels[63 * 3], 128 + 49);               // t = +0.4921875
  EXPECT_EQ(flat.pixels[3 * 64 * 3 + 63 * 3], 128 + 49);  // every row alike
  Image bad = src;
  EXPECT_THROW(illumination_gradient(bad, std::nan(""), amplitude), std::invalid_argument);
}

TEST(Photometric, IlluminationDrawsOnlyWhenOnAndLeavesTheOtherDrawsAlone) {
  const Image src = test_image();
  // On (p 1, nothing else): the image is changed, differently for different seeds, and equals
  // the operation with the draws made in photometric_augment's order after the torchvision ones.
  auto o = no_photometric();
  o.illumination_prob = 1.0;
  o.illumination_strength = 80;
  EXPECT_TRUE(o.active());
  std::set<std::vector<uint8_t>> outputs;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    Image a = src;
    SampleRng rng(seed);
    photometric_augment(a, o, rng);
    SampleRng replay(seed);
    // The torchvision steps' 12 draws, one 64-bit value each: jitter's p, the order's 3 swaps,
    // 4 factors, grayscale, blur, σ, solarise.
    for (int i = 0; i < 12; ++i) replay.next();
    const bool lit = replay.uniform() < 1.0;
    const double angle = replay.uniform(0, 2 * 3.14159265358979323846);
    std::array<double, 3> amp{};
    for (auto& v : amp) v = replay.uniform(-80, 80);
    Image want = src;
    if (lit) illumination_gradient(want, angle, amp);
    EXPECT_EQ(a.pixels, want.pixels) << "seed " << seed;
    outputs.insert(a.pixels);
  }
  EXPECT_EQ(outputs.size(), 6u);
  // Off (strength 0): BYOL's view draws exactly what it drew before the option existed.
  auto with_off = byol_view(1, 32);
  with_off.illumination_prob = 1.0;  // strength 0 keeps it off
  expect_off_option_draws_as_before(src, with_off, 1, 9);
  o.illumination_strength = 300;
  Image c = src;
  SampleRng rc(1);
  EXPECT_THROW(photometric_augment(c, o, rc), std::invalid_argument);
}

TEST(Photometric, PretrainTransformAddsTheIlluminationToEachView) {
  const Image src = test_image(40, 48);
  ocl::io::DataConfig config;
  config.crop_scale_min = 0.5;
  // Neither augmentation: the crop alone, one view whatever is asked.
  EXPECT_EQ(make_pretrain_transform(config, 16, 2)->views(), 1);
  const Image crop = make_pretrain_transform(config, 16, 1)->apply(src, 7);
  // The gradient alone makes the two copies differ; the crop and flip stay shared, so with the
  // gradient off again the copies are the crop.
  config.illumination = 60;
  const auto lit = make_pretrain_transform(config, 16, 2);
  ASSERT_EQ(lit->views(), 2);
  EXPECT_NE(lit->describe().find("illumination 60 p 1"), std::string::npos) << lit->describe();
  const auto copies = lit->apply_views(src, 7);
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_NE(copies[0].pixels, copies[1].pixels);
  // Each copy is the same crop plus a ramp: |t| ≤ (|cos θ| + |sin θ|) / 2 ≤ √2 / 2, so no value
  // moves by more than 60 · √2 / 2 ≈ 42.4 levels, rounded.
  for (const auto& copy : copies)
    for (size_t i = 0; i < crop.pixels.size(); ++i)
      ASSERT_LE(std::abs(copy.pixels[i] - crop.pixels[i]), 43) << i;
  // With a preset the gradient joins each view's pipeline; without it the description is
  // the preset's alone.
  config.photometric = "simclr";
  EXPECT_NE(make_pretrain_transform(config, 16, 2)->describe().find("illumination"),
            std::string::npos);
  config.illumination = 0;
  EXPECT_EQ(make_pretrain_transform(config, 16, 2)->describe().find("illumination"),
            std::string::npos);
}

// Gaussian pixel noise: torchvision 0.14 (Debian 12's) has no GaussianNoise (v2 from 0.19, float
// images only), so the operation is held to its definition by its statistics: on a flat image
// away from the clip the added values have mean 0, standard deviation σ and a normal's share
// within one and two σ; near 255 they are clipped; σ 0 draws nothing.
TEST(Photometric, GaussianNoiseHasTheSigmaItIsAskedFor) {
  for (double sigma : {3.0, 12.0, 30.0}) {
    Image im;
    im.height = im.width = 96;
    im.pixels.assign(96 * 96 * 3, 128);
    SampleRng rng(static_cast<uint64_t>(sigma));
    add_gaussian_noise(im, sigma, rng);
    double sum = 0, squares = 0;
    int within1 = 0, within2 = 0;
    for (uint8_t v : im.pixels) {
      const double d = v - 128.0;
      sum += d;
      squares += d * d;
      within1 += std::abs(d) <= sigma;
      within2 += std::abs(d) <= 2 * sigma;
    }
    const double n = static_cast<double>(im.pixels.size());
    const double mean = sum / n, sd = std::sqrt(squares / n - mean * mean);
    // Rounding to whole levels adds a variance of 1/12; 27,648 values put the sample's standard
    // deviation within ~1 % of σ and its mean within ~0.6 % of σ (three standard errors).
    EXPECT_NEAR(mean, 0.0, 3 * sigma / std::sqrt(n) + 0.02) << sigma;
    EXPECT_NEAR(sd, std::sqrt(sigma * sigma + 1.0 / 12), 0.03 * sigma) << sigma;
    if (sigma >= 10) {  // the shares of a normal: 68.3 % and 95.4 %
      EXPECT_NEAR(within1 / n, 0.683, 0.02) << sigma;
      EXPECT_NEAR(within2 / n, 0.954, 0.01) << sigma;
    }
  }
  // Clipped at 255 (and 0), never wrapped.
  Image bright;
  bright.height = bright.width = 32;
  bright.pixels.assign(32 * 32 * 3, 250);
  SampleRng rng(3);
  add_gaussian_noise(bright, 40, rng);
  EXPECT_EQ(*std::max_element(bright.pixels.begin(), bright.pixels.end()), 255);
  EXPECT_GT(std::count(bright.pixels.begin(), bright.pixels.end(), 255), 32 * 32 * 3 / 4);
  EXPECT_LT(*std::min_element(bright.pixels.begin(), bright.pixels.end()), 200);
  // σ 0: the image and the generator untouched; a bad σ refused.
  Image same = test_image();
  SampleRng a(5), b(5);
  add_gaussian_noise(same, 0, a);
  EXPECT_EQ(same.pixels, test_image().pixels);
  EXPECT_EQ(a.next(), b.next());
  EXPECT_THROW(add_gaussian_noise(same, -1, a), std::invalid_argument);
  EXPECT_THROW(add_gaussian_noise(same, std::nan(""), a), std::invalid_argument);
}

TEST(Photometric, NoiseDrawsOnlyWhenOnAndGivesEachViewItsOwnSigma) {
  // Off (σ 0, or p 0): BYOL's view draws exactly what it drew before the option existed.
  const Image src = test_image(40, 48);
  auto off = byol_view(0, 32);
  off.noise_prob = 1.0;
  expect_off_option_draws_as_before(src, off, 0, 4);
  auto bad = no_photometric();
  bad.noise_prob = 1;
  bad.noise_sigma_max = 256;
  Image c = src;
  SampleRng rc(4);
  EXPECT_THROW(photometric_augment(c, bad, rc), std::invalid_argument);

  // data.noise through the pre-training transform: two copies of one crop, each with noise of
  // its own σ ~ U[0, 40]: over many samples the two copies' noise levels are unrelated.
  ocl::io::DataConfig config;
  config.noise = 40;
  config.augment = "none";  // the whole image: the copies differ from it by their noise alone
  const auto t = make_pretrain_transform(config, 40, 2);
  ASSERT_EQ(t->views(), 2);
  EXPECT_NE(t->describe().find("noise sigma [0, 40] p 1"), std::string::npos) << t->describe();
  Image flat;
  flat.height = 40;
  flat.width = 40;
  flat.pixels.assign(40 * 40 * 3, 128);
  auto level = [&](const Image& im) {
    double squares = 0;
    for (uint8_t v : im.pixels) squares += (v - 128.0) * (v - 128.0);
    return std::sqrt(squares / static_cast<double>(im.pixels.size()));
  };
  std::vector<double> first, second;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    const auto copies = t->apply_views(flat, seed);
    ASSERT_EQ(copies.size(), 2u);
    first.push_back(level(copies[0]));
    second.push_back(level(copies[1]));
    EXPECT_EQ(copies[0].pixels, t->apply_views(flat, seed)[0].pixels);  // deterministic
  }
  // Levels spread over [0, 40] (uniform: sd 11.5) in each view, uncorrelated across views.
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  const double m1 = mean(first), m2 = mean(second);
  double cov = 0, v1 = 0, v2 = 0;
  for (size_t i = 0; i < first.size(); ++i) {
    cov += (first[i] - m1) * (second[i] - m2);
    v1 += (first[i] - m1) * (first[i] - m1);
    v2 += (second[i] - m2) * (second[i] - m2);
  }
  EXPECT_NEAR(m1, 20, 4.5);
  EXPECT_NEAR(m2, 20, 4.5);
  EXPECT_GT(std::sqrt(v1 / 60), 8);
  EXPECT_LT(std::abs(cov / std::sqrt(v1 * v2)), 0.4);  // 60 pairs: |r| of unrelated < 0.26 at 95 %
}

// data.blur: each copy of the crop blurred with its own σ ~ U[0.1, v], a kernel of 2·⌈3v⌉ + 1
// taps: each copy is the crop through gaussian_blur at one σ of that range, and the two differ.
TEST(Photometric, BlurGivesEachCopyItsOwnSigma) {
  const Image src = test_image(40, 48);
  ocl::io::DataConfig config;
  config.augment = "none";
  config.blur = 1.5;
  const auto t = make_pretrain_transform(config, 32, 2);
  ASSERT_EQ(t->views(), 2);
  EXPECT_NE(t->describe().find("blur p 1 sigma [0.1, 1.5]"), std::string::npos) << t->describe();
  const Image crop = make_transform(config, 32, /*train=*/false)->apply(src, 0);
  int differ = 0;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const auto copies = t->apply_views(src, seed);
    differ += copies[0].pixels != copies[1].pixels;
    for (const auto& copy : copies) {
      // The σ of the range (in steps of 0.005) whose blur gives this copy exactly.
      bool found = false;
      for (double sigma = 0.1; sigma <= 1.5 + 1e-9 && !found; sigma += 0.005) {
        Image b = crop;
        gaussian_blur(b, 9, sigma);
        int most = 0;
        for (size_t i = 0; i < b.pixels.size(); ++i)
          most = std::max(most, std::abs(b.pixels[i] - copy.pixels[i]));
        found = most <= 1;  // σ off by < 0.005 moves a value by at most a level
      }
      EXPECT_TRUE(found) << "seed " << seed;
    }
  }
  EXPECT_GE(differ, 7);
}
