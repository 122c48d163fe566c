// The packed data set format: one split as a few large shards of pre-resized images (JPEG or raw)
// and a binary index, read by memory-mapping the shards, which keeps the loader ahead of the GPU.
// `ocl_pack` writes packs (PackWriter); `data.dataset: packed` reads them (PackedDataset).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"
#include "ocl/data/jpeg.h"
#include "ocl/data/transforms.h"

namespace ocl::data {

enum class PackEncoding : uint32_t { Jpeg = 0, Raw = 1 };

/// "jpeg" | "raw".
const char* pack_encoding_name(PackEncoding encoding);

/// One record of the index: where its payload lies and what it holds.
struct PackRecord {
  uint32_t shard = 0;
  uint32_t size = 0;
  uint64_t offset = 0;
  int32_t label = 0;
  uint16_t height = 0, width = 0;
  uint32_t crc32 = 0;
  uint32_t source = 0;  // the image's index in the data set it was packed from
};

/// The contents of an index (index.ocl or progress.ocl).
struct PackIndex {
  PackEncoding encoding = PackEncoding::Jpeg;
  std::vector<std::string> class_names;
  std::vector<uint64_t> shard_sizes;
  std::vector<PackRecord> records;
  std::string writer_options;  // progress.ocl only: what the pack was started with
};

/// File names inside a pack folder.
std::string pack_index_path(const std::string& folder);
std::string pack_progress_path(const std::string& folder);
std::string pack_shard_path(const std::string& folder, uint32_t shard);

/// An index (index.ocl, progress.ocl), little-endian: "OCLPACK1", u32 version (1), u32 encoding,
/// u64 records, u32 shards, u32 classes, u64 bytes of class names; the names, each followed by
/// '\n'; u64 length and the writer's option string; per shard its u64 size; per record the
/// PackRecord fields in order (32 bytes); u32 CRC-32 of all the above; "OCLPACKE". The shards,
/// shard-00000.bin, ..., hold the payloads back to back.
/// Reads and checks an index file; throws std::runtime_error naming the file and what is wrong.
PackIndex read_pack_index(const std::string& path);
/// Writes `index` to `path` atomically (temporary file, fsync, rename).
void write_pack_index(const std::string& path, const PackIndex& index);

/// `image` with its shorter side brought down to `max_short_side` (aspect kept), if larger.
Image shrink_to_short_side(const Image& image, int max_short_side, Interpolation interpolation);

/// CRC-32 (zlib's polynomial) of `size` bytes.
uint32_t pack_crc32(const uint8_t* data, size_t size);

struct PackWriterOptions {
  PackEncoding encoding = PackEncoding::Jpeg;
  uint64_t max_shard_bytes = uint64_t{1} << 30;  // 1 GiB, unless one record is larger
  std::string description;  // in progress.ocl: resuming with another one is refused
};

/// Writes one pack folder, record by record. Each time a shard closes it is flushed and
/// progress.ocl (an index of the closed shards, with the options) rewritten; finish() writes
/// index.ocl atomically and removes progress.ocl, so a folder with an index is a complete pack.
class PackWriter {
 public:
  /// Starts a pack in `folder` (created if needed); with `resume`, continues the one in progress
  /// there (a partly written shard is discarded). Throws for a finished pack there, for options
  /// other than progress.ocl's, or (without `resume`) for a pack in progress.
  PackWriter(const std::string& folder, std::vector<std::string> class_names,
             PackWriterOptions options, bool resume = false);
  ~PackWriter();
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  /// Appends one record: an encoded JPEG, or raw RGB of height · width · 3 bytes. `source` is
  /// the image's index in the source data set (default: the record's own index).
  void add(const uint8_t* data, size_t size, int32_t label, int height, int width,
           int64_t source = -1);
  /// The source index after the last record kept (0 if none): where a resumed pack continues.
  int64_t next_source() const;
  int64_t records() const { return static_cast<int64_t>(index_.records.size()); }
  /// Closes the open shard into progress.ocl: every record so far survives an interruption.
  void flush();
  /// Closes the last shard and writes index.ocl; the pack is complete.
  void finish();

 private:
  void open_shard();
  void close_shard();

  std::string folder_;
  PackWriterOptions options_;
  PackIndex index_;
  int fd_ = -1;
  uint64_t shard_bytes_ = 0;
  bool finished_ = false;
};

/// A pack folder as a data::Dataset: the constructor reads the index and maps the shards, and
/// throws for a bad index or a missing or truncated shard. load() reads only its record's pages
/// and throws when they fail their CRC-32; an image that does not decode is a bad sample.
class PackedDataset : public Dataset {
 public:
  explicit PackedDataset(const std::string& folder);
  ~PackedDataset() override;
  PackedDataset(const PackedDataset&) = delete;
  PackedDataset& operator=(const PackedDataset&) = delete;

  int64_t size() const override { return static_cast<int64_t>(index_.records.size()); }
  const std::vector<std::string>& class_names() const override { return index_.class_names; }
  int64_t label(int64_t index) const override;
  std::optional<Image> load(int64_t index, BadSample* error = nullptr) const override;
  /// A JPEG record decodes only the planned region; a raw one copies only its rows and columns.
  std::optional<Image> load_region(int64_t index, const RegionPlanner& plan,
                                   BadSample* error = nullptr) const override;
  std::string describe() const override;
  PackEncoding encoding() const { return index_.encoding; }
  const PackRecord& record(int64_t index) const;

 private:
  struct Mapping;
  std::string folder_;
  PackIndex index_;
  std::vector<std::unique_ptr<Mapping>> shards_;
};

}  // namespace ocl::data
