// JPEG decoding straight through libjpeg-turbo, for the loaders' hot path: RGB written by the
// decoder, only the rows and columns a crop drawn before decoding will read and, for a crop at
// least twice its output size, a reduced DCT scale (1/2, 1/4, 1/8) that skips most of the work.
// CMYK and 12-bit images go back to the general decoder. Also JPEG encoding (packs, tests), so
// that no build needs OpenCV's imgcodecs to write a JPEG.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

/// Does `data` start with a JPEG's SOI marker (FF D8 FF)?
bool looks_like_jpeg(const uint8_t* data, size_t size);

/// Decodes a baseline or progressive 8-bit grey, YCbCr or RGB JPEG to RGB. With a `plan`, it
/// reads the header, asks `plan` for the region (in source pixels) and reduction to decode, and
/// decodes only that, widened to the decoder's block columns and clipped to the image: the
/// result's `window` says where its pixels sit, which equal the same window of a whole decode at
/// that scale. Without a plan (or with a zero-size region) it decodes everything. std::nullopt,
/// with the reason, for a corrupt stream, and with `*unsupported` for a JPEG it leaves to the
/// general decoder (CMYK/YCCK, 12-bit).
std::optional<Image> decode_jpeg(const uint8_t* data, size_t size, const RegionPlanner& plan,
                                 std::string* reason = nullptr, bool* unsupported = nullptr);

/// How encode_jpeg writes: libjpeg's defaults otherwise (4:2:0 chroma, Huffman tables not
/// optimised), as OpenCV's imencode writes.
struct JpegEncoding {
  int quality = 90;          // 1–100
  bool progressive = false;  // progressive scans instead of one baseline scan
  bool grey = false;         // one component: the image's first channel (a grey image's R = G = B)
};

/// The JPEG encoding of an 8-bit RGB image. Throws std::invalid_argument for a quality outside
/// 1–100 or pixels that do not match the size, std::runtime_error if libjpeg fails.
std::vector<uint8_t> encode_jpeg(const Image& image, const JpegEncoding& encoding);
/// The same at `quality` with the other settings at their defaults.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality);

}  // namespace ocl::data
