// A tar archive built in memory, as ocl_pack writes WebDataset shards: ustar headers, with a pax
// header before a name that does not fit ustar's 100 bytes or is not ASCII (as Python's tarfile).
//   ocl::data::TarBuilder tar(mtime_seconds);
//   tar.add("n01440764/000001.jpg", bytes.data(), bytes.size());
//   ocl::io::write_file_atomic(path, tar.finish());  // data/tar_index.h reads it back
#pragma once

#include <cstdint>
#include <string>

namespace ocl::data {

class TarBuilder {
 public:
  /// Every member gets this modification time (seconds since 1970).
  explicit TarBuilder(int64_t mtime = 0) : mtime_(mtime) {}
  /// Appends a regular file; std::invalid_argument for an empty name or one with a NUL byte.
  void add(const std::string& name, const uint8_t* data, size_t size);
  /// Bytes so far (headers and padding included).
  size_t size() const { return bytes_.size(); }
  size_t members() const { return members_; }
  /// The archive with its end marker (two zero blocks); the builder is empty afterwards.
  std::string finish();

 private:
  void header(const std::string& name, uint64_t size, char type);
  void pad();
  int64_t mtime_;
  std::string bytes_;
  size_t members_ = 0;
};

}  // namespace ocl::data
