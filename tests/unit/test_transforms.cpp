// The torchvision-matching transforms: RandomResizedCrop and its flip, Resize + CenterCrop,
// bicubic's clipping, the sample seeds and the normalisation of a batch.
#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "data_files.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/transforms.h>

using namespace ocl::data;

namespace {

using ocl::test::pixel;

// An image whose red channel is the row index and green the column index (mod 256).
Image coordinate_image(int h, int w) {
  Image im;
  im.height = h;
  im.width = w;
  im.pixels.resize(static_cast<size_t>(h) * w * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &im.pixels[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(y);
      p[1] = static_cast<uint8_t>(x);
      p[2] = static_cast<uint8_t>(x * 7 + y * 3);
    }
  }
  return im;
}

}  // namespace

TEST(Transforms, ParseInterpolationAndSampleSeed) {
  EXPECT_EQ(parse_interpolation("bicubic"), Interpolation::Bicubic);
  EXPECT_EQ(parse_interpolation("nearest"), Interpolation::Nearest);
  EXPECT_EQ(parse_interpolation("bilinear"), Interpolation::Bilinear);
  EXPECT_EQ(parse_interpolation("area"), Interpolation::Area);
  EXPECT_THROW(parse_interpolation("cubic"), std::invalid_argument);
  std::set<uint64_t> seeds;
  for (int64_t e = 0; e < 8; ++e) {
    for (int64_t i = 0; i < 64; ++i) seeds.insert(sample_seed(0, e, i));
  }
  seeds.insert(sample_seed(1, 0, 0));
  EXPECT_EQ(seeds.size(), 8u * 64u + 1u);  // no collisions among neighbouring inputs
  EXPECT_EQ(sample_seed(3, 4, 5), sample_seed(3, 4, 5));
}

TEST(Transforms, RandomResizedCropSizeAndSeeding) {
  RandomResizedCropOptions o;
  o.size = 32;
  auto t = random_resized_crop(o);
  EXPECT_EQ(t->output_height(), 32);
  EXPECT_EQ(t->output_width(), 32);
  const Image in = coordinate_image(50, 80);
  std::set<std::vector<uint8_t>> distinct;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const Image a = t->apply(in, seed), b = t->apply(in, seed);
    ASSERT_EQ(a.height, 32);
    ASSERT_EQ(a.width, 32);
    ASSERT_EQ(a.pixels.size(), 32u * 32u * 3u);
    EXPECT_EQ(a.pixels, b.pixels) << "seed " << seed;
    distinct.insert(a.pixels);
  }
  EXPECT_GE(distinct.size(), 18u);
}

TEST(Transforms, RandomResizedCropFallsBackToTheCentralCrop) {
  // No crop of aspect ratio 10-20 fits a square image, so all 10 attempts fail and the fallback
  // takes the full width and height round(100 / 10) = 10, rows 45..54.
  RandomResizedCropOptions o;
  o.size = 10;
  o.ratio_min = 10;
  o.ratio_max = 20;
  o.interpolation = Interpolation::Nearest;
  o.hflip = false;
  auto t = random_resized_crop(o);
  const Image in = coordinate_image(100, 100);
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const Image out = t->apply(in, seed);
    for (int y = 0; y < 10; ++y) {
      for (int x = 0; x < 10; ++x) {
        EXPECT_EQ(pixel(out, y, x)[0], 45 + y);
        EXPECT_EQ(pixel(out, y, x)[1], 10 * x);
      }
    }
  }
}

TEST(Transforms, HorizontalFlipHalfTheTime) {
  // scale = ratio = 1 on a square image crops the whole image: the output is the input or its
  // mirror image.
  RandomResizedCropOptions o;
  o.size = 12;
  o.scale_min = o.scale_max = 1.0;
  o.ratio_min = o.ratio_max = 1.0;
  o.interpolation = Interpolation::Nearest;
  auto t = random_resized_crop(o);
  const Image in = coordinate_image(12, 12);
  Image mirrored = in;
  for (int y = 0; y < 12; ++y) {
    for (int x = 0; x < 12; ++x) {
      for (int c = 0; c < 3; ++c) {
        mirrored.pixels[(y * 12 + x) * 3 + c] = in.pixels[(y * 12 + 11 - x) * 3 + c];
      }
    }
  }
  int flipped = 0;
  const int n = 400;
  for (uint64_t seed = 0; seed < n; ++seed) {
    const Image out = t->apply(in, sample_seed(9, 0, static_cast<int64_t>(seed)));
    const bool is_flipped = out.pixels == mirrored.pixels;
    EXPECT_TRUE(is_flipped || out.pixels == in.pixels);
    flipped += is_flipped;
  }
  EXPECT_GT(flipped, n * 0.42);
  EXPECT_LT(flipped, n * 0.58);
  o.hflip = false;
  auto no_flip = random_resized_crop(o);
  for (uint64_t seed = 0; seed < 20; ++seed) EXPECT_EQ(no_flip->apply(in, seed).pixels, in.pixels);
}

TEST(Transforms, ResizeCenterCropHandComputed) {
  // 6×10 → Resize(3): shorter side 3, longer int(3 · 10 / 6) = 5. Nearest takes source rows
  // 0, 2, 4 and columns 0, 2, 4, 6, 8. CenterCrop(2): top = round(0.5) = 0 (half to even, as
  // Python), left = round(1.5) = 2: output (y, x) = input (2y, 4 + 2x).
  auto t = resize_center_crop(2, 3, Interpolation::Nearest);
  EXPECT_EQ(t->output_height(), 2);
  const Image in = coordinate_image(6, 10);
  const Image out = t->apply(in, 0);
  ASSERT_EQ(out.height, 2);
  ASSERT_EQ(out.width, 2);
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 2; ++x) {
      EXPECT_EQ(pixel(out, y, x), pixel(in, 2 * y, 4 + 2 * x)) << y << "," << x;
    }
  }
  // Portrait: 10×6 → 5×3, top = round(1.5) = 2, left = round(0.5) = 0.
  const Image tall = coordinate_image(10, 6);
  const Image out2 = t->apply(tall, 0);
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 2; ++x) EXPECT_EQ(pixel(out2, y, x), pixel(tall, 4 + 2 * y, 2 * x));
  }
  // resize = 0: MAE's evaluation ratio 256/224.
  EXPECT_NE(resize_center_crop(224)->describe().find("Resize(256"), std::string::npos);
  EXPECT_NE(resize_center_crop(32)->describe().find("Resize(37"), std::string::npos);
  // A crop larger than the resized image is zero-padded (torchvision's CenterCrop pads).
  const Image padded = resize_center_crop(4, 2, Interpolation::Nearest)->apply(in, 0);
  ASSERT_EQ(padded.height, 4);
  // Resized to 2×3 (rows 0, 3 and columns 0, 3, 6 of the input), padded 1 row above and below,
  // 0 columns left and 1 right: torchvision's (crop − size) // 2 before, the rest after.
  const std::array<int, 3> zero{0, 0, 0};
  EXPECT_EQ(pixel(padded, 0, 1), zero);
  EXPECT_EQ(pixel(padded, 3, 1), zero);
  EXPECT_EQ(pixel(padded, 2, 3), zero);
  EXPECT_EQ(pixel(padded, 1, 1), pixel(in, 0, 3));
  EXPECT_EQ(pixel(padded, 2, 2), pixel(in, 3, 6));
}

TEST(Transforms, BicubicSaturatesAndKeepsFlatImages) {
  // A black/white step overshoots under bicubic; the result must clip, not wrap around.
  Image step;
  step.height = step.width = 8;
  step.pixels.resize(8 * 8 * 3);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 8; ++x) {
      for (int c = 0; c < 3; ++c) step.pixels[(y * 8 + x) * 3 + c] = x < 4 ? 0 : 255;
    }
  }
  const Image up = resize_center_crop(32, 32, Interpolation::Bicubic)->apply(step, 0);
  for (int x = 0; x < 32; ++x) {
    const int v = pixel(up, 16, x)[0];
    if (x < 10) {
      EXPECT_LE(v, 10) << x;
    } else if (x >= 22) {
      EXPECT_GE(v, 245) << x;
    }
  }
}

TEST(Transforms, NormalizeImages) {
  auto images = torch::tensor({0, 255, 128, 64, 10, 200}, torch::kUInt8).view({1, 3, 1, 2});
  auto x = normalize_images(images, torch::kCPU);
  ASSERT_EQ(x.scalar_type(), torch::kFloat32);
  ASSERT_EQ(x.sizes(), images.sizes());
  const double v[3][2] = {{0, 255}, {128, 64}, {10, 200}};
  for (int c = 0; c < 3; ++c) {
    for (int j = 0; j < 2; ++j) {
      const double expected = (v[c][j] / 255.0 - kImageNetMean[c]) / kImageNetStd[c];
      EXPECT_NEAR(x[0][c][0][j].item<double>(), expected, 1e-5);
    }
  }
  auto bf = normalize_images(images, torch::kCPU, torch::kBFloat16);
  EXPECT_EQ(bf.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(bf.to(torch::kFloat32), x, 1e-2, 1e-2));
  EXPECT_THROW(normalize_images(images.to(torch::kFloat32), torch::kCPU), c10::Error);
}
