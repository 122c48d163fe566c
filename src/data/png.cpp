// PNG decoding and encoding through libspng (see include/ocl/data/png.h).
#include "ocl/data/png.h"

#include <spng.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace ocl::data {
namespace {

using Context = std::unique_ptr<spng_ctx, decltype(&spng_ctx_free)>;

std::optional<Image> png_fail(std::string* reason, const std::string& why) {
  if (reason) *reason = "PNG decoder: " + why;
  return std::nullopt;
}

// Larger sides are refused before decoding (libspng's default, 2^31 - 1, lets tiny files claim EB).
constexpr uint32_t kMaxSide = 1u << 16;

}  // namespace

bool looks_like_png(const uint8_t* data, size_t size) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  return size >= sizeof kSignature && std::memcmp(data, kSignature, sizeof kSignature) == 0;
}

std::optional<Image> decode_png(const uint8_t* data, size_t size, std::string* reason) {
  if (!looks_like_png(data, size)) return png_fail(reason, "not a PNG (no PNG signature)");
  Context ctx(spng_ctx_new(0), spng_ctx_free);
  if (!ctx) return png_fail(reason, "out of memory");
  int err = spng_set_png_buffer(ctx.get(), data, size);
  if (!err) err = spng_set_image_limits(ctx.get(), kMaxSide, kMaxSide);
  spng_ihdr ihdr{};
  if (!err) err = spng_get_ihdr(ctx.get(), &ihdr);
  if (err) return png_fail(reason, spng_strerror(err));
  if (auto refusal = image_size_refusal(ihdr.height, ihdr.width); !refusal.empty())
    return png_fail(reason, "image of " + refusal);
  // 16-bit images decode to RGBA16, rounded here (libspng's 8-bit formats keep the high byte);
  // all else to RGB8 (grey and palette expanded, low depths scaled, alpha and tRNS dropped).
  const bool deep = ihdr.bit_depth == 16;
  const int format = deep ? SPNG_FMT_RGBA16 : SPNG_FMT_RGB8;
  size_t bytes = 0;
  err = spng_decoded_image_size(ctx.get(), format, &bytes);
  if (err) return png_fail(reason, spng_strerror(err));
  Image out{static_cast<int>(ihdr.height), static_cast<int>(ihdr.width), {}, {}};
  const size_t pixels = static_cast<size_t>(ihdr.height) * ihdr.width;
  if (bytes != pixels * (deep ? 8 : 3)) return png_fail(reason, "unexpected decoded size");
  out.pixels.resize(pixels * 3);
  std::vector<uint16_t> rgba(deep ? pixels * 4 : 0);
  void* into = deep ? static_cast<void*>(rgba.data()) : out.pixels.data();
  err = spng_decode_image(ctx.get(), into, bytes, format, 0);
  if (err) return png_fail(reason, spng_strerror(err));
  for (size_t i = 0; deep && i < pixels; ++i) {
    for (int c = 0; c < 3; ++c) {
      // round(v * 255 / 65535) = round(v / 257); v / 257 is never exactly halfway.
      out.pixels[3 * i + c] = static_cast<uint8_t>((rgba[4 * i + c] + 128u) / 257u);
    }
  }
  return out;
}

std::vector<uint8_t> encode_png(const Image& image) {
  check_rgb(image, "encode_png");
  Context ctx(spng_ctx_new(SPNG_CTX_ENCODER), spng_ctx_free);
  if (!ctx) throw std::runtime_error("encode_png: out of memory");
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(image.width);
  ihdr.height = static_cast<uint32_t>(image.height);
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
  int err = spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1);
  if (!err) err = spng_set_ihdr(ctx.get(), &ihdr);
  if (!err)
    err = spng_encode_image(ctx.get(), image.pixels.data(), image.pixels.size(), SPNG_FMT_PNG,
                            SPNG_ENCODE_FINALIZE);
  size_t size = 0;
  void* buffer = err ? nullptr : spng_get_png_buffer(ctx.get(), &size, &err);
  if (err || !buffer) {
    std::free(buffer);
    throw std::runtime_error(std::string("encode_png: ") + spng_strerror(err));
  }
  std::vector<uint8_t> out(static_cast<uint8_t*>(buffer), static_cast<uint8_t*>(buffer) + size);
  std::free(buffer);
  return out;
}

}  // namespace ocl::data
