// The data layer: torchvision-matching transforms, the synthetic generator, ImageFolder decoding
// and its file list cache, CIFAR binaries, and the loader's order, sharding, resume, bad-sample
// and shutdown behaviour. Image files are written by small encoders here (PNG stored-deflate,
// BMP, flat-block baseline JPEG), so decoding is checked against values known by construction.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/cifar.h>
#include <ocl/data/factory.h>
#include <ocl/data/image_folder.h>
#include <ocl/data/jpeg.h>
#include <ocl/data/loader.h>
#include <ocl/data/png.h>
#include <ocl/data/synthetic.h>
#include <ocl/data/transforms.h>

#ifdef OCL_WITH_IMGCODECS
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace fs = std::filesystem;
using namespace ocl::data;

namespace {

// A fresh folder under GoogleTest's temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = testing::TempDir() + "ocl-data-XXXXXX";
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
    EXPECT_FALSE(path_.empty()) << "mkdtemp failed";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

void put32be(std::vector<uint8_t>& o, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) o.push_back(static_cast<uint8_t>(v >> s));
}
void put16be(std::vector<uint8_t>& o, int v) {
  o.push_back(static_cast<uint8_t>(v >> 8));
  o.push_back(static_cast<uint8_t>(v));
}
void put32le(std::vector<uint8_t>& o, uint32_t v) {
  for (int s = 0; s < 32; s += 8) o.push_back(static_cast<uint8_t>(v >> s));
}

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

// PNG with uncompressed (stored) deflate blocks. color_type 0 grey, 2 RGB, 6 RGBA; depth 8 or
// 16; `samples` row-major interleaved.
std::vector<uint8_t> png(int w, int h, int color_type, int depth,
                         const std::vector<uint16_t>& samples) {
  const int channels = color_type == 0 ? 1 : color_type == 2 ? 3 : color_type == 4 ? 2 : 4;
  std::vector<uint8_t> raw;
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);  // filter: none
    for (int i = 0; i < w * channels; ++i) {
      const uint16_t v = samples[static_cast<size_t>(y) * w * channels + i];
      if (depth == 16) raw.push_back(static_cast<uint8_t>(v >> 8));
      raw.push_back(static_cast<uint8_t>(v));
    }
  }
  std::vector<uint8_t> z{0x78, 0x01};
  for (size_t pos = 0; pos < raw.size() || pos == 0; pos += 65535) {
    const size_t len = std::min<size_t>(65535, raw.size() - pos);
    z.push_back(pos + len >= raw.size() ? 1 : 0);
    z.push_back(static_cast<uint8_t>(len));
    z.push_back(static_cast<uint8_t>(len >> 8));
    z.push_back(static_cast<uint8_t>(~len));
    z.push_back(static_cast<uint8_t>(~len >> 8));
    z.insert(z.end(), raw.begin() + pos, raw.begin() + pos + len);
    if (len == 0) break;
  }
  uint32_t a = 1, b = 0;
  for (uint8_t v : raw) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  put32be(z, (b << 16) | a);
  std::vector<uint8_t> out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
    put32be(out, static_cast<uint32_t>(data.size()));
    std::vector<uint8_t> body(type, type + 4);
    body.insert(body.end(), data.begin(), data.end());
    out.insert(out.end(), body.begin(), body.end());
    put32be(out, crc32(body.data(), body.size()));
  };
  std::vector<uint8_t> ihdr;
  put32be(ihdr, static_cast<uint32_t>(w));
  put32be(ihdr, static_cast<uint32_t>(h));
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  chunk("IHDR", ihdr);
  chunk("IDAT", z);
  chunk("IEND", {});
  return out;
}

// 24-bit BMP, bottom-up, from RGB HWC pixels.
std::vector<uint8_t> bmp(int w, int h, const std::vector<uint8_t>& rgb) {
  const int stride = (w * 3 + 3) / 4 * 4;
  std::vector<uint8_t> o{'B', 'M'};
  put32le(o, static_cast<uint32_t>(54 + stride * h));
  put32le(o, 0);
  put32le(o, 54);
  put32le(o, 40);
  put32le(o, static_cast<uint32_t>(w));
  put32le(o, static_cast<uint32_t>(h));
  o.insert(o.end(), {1, 0, 24, 0});
  put32le(o, 0);
  put32le(o, static_cast<uint32_t>(stride * h));
  put32le(o, 2835);
  put32le(o, 2835);
  put32le(o, 0);
  put32le(o, 0);
  for (int y = h - 1; y >= 0; --y) {
    for (int x = 0; x < w; ++x) {
      const uint8_t* p = &rgb[(static_cast<size_t>(y) * w + x) * 3];
      o.insert(o.end(), {p[2], p[1], p[0]});
    }
    for (int k = w * 3; k < stride; ++k) o.push_back(0);
  }
  return o;
}

// A baseline JPEG whose 8×8 blocks are each one flat value per component: only DC
// coefficients (quantiser 1), the standard DC Huffman table and a one-symbol AC table (EOB).
// 3 components are YCbCr; 4 are CMYK, with Adobe's APP14 marker (transform 0, inverted CMYK).
std::vector<uint8_t> flat_jpeg(int w, int h, int components,
                               const std::function<int(int, int, int)>& value) {
  std::vector<uint8_t> o{0xFF, 0xD8};
  if (components == 4) {
    o.insert(o.end(), {0xFF, 0xEE});
    put16be(o, 14);
    o.insert(o.end(), {'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0});
  }
  o.insert(o.end(), {0xFF, 0xDB});
  put16be(o, 67);
  o.push_back(0);
  o.insert(o.end(), 64, 1);
  o.insert(o.end(), {0xFF, 0xC0});
  put16be(o, 8 + 3 * components);
  o.push_back(8);
  put16be(o, h);
  put16be(o, w);
  o.push_back(static_cast<uint8_t>(components));
  for (int c = 0; c < components; ++c) o.insert(o.end(), {static_cast<uint8_t>(c + 1), 0x11, 0});
  const std::array<uint8_t, 16> dc_bits{0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
  o.insert(o.end(), {0xFF, 0xC4});
  put16be(o, 2 + 1 + 16 + 12);
  o.push_back(0x00);
  o.insert(o.end(), dc_bits.begin(), dc_bits.end());
  for (uint8_t s = 0; s < 12; ++s) o.push_back(s);
  o.insert(o.end(), {0xFF, 0xC4});
  put16be(o, 2 + 1 + 16 + 1);
  o.push_back(0x10);
  o.push_back(1);
  o.insert(o.end(), 15, 0);
  o.push_back(0x00);
  o.insert(o.end(), {0xFF, 0xDA});
  put16be(o, 6 + 2 * components);
  o.push_back(static_cast<uint8_t>(components));
  for (int c = 0; c < components; ++c) o.insert(o.end(), {static_cast<uint8_t>(c + 1), 0x00});
  o.insert(o.end(), {0, 63, 0});
  // Canonical Huffman codes of the DC table: symbol s (the category) has code dc_code[s].
  std::array<uint32_t, 12> dc_code{}, dc_len{};
  for (uint32_t code = 0, s = 0, len = 1; len <= 16; ++len, code <<= 1) {
    for (int k = 0; k < dc_bits[len - 1]; ++k, ++s, ++code) {
      dc_code[s] = code;
      dc_len[s] = len;
    }
  }
  uint32_t acc = 0;
  int nbits = 0;
  auto bits = [&](uint32_t v, int n) {
    for (int i = n - 1; i >= 0; --i) {
      acc = (acc << 1) | ((v >> i) & 1);
      if (++nbits == 8) {
        o.push_back(static_cast<uint8_t>(acc));
        if (acc == 0xFF) o.push_back(0);
        acc = 0;
        nbits = 0;
      }
    }
  };
  std::vector<int> pred(components, 0);
  for (int by = 0; by < h / 8; ++by) {
    for (int bx = 0; bx < w / 8; ++bx) {
      for (int c = 0; c < components; ++c) {
        const int dc = 8 * (value(c, bx, by) - 128), diff = dc - pred[c];
        pred[c] = dc;
        int s = 0;
        while ((1 << s) <= std::abs(diff)) ++s;
        bits(dc_code[s], static_cast<int>(dc_len[s]));
        if (s > 0) bits(static_cast<uint32_t>(diff > 0 ? diff : diff + (1 << s) - 1), s);
        bits(0, 1);  // EOB
      }
    }
  }
  while (nbits != 0) bits(1, 1);
  o.insert(o.end(), {0xFF, 0xD9});
  return o;
}

std::array<int, 3> pixel(const Image& im, int y, int x) {
  const uint8_t* p = &im.pixels[(static_cast<size_t>(y) * im.width + x) * 3];
  return {p[0], p[1], p[2]};
}

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

std::shared_ptr<const Dataset> tiny_synthetic(int64_t size, int image_size = 16) {
  SyntheticOptions o;
  o.size = size;
  o.image_size = image_size;
  o.seed = 5;
  return std::make_shared<SyntheticDataset>(o);
}

std::vector<Batch> drain(Loader& loader) {
  std::vector<Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

std::vector<int64_t> indices_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) {
    for (int64_t i = 0; i < b.indices.size(0); ++i) out.push_back(b.indices[i].item<int64_t>());
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Transforms

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

// ---------------------------------------------------------------------------------------------
// Synthetic data set

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

// ---------------------------------------------------------------------------------------------
// ImageFolder

namespace {
// root/<class>/... with every format the decoder must handle, and files it must refuse.
struct Tree {
  TempDir dir;
  std::string root() const { return dir.path() + "/train"; }
  Tree() {
    const fs::path r = root();
    // cat (label 0): RGB PNG 8-bit, 16-bit PNG in a sub-folder, a BMP; a .txt and a hidden file.
    std::vector<uint16_t> rgb8, rgb16;
    for (int p = 0; p < 6; ++p) {
      rgb8.insert(rgb8.end(), {static_cast<uint16_t>(10 * p), 200, static_cast<uint16_t>(255 - p)});
      rgb16.insert(rgb16.end(), {static_cast<uint16_t>(257 * (40 + p)), 65535, 0});
    }
    write_bytes(r / "cat" / "a.png", png(3, 2, 2, 8, rgb8));
    write_bytes(r / "cat" / "sub" / "deep.png", png(3, 2, 2, 16, rgb16));
    std::vector<uint8_t> bgr_check(4 * 3 * 3);
    for (size_t i = 0; i < bgr_check.size(); ++i) bgr_check[i] = static_cast<uint8_t>(i * 5);
    write_bytes(r / "cat" / "b.bmp", bmp(4, 3, bgr_check));
    write_bytes(r / "cat" / "notes.txt", {'h', 'i'});
    write_bytes(r / "cat" / ".hidden.png", png(3, 2, 2, 8, rgb8));
    // ant (label -> first): grey PNG, RGBA PNG, a YCbCr JPEG, a CMYK JPEG, a 0-byte and a
    // garbage .jpg.
    write_bytes(r / "ant" / "grey.png", png(2, 2, 0, 8, {0, 80, 160, 255}));
    write_bytes(r / "ant" / "rgba.png", png(2, 1, 6, 8, {255, 0, 0, 0, 0, 255, 0, 128}));
    write_bytes(r / "ant" / "photo.JPG", flat_jpeg(16, 8, 3, [](int c, int bx, int) {
                  // YCbCr of RGB (200, 40, 60) and (30, 120, 220), JFIF's full-range matrix.
                  static const int ycc[2][3] = {{90, 111, 206}, {104, 193, 75}};
                  return ycc[bx][c];
                }));
    write_bytes(r / "ant" / "print.jpg", flat_jpeg(8, 8, 4, [](int c, int, int) {
                  // Adobe's inverted CMYK: 255 = no ink. Full magenta ink only.
                  static const int cmyk[4] = {255, 0, 255, 255};
                  return cmyk[c];
                }));
    write_bytes(r / "ant" / "zero.jpg", {});
    write_bytes(r / "ant" / "garbage.jpg", std::vector<uint8_t>(300, 0x5a));
    // A hidden folder and a stray file at the root: neither is a class.
    write_bytes(r / ".git" / "x.png", png(3, 2, 2, 8, rgb8));
    write_bytes(r / "README.png", png(3, 2, 2, 8, rgb8));
    age_folders();
  }
  // Folders modified within 2 s of a scan are not trusted by the cache; tests that need the
  // cache used date them an hour back.
  void age_folders() const {
    const auto past = fs::file_time_type::clock::now() - std::chrono::hours(1);
    for (auto& e : fs::recursive_directory_iterator(root())) {
      if (e.is_directory()) fs::last_write_time(e.path(), past);
    }
    fs::last_write_time(root(), past);
  }
};

int64_t find(const ImageFolderDataset& ds, const std::string& file) {
  for (int64_t i = 0; i < ds.size(); ++i) {
    if (ds.file(i) == file) return i;
  }
  ADD_FAILURE() << file << " not in the data set";
  return -1;
}
}  // namespace

// A class that only one split has (its folder unreadable, or missing, in the other): refused
// naming it, before labels that shift would be compared with each other.
TEST(ImageFolder, SplitsWithDifferentClassesAreRefusedNamingThem) {
  TempDir dir;
  for (const char* c : {"ant", "bee", "cat"}) {
    write_bytes(dir.path() + "/train/" + c + "/x.bmp", bmp(1, 1, {1, 2, 3}));
    if (std::string(c) != "bee")
      write_bytes(dir.path() + "/val/" + c + "/x.bmp", bmp(1, 1, {1, 2, 3}));
  }
  ImageFolderOptions no_cache;
  no_cache.use_cache = false;
  const ImageFolderDataset train(dir.path() + "/train", no_cache),
      val(dir.path() + "/val", no_cache);
  OCL_EXPECT_THROW_WITH(ocl::data::require_same_classes(train, val),
                        "the training and validation splits have different classes (3 and 2): "
                        "only in training 'bee'; only in validation none");
  ocl::data::require_same_classes(train, train);
  // Many classes on each side: eight names a side and how many more, not a line per class.
  TempDir many;
  for (int i = 0; i < 30; ++i) {
    write_bytes(many.path() + "/train/t" + std::to_string(i) + "/x.bmp", bmp(1, 1, {1, 2, 3}));
    write_bytes(many.path() + "/val/v" + std::to_string(i) + "/x.bmp", bmp(1, 1, {1, 2, 3}));
  }
  const ImageFolderDataset many_train(many.path() + "/train", no_cache),
      many_val(many.path() + "/val", no_cache);
  const std::string message = [&] {
    try {
      ocl::data::require_same_classes(many_train, many_val);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(message.find("only in training 't0', 't1', 't10', 't11', 't12', 't13', 't14', 't15' "
                         "and 22 more; only in validation 'v0'"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("'t29'"), std::string::npos) << message;
}

TEST(ImageFolder, ClassesFilesAndLabels) {
  Tree tree;
  ImageFolderOptions no_cache;
  no_cache.use_cache = false;
  ImageFolderDataset ds(tree.root(), no_cache);
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"ant", "cat"}));
  const std::vector<std::string> expected{"ant/garbage.jpg", "ant/grey.png", "ant/photo.JPG",
                                          "ant/print.jpg",   "ant/rgba.png", "ant/zero.jpg",
                                          "cat/a.png",       "cat/b.bmp",    "cat/sub/deep.png"};
  ASSERT_EQ(ds.size(), static_cast<int64_t>(expected.size()));
  for (int64_t i = 0; i < ds.size(); ++i) {
    EXPECT_EQ(ds.file(i), expected[static_cast<size_t>(i)]);
    EXPECT_EQ(ds.label(i), i < 6 ? 0 : 1);
  }
  EXPECT_FALSE(ds.loaded_from_cache());
  EXPECT_FALSE(fs::exists(tree.root() + "/.ocl-filelist.txt"));
  EXPECT_THROW(ds.file(ds.size()), std::out_of_range);
  EXPECT_THROW(ImageFolderDataset(tree.dir.path() + "/missing"), std::runtime_error);
  EXPECT_THROW(ImageFolderDataset(tree.root() + "/cat/sub"), std::runtime_error);  // no class
  // An empty class folder is refused naming it, as torchvision does: the labels after it would
  // shift against a split that has the class.
  fs::create_directories(tree.root() + "/bee");
  OCL_EXPECT_THROW_WITH(ImageFolderDataset(tree.root(), no_cache),
                        "the class folder 'bee' under '" + tree.root() + "' hold no image");
  fs::remove(tree.root() + "/bee");
  EXPECT_TRUE(has_image_extension("x.JPEG"));
  EXPECT_TRUE(has_image_extension("x.webp"));
  EXPECT_FALSE(has_image_extension("x.txt"));
  EXPECT_FALSE(has_image_extension("jpg"));
}

// A class folder that cannot be listed is named in a warning, its class is left out, and the file
// list is not cached (the next start scans and warns again). The scan runs in a child process
// that drops root's privileges (root reads any folder whatever its mode).
TEST(ImageFolder, UnreadableClassFolderIsWarnedAboutAndNotCached) {
  Tree tree;
  const std::string cache = tree.dir.path() + "/list.txt";
  for (const auto& p : {tree.dir.path(), tree.root(), tree.root() + "/ant"})
    fs::permissions(p, fs::perms::all);
  fs::permissions(tree.root() + "/cat", fs::perms::none);
  EXPECT_EXIT(
      {
        if (::geteuid() == 0 && ::setuid(65534) != 0) std::_Exit(3);  // nobody
        ImageFolderOptions o;
        o.cache_path = cache;
        ImageFolderDataset ds(tree.root(), o);
        const auto w = ds.warnings();
        const bool ok = ds.class_names() == std::vector<std::string>{"ant"} && w.size() == 1 &&
                        w[0].find(tree.root() + "/cat: ") != std::string::npos &&
                        w[0].find("left out") != std::string::npos && !fs::exists(cache);
        if (!ok)
          std::fprintf(stderr, "classes %zu, warnings: %s\n", ds.class_names().size(),
                       w.empty() ? "none" : w[0].c_str());
        std::_Exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  fs::permissions(tree.root() + "/cat", fs::perms::owner_all);
  ImageFolderOptions o;
  o.cache_path = cache;
  ImageFolderDataset readable(tree.root(), o);
  EXPECT_TRUE(readable.warnings().empty());
  EXPECT_EQ(readable.class_names(), (std::vector<std::string>{"ant", "cat"}));
  EXPECT_TRUE(fs::exists(cache));
}

TEST(ImageFolder, DecodesEveryLayoutToRgb) {
  Tree tree;
  ImageFolderDataset ds(tree.root());
  auto load = [&](const std::string& file) {
    BadSample bad;
    auto im = ds.load(find(ds, file), &bad);
    EXPECT_TRUE(im.has_value()) << file << ": " << bad.reason;
    return im.value_or(Image{});
  };
  const Image a = load("cat/a.png");  // 8-bit RGB
  ASSERT_EQ(a.height, 2);
  ASSERT_EQ(a.width, 3);
  for (int p = 0; p < 6; ++p)
    EXPECT_EQ(pixel(a, p / 3, p % 3), (std::array<int, 3>{10 * p, 200, 255 - p}));
  const Image deep = load("cat/sub/deep.png");  // 16-bit: v · 257 → v
  for (int p = 0; p < 6; ++p)
    EXPECT_EQ(pixel(deep, p / 3, p % 3), (std::array<int, 3>{40 + p, 255, 0}));
#ifdef OCL_WITH_IMGCODECS
  const Image b = load("cat/b.bmp");
  ASSERT_EQ(b.height, 3);
  ASSERT_EQ(b.width, 4);
  for (size_t i = 0; i < b.pixels.size(); ++i) EXPECT_EQ(b.pixels[i], static_cast<uint8_t>(i * 5));
#endif
  const Image grey = load("ant/grey.png");  // 1 channel → R = G = B
  EXPECT_EQ(pixel(grey, 0, 1), (std::array<int, 3>{80, 80, 80}));
  EXPECT_EQ(pixel(grey, 1, 1), (std::array<int, 3>{255, 255, 255}));
  const Image rgba = load("ant/rgba.png");  // alpha dropped, colour kept even where transparent
  EXPECT_EQ(pixel(rgba, 0, 0), (std::array<int, 3>{255, 0, 0}));
  EXPECT_EQ(pixel(rgba, 0, 1), (std::array<int, 3>{0, 255, 0}));
  const Image photo = load("ant/photo.JPG");  // YCbCr JPEG → RGB, within the rounding of YCbCr
  ASSERT_EQ(photo.width, 16);
  const std::array<int, 3> left{200, 40, 60}, right{30, 120, 220};
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(pixel(photo, 3, 3)[c], left[c], 3);
    EXPECT_NEAR(pixel(photo, 3, 12)[c], right[c], 3);
  }
#ifdef OCL_WITH_IMGCODECS
  const Image print = load("ant/print.jpg");  // CMYK JPEG: magenta ink → (255, 0, 255)
  ASSERT_EQ(print.height, 8);
  EXPECT_NEAR(pixel(print, 4, 4)[0], 255, 3);
  EXPECT_NEAR(pixel(print, 4, 4)[1], 0, 3);
  EXPECT_NEAR(pixel(print, 4, 4)[2], 255, 3);
#else
  // Without imgcodecs, a BMP and a CMYK JPEG are bad samples whose reason names the build
  // that reads them.
  for (const std::string file : {"cat/b.bmp", "ant/print.jpg"}) {
    BadSample bad;
    EXPECT_FALSE(ds.load(find(ds, file), &bad).has_value()) << file;
    EXPECT_NE(bad.reason.find("built without OpenCV's imgcodecs"), std::string::npos) << bad.reason;
    EXPECT_NE(bad.reason.find("-DOCL_WITH_IMGCODECS=ON"), std::string::npos) << bad.reason;
  }
  BadSample bmp_bad;
  ds.load(find(ds, "cat/b.bmp"), &bmp_bad);
  EXPECT_EQ(bmp_bad.reason.rfind("a BMP image: ", 0), 0u) << bmp_bad.reason;
  BadSample cmyk_bad;
  ds.load(find(ds, "ant/print.jpg"), &cmyk_bad);
  EXPECT_EQ(cmyk_bad.reason.rfind("a CMYK, YCCK or 12-bit JPEG: ", 0), 0u) << cmyk_bad.reason;
#endif

  for (const std::string file : {"ant/zero.jpg", "ant/garbage.jpg"}) {
    BadSample bad;
    EXPECT_FALSE(ds.load(find(ds, file), &bad).has_value()) << file;
    EXPECT_EQ(bad.index, find(ds, file));
    EXPECT_NE(bad.path.find(file), std::string::npos);
    EXPECT_FALSE(bad.reason.empty());
  }
  BadSample bad;
  EXPECT_FALSE(ds.load(find(ds, "ant/zero.jpg"), &bad));
  EXPECT_EQ(bad.reason, "empty file");
  // A file that vanished after the scan is a reason too, not an exception.
  fs::remove(tree.root() + "/cat/a.png");
  EXPECT_FALSE(ds.load(find(ds, "cat/a.png"), &bad).has_value());
  EXPECT_NE(bad.reason.find("cannot open"), std::string::npos) << bad.reason;
  std::string reason;
  EXPECT_FALSE(decode_image(nullptr, 0, &reason).has_value());
  EXPECT_EQ(reason, "empty file");
}

// ---------------------------------------------------------------------------------------------
// PNG (libspng, in every build)

namespace {
// What decoding a PNG of `samples` (colour type 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA) must
// give: 8-bit RGB, grey replicated, alpha dropped, 16-bit samples round(v / 257).
std::vector<uint8_t> expected_rgb(int w, int h, int color_type, int depth,
                                  const std::vector<uint16_t>& samples) {
  const int channels = color_type == 0 ? 1 : color_type == 2 ? 3 : color_type == 4 ? 2 : 4;
  std::vector<uint8_t> out;
  for (int p = 0; p < w * h; ++p) {
    for (int c = 0; c < 3; ++c) {
      const int from = channels <= 2 ? 0 : c;
      const uint16_t v = samples[static_cast<size_t>(p) * channels + from];
      out.push_back(static_cast<uint8_t>(depth == 16 ? std::lround(v / 257.0) : v));
    }
  }
  return out;
}
}  // namespace

TEST(Png, EveryColourTypeAndDepthDecodesToRgb) {
  std::mt19937 rng(7);
  for (const int color_type : {0, 2, 4, 6}) {
    for (const int depth : {8, 16}) {
      const int w = 5, h = 3;
      const int channels = color_type == 0 ? 1 : color_type == 2 ? 3 : color_type == 4 ? 2 : 4;
      std::vector<uint16_t> samples(static_cast<size_t>(w) * h * channels);
      for (auto& v : samples) v = static_cast<uint16_t>(rng() % (depth == 16 ? 65536 : 256));
      const auto bytes = png(w, h, color_type, depth, samples);
      ASSERT_TRUE(looks_like_png(bytes.data(), bytes.size()));
      std::string reason;
      const auto image = decode_png(bytes.data(), bytes.size(), &reason);
      ASSERT_TRUE(image.has_value()) << reason;
      EXPECT_EQ(image->height, h);
      EXPECT_EQ(image->width, w);
      EXPECT_EQ(image->pixels, expected_rgb(w, h, color_type, depth, samples))
          << "colour type " << color_type << ", depth " << depth;
#ifdef OCL_WITH_IMGCODECS
      // The same pixels as OpenCV's decoder, which read PNGs before libspng did.
      cv::Mat decoded = cv::imdecode(bytes, cv::IMREAD_UNCHANGED), rgb;
      if (decoded.depth() == CV_16U) decoded.convertTo(decoded, CV_8U, 1.0 / 257.0);
      if (decoded.channels() == 2) cv::extractChannel(decoded, decoded, 0);
      cv::cvtColor(decoded, rgb,
                   decoded.channels() == 1   ? cv::COLOR_GRAY2RGB
                   : decoded.channels() == 3 ? cv::COLOR_BGR2RGB
                                             : cv::COLOR_BGRA2RGB);
      EXPECT_EQ(0, std::memcmp(rgb.data, image->pixels.data(), image->pixels.size()))
          << "colour type " << color_type << ", depth " << depth;
#endif
    }
  }
}

TEST(Png, SixteenBitSamplesRoundToTheNearestLevel) {
  // v / 257: 128 → 0.498, 129 → 0.502, 32767 → 127.498, 32768 → 127.502, 65406 → 254.498,
  // 65407 → 254.502 (libspng's own 8-bit output keeps the high byte: 0, 0, 127, 128, 255, 255).
  const std::vector<uint16_t> v{128, 129, 32767, 32768, 65406, 65407};
  const auto bytes = png(6, 1, 0, 16, v);
  const auto image = decode_png(bytes.data(), bytes.size());
  ASSERT_TRUE(image.has_value());
  const std::vector<int> want{0, 1, 127, 128, 254, 255};
  for (int x = 0; x < 6; ++x) EXPECT_EQ(pixel(*image, 0, x)[0], want[static_cast<size_t>(x)]);
}

TEST(Png, EncodeThenDecodeGivesTheSamePixels) {
  Image image;
  image.height = 37;
  image.width = 53;
  image.pixels.resize(37 * 53 * 3);
  std::mt19937 rng(3);
  for (auto& p : image.pixels) p = static_cast<uint8_t>(rng());
  const auto bytes = encode_png(image);
  const auto back = decode_png(bytes.data(), bytes.size());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->height, 37);
  EXPECT_EQ(back->width, 53);
  EXPECT_EQ(back->pixels, image.pixels);
  // And through decode_image, the ImageFolder entry point.
  const auto via_folder = decode_image(bytes.data(), bytes.size());
  ASSERT_TRUE(via_folder.has_value());
  EXPECT_EQ(via_folder->pixels, image.pixels);
  image.pixels.pop_back();
  EXPECT_THROW(encode_png(image), std::invalid_argument);
}

// The pixel limit: an image above it is refused from its header by the JPEG and PNG decoders,
// naming its size and the setting; at the limit it decodes.
TEST(ImageFolder, ImagesAboveThePixelLimitAreRefusedFromTheirHeader) {
  EXPECT_EQ(max_image_pixels(), kDefaultMaxImagePixels);
  Image im;
  im.height = 12;
  im.width = 20;
  im.pixels.assign(12 * 20 * 3, 77);
  const auto png = encode_png(im);
  const auto jpeg = encode_jpeg(im, 90);
  set_max_image_pixels(239);
  for (const auto* bytes : {&png, &jpeg}) {
    std::string reason;
    EXPECT_FALSE(decode_image(bytes->data(), bytes->size(), &reason));
    EXPECT_NE(reason.find("20x12 = 240 pixels, above the limit of 239 (data.max_image_pixels)"),
              std::string::npos)
        << reason;
  }
  set_max_image_pixels(240);
  EXPECT_TRUE(decode_image(png.data(), png.size()));
  EXPECT_TRUE(decode_image(jpeg.data(), jpeg.size()));
  EXPECT_THROW(set_max_image_pixels(0), std::invalid_argument);
  set_max_image_pixels(kDefaultMaxImagePixels);
  // The config's value is what a data set's decoders use.
  ocl::io::DataConfig config;
  config.max_image_pixels = 1000;
  make_dataset(config, 16, true, 0);
  EXPECT_EQ(max_image_pixels(), 1000);
  set_max_image_pixels(kDefaultMaxImagePixels);
}

TEST(Png, CorruptTruncatedAndOversizedStreamsNameThePngDecoder) {
  std::vector<uint16_t> samples(16 * 16 * 3);
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<uint16_t>(i % 251);
  const auto good = png(16, 16, 2, 8, samples);
  auto expect_refused = [](const std::vector<uint8_t>& bytes, const std::string& what) {
    std::string reason;
    EXPECT_FALSE(decode_image(bytes.data(), bytes.size(), &reason).has_value()) << what;
    EXPECT_EQ(reason.rfind("PNG decoder: ", 0), 0u) << what << ": " << reason;
  };
  expect_refused(std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2), "truncated");
  auto flipped = good;
  flipped[good.size() / 2] ^= 0x40;  // inside IDAT: its CRC no longer matches
  expect_refused(flipped, "flipped byte");
  // A header claiming 100000 × 100000 pixels (IHDR's width at bytes 16-19, CRC fixed up).
  auto huge = png(1, 1, 2, 8, {1, 2, 3});
  for (int k : {16, 20}) {
    huge[k] = 0;
    huge[k + 1] = 0x01;
    huge[k + 2] = 0x86;
    huge[k + 3] = 0xA0;
  }
  const uint32_t crc = crc32(huge.data() + 12, 17);  // over "IHDR" and its 13 bytes
  for (int b = 0; b < 4; ++b) huge[29 + b] = static_cast<uint8_t>(crc >> (24 - 8 * b));
  expect_refused(huge, "100000 x 100000");
}

TEST(ImageFolder, FileListCacheIsWrittenReusedAndRebuilt) {
  Tree tree;
  const std::string cache = tree.dir.path() + "/list.txt";
  ImageFolderOptions o;
  o.cache_path = cache;
  ImageFolderDataset first(tree.root(), o);
  EXPECT_FALSE(first.loaded_from_cache());
  ASSERT_TRUE(fs::exists(cache));
  ImageFolderDataset second(tree.root(), o);
  EXPECT_TRUE(second.loaded_from_cache());
  ASSERT_EQ(second.size(), first.size());
  for (int64_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(second.file(i), first.file(i));
    EXPECT_EQ(second.label(i), first.label(i));
  }
  EXPECT_EQ(second.class_names(), first.class_names());
  for (const auto& e : fs::directory_iterator(tree.dir.path())) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
  }

  // A new file in a sub-folder of a class: that folder's mtime moves, the list is rebuilt.
  write_bytes(tree.root() + "/cat/sub/new.bmp", bmp(1, 1, {1, 2, 3}));
  ImageFolderDataset third(tree.root(), o);
  EXPECT_FALSE(third.loaded_from_cache());
  EXPECT_EQ(third.size(), first.size() + 1);
  EXPECT_EQ(third.file(third.size() - 1), "cat/sub/new.bmp");

  // A new class folder changes root's listing.
  tree.age_folders();
  ImageFolderDataset(tree.root(), o);
  EXPECT_TRUE(ImageFolderDataset(tree.root(), o).loaded_from_cache());
  write_bytes(tree.root() + "/dog/d.bmp", bmp(1, 1, {1, 2, 3}));
  EXPECT_EQ(ImageFolderDataset(tree.root(), o).num_classes(), 3);

  // An unwritable location means no cache, not an error.
  o.cache_path = tree.dir.path() + "/no/such/folder/list.txt";
  ImageFolderDataset uncached(tree.root(), o);
  EXPECT_FALSE(uncached.loaded_from_cache());
  EXPECT_FALSE(fs::exists(o.cache_path));

  // The default location is inside root, hidden, so it is never taken for a class or an image.
  ImageFolderDataset(tree.root(), ImageFolderOptions{});
  EXPECT_TRUE(fs::exists(tree.root() + "/.ocl-filelist.txt"));
  EXPECT_EQ(ImageFolderDataset(tree.root(), ImageFolderOptions{}).num_classes(), 3);
}

// ---------------------------------------------------------------------------------------------
// CIFAR

namespace {
// Record k: label `labels[k]`, R plane p → (p + k) mod 256, G plane 2p + k, B plane 255 − p − k.
std::vector<uint8_t> cifar_records(const std::vector<std::vector<int>>& labels) {
  std::vector<uint8_t> out;
  for (size_t k = 0; k < labels.size(); ++k) {
    for (int l : labels[k]) out.push_back(static_cast<uint8_t>(l));
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < 1024; ++p) {
        const int v = c == 0   ? p + static_cast<int>(k)
                      : c == 1 ? 2 * p + static_cast<int>(k)
                               : 255 - p - static_cast<int>(k);
        out.push_back(static_cast<uint8_t>(v & 255));
      }
    }
  }
  return out;
}

void expect_planes_interleaved(const Image& im, int k) {
  ASSERT_EQ(im.height, 32);
  ASSERT_EQ(im.width, 32);
  for (int p : {0, 1, 33, 500, 1023}) {
    EXPECT_EQ(pixel(im, p / 32, p % 32),
              (std::array<int, 3>{(p + k) & 255, (2 * p + k) & 255, (255 - p - k) & 255}))
        << "pixel " << p;
  }
}
}  // namespace

TEST(Cifar, Cifar10RecordsLabelsAndPixelOrder) {
  TempDir dir;
  const fs::path d = fs::path(dir.path()) / "cifar-10-batches-bin";  // the archive's sub-folder
  for (int b = 1; b <= 5; ++b) {
    write_bytes(d / ("data_batch_" + std::to_string(b) + ".bin"),
                cifar_records({{2 * b - 2}, {2 * b - 1}}));
  }
  write_bytes(d / "test_batch.bin", cifar_records({{7}, {3}}));
  {
    std::ofstream meta(d / "batches.meta.txt");
    for (const char* n : {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}) meta << n << "\n";
    meta << "\n";
  }
  CifarDataset train(dir.path(), CifarVariant::Cifar10, true);
  ASSERT_EQ(train.size(), 10);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(train.label(i), i);
  EXPECT_EQ(train.class_names().front(), "a");
  EXPECT_EQ(train.class_names().back(), "j");
  expect_planes_interleaved(*train.load(0), 0);
  expect_planes_interleaved(*train.load(9), 1);
  CifarDataset test(d.string(), CifarVariant::Cifar10, false);
  ASSERT_EQ(test.size(), 2);
  EXPECT_EQ(test.label(0), 7);
  EXPECT_EQ(test.label(1), 3);
  EXPECT_THROW(test.load(2), std::out_of_range);

  // Without the names file: the standard ten names.
  fs::remove(d / "batches.meta.txt");
  EXPECT_EQ(CifarDataset(d.string(), CifarVariant::Cifar10, false).class_names()[0], "airplane");
  // A truncated batch and a missing one are errors naming the file.
  auto bytes = cifar_records({{1}, {2}});
  bytes.resize(bytes.size() - 100);
  write_bytes(d / "data_batch_3.bin", bytes);
  try {
    CifarDataset broken(d.string(), CifarVariant::Cifar10, true);
    FAIL() << "a truncated batch was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("data_batch_3.bin"), std::string::npos) << e.what();
  }
  fs::remove(d / "data_batch_3.bin");
  try {
    CifarDataset missing(d.string(), CifarVariant::Cifar10, true);
    FAIL() << "a missing batch was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("data_batch_3.bin"), std::string::npos) << e.what();
  }
}

TEST(Cifar, Cifar100UsesTheFineLabel) {
  TempDir dir;
  write_bytes(fs::path(dir.path()) / "train.bin", cifar_records({{3, 42}, {19, 99}}));
  write_bytes(fs::path(dir.path()) / "test.bin", cifar_records({{0, 5}, {1, 6}}));
  CifarDataset train(dir.path(), CifarVariant::Cifar100, true);
  ASSERT_EQ(train.size(), 2);
  EXPECT_EQ(train.label(0), 42);
  EXPECT_EQ(train.label(1), 99);
  ASSERT_EQ(train.num_classes(), 100);
  EXPECT_EQ(train.class_names()[42], "class_42");
  expect_planes_interleaved(*train.load(1), 1);
  EXPECT_EQ(CifarDataset(dir.path(), CifarVariant::Cifar100, false).label(1), 6);
  // The CIFAR-10 reader looks for data_batch_*.bin, which a CIFAR-100 folder lacks.
  EXPECT_THROW(CifarDataset(dir.path(), CifarVariant::Cifar10, true), std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// Loader

namespace {
// Wraps a data set: some indices are unreadable, one may throw, loads may be slow.
class FaultyDataset : public Dataset {
 public:
  FaultyDataset(std::shared_ptr<const Dataset> inner, std::set<int64_t> bad, int64_t throws = -1,
                int sleep_us = 0)
      : inner_(std::move(inner)), bad_(std::move(bad)), throws_(throws), sleep_us_(sleep_us) {}
  int64_t size() const override { return inner_->size(); }
  const std::vector<std::string>& class_names() const override { return inner_->class_names(); }
  int64_t label(int64_t index) const override { return inner_->label(index); }
  std::optional<Image> load(int64_t index, BadSample* error) const override {
    if (sleep_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    if (index == throws_) throw std::runtime_error("boom at " + std::to_string(index));
    if (bad_.count(index)) {
      if (error) *error = BadSample{index, "bad/" + std::to_string(index) + ".jpg", "corrupt"};
      return std::nullopt;
    }
    return inner_->load(index, error);
  }
  std::string describe() const override { return "faulty"; }

 private:
  std::shared_ptr<const Dataset> inner_;
  std::set<int64_t> bad_;
  int64_t throws_;
  int sleep_us_;
};

std::shared_ptr<const Transform> small_rrc() {
  RandomResizedCropOptions o;
  o.size = 12;
  return random_resized_crop(o);
}
}  // namespace

TEST(Loader, StepsPerEpoch) {
  auto ds = tiny_synthetic(10);
  auto steps = [&](int64_t batch, bool drop_last, int64_t cap, int64_t world) {
    LoaderOptions o;
    o.batch_size = batch;
    o.drop_last = drop_last;
    o.max_steps_per_epoch = cap;
    o.world_size = world;
    o.workers = 1;
    return Loader(ds, nullptr, o).steps_per_epoch();
  };
  EXPECT_EQ(steps(3, true, 0, 1), 3);
  EXPECT_EQ(steps(3, false, 0, 1), 4);
  EXPECT_EQ(steps(3, false, 2, 1), 2);
  EXPECT_EQ(steps(3, true, 5, 1), 3);
  EXPECT_EQ(steps(3, true, 0, 3), 1);  // ceil(10 / 3) = 4 per rank
  EXPECT_EQ(steps(3, false, 0, 3), 2);
  EXPECT_EQ(steps(20, true, 0, 1), 0);

  LoaderOptions o;
  o.batch_size = 3;
  o.drop_last = false;
  o.shuffle = false;
  Loader loader(ds, nullptr, o);
  EXPECT_THROW(loader.next(), std::logic_error);
  loader.start_epoch(0);
  const auto batches = drain(loader);
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches.back().images.sizes(), (std::vector<int64_t>{1, 3, 16, 16}));
  EXPECT_EQ(indices_of(batches), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_FALSE(loader.next().has_value());
  o.rank = 3;
  o.world_size = 3;
  EXPECT_THROW(Loader(ds, nullptr, o), std::invalid_argument);
}

TEST(Loader, BatchesMatchTheDataSetAndTheTransform) {
  auto ds = tiny_synthetic(12);
  auto tf = small_rrc();
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 77;
  Loader loader(ds, tf, o);
  loader.start_epoch(3);
  const auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->step, 0);
  ASSERT_EQ(b->images.sizes(), (std::vector<int64_t>{4, 3, 12, 12}));
  EXPECT_EQ(b->images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(b->labels.scalar_type(), torch::kInt64);
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t index = b->indices[i].item<int64_t>();
    EXPECT_EQ(b->labels[i].item<int64_t>(), ds->label(index));
    const Image expected = tf->apply(*ds->load(index), sample_seed(77, 3, index));
    auto hwc =
        torch::from_blob(const_cast<uint8_t*>(expected.pixels.data()), {12, 12, 3}, torch::kUInt8);
    EXPECT_TRUE(torch::equal(b->images[i], hwc.permute({2, 0, 1}))) << "sample " << i;
  }
}

TEST(Loader, OrderAndContentDoNotDependOnWorkers) {
  auto ds = tiny_synthetic(40);
  auto tf = small_rrc();
  auto run = [&](int64_t workers, int64_t prefetch) {
    LoaderOptions o;
    o.batch_size = 6;
    o.workers = workers;
    o.prefetch = prefetch;
    o.seed = 3;
    o.drop_last = false;
    Loader loader(ds, tf, o);
    std::vector<std::vector<Batch>> epochs;
    for (int64_t e = 0; e < 2; ++e) {
      loader.start_epoch(e);
      epochs.push_back(drain(loader));
    }
    return epochs;
  };
  const auto one = run(1, 1), three = run(3, 4);
  ASSERT_EQ(one.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    ASSERT_EQ(one[e].size(), 7u);
    ASSERT_EQ(three[e].size(), 7u);
    for (size_t s = 0; s < one[e].size(); ++s) {
      EXPECT_EQ(one[e][s].step, static_cast<int64_t>(s));
      EXPECT_EQ(three[e][s].step, static_cast<int64_t>(s));
      EXPECT_TRUE(torch::equal(one[e][s].images, three[e][s].images)) << e << "/" << s;
      EXPECT_TRUE(torch::equal(one[e][s].labels, three[e][s].labels));
      EXPECT_TRUE(torch::equal(one[e][s].indices, three[e][s].indices));
    }
  }
}

TEST(Loader, EpochsArePermutationsThatDiffer) {
  auto ds = tiny_synthetic(50);
  LoaderOptions o;
  o.batch_size = 5;
  o.workers = 2;
  o.seed = 1;
  Loader loader(ds, nullptr, o);
  std::vector<std::vector<int64_t>> orders;
  for (int64_t e = 0; e < 3; ++e) {
    loader.start_epoch(e);
    orders.push_back(indices_of(drain(loader)));
    auto sorted = orders.back();
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << e;
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  loader.start_epoch(1);
  EXPECT_EQ(indices_of(drain(loader)), orders[1]);  // an epoch is a function of (seed, epoch)
  o.seed = 2;
  Loader other(ds, nullptr, o);
  other.start_epoch(1);
  EXPECT_NE(indices_of(drain(other)), orders[1]);
}

TEST(Loader, ResumeMidEpochGivesTheSameBatches) {
  auto ds = tiny_synthetic(30);
  auto tf = small_rrc();
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 2;
  Loader loader(ds, tf, o);
  loader.start_epoch(5);
  const auto full = drain(loader);
  ASSERT_EQ(full.size(), 7u);
  Loader resumed(ds, tf, o);
  resumed.start_epoch(5, 3);
  const auto rest = drain(resumed);
  ASSERT_EQ(rest.size(), 4u);
  for (size_t s = 0; s < rest.size(); ++s) {
    EXPECT_EQ(rest[s].step, static_cast<int64_t>(s + 3));
    EXPECT_TRUE(torch::equal(rest[s].images, full[s + 3].images));
    EXPECT_TRUE(torch::equal(rest[s].indices, full[s + 3].indices));
  }
  resumed.start_epoch(5, 100);
  EXPECT_FALSE(resumed.next().has_value());
  EXPECT_THROW(resumed.start_epoch(5, -1), std::invalid_argument);
}

TEST(Loader, ShardsAreDisjointAndCoverThePaddedPermutation) {
  auto ds = tiny_synthetic(10);
  const int64_t W = 3;
  std::vector<std::vector<int64_t>> shards;
  for (int64_t r = 0; r < W; ++r) {
    LoaderOptions o;
    o.batch_size = 2;
    o.drop_last = false;
    o.rank = r;
    o.world_size = W;
    o.seed = 4;
    Loader loader(ds, nullptr, o);
    loader.start_epoch(2);
    shards.push_back(indices_of(drain(loader)));
    ASSERT_EQ(shards.back().size(), 4u);  // ceil(10 / 3)
  }
  // Interleaving the shards rebuilds the padded permutation: a permutation of 0..9 followed by
  // its own first two entries (DistributedSampler's wrap-around padding).
  std::vector<int64_t> padded;
  for (size_t k = 0; k < 4; ++k) {
    for (int64_t r = 0; r < W; ++r) padded.push_back(shards[r][k]);
  }
  std::vector<int64_t> head(padded.begin(), padded.begin() + 10);
  std::sort(head.begin(), head.end());
  std::vector<int64_t> all(10);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(head, all);
  EXPECT_EQ(padded[10], padded[0]);
  EXPECT_EQ(padded[11], padded[1]);
  LoaderOptions single;
  single.batch_size = 10;
  single.seed = 4;
  Loader whole(ds, nullptr, single);
  whole.start_epoch(2);
  const auto order = indices_of(drain(whole));
  EXPECT_EQ(std::vector<int64_t>(padded.begin(), padded.begin() + 10), order);
}

TEST(Loader, UnreadableSamplesAreReplacedAndCounted) {
  auto inner = tiny_synthetic(20);
  auto ds = std::make_shared<FaultyDataset>(inner, std::set<int64_t>{3, 7, 8});
  LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = false;
  o.workers = 3;
  o.max_bad_fraction = 0.2;  // 4 of 20
  std::mutex m;
  std::vector<std::string> reported;
  o.on_bad_sample = [&](const BadSample& b) {
    std::lock_guard<std::mutex> lock(m);
    reported.push_back(b.path);
  };
  Loader loader(ds, nullptr, o);
  loader.start_epoch(0);
  const auto batches = drain(loader);
  // 3 → 4; 7 and 8 → 9 (the next readable index).
  EXPECT_EQ(indices_of(batches), (std::vector<int64_t>{0,  1,  2,  4,  4,  5,  6,  9,  9,  9,
                                                       10, 11, 12, 13, 14, 15, 16, 17, 18, 19}));
  EXPECT_EQ(batches[0].labels[3].item<int64_t>(), inner->label(4));
  EXPECT_EQ(loader.bad_samples(), 3);
  EXPECT_EQ(reported.size(), 4u);  // 7, 8 (for 7's slot), 8 again (its own slot), 3
  // A second epoch meets the same files: they are counted once.
  loader.start_epoch(1);
  drain(loader);
  EXPECT_EQ(loader.bad_samples(), 3);
}

TEST(Loader, TooManyUnreadableSamplesStopTheRun) {
  auto ds = std::make_shared<FaultyDataset>(tiny_synthetic(20), std::set<int64_t>{2, 5, 11, 12});
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.max_bad_fraction = 0.1;  // 2 of 20 tolerated
  Loader loader(ds, nullptr, o);
  loader.start_epoch(0);
  EXPECT_TRUE(loader.next().has_value());  // 2
  EXPECT_TRUE(loader.next().has_value());  // 5: two so far, at the limit
  try {
    loader.next();  // 11, 12
    FAIL() << "the limit did not stop the loader";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("4 unreadable"), std::string::npos) << what;
    EXPECT_NE(what.find("data.max_bad_fraction"), std::string::npos) << what;
    EXPECT_NE(what.find("bad/2.jpg"), std::string::npos) << what;
    EXPECT_NE(what.find("limit of 2"), std::string::npos) << what;
  }
  // A data set with nothing readable stops at the limit, without trying every file.
  std::set<int64_t> everything;
  for (int64_t i = 0; i < 1000; ++i) everything.insert(i);
  auto broken = std::make_shared<FaultyDataset>(tiny_synthetic(1000), everything);
  Loader doomed(broken, nullptr, o);
  doomed.start_epoch(0);
  EXPECT_THROW(doomed.next(), std::runtime_error);
  EXPECT_EQ(doomed.bad_samples(), 101);
}

TEST(Loader, WorkerExceptionsSurfaceInOrder) {
  auto ds = std::make_shared<FaultyDataset>(tiny_synthetic(20), std::set<int64_t>{}, 9);
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.workers = 3;
  Loader loader(ds, nullptr, o);
  loader.start_epoch(0);
  EXPECT_TRUE(loader.next().has_value());
  EXPECT_TRUE(loader.next().has_value());
  try {
    loader.next();
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom at 9");
  }
  // The epoch goes on after it; a new epoch starts cleanly.
  EXPECT_TRUE(loader.next().has_value());
  loader.start_epoch(1, 3);
  EXPECT_EQ(loader.next()->step, 3);
}

TEST(Loader, DestructionAndRestartMidEpochArePrompt) {
  // Slow samples (2 ms each), a full reorder buffer, workers mid-batch: the destructor and
  // start_epoch must not wait for the epoch to finish.
  auto ds = std::make_shared<FaultyDataset>(tiny_synthetic(2000), std::set<int64_t>{}, -1, 2000);
  LoaderOptions o;
  o.batch_size = 16;
  o.workers = 3;
  o.prefetch = 2;
  auto started = std::chrono::steady_clock::now();
  {
    Loader loader(ds, nullptr, o);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // the buffer fills up
    loader.start_epoch(1);
    loader.start_epoch(2);
    const auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->step, 0);
    started = std::chrono::steady_clock::now();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(seconds, 0.5);
  { Loader never_started(ds, nullptr, o); }
}

TEST(Loader, FactoryBuildsTheConfiguredPipeline) {
  ocl::io::DataConfig config;
  config.synthetic_train_size = 40;
  config.synthetic_val_size = 20;
  config.synthetic_classes = 12;
  auto train = make_dataset(config, 32, true, 9);
  auto val = make_dataset(config, 32, false, 9);
  EXPECT_EQ(train->size(), 40);
  EXPECT_EQ(val->size(), 20);
  EXPECT_EQ(train->num_classes(), 12);
  EXPECT_NE(train->load(0)->pixels, val->load(0)->pixels);
  auto augment = make_transform(config, 32, true);
  EXPECT_NE(augment->describe().find("RandomResizedCrop"), std::string::npos);
  EXPECT_NE(make_transform(config, 32, false)->describe().find("CenterCrop"), std::string::npos);
  config.augment = "none";
  EXPECT_NE(make_transform(config, 32, true)->describe().find("CenterCrop"), std::string::npos);
  config.interpolation = "lanczos";
  EXPECT_THROW(make_transform(config, 32, true), std::invalid_argument);
  config.dataset = "imagefolder";
  config.path = "/no/such/ocl/data";
  try {
    make_dataset(config, 32, true, 0);
    FAIL() << "a missing folder was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("data.path"), std::string::npos) << e.what();
  }
  config.dataset = "cifar10";
  EXPECT_THROW(make_dataset(config, 32, true, 0), std::runtime_error);
  config.dataset = "mnist";
  EXPECT_THROW(make_dataset(config, 32, true, 0), std::invalid_argument);
}
