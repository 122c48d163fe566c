// PNG decoding (libspng, in every build) and encoding: every colour type and depth to 8-bit RGB,
// 16-bit samples rounded, corrupt streams named, and the same pixels as OpenCV's decoder.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "data_files.h"
#include <gtest/gtest.h>

#include <ocl/data/image_folder.h>
#include <ocl/data/png.h>

#ifdef OCL_WITH_IMGCODECS
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

using namespace ocl::data;

namespace {

using ocl::test::crc32;
using ocl::test::pixel;
using ocl::test::png;

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
