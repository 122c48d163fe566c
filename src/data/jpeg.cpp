// JPEG decoding through libjpeg-turbo's own API (see include/ocl/data/jpeg.h).
#include "ocl/data/jpeg.h"

#include <jpeglib.h>
// jerror.h after jpeglib.h: the warning codes (JWRN_JPEG_EOF).
#include <jerror.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE declared first
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace ocl::data {
namespace {

// libjpeg's error_exit must not return: it jumps back to the caller's setjmp. Warnings are not
// printed; one is kept: data ending early (JWRN_JPEG_EOF), after which libjpeg fills the rest
// with grey, so the image is refused as truncated. Others leave the pixels intact.
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool premature_end;
};

[[noreturn]] void on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

void on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF)
    reinterpret_cast<ErrorManager*>(cinfo->err)->premature_end = true;
}

jpeg_error_mgr* install_errors(ErrorManager& err) {
  jpeg_error_mgr* pub = jpeg_std_error(&err.pub);
  pub->error_exit = on_error;
  pub->emit_message = on_message;
  err.message[0] = '\0';
  err.premature_end = false;
  return pub;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The decoded rows [top, bottom) into `pixels` (row `top` first). Called from decode_into's
// setjmp frame: it holds no object with a destructor, which a longjmp from libjpeg would skip.
void read_rows(jpeg_decompress_struct& cinfo, uint8_t* pixels, size_t stride, int top, int bottom) {
  JSAMPROW rows[16];
  while (static_cast<int>(cinfo.output_scanline) < bottom) {
    const int at = static_cast<int>(cinfo.output_scanline);
    const int n = std::min(16, bottom - at);
    for (int k = 0; k < n; ++k) rows[k] = pixels + static_cast<size_t>(at - top + k) * stride;
    jpeg_read_scanlines(&cinfo, rows, static_cast<JDIMENSION>(n));
  }
}

// Drops the extra column decoded on each side of a window inside the image (see decode_into) from
// `out`, which starts at column `left` of `full_width`; returns the window's first column.
int drop_extra_columns(Image& out, int left, int full_width) {
  const int drop_left = left > 0 ? 1 : 0;
  const int drop_right = left + out.width < full_width ? 1 : 0;
  if (drop_left + drop_right == 0) return left;
  const int kept = out.width - drop_left - drop_right;
  for (int y = 0; y < out.height; ++y) {
    std::memmove(out.pixels.data() + static_cast<size_t>(y) * kept * 3,
                 out.pixels.data() + (static_cast<size_t>(y) * out.width + drop_left) * 3,
                 static_cast<size_t>(kept) * 3);
  }
  out.width = kept;
  out.pixels.resize(static_cast<size_t>(out.height) * kept * 3);
  return left + drop_left;
}

// The decoding, apart from decode_jpeg so that no object with a destructor lives in the frame
// longjmp unwinds. Returns 0 on success, 1 for a corrupt stream (message in err), 2 for a JPEG
// left to OpenCV, 3 for an image above max_image_pixels().
int decode_into(jpeg_decompress_struct& cinfo, ErrorManager& err, const uint8_t* data, size_t size,
                const RegionPlanner& plan, Image& out) {
  cinfo.err = install_errors(err);
  if (setjmp(err.jump)) return 1;
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const bool direct = cinfo.data_precision == 8 &&
                      ((cinfo.num_components == 1 && cinfo.jpeg_color_space == JCS_GRAYSCALE) ||
                       (cinfo.num_components == 3 && (cinfo.jpeg_color_space == JCS_YCbCr ||
                                                      cinfo.jpeg_color_space == JCS_RGB)));
  if (!direct) return 2;
  if (static_cast<int64_t>(cinfo.image_height) * cinfo.image_width > max_image_pixels()) return 3;
  const int source_h = static_cast<int>(cinfo.image_height);
  const int source_w = static_cast<int>(cinfo.image_width);
  DecodeRegion region;
  if (plan) region = plan(source_h, source_w);
  const bool partial = region.height > 0 && region.width > 0;
  const int scale = partial ? region.scale : 1;
  // libjpeg scales by scale_num/scale_denom with the denominators 1, 2, 4 and 8 (among others).
  if (scale != 1 && scale != 2 && scale != 4 && scale != 8) {
    std::snprintf(err.message, sizeof err.message, "decode scale 1/%d is not 1, 1/2, 1/4 or 1/8",
                  scale);
    return 1;
  }
  cinfo.out_color_space = JCS_EXT_RGB;  // grey expands to RGB inside libjpeg-turbo too
  // Block smoothing guesses the AC coefficients a progressive file never sent from neighbouring
  // blocks, which a cropped decode lacks: off, so a region equals that window of a whole decode.
  cinfo.do_block_smoothing = FALSE;
  cinfo.scale_num = 1;
  cinfo.scale_denom = static_cast<unsigned>(scale);
  jpeg_start_decompress(&cinfo);
  const int full_h = static_cast<int>(cinfo.output_height);
  const int full_w = static_cast<int>(cinfo.output_width);
  int top = 0, bottom = full_h, left = 0, right = full_w;
  if (partial) {
    top = std::clamp(region.top / scale, 0, full_h - 1);
    bottom = std::clamp(ceil_div(region.top + region.height, scale), top + 1, full_h);
    left = std::clamp(region.left / scale, 0, full_w - 1);
    right = std::clamp(ceil_div(region.left + region.width, scale), left + 1, full_w);
  }
  // Fancy chroma upsampling takes a cropped row's edges as image edges: decode one column more
  // on each side of a window inside the image and drop it afterwards. A window one chroma sample
  // wide is upsampled as an image of that width: keep two chroma samples or more.
  const int min_width = 2 * cinfo.max_h_samp_factor;
  const int wide_left = std::max(left - 1, 0);
  const int wide_right = std::min(std::max(right + 1, wide_left + min_width), full_w);
  JDIMENSION x = static_cast<JDIMENSION>(wide_left);
  JDIMENSION w = static_cast<JDIMENSION>(wide_right - wide_left);
  // Widens [x, x + w) to whole iMCU columns (x moves left), so only those columns are decoded.
  if (static_cast<int>(w) < full_w) jpeg_crop_scanline(&cinfo, &x, &w);
  if (top > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(top));
  out.height = bottom - top;
  out.width = static_cast<int>(cinfo.output_width);  // the cropped width
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  const size_t stride = static_cast<size_t>(out.width) * 3;
  read_rows(cinfo, out.pixels.data(), stride, top, bottom);
  // Rows below the region are never decoded: abort rather than finish.
  if (static_cast<int>(cinfo.output_scanline) < full_h) {
    jpeg_abort_decompress(&cinfo);
  } else {
    jpeg_finish_decompress(&cinfo);
  }
  const int window_left = drop_extra_columns(out, static_cast<int>(x), full_w);
  if (partial) out.window = SourceWindow{source_h, source_w, top, window_left, scale};
  return 0;
}

// The encoding, apart from encode_jpeg as decode_into is: `pixels` are height rows of width ×
// components bytes; libjpeg-turbo allocates *buffer, the caller frees it. 0, or 1 (message in err).
int encode_into(jpeg_compress_struct& cinfo, ErrorManager& err, const uint8_t* pixels, int height,
                int width, int components, const JpegEncoding& encoding, unsigned char** buffer,
                unsigned long* size) {
  cinfo.err = install_errors(err);
  if (setjmp(err.jump)) return 1;
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, buffer, size);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = components;
  cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, encoding.quality, TRUE);
  if (encoding.progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  const size_t stride = static_cast<size_t>(width) * components;
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(pixels + cinfo.next_scanline * stride);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  return 0;
}

}  // namespace

bool looks_like_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

std::optional<Image> decode_jpeg(const uint8_t* data, size_t size, const RegionPlanner& plan,
                                 std::string* reason, bool* unsupported) {
  if (unsupported) *unsupported = false;
  jpeg_decompress_struct cinfo{};
  ErrorManager err{};
  Image out;
  int status = 1;
  try {
    status = decode_into(cinfo, err, data, size, plan, out);
  } catch (...) {  // from `plan`: release the decoder before passing it on
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  jpeg_destroy_decompress(&cinfo);
  if (status == 0 && !err.premature_end) return out;
  if (unsupported) *unsupported = status == 2;
  if (!reason) return std::nullopt;
  if (status == 0) {
    *reason = "JPEG decoder: the data ends before the image does (truncated file)";
  } else if (status == 3) {
    *reason = "JPEG decoder: image of " + image_size_refusal(cinfo.image_height, cinfo.image_width);
  } else if (status == 2) {
    *reason = "JPEG colour space or precision left to the general decoder";
  } else {
    *reason = std::string("JPEG decoder: ") + err.message;
  }
  return std::nullopt;
}

std::vector<uint8_t> encode_jpeg(const Image& image, const JpegEncoding& encoding) {
  if (encoding.quality < 1 || encoding.quality > 100)
    throw std::invalid_argument("encode_jpeg: quality " + std::to_string(encoding.quality) +
                                " outside 1..100");
  check_rgb(image, "encode_jpeg");
  std::vector<uint8_t> grey;
  if (encoding.grey) {
    grey.resize(static_cast<size_t>(image.height) * image.width);
    for (size_t i = 0; i < grey.size(); ++i) grey[i] = image.pixels[3 * i];
  }
  jpeg_compress_struct cinfo{};
  ErrorManager err{};
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const int status =
      encode_into(cinfo, err, encoding.grey ? grey.data() : image.pixels.data(), image.height,
                  image.width, encoding.grey ? 1 : 3, encoding, &buffer, &size);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out;
  if (status == 0 && buffer != nullptr) out.assign(buffer, buffer + size);
  std::free(buffer);
  if (status != 0) throw std::runtime_error(std::string("encode_jpeg: ") + err.message);
  return out;
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  return encode_jpeg(image, JpegEncoding{quality});
}

}  // namespace ocl::data
