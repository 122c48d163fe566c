// JPEG decoding through libjpeg-turbo (data/jpeg.h) and the crop planned before decoding: a
// whole decode equals OpenCV's (the decoder ImageFolder used before; in builds with imgcodecs),
// a region equals the same window of a whole decode at every scale, grey and progressive files
// decode, corrupt data names the problem, and the loader's batches are the same whether the
// crop's region or the whole image was decoded. The test images are written by ocl's own
// encoder (data/jpeg.h), which is checked here too.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>
#ifdef OCL_WITH_IMGCODECS
#include <opencv2/imgcodecs.hpp>
#endif

#include <ocl/data/image_folder.h>
#include <ocl/data/jpeg.h>
#include <ocl/data/loader.h>
#include <ocl/data/packed.h>
#include <ocl/data/png.h>
#include <ocl/data/rand_augment.h>
#include <ocl/data/transforms.h>

namespace {

using ocl::data::DecodeRegion;
using ocl::data::Image;

// A textured colour image (gradients, a checker and pseudo-random noise), so every DCT block
// has detail and chroma subsampling matters. `cell`: the checker's period in pixels.
cv::Mat textured(int height, int width, uint32_t seed, int noise_levels = 32, int cell = 6) {
  cv::Mat bgr(height, width, CV_8UC3);
  uint32_t state = seed;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      state = state * 1664525u + 1013904223u;
      const int noise = static_cast<int>((state >> 16) % static_cast<uint32_t>(noise_levels));
      const int checker = ((x / cell + y / cell) % 2) * 60;
      bgr.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>((x * 255 / width + noise) % 256),
                                          static_cast<uint8_t>((y * 255 / height + checker) % 256),
                                          static_cast<uint8_t>((x + y + 2 * noise) % 256));
    }
  }
  return bgr;
}

// An 8-bit BGR or grey Mat as an ocl RGB image (grey replicated).
Image to_image(const cv::Mat& image) {
  cv::Mat rgb;
  cv::cvtColor(image, rgb, image.channels() == 1 ? cv::COLOR_GRAY2RGB : cv::COLOR_BGR2RGB);
  Image out;
  out.height = rgb.rows;
  out.width = rgb.cols;
  out.pixels.assign(rgb.data, rgb.data + rgb.total() * 3);
  return out;
}

// A JPEG of a BGR (three components) or grey (one component) Mat at quality 90.
std::vector<uint8_t> encode(const cv::Mat& image, bool progressive = false) {
  ocl::data::JpegEncoding e;
  e.quality = 90;
  e.progressive = progressive;
  e.grey = image.channels() == 1;
  return ocl::data::encode_jpeg(to_image(image), e);
}

// The SOF marker's type (0xC0 baseline, 0xC2 progressive) and its component count.
std::pair<int, int> frame_of(const std::vector<uint8_t>& bytes) {
  for (size_t i = 2; i + 9 < bytes.size(); ++i) {
    if (bytes[i] == 0xFF && (bytes[i + 1] == 0xC0 || bytes[i + 1] == 0xC2)) {
      return {bytes[i + 1], bytes[i + 9]};
    }
  }
  return {0, 0};
}

ocl::data::RegionPlanner plan_of(DecodeRegion region) {
  return [region](int, int) { return region; };
}

Image decode(const std::vector<uint8_t>& bytes, DecodeRegion region = {}) {
  std::string reason;
  bool unsupported = false;
  auto image =
      ocl::data::decode_jpeg(bytes.data(), bytes.size(), plan_of(region), &reason, &unsupported);
  EXPECT_TRUE(image.has_value()) << reason;
  EXPECT_FALSE(unsupported);
  return image.value_or(Image{});
}

// The pixels of `whole` in rows [top, top + h) and columns [left, left + w).
std::vector<uint8_t> window_of(const Image& whole, int top, int left, int h, int w) {
  std::vector<uint8_t> out;
  for (int y = top; y < top + h; ++y) {
    const uint8_t* row = whole.pixels.data() + (static_cast<size_t>(y) * whole.width + left) * 3;
    out.insert(out.end(), row, row + 3 * w);
  }
  return out;
}

TEST(Jpeg, EncoderWritesBaselineProgressiveAndGreyFilesCloseToTheImage) {
  // Little noise and a coarse checker: what a photograph's 8x8 blocks look like to the codec.
  const cv::Mat bgr = textured(64, 80, 9, 4, 24);
  const Image image = to_image(bgr);
  for (const bool progressive : {false, true}) {
    for (const bool grey : {false, true}) {
      ocl::data::JpegEncoding e;
      e.quality = 95;
      e.progressive = progressive;
      e.grey = grey;
      const auto bytes = ocl::data::encode_jpeg(image, e);
      const auto [marker, components] = frame_of(bytes);
      EXPECT_EQ(marker, progressive ? 0xC2 : 0xC0);
      EXPECT_EQ(components, grey ? 1 : 3);
      const Image back = decode(bytes);
      ASSERT_EQ(back.pixels.size(), image.pixels.size());
      double error = 0;
      for (size_t i = 0; i < image.pixels.size(); ++i) {
        const int want = grey ? image.pixels[i - i % 3] : image.pixels[i];
        error += std::abs(static_cast<int>(back.pixels[i]) - want);
      }
      // Mean absolute error at quality 95 with 4:2:0 chroma: a few levels.
      EXPECT_LT(error / image.pixels.size(), 4.0)
          << "progressive " << progressive << " grey " << grey;
#ifdef OCL_WITH_IMGCODECS
      // The same pixels as OpenCV's encoder (the same libjpeg settings) gives.
      if (!grey) {
        std::vector<uint8_t> theirs;
        ASSERT_TRUE(cv::imencode(
            ".jpg", bgr, theirs,
            {cv::IMWRITE_JPEG_QUALITY, 95, cv::IMWRITE_JPEG_PROGRESSIVE, progressive ? 1 : 0}));
        EXPECT_EQ(decode(theirs).pixels, back.pixels) << "progressive " << progressive;
      }
#endif
    }
  }
  ocl::data::JpegEncoding bad;
  bad.quality = 0;
  EXPECT_THROW(ocl::data::encode_jpeg(image, bad), std::invalid_argument);
  Image short_pixels = image;
  short_pixels.pixels.pop_back();
  EXPECT_THROW(ocl::data::encode_jpeg(short_pixels, 90), std::invalid_argument);
}

TEST(Jpeg, WholeDecodeEqualsOpenCv) {
#ifndef OCL_WITH_IMGCODECS
  GTEST_SKIP() << "this build has no OpenCV imgcodecs to compare with (OCL_WITH_IMGCODECS)";
#else
  for (const bool progressive : {false, true}) {
    const auto bytes = encode(textured(247, 301, 1), progressive);
    ASSERT_TRUE(ocl::data::looks_like_jpeg(bytes.data(), bytes.size()));
    const Image ours = decode(bytes);
    cv::Mat rgb;
    cv::cvtColor(cv::imdecode(bytes, cv::IMREAD_COLOR), rgb, cv::COLOR_BGR2RGB);
    ASSERT_EQ(ours.height, 247);
    ASSERT_EQ(ours.width, 301);
    EXPECT_FALSE(ours.window.partial());
    EXPECT_EQ(0, std::memcmp(ours.pixels.data(), rgb.data, ours.pixels.size()))
        << "progressive " << progressive;
  }
#endif
}

TEST(Jpeg, RegionEqualsTheWindowOfAWholeDecodeAtEveryScale) {
  for (const bool progressive : {false, true}) {
    const auto bytes = encode(textured(247, 301, 2), progressive);
    for (const int scale : {1, 2, 4, 8}) {
      // The whole image at this scale: a region covering everything.
      const Image whole = decode(bytes, {0, 0, 247, 301, scale});
      EXPECT_EQ(whole.height, (247 + scale - 1) / scale);
      EXPECT_EQ(whole.width, (301 + scale - 1) / scale);
      const DecodeRegion regions[] = {{0, 0, 50, 60, scale},
                                      {100, 123, 80, 90, scale},
                                      {190, 250, 57, 51, scale},
                                      {13, 7, 1, 1, scale},
                                      {0, 150, 247, 100, scale},
                                      {246, 300, 1, 1, scale},
                                      // One column at the left edge: a window one chroma sample
                                      // wide was upsampled differently (fuzz/jpeg_region_fuzz.cpp).
                                      {40, 0, 30, 1, scale}};
      for (const auto& r : regions) {
        const Image part = decode(bytes, r);
        ASSERT_TRUE(part.window.partial());
        const auto& w = part.window;
        EXPECT_EQ(w.source_height, 247);
        EXPECT_EQ(w.source_width, 301);
        EXPECT_EQ(w.scale, scale);
        // The window holds the region (widened to block columns, never narrowed).
        EXPECT_LE(w.top * scale, r.top);
        EXPECT_LE(w.left * scale, r.left);
        EXPECT_GE((w.top + part.height) * scale, std::min(r.top + r.height, 247));
        EXPECT_GE((w.left + part.width) * scale, std::min(r.left + r.width, 301));
        EXPECT_EQ(window_of(whole, w.top, w.left, part.height, part.width), part.pixels)
            << "scale " << scale << ", region at " << r.top << "," << r.left << " progressive "
            << progressive;
      }
    }
  }
}

// Only BMP, WebP, TIFF and PNM reach OpenCV: anything else is refused by its first bytes. A
// 137-byte file with DICOM's signature made Debian's OpenCV call GDCM, which aborted the
// process on an assertion (found by fuzz/image_fuzz.cpp); JPEG 2000, which OpenCV decodes, is
// not a format ocl reads either.
TEST(Jpeg, BytesOfUnlistedFormatsNeverReachOpenCv) {
  std::ifstream in(std::string(OCL_FUZZ_DIR) + "/regressions/image/dicom_signature_aborts_gdcm",
                   std::ios::binary);
  const std::vector<uint8_t> dicom((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  ASSERT_EQ(dicom.size(), 137u);
  std::string reason;
  EXPECT_FALSE(ocl::data::decode_image(dicom.data(), dicom.size(), &reason).has_value());
  EXPECT_NE(reason.find("unknown format"), std::string::npos) << reason;
  // The same bytes behind a GIF's signature: OpenCV 4.6 has no GIF decoder and went on to GDCM.
  std::vector<uint8_t> gif = dicom;
  std::memcpy(gif.data(), "GIF89a", 6);
  reason.clear();
  EXPECT_FALSE(ocl::data::decode_image(gif.data(), gif.size(), &reason).has_value());
  EXPECT_NE(reason.find("unknown format"), std::string::npos) << reason;
#ifdef OCL_WITH_IMGCODECS
  std::vector<uint8_t> jp2;
  ASSERT_TRUE(cv::imencode(".jp2", textured(128, 128, 5), jp2));  // 6 resolution levels
  ASSERT_FALSE(cv::imdecode(jp2, cv::IMREAD_COLOR).empty());      // OpenCV itself reads it
  reason.clear();
  EXPECT_FALSE(ocl::data::decode_image(jp2.data(), jp2.size(), &reason).has_value());
  EXPECT_NE(reason.find("not JPEG, PNG, BMP, WebP, TIFF or PNM"), std::string::npos) << reason;
  // The listed formats still decode through OpenCV.
  for (const char* ext : {".bmp", ".tiff", ".ppm", ".webp"}) {
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(cv::imencode(ext, textured(12, 20, 6), bytes)) << ext;
    const auto image = ocl::data::decode_image(bytes.data(), bytes.size());
    ASSERT_TRUE(image.has_value()) << ext;
    EXPECT_EQ(image->height, 12) << ext;
    EXPECT_EQ(image->width, 20) << ext;
  }
#endif
}

TEST(Jpeg, GreyDecodesToRgbAndOtherFormatsStillDecode) {
  cv::Mat grey;
  cv::cvtColor(textured(40, 56, 3), grey, cv::COLOR_BGR2GRAY);
  const Image g = decode(encode(grey));
  ASSERT_EQ(g.pixels.size(), 40u * 56u * 3u);
  for (size_t i = 0; i < 40u * 56u; ++i) {
    ASSERT_EQ(g.pixels[3 * i + 1], g.pixels[3 * i]);
    ASSERT_EQ(g.pixels[3 * i + 2], g.pixels[3 * i]);
    ASSERT_NEAR(g.pixels[3 * i], grey.data[i], 40);  // quality 90 on a noisy texture
  }
#ifdef OCL_WITH_IMGCODECS
  cv::Mat reference = cv::imdecode(encode(grey), cv::IMREAD_GRAYSCALE);
  for (size_t i = 0; i < 40u * 56u; ++i) ASSERT_EQ(g.pixels[3 * i], reference.data[i]);
#endif
  // Other formats are not JPEG and still decode through decode_image (PNG through libspng). A
  // CMYK JPEG, which decode_jpeg leaves to OpenCV, is checked in test_image_folder.cpp (print.jpg).
  const auto png = ocl::data::encode_png(to_image(textured(8, 8, 4)));
  EXPECT_FALSE(ocl::data::looks_like_jpeg(png.data(), png.size()));
  EXPECT_TRUE(ocl::data::decode_image(png.data(), png.size()).has_value());
}

TEST(Jpeg, CorruptDataNamesTheDecoder) {
  auto bytes = encode(textured(64, 64, 5));
  std::vector<uint8_t> header_only(bytes.begin(), bytes.begin() + 20);
  std::string reason;
  EXPECT_FALSE(ocl::data::decode_jpeg(header_only.data(), header_only.size(), {}, &reason));
  EXPECT_NE(reason.find("JPEG decoder"), std::string::npos) << reason;
  // A bad scale from a planner is refused by name.
  reason.clear();
  EXPECT_FALSE(
      ocl::data::decode_jpeg(bytes.data(), bytes.size(), plan_of({0, 0, 8, 8, 3}), &reason));
  EXPECT_NE(reason.find("1/3"), std::string::npos) << reason;
}

// A JPEG cut short (a partial download, a full disk) is refused as truncated, baseline and
// progressive, for the whole image and for a region below the cut; a region that ends above the
// cut never reads the missing data and decodes.
TEST(Jpeg, TruncatedFileIsRefusedWhereTheDecodeReachesTheCut) {
  for (const bool progressive : {false, true}) {
    SCOPED_TRACE(progressive ? "progressive" : "baseline");
    const auto bytes = encode(textured(128, 96, 9), progressive);
    const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + bytes.size() * 6 / 10);
    std::string reason;
    EXPECT_FALSE(ocl::data::decode_jpeg(cut.data(), cut.size(), {}, &reason));
    EXPECT_NE(reason.find("truncated"), std::string::npos) << reason;
    reason.clear();
    EXPECT_FALSE(
        ocl::data::decode_jpeg(cut.data(), cut.size(), plan_of({96, 0, 32, 96, 1}), &reason));
    EXPECT_NE(reason.find("truncated"), std::string::npos) << reason;
    if (!progressive) {  // baseline data is in row order: the top rows are all there
      const Image top = decode(cut, {0, 0, 16, 96, 1});
      EXPECT_EQ(top.pixels, window_of(decode(bytes), 0, 0, 16, 96));
    }
  }
  // ImageFolder's decoder takes the refusal as an unreadable file (a bad sample).
  const auto bytes = encode(textured(64, 64, 3));
  const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + bytes.size() * 6 / 10);
  std::string reason;
  EXPECT_FALSE(ocl::data::decode_image(cut.data(), cut.size(), &reason));
  EXPECT_NE(reason.find("truncated"), std::string::npos) << reason;
}

// RandomResizedCrop on the region its own plan asked for gives the output it gives on the whole
// image: exactly at scale 1, and within a few levels when the decoder reduced the scale.
TEST(Jpeg, RandomResizedCropOnItsRegionEqualsTheWholeImage) {
  ocl::data::RandomResizedCropOptions o;
  o.size = 32;
  o.scale_min = 0.2;
  for (const bool reduced : {false, true}) {
    o.decode = reduced ? ocl::data::RegionDecode::Reduced : ocl::data::RegionDecode::Region;
    auto rrc = ocl::data::random_resized_crop(o);
    const auto bytes = encode(textured(247, 301, 6, 4, 24));
    const Image whole = decode(bytes);
    int reduced_seen = 0;
    for (uint64_t seed = 0; seed < 40; ++seed) {
      const DecodeRegion r = rrc->region(247, 301, seed);
      reduced_seen += r.scale > 1;
      const Image part = decode(bytes, r);
      const Image a = rrc->apply(whole, seed), b = rrc->apply(part, seed);
      ASSERT_EQ(a.pixels.size(), b.pixels.size());
      if (r.scale == 1) {
        EXPECT_EQ(a.pixels, b.pixels) << "seed " << seed;
      } else {
        // The decoder's scaling filters differently from the area + bicubic shrink, and the
        // crop edges move by up to half a decoded pixel: on this image (a 24-pixel checker of
        // 60-level edges) the mean gap measured 4-8 levels of 255 at 32 pixels from an 8x
        // larger crop.
        double diff = 0;
        for (size_t i = 0; i < a.pixels.size(); ++i) diff += std::abs(a.pixels[i] - b.pixels[i]);
        EXPECT_LT(diff / a.pixels.size(), 10.0) << "seed " << seed << ", scale " << r.scale;
      }
    }
    // RandAugment after the crop decodes what the crop asks for, and gives the same output from
    // the crop's region as from the whole image.
    const auto augmented =
        ocl::data::with_rand_augment(rrc, ocl::data::parse_rand_augment("rand-m9-mstd0.5-inc1"));
    for (uint64_t seed = 0; seed < 5; ++seed) {
      const DecodeRegion r = augmented->region(247, 301, seed), c = rrc->region(247, 301, seed);
      EXPECT_EQ(std::make_tuple(r.top, r.left, r.height, r.width, r.scale),
                std::make_tuple(c.top, c.left, c.height, c.width, c.scale));
      if (r.scale == 1) {
        EXPECT_EQ(augmented->apply(decode(bytes, r), seed).pixels,
                  augmented->apply(whole, seed).pixels);
      }
    }
    if (reduced) {
      EXPECT_GT(reduced_seen, 0) << "no crop of a 247x301 image was 2x the 32-pixel output";
    } else {
      EXPECT_EQ(reduced_seen, 0);
    }
  }
}

std::string make_dir(const std::string& name) {
  return ocl::test::make_temp_dir("ocl_jpeg_" + name + "_");
}

// A data set that hides load_region, so the loader decodes whole images.
class WholeImages : public ocl::data::Dataset {
 public:
  explicit WholeImages(std::shared_ptr<const ocl::data::Dataset> inner)
      : inner_(std::move(inner)) {}
  int64_t size() const override { return inner_->size(); }
  const std::vector<std::string>& class_names() const override { return inner_->class_names(); }
  int64_t label(int64_t i) const override { return inner_->label(i); }
  std::optional<Image> load(int64_t i, ocl::data::BadSample* e) const override {
    return inner_->load(i, e);
  }
  std::string describe() const override { return "whole " + inner_->describe(); }

 private:
  std::shared_ptr<const ocl::data::Dataset> inner_;
};

// Both loaders over `set` (one decoding regions, one whole images) give equal batches.
void expect_same_batches(const std::shared_ptr<const ocl::data::Dataset>& set, int expected) {
  ocl::data::RandomResizedCropOptions o;
  o.size = 24;
  o.decode = ocl::data::RegionDecode::Region;
  auto rrc = ocl::data::random_resized_crop(o);
  ocl::data::LoaderOptions lo;
  lo.batch_size = 4;
  lo.workers = 2;
  lo.seed = 9;
  ocl::data::Loader regions(set, rrc, lo);
  ocl::data::Loader wholes(std::make_shared<WholeImages>(set), rrc, lo);
  regions.start_epoch(0);
  wholes.start_epoch(0);
  int batches = 0;
  while (auto a = regions.next()) {
    auto b = wholes.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(torch::equal(a->images, b->images)) << set->describe() << ", batch " << batches;
    EXPECT_TRUE(torch::equal(a->labels, b->labels));
    ++batches;
  }
  EXPECT_EQ(batches, expected);
}

TEST(Jpeg, RawPackRegionsGiveTheWholeImagesBatches) {
  const std::string folder = make_dir("raw");
  ocl::data::PackWriterOptions po;
  po.encoding = ocl::data::PackEncoding::Raw;
  ocl::data::PackWriter writer(folder, {"a", "b"}, po, false);
  for (int i = 0; i < 12; ++i) {
    cv::Mat rgb;
    cv::cvtColor(textured(50 + 7 * i, 70 - 3 * i, static_cast<uint32_t>(i)), rgb,
                 cv::COLOR_BGR2RGB);
    writer.add(rgb.data, rgb.total() * 3, i % 2, rgb.rows, rgb.cols);
  }
  writer.finish();
  expect_same_batches(std::make_shared<ocl::data::PackedDataset>(folder), 3);
}

TEST(Jpeg, LoaderBatchesAreTheSameWithRegionDecoding) {
  const std::string root = make_dir("folder");
  for (const char* cls : {"a", "b"}) {
    std::filesystem::create_directories(root + "/" + cls);
    for (int i = 0; i < 6; ++i) {
      const auto bytes = encode(textured(60 + 9 * i, 80 - 5 * i, static_cast<uint32_t>(i + 17)));
      std::ofstream(root + "/" + cls + "/" + std::to_string(i) + ".jpg", std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
  }
  expect_same_batches(std::make_shared<ocl::data::ImageFolderDataset>(root), 3);
}

}  // namespace
