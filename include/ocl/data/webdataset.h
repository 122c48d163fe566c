// WebDataset tar shards as a data set with random access: each shard's members are indexed once
// (data/tar_index.h), the index cached, and a sample's image then read in place with one pread, so
// that the loader's sampler, region decoding, shares and exact resume work as for any set.
//
//   ocl::data::WebDataset train("/data/in1k/train-{000000..001023}.tar");   // or a list file
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

/// The shards a data.path names: a brace pattern ("train-{000000..000127}.tar": numeric ranges keep
/// the first bound's zero padding; "{a,b}" lists alternatives; several braces multiply), a single
/// shard (a path ending in .tar, .tar.gz, .tgz, .tar.xz or .tar.zst, or a file holding NUL bytes),
/// or a text file listing one shard per line (blank lines and lines starting with '#' skipped;
/// relative paths are relative to the list's folder). Throws naming the pattern for an empty range,
/// a malformed brace, a folder, an empty list, a list line that is no printable path and a shard
/// named twice; does not check that the shards exist.
std::vector<std::string> expand_shard_spec(const std::string& spec);

/// A .cls member's text as a class index (a decimal integer in [0, 999999], spaces around it
/// allowed); throws naming `where` otherwise.
int32_t parse_class_index(const std::string& text, const std::string& where);

struct WebDatasetOptions {
  /// Where indexes go when a shard's own folder is not writable; "" = nowhere (each start then
  /// indexes those shards again, and warnings() says so).
  std::string cache_dir;
  bool use_cache = true;
  /// One line on stderr while shards are being indexed (none when every index came from cache).
  bool progress = true;
};

/// A sample is the group of consecutive members sharing a key (tar_index.h's rule); its image is
/// the one member named .jpg, .jpeg, .png or .webp, its label the decimal integer in its .cls
/// member. Either every sample has a .cls (classes are then "0" .. the largest label) or none has
/// (one class, "unlabelled", every label 0: pre-training needs no labels). Samples are in shard
/// order, then in archive order.
///
/// The index of shard S is cached in S.ocl-index beside it when that folder is writable, otherwise
/// in the cache folder given; it records the shard's size and modification time and is rebuilt when
/// either changed (or when the shard was modified within 2 s of its indexing, a change the
/// timestamps might not show).
///
/// Errors name the shard and the member and are thrown when the data set is opened: a pattern or
/// list that names no shard or a shard twice, a shard that is missing, compressed, truncated inside
/// a sample or not a ustar/GNU/pax archive, a sample without an image or with two, a .cls that is
/// not a class index, samples with and without labels mixed. A shard of 0 bytes or without tar's
/// end-of-archive blocks (cut short at a sample boundary?) is named in warnings(). An image that
/// does not decode is a bad sample (the loader skips and counts it).
class WebDataset : public Dataset {
 public:
  explicit WebDataset(const std::string& spec, const WebDatasetOptions& options = {});
  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  const std::vector<std::string>& class_names() const override { return classes_; }
  int64_t label(int64_t index) const override;
  std::optional<Image> load(int64_t index, BadSample* error = nullptr) const override;
  std::optional<Image> load_region(int64_t index, const RegionPlanner& plan,
                                   BadSample* error = nullptr) const override;
  std::string describe() const override;
  std::vector<std::string> warnings() const override { return warnings_; }

  const std::vector<std::string>& shards() const { return shards_; }
  /// How many shards this opening indexed (the rest came from their cached index).
  int64_t shards_indexed() const { return shards_indexed_; }
  /// The time that indexing took (reading the headers of the shards indexed now).
  double index_seconds() const { return index_seconds_; }
  /// "<shard>:<image member>" of sample `index`.
  std::string sample_path(int64_t index) const;

  /// One sample as the index holds it.
  struct Sample {
    uint32_t shard = 0;
    int32_t label = 0;  // -1 while reading a shard whose samples have no .cls
    uint64_t offset = 0, size = 0;
    std::string member;  // the image member's name
  };

 private:
  std::string spec_;
  std::vector<std::string> shards_;
  std::vector<Sample> samples_;
  std::vector<std::string> classes_;
  std::vector<std::string> warnings_;
  int64_t shards_indexed_ = 0;
  double index_seconds_ = 0;
};

}  // namespace ocl::data
