// The packed data set format: one split of a data set (ImageNet's train/ or val/) as a few large
// shard files of pre-resized images and one binary index, read by memory-mapping the shards.
// Decoding small pre-resized JPEGs (or copying raw pixels) instead of opening and decoding
// 1.3 M full-size files is what keeps the loader ahead of a GPU that sees only 60–70 % of the
// tokens. `ocl_pack` writes packs; `data.dataset: packed` reads them.
//
//   ocl::data::PackWriterOptions o;
//   o.encoding = ocl::data::PackEncoding::Jpeg;
//   ocl::data::PackWriter writer("packs/imagenet/train", {"n01440764", ...}, o);
//   writer.add(encoded_jpeg_bytes, label, height, width);   // in record order
//   writer.finish();                                        // writes index.ocl last
//   ocl::data::PackedDataset train("packs/imagenet/train");  // a data::Dataset
//
// A pack folder holds shard-00000.bin, shard-00001.bin, ... (records back to back, each shard
// at most max_shard_bytes unless one record is larger) and index.ocl, all little-endian:
//
//   header   "OCLPACK1", u32 version (1), u32 encoding (0 JPEG, 1 raw RGB), u64 records,
//            u32 shards, u32 classes, u64 bytes of class names (each name followed by '\n')
//   names    the class names
//   options  u64 length, then the writer's option string (empty in a finished index)
//   shards   per shard: u64 size in bytes
//   records  per record: u32 shard, u32 size, u64 offset, i32 label, u16 height, u16 width,
//            u32 CRC-32 of the payload, u32 index of the image in the source data set
//   trailer  u32 CRC-32 of everything above, "OCLPACKE"
//
// The index is written last and atomically, so a folder with an index is a complete pack. While
// a pack is being written, progress.ocl (the same layout, records of the shards closed so far,
// plus the writer's option string) lets an interrupted `ocl_pack` continue where it stopped.
//
// Errors name the file and the record: a bad or mismatched index, a shard that is missing or
// shorter than the index says (truncated) throw when the pack is opened; a payload whose CRC-32
// differs throws when that record is read. An image that does not decode is a bad sample, as in
// ImageFolder (the loader skips and counts it).
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

/// Reads and checks an index file (magic, version, sizes, trailer CRC); throws
/// std::runtime_error naming the file and what is wrong.
PackIndex read_pack_index(const std::string& path);
/// Writes `index` to `path` atomically (temporary file, fsync, rename).
void write_pack_index(const std::string& path, const PackIndex& index);

/// `image` with its shorter side brought down to `max_short_side` (aspect kept; the longer side
/// rounded), or unchanged when it is no larger: what a pack stores.
Image shrink_to_short_side(const Image& image, int max_short_side, Interpolation interpolation);
// encode_jpeg (what a pack's JPEG records hold) is in ocl/data/jpeg.h, included above.

/// CRC-32 (zlib's polynomial) of `size` bytes.
uint32_t pack_crc32(const uint8_t* data, size_t size);

struct PackWriterOptions {
  PackEncoding encoding = PackEncoding::Jpeg;
  uint64_t max_shard_bytes = uint64_t{1} << 30;  // 1 GiB
  /// Recorded in progress.ocl; resuming with different options is refused (the pack would mix
  /// two settings).
  std::string description;
};

/// Writes one pack folder, record by record in order. Shards are flushed and progress.ocl
/// rewritten each time a shard closes; finish() closes the last shard, writes index.ocl and
/// removes progress.ocl.
class PackWriter {
 public:
  /// Starts a new pack in `folder` (created if needed). With `resume`, continues the pack whose
  /// progress.ocl is there (records of closed shards are kept, a partly written shard is
  /// discarded); resumed_records() tells how many records it already holds. Throws when the
  /// folder already holds a finished pack, when the options differ from the progress file's, or
  /// (without `resume`) when the folder holds a pack in progress.
  PackWriter(const std::string& folder, std::vector<std::string> class_names,
             PackWriterOptions options, bool resume = false);
  ~PackWriter();
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  /// The number of records already in the pack when it was resumed (0 for a new pack): the
  /// caller continues with record resumed_records().
  int64_t resumed_records() const { return resumed_; }
  /// Appends one record: an encoded JPEG, or raw RGB of height · width · 3 bytes. `source` is
  /// the image's index in the source data set (default: the record's own index).
  void add(const uint8_t* data, size_t size, int32_t label, int height, int width,
           int64_t source = -1);
  /// The source index after the last record kept (0 for an empty pack): where a resumed pack
  /// continues, images skipped as unreadable included.
  int64_t next_source() const;
  int64_t records() const { return static_cast<int64_t>(index_.records.size()); }
  /// Closes the open shard and records it in progress.ocl, so that every record added so far
  /// survives an interruption (the next record starts a new shard).
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
  int64_t resumed_ = 0;
  bool finished_ = false;
};

/// A pack folder as a data::Dataset: the index is read and checked at construction and the
/// shards are memory-mapped; load() reads only the pages of the record asked for, so a rank
/// that loads its share of the indices never touches the other ranks' records.
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
  /// Total payload bytes (all shards).
  uint64_t bytes() const;

 private:
  // Whether the shard's first record (when it lies within `available` bytes of `fd`) has the
  // checksum the index gives it: a truncated shard does, another pack's shard does not.
  bool first_record_matches(int fd, uint32_t shard, uint64_t available) const;
  struct Mapping;
  std::string folder_;
  PackIndex index_;
  std::vector<std::unique_ptr<Mapping>> shards_;
};

}  // namespace ocl::data
