// ImageFolder (torchvision's `train/<class>/<image>`): classes are the sorted sub-folders, files
// in make_dataset's order (sorted paths, links followed), hidden (".name") ones skipped; images
// decode to 8-bit RGB. The file list is cached: a second start over 1.3 M files takes seconds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

struct ImageFolderOptions {
  /// File list cache: "" = `<root>/.ocl-filelist.txt` (none if not writable), else the path. It is
  /// rebuilt when root's sub-folders or the mtime of a folder under them changed, or that mtime
  /// lies within 2 s of the scan that wrote it (a change in the same tick would go unseen).
  std::string cache_path;
  bool use_cache = true;
};

/// Extensions taken as images (any case): .jpg .jpeg .png .webp .bmp .tif .tiff .ppm .pgm.
bool has_image_extension(const std::string& filename);

class ImageFolderDataset : public Dataset {
 public:
  /// Throws std::runtime_error when `root` is missing, holds no class folder with an image, or a
  /// readable class folder holds none (as torchvision: the labels after it would shift).
  explicit ImageFolderDataset(const std::string& root, const ImageFolderOptions& options = {});
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  const std::vector<std::string>& class_names() const override { return classes_; }
  int64_t label(int64_t index) const override;
  std::optional<Image> load(int64_t index, BadSample* error = nullptr) const override;
  std::optional<Image> load_region(int64_t index, const RegionPlanner& plan,
                                   BadSample* error = nullptr) const override;
  std::string describe() const override;
  const std::string& file(int64_t index) const;  // root-relative
  bool loaded_from_cache() const { return from_cache_; }
  /// One line per folder the scan could not list (its images, or its class, left out).
  std::vector<std::string> warnings() const override { return warnings_; }

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;  // root-relative, sorted within each class
  std::vector<int32_t> labels_;
  bool from_cache_ = false;
  std::vector<std::string> warnings_;
};

/// Decodes an encoded image in memory to 8-bit RGB; std::nullopt with `reason` when it cannot.
/// JPEG goes through libjpeg-turbo (data/jpeg.h), PNG through libspng, and only bytes that start
/// as BMP, WebP, TIFF or PNM (or a CMYK / 12-bit JPEG) through OpenCV: never anything else, as
/// some decoders OpenCV carries abort the process on corrupt files (GDCM).
std::optional<Image> decode_image(const uint8_t* data, size_t size, std::string* reason = nullptr);
/// The same, a JPEG decoding only what `plan` asks for (see decode_jpeg); others decode whole.
std::optional<Image> decode_image(const uint8_t* data, size_t size, const RegionPlanner& plan,
                                  std::string* reason = nullptr);

}  // namespace ocl::data
