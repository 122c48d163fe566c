// Fuzz target: the image decoders behind ImageFolder and packs (data::decode_image: libjpeg-turbo
// for JPEG, libspng for PNG, OpenCV's imgcodecs for BMP, WebP, TIFF, PNM). Findings beyond the
// sanitizers': any exception (a bad image is a reason string, never a throw), an image whose
// pixels do not match its size, a refusal without a reason, and a JPEG or PNG above the pixel
// limit that was decoded anyway.
#include <string>

#include "fuzz_support.h"
#include "targets.h"

#include "ocl/data/dataset.h"
#include "ocl/data/image_folder.h"
#include "ocl/data/jpeg.h"
#include "ocl/data/png.h"

namespace ocl::fuzz::image_target {

namespace {
// 4 Mpx (12 MB of RGB): large enough for every seed, small enough that a header claiming a huge
// picture is refused rather than taking the fuzzer's memory (what data.max_image_pixels does).
constexpr int64_t kPixelLimit = int64_t{1} << 22;
}  // namespace

void init() { ocl::data::set_max_image_pixels(kPixelLimit); }

int run(const uint8_t* data, size_t size) {
  std::string reason;
  const auto image = ocl::data::decode_image(data, size, &reason);
  if (!image) {
    ocl::fuzz::require(!reason.empty(), "an image was refused without a reason");
    return 0;
  }
  ocl::fuzz::require(image->height > 0 && image->width > 0 &&
                         image->pixels.size() == static_cast<size_t>(image->height) *
                                                     static_cast<size_t>(image->width) * 3,
                     "a decoded image's pixels do not match its size");
  ocl::fuzz::require(!image->window.partial(), "a whole-image decode returned a window");
  if (ocl::data::looks_like_jpeg(data, size) || ocl::data::looks_like_png(data, size)) {
    ocl::fuzz::require(int64_t{image->height} * image->width <= kPixelLimit,
                       "a JPEG or PNG above the pixel limit was decoded");
  }
  return 0;
}

}  // namespace ocl::fuzz::image_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::image_target)
