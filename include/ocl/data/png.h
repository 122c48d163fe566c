// PNG decoding and encoding through libspng, so that ImageFolder reads PNG in every build, with
// or without OpenCV's imgcodecs (which a GPU kit leaves out: ~200 MB of libraries). Any bit
// depth, palette, grey and alpha layout decodes to 8-bit RGB: alpha and transparency dropped, no
// gamma correction, 16-bit samples scaled by 255/65535 and rounded, as OpenCV's path does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

/// Does `data` start with the PNG signature (89 50 4E 47 0D 0A 1A 0A)?
bool looks_like_png(const uint8_t* data, size_t size);

/// Decodes a PNG to 8-bit RGB; std::nullopt with the reason for a corrupt or oversized stream.
std::optional<Image> decode_png(const uint8_t* data, size_t size, std::string* reason = nullptr);

/// Encodes an 8-bit RGB image as a PNG; throws std::invalid_argument for pixels that do not
/// match the size, std::runtime_error if libspng fails.
std::vector<uint8_t> encode_png(const Image& image);

}  // namespace ocl::data
