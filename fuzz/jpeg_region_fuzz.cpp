// Fuzz target: the JPEG region decoder (data::decode_jpeg with a RegionPlanner: a crop decoded at
// a reduced DCT scale, the loaders' hot path). Each input is decoded whole, then whole at a
// reduced scale, then as a crop at that scale, with a scale and crop taken from the input's
// length so that every input tries another one. Findings beyond the sanitizers': any exception,
// a window outside the image, and a crop of a clean stream whose pixels differ from the same
// window of the whole decode at that scale (which jpeg.h promises; a stream libjpeg warns about,
// "Corrupt JPEG data: bad Huffman code", is decoded best-effort, and a crop that skips part of it
// can recover differently).
#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

// clang-format off: jpeglib.h needs size_t and FILE declared before it
#include <jpeglib.h>
// clang-format on

#include "fuzz_support.h"
#include "targets.h"

#include "ocl/data/dataset.h"
#include "ocl/data/jpeg.h"

namespace ocl::fuzz::jpeg_region_target {

namespace {
constexpr int64_t kPixelLimit = int64_t{1} << 22;  // as the image target: a huge header is refused

// Whether libjpeg decodes the whole stream without a single warning (corrupt data, extraneous
// bytes, an inconsistent progression) or error.
struct CountingErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  int warnings = 0;
};

bool decodes_cleanly(const uint8_t* data, size_t size) {
  jpeg_decompress_struct cinfo{};
  CountingErrors err{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.emit_message = [](j_common_ptr c, int level) {
    if (level < 0) ++reinterpret_cast<CountingErrors*>(c->err)->warnings;
  };
  err.mgr.error_exit = [](j_common_ptr c) {
    std::longjmp(reinterpret_cast<CountingErrors*>(c->err)->jump, 1);
  };
  jpeg_create_decompress(&cinfo);
  bool clean = false;
  if (setjmp(err.jump) == 0) {
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    jpeg_start_decompress(&cinfo);
    std::vector<JSAMPLE> row(static_cast<size_t>(cinfo.output_width) * cinfo.output_components);
    JSAMPROW rows[1] = {row.data()};
    while (cinfo.output_scanline < cinfo.output_height) jpeg_read_scanlines(&cinfo, rows, 1);
    jpeg_finish_decompress(&cinfo);
    clean = err.warnings == 0;
  }
  jpeg_destroy_decompress(&cinfo);
  return clean;
}

bool pixels_match_size(const ocl::data::Image& image) {
  return image.height > 0 && image.width > 0 &&
         image.pixels.size() ==
             static_cast<size_t>(image.height) * static_cast<size_t>(image.width) * 3;
}
}  // namespace

void init() { ocl::data::set_max_image_pixels(kPixelLimit); }

int run(const uint8_t* data, size_t size) {
  using ocl::data::DecodeRegion;
  std::string reason;
  bool unsupported = false;
  const auto whole = ocl::data::decode_jpeg(data, size, {}, &reason, &unsupported);
  if (!whole) {
    ocl::fuzz::require(!reason.empty() || unsupported, "a JPEG was refused without a reason");
    return 0;
  }
  ocl::fuzz::require(pixels_match_size(*whole), "a whole decode's pixels do not match its size");
  const int h = whole->height, w = whole->width;

  const int scale = 1 << (size % 4);  // 1, 2, 4 or 8
  const auto at_scale = ocl::data::decode_jpeg(data, size, [&](int, int) {
    return DecodeRegion{0, 0, h, w, scale};
  });
  if (!at_scale) return 0;  // a stream damaged where the scaled decode reads it differently
  ocl::fuzz::require(pixels_match_size(*at_scale), "a scaled decode's pixels do not match");

  // A crop somewhere inside, its corner and size drawn from the input's length.
  const int top = static_cast<int>(size / 7 % static_cast<size_t>(h));
  const int left = static_cast<int>(size / 3 % static_cast<size_t>(w));
  const int ch = 1 + static_cast<int>(size / 11 % static_cast<size_t>(h - top));
  const int cw = 1 + static_cast<int>(size / 13 % static_cast<size_t>(w - left));
  const auto crop = ocl::data::decode_jpeg(data, size, [&](int, int) {
    return DecodeRegion{top, left, ch, cw, scale};
  });
  if (!crop) return 0;
  ocl::fuzz::require(pixels_match_size(*crop), "a crop's pixels do not match its size");
  if (!decodes_cleanly(data, size)) return 0;
  const auto& win = crop->window;
  const auto& full = at_scale->window;
  // The whole decode at that scale is the reference frame: its own window (if any) starts at 0.
  ocl::fuzz::require(!full.partial() || (full.top == 0 && full.left == 0),
                     "a whole decode at a scale does not start at the corner");
  if (!win.partial()) {
    ocl::fuzz::require(crop->height == at_scale->height && crop->width == at_scale->width,
                       "a crop without a window is not the whole image");
    ocl::fuzz::require(crop->pixels == at_scale->pixels, "a whole crop differs from the image");
    return 0;
  }
  ocl::fuzz::require(win.scale == scale && full.scale == scale,
                     "a decode at a reduced scale reports another scale");
  ocl::fuzz::require(win.top >= 0 && win.left >= 0 && win.top + crop->height <= at_scale->height &&
                         win.left + crop->width <= at_scale->width,
                     "a crop's window lies outside the image at its scale");
  const size_t row = static_cast<size_t>(crop->width) * 3;
  for (int y = 0; y < crop->height; ++y) {
    const uint8_t* a = crop->pixels.data() + static_cast<size_t>(y) * row;
    const uint8_t* b = at_scale->pixels.data() +
                       (static_cast<size_t>(win.top + y) * at_scale->width + win.left) * 3;
    ocl::fuzz::require(std::equal(a, a + row, b),
                       "a crop's pixels differ from the same window of the whole decode");
  }
  return 0;
}

}  // namespace ocl::fuzz::jpeg_region_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::jpeg_region_target)
