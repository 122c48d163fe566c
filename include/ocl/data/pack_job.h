// The job behind ocl_pack: a data set (ImageFolder or CIFAR) converted split by split into packed
// shards (data/packed.h) or WebDataset tar shards (data/tar_writer.h), images shrunk and encoded
// on threads and written in the source's order; unreadable ones are skipped and named.
//
//   ocl::data::run_pack_job(options, stop_flag);   // prints progress to stdout, skips to stderr
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace ocl::data {

struct PackJobOptions {
  std::string source, output;
  std::string from = "imagefolder";  // imagefolder | cifar10 | cifar100
  std::string encoding = "jpeg";     // jpeg | raw (packed format only)
  std::string format = "packed";     // packed | webdataset
  std::vector<std::string> splits = {"train", "val"};
  int short_side = 256;  // 0: keep the size
  int quality = 90;
  int threads = 0;         // 0: one per core
  int64_t stop_after = 0;  // testing: stop as if signalled after this many images
  double shard_mb = 1024;
  /// Packed: continue an interrupted pack. Without `overwrite`, an existing pack (or a split's
  /// WebDataset shards) in the output is refused.
  bool resume = false, overwrite = false;
};

/// Packs every split of `options.splits` in turn. Returns false when stopped by `stop` (or
/// stop_after) before the end: the open shard is closed first, so that a packed --resume loses
/// nothing. Throws std::runtime_error for a missing source folder or a refused output folder.
bool run_pack_job(const PackJobOptions& options, const std::atomic<int>* stop = nullptr);

}  // namespace ocl::data
