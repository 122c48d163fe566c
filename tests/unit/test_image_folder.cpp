// ImageFolder: its classes and files, the file list cache, and decoding of every image layout to
// RGB. The images are written by small encoders (PNG stored-deflate, BMP, flat-block baseline
// JPEG), so decoding is checked against values known by construction.
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data_files.h"
#include "test_util.h"
#include <gtest/gtest.h>

#include <ocl/data/factory.h>
#include <ocl/data/image_folder.h>
#include <ocl/data/jpeg.h>
#include <ocl/data/png.h>

namespace fs = std::filesystem;
using namespace ocl::data;

namespace {

using ocl::test::pixel;
using ocl::test::png;
using ocl::test::put32be;
using ocl::test::TempDir;
using ocl::test::write_bytes;

void put16be(std::vector<uint8_t>& o, int v) {
  o.push_back(static_cast<uint8_t>(v >> 8));
  o.push_back(static_cast<uint8_t>(v));
}
void put32le(std::vector<uint8_t>& o, uint32_t v) {
  for (int s = 0; s < 32; s += 8) o.push_back(static_cast<uint8_t>(v >> s));
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
