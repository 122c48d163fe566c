// RandAugment: every op against Pillow's output (tests/fixtures/augment_reference.safetensors,
// written by scripts/make_augment_reference.py), timm's level → argument mapping at m = 9, the
// config string parser, and the per-sample determinism of rand_augment / with_rand_augment.
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "image_compare.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/rand_augment.h>
#include <ocl/data/transforms.h>
#include <ocl/io/safetensors.h>

using namespace ocl::data;

namespace {

constexpr const char* kAugmentFixture = OCL_FIXTURE_DIR "/augment_reference.safetensors";
constexpr const char* kAugmentFormatVersion = "1";
constexpr std::array<uint8_t, 3> kFill{124, 116, 104};

// The fixture's outputs by name, with their arguments, read once.
struct AugmentReference {
  Image input;
  std::map<std::string, std::pair<double, Image>> cases;
};

const AugmentReference& augment_reference() {
  static const AugmentReference ref = [] {
    const auto file = ocl::io::read_safetensors(kAugmentFixture);
    EXPECT_EQ(file.metadata.at("format_version"), kAugmentFormatVersion)
        << "regenerate with /usr/bin/python3 scripts/make_augment_reference.py";
    AugmentReference r;
    r.input = ocl::test::image_from_hwc(file.tensors.at("input"));
    const auto args = file.tensors.at("args");
    std::istringstream names(file.metadata.at("names"));
    std::string name;
    for (int64_t i = 0; std::getline(names, name, ','); ++i) {
      r.cases[name] = {args[i].item<double>(), ocl::test::image_from_hwc(file.tensors.at(name))};
    }
    return r;
  }();
  return ref;
}

// The fixture case `name` recomputed with `op` (its argument from the fixture).
ocl::test::PixelDiff run_case(const std::string& name, AugmentOp op,
                              AffineResample resample = AffineResample::Bicubic) {
  const auto& ref = augment_reference();
  const auto it = ref.cases.find(name);
  EXPECT_NE(it, ref.cases.end()) << name << " missing from the fixture";
  if (it == ref.cases.end()) return {1, 255, 255.0};
  Image image = ref.input;
  apply_augment_op(image, op, it->second.first, kFill, resample);
  return ocl::test::compare_pixels(image, it->second.second);
}

Image structured_image(int h, int w) {
  Image im;
  im.height = h;
  im.width = w;
  im.pixels.resize(static_cast<size_t>(h) * w * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        im.pixels[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(
            20 + (x * (3 + c) + y * (5 - c) + ((x / 4 + y / 4) % 2) * 60) % 200);
  return im;
}

}  // namespace

// Point ops are lookup tables and the enhance ops follow ImagingBlend's float arithmetic and
// ImagingFilter3x3's summation order, so every value must equal Pillow's.
TEST(AugmentOps, PointOpsMatchPillowExactly) {
  const std::pair<const char*, AugmentOp> cases[] = {{"AutoContrast", AugmentOp::AutoContrast},
                                                     {"Equalize", AugmentOp::Equalize},
                                                     {"Invert", AugmentOp::Invert},
                                                     {"Posterize_1", AugmentOp::Posterize},
                                                     {"Posterize_4", AugmentOp::Posterize},
                                                     {"Solarize_26", AugmentOp::Solarize},
                                                     {"Solarize_128", AugmentOp::Solarize},
                                                     {"SolarizeAdd_99", AugmentOp::SolarizeAdd}};
  for (const auto& [name, op] : cases) {
    const ocl::test::PixelDiff d = run_case(name, op);
    EXPECT_EQ(d.differing, 0) << name << ": max |diff| " << d.max_abs;
  }
}

TEST(AugmentOps, EnhanceOpsMatchPillowExactly) {
  const std::pair<const char*, AugmentOp> ops[] = {{"Color", AugmentOp::Color},
                                                   {"Contrast", AugmentOp::Contrast},
                                                   {"Brightness", AugmentOp::Brightness},
                                                   {"Sharpness", AugmentOp::Sharpness}};
  for (const auto& [op_name, op] : ops) {
    for (const char* level : {"high", "low", "half"}) {
      const std::string name = std::string(op_name) + "_" + level;
      const ocl::test::PixelDiff d = run_case(name, op);
      EXPECT_EQ(d.differing, 0) << name << ": max |diff| " << d.max_abs;
    }
  }
}

// The affine ops replay ImagingGenericTransform's double arithmetic and truncation, so they
// match too; the one input computed differently is the rotation matrix, which Pillow rounds to
// 15 decimals with Python's correctly rounded round() and we with nearbyint(x·1e15)/1e15. The
// two can differ in the last bit, which can move a truncated value by 1: allow that for at most
// 1 % of the values, and nothing larger.
TEST(AugmentOps, AffineOpsMatchPillow) {
  const std::pair<const char*, AugmentOp> ops[] = {{"Rotate", AugmentOp::Rotate},
                                                   {"ShearX", AugmentOp::ShearX},
                                                   {"ShearY", AugmentOp::ShearY},
                                                   {"TranslateXRel", AugmentOp::TranslateXRel},
                                                   {"TranslateYRel", AugmentOp::TranslateYRel}};
  const std::pair<const char*, AffineResample> filters[] = {{"bilinear", AffineResample::Bilinear},
                                                            {"bicubic", AffineResample::Bicubic}};
  const Image& input = augment_reference().input;
  const int64_t values = static_cast<int64_t>(input.pixels.size());
  for (const auto& [op_name, op] : ops) {
    for (const auto& [filter_name, filter] : filters) {
      for (const char* sign : {"pos", "neg"}) {
        const std::string name = std::string(op_name) + "_" + sign + "_" + filter_name;
        const ocl::test::PixelDiff d = run_case(name, op, filter);
        EXPECT_LE(d.max_abs, 1) << name;
        EXPECT_LE(d.differing, values / 100) << name << ": " << d.differing << " values differ";
      }
    }
  }
}

// The fixture must exercise what it claims: each affine output shows the fill colour and
// differs from the input (a no-op implementation would otherwise pass the range checks).
TEST(AugmentOps, FixtureCasesAreNotTrivial) {
  const auto& ref = augment_reference();
  for (const auto& [name, c] : ref.cases) {
    EXPECT_GT(ocl::test::compare_pixels(c.second, ref.input).differing, 0)
        << name << " equals the input";
  }
  const Image& rotated = ref.cases.at("Rotate_pos_bicubic").second;
  EXPECT_EQ(rotated.pixels[0], kFill[0]);
  EXPECT_EQ(rotated.pixels[1], kFill[1]);
  EXPECT_EQ(rotated.pixels[2], kFill[2]);
}

TEST(AugmentOps, DegenerateInputsAreLeftAlone) {
  Image flat;
  flat.height = 5;
  flat.width = 7;
  flat.pixels.assign(5 * 7 * 3, 77);
  for (AugmentOp op : {AugmentOp::AutoContrast, AugmentOp::Equalize}) {
    Image im = flat;
    apply_augment_op(im, op, 0, kFill);
    EXPECT_EQ(im.pixels, flat.pixels) << augment_op_name(op);
  }
  // Zero angle, zero shear and zero translation are copies (Pillow: identity sampling).
  const Image structured = structured_image(9, 11);
  for (AugmentOp op : {AugmentOp::Rotate, AugmentOp::ShearX, AugmentOp::TranslateYRel}) {
    Image im = structured;
    apply_augment_op(im, op, 0.0, kFill, AffineResample::Bilinear);
    EXPECT_EQ(im.pixels, structured.pixels) << augment_op_name(op);
  }
  Image bad;
  bad.height = 2;
  bad.width = 2;
  bad.pixels.resize(5);
  EXPECT_THROW(apply_augment_op(bad, AugmentOp::Invert, 0, kFill), std::invalid_argument);
  Image im = structured;
  EXPECT_THROW(apply_augment_op(im, AugmentOp::Rotate, 10, kFill, AffineResample::Random),
               std::invalid_argument);
}

// timm's level functions at m = 9, worked by hand: 9/10·30 = 27°, 9/10·0.3 = 0.27,
// 9/10·0.45 = 0.405, posterize 4 − int(3.6) = 1 (plain: int(3.6) = 3), solarize
// 256 − int(230.4) = 26 (plain: 230), solarize_add int(99.0) = 99, enhance 1 ± 0.81
// (plain: 1.8·0.9 + 0.1 = 1.72).
TEST(AugmentLevels, MagnitudeNineMapsAsTimm) {
  const double m = 9;
  EXPECT_DOUBLE_EQ(augment_level_to_arg(AugmentOp::Rotate, m, true, false), 27.0);
  EXPECT_DOUBLE_EQ(augment_level_to_arg(AugmentOp::Rotate, m, true, true), -27.0);
  EXPECT_DOUBLE_EQ(augment_level_to_arg(AugmentOp::ShearX, m, true, false), 0.27);
  EXPECT_DOUBLE_EQ(augment_level_to_arg(AugmentOp::ShearY, m, true, true), -0.27);
  EXPECT_DOUBLE_EQ(augment_level_to_arg(AugmentOp::TranslateXRel, m, true, false), 0.405);
  EXPECT_DOUBLE_EQ(augment_level_to_arg(AugmentOp::TranslateYRel, m, false, true), -0.405);
  EXPECT_EQ(augment_level_to_arg(AugmentOp::Posterize, m, true, false), 1.0);
  EXPECT_EQ(augment_level_to_arg(AugmentOp::Posterize, m, false, false), 3.0);
  EXPECT_EQ(augment_level_to_arg(AugmentOp::Solarize, m, true, false), 26.0);
  EXPECT_EQ(augment_level_to_arg(AugmentOp::Solarize, m, false, false), 230.0);
  EXPECT_EQ(augment_level_to_arg(AugmentOp::SolarizeAdd, m, true, false), 99.0);
  for (AugmentOp op :
       {AugmentOp::Color, AugmentOp::Contrast, AugmentOp::Brightness, AugmentOp::Sharpness}) {
    EXPECT_DOUBLE_EQ(augment_level_to_arg(op, m, true, false), 1.81) << augment_op_name(op);
    EXPECT_DOUBLE_EQ(augment_level_to_arg(op, m, true, true), 0.19) << augment_op_name(op);
    EXPECT_DOUBLE_EQ(augment_level_to_arg(op, m, false, true), 1.72) << augment_op_name(op);
  }
  // Beyond m = 10 (mmax > 10) the increasing factor stays ≥ 0.1, as in timm.
  EXPECT_DOUBLE_EQ(augment_level_to_arg(AugmentOp::Color, 15, true, true), 0.1);
  EXPECT_EQ(augment_level_to_arg(AugmentOp::Invert, m, true, true), 0.0);
}

TEST(RandAugment, ParsesTimmConfigStrings) {
  const auto mae = parse_rand_augment("rand-m9-mstd0.5-inc1");
  EXPECT_EQ(mae.num_ops, 2);
  EXPECT_EQ(mae.magnitude, 9);
  EXPECT_EQ(mae.magnitude_std, 0.5);
  EXPECT_EQ(mae.magnitude_max, 10);
  EXPECT_TRUE(mae.increasing);
  EXPECT_EQ(mae.prob, 0.5);

  const auto plain = parse_rand_augment("rand");  // timm's defaults
  EXPECT_EQ(plain.magnitude, 10);
  EXPECT_EQ(plain.magnitude_std, 0);
  EXPECT_FALSE(plain.increasing);
  EXPECT_EQ(plain.num_ops, 2);

  const auto all = parse_rand_augment("rand-n3-m5.5-mstd101-mmax15-p0.7-inc0");
  EXPECT_EQ(all.num_ops, 3);
  EXPECT_EQ(all.magnitude, 5.5);
  EXPECT_EQ(all.magnitude_std, std::numeric_limits<double>::infinity());  // > 100: uniform
  EXPECT_EQ(all.magnitude_max, 15);
  EXPECT_EQ(all.prob, 0.7);
  EXPECT_FALSE(all.increasing);
}

TEST(RandAugment, RejectsBadConfigStringsNamingThePart) {
  const std::pair<const char*, const char*> bad[] = {
      {"", "rand"},          {"none", "none"},          {"rnd-m9", "rnd-m9"},
      {"randm9", "randm9"},  {"rand-", "empty"},        {"rand-m9--n2", "empty"},
      {"rand-x9", "x9"},     {"rand-m", "'m'"},         {"rand-mfoo", "mfoo"},
      {"rand-n2.5", "n2.5"}, {"rand-inc2", "inc2"},     {"rand-p1.5", "p1.5"},
      {"rand-m-3", "'m'"},   {"rand-m9-mstd-1", "mstd"}};
  for (const auto& [spec, part] : bad) {
    try {
      parse_rand_augment(spec);
      ADD_FAILURE() << "'" << spec << "' was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "'" << spec << "': " << e.what();
    }
  }
}

TEST(RandAugment, SameSeedSameImageOtherSeedsDiffer) {
  const Image src = structured_image(32, 40);
  RandAugmentOptions o;  // MAE's rand-m9-mstd0.5-inc1
  auto run = [&](uint64_t seed) {
    Image im = src;
    SampleRng rng(seed);
    rand_augment(im, o, rng);
    return im.pixels;
  };
  EXPECT_EQ(run(7), run(7));
  int differing = 0, changed = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    differing += run(seed) != run(seed + 100);
    changed += run(seed) != src.pixels;
  }
  // Two ops at p = 0.5: about 1/4 of the images keep both skipped; 15 of 20 is far below
  // what a working sampler gives (P ≈ 0.2 of fewer than 15 changes).
  EXPECT_GE(differing, 15);
  EXPECT_GE(changed, 12);
}

TEST(RandAugment, ProbabilityZeroOrNoOpsIsIdentity) {
  const Image src = structured_image(16, 16);
  RandAugmentOptions o;
  o.prob = 0;
  Image im = src;
  SampleRng rng(3);
  rand_augment(im, o, rng);
  EXPECT_EQ(im.pixels, src.pixels);
  o.prob = 1;
  o.num_ops = 0;
  rand_augment(im, o, rng);
  EXPECT_EQ(im.pixels, src.pixels);
}

// Every op at m = 9 changes an image whose channels span [20, 219] with edges, so the draws
// below can tell the ops apart.
TEST(AugmentOps, EveryOpActsAtMagnitudeNine) {
  const Image src = structured_image(24, 24);
  for (int k = 0; k < kNumAugmentOps; ++k) {
    const auto op = static_cast<AugmentOp>(k);
    Image im = src;
    apply_augment_op(im, op, augment_level_to_arg(op, 9, true, false), kFill);
    EXPECT_NE(im.pixels, src.pixels) << augment_op_name(op);
  }
}

// One op per image at p = 1: the outputs must spread over the op list (15 ops, most with two
// signs), not repeat a few.
TEST(RandAugment, DrawsSpreadOverTheOps) {
  const Image src = structured_image(24, 24);
  RandAugmentOptions o;
  o.num_ops = 1;
  o.prob = 1;
  o.magnitude_std = 0;
  std::set<std::vector<uint8_t>> outputs;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Image im = src;
    SampleRng rng(seed);
    rand_augment(im, o, rng);
    EXPECT_NE(im.pixels, src.pixels) << "seed " << seed;
    outputs.insert(im.pixels);
  }
  EXPECT_GE(outputs.size(), 20u);
}

TEST(RandAugment, TransformKeepsTheBaseDrawsAndDescribesBoth) {
  RandomResizedCropOptions crop;
  crop.size = 16;
  const auto base = random_resized_crop(crop);
  RandAugmentOptions off;
  off.prob = 0;
  const auto same = with_rand_augment(base, off);
  const auto aug = with_rand_augment(base, RandAugmentOptions{});
  const Image src = structured_image(40, 48);
  int differs = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    // With every op skipped the crop and flip must be the base's for the same seed.
    EXPECT_EQ(same->apply(src, seed).pixels, base->apply(src, seed).pixels);
    EXPECT_EQ(aug->apply(src, seed).pixels, aug->apply(src, seed).pixels);
    differs += aug->apply(src, seed).pixels != base->apply(src, seed).pixels;
  }
  EXPECT_GE(differs, 5);
  EXPECT_EQ(aug->output_height(), 16);
  EXPECT_EQ(aug->output_width(), 16);
  const std::string d = aug->describe();
  EXPECT_NE(d.find("RandomResizedCrop"), std::string::npos) << d;
  EXPECT_NE(d.find("RandAugment(n=2, m=9, mstd=0.5"), std::string::npos) << d;
  EXPECT_THROW(with_rand_augment(nullptr, {}), std::invalid_argument);
}
