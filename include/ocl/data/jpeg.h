// JPEG through libjpeg-turbo for the loaders' hot path: only the rows and columns a crop drawn
// before decoding reads, at a reduced DCT scale (1/2, 1/4, 1/8) for a large crop; CMYK and 12-bit
// go to the general decoder. Also JPEG encoding, so no build needs OpenCV's imgcodecs for it.
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

/// Decodes a baseline or progressive 8-bit grey, YCbCr or RGB JPEG to RGB: with a `plan` (given
/// the header's size), only its region at its reduction, widened to block columns and clipped;
/// `window` says where the pixels sit (equal to that window of a whole decode at that scale).
/// std::nullopt with the reason for a corrupt stream, and `*unsupported` for a JPEG left to the
/// general decoder (CMYK/YCCK, 12-bit).
std::optional<Image> decode_jpeg(const uint8_t* data, size_t size, const RegionPlanner& plan,
                                 std::string* reason = nullptr, bool* unsupported = nullptr);

/// How encode_jpeg writes; else libjpeg's defaults (4:2:0, Huffman not optimised), as imencode.
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
