// ImageFolder (torchvision's `train/<class>/<image>` layout): classes are the sub-folders in
// sorted order, files in torchvision's make_dataset order (folders in sorted path order, links
// followed, each folder's files by name); hidden files and folders (".name") are skipped. Images
// decode to 8-bit RGB whatever their depth or channels. The file list is cached, so a second
// start over 1.3 M files takes seconds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

struct ImageFolderOptions {
  /// File list cache: "" = `<root>/.ocl-filelist.txt` if that folder is writable, otherwise no
  /// cache; otherwise the path to use. It records root's sub-folder names and the mtime of every
  /// folder under them, and is rebuilt when one changed or was modified within 2 s of the scan
  /// that wrote it (a change in the same timestamp tick would go unseen).
  std::string cache_path;
  bool use_cache = true;
};

/// Extensions taken as images (lower-cased): .jpg .jpeg .png .webp .bmp .tif .tiff .ppm .pgm.
/// Other files are ignored.
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
  /// Path of sample `index` (root-relative).
  const std::string& file(int64_t index) const;
  /// Whether the list came from the cache.
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

/// Decodes an encoded image held in memory (JPEG, PNG, BMP, WebP, TIFF, PNM) to 8-bit RGB;
/// std::nullopt with `reason` filled when it cannot. Shared by ImageFolder and the packed
/// format. JPEGs go through libjpeg-turbo directly (data/jpeg.h), PNGs through libspng, and
/// only bytes that start as BMP, WebP, TIFF or PNM (or a CMYK / 12-bit JPEG) through OpenCV:
/// anything else is refused by its first bytes, never handed to the other decoders OpenCV
/// carries (GDCM aborts the process on some corrupt files).
std::optional<Image> decode_image(const uint8_t* data, size_t size, std::string* reason = nullptr);
/// The same for a transform that reads only a region: a JPEG decodes only what `plan` asks for
/// (see decode_jpeg); other formats decode whole.
std::optional<Image> decode_image(const uint8_t* data, size_t size, const RegionPlanner& plan,
                                  std::string* reason = nullptr);

}  // namespace ocl::data
