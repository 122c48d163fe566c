// WebDataset shards read as streams for training (data.read: stream, http(s) and pipe: shards):
// each epoch's shard order from (seed, epoch), a disjoint share of shards per rank and worker, a
// bounded shuffle buffer, and batches that are a function of (seed, epoch, step) for a given
// number of workers, so that a resumed run re-streams and skips to the same samples.
//
//   ocl::data::StreamingLoader loader(ocl::data::expand_shard_spec(spec), transform, options);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ocl/data/loader.h"
#include "ocl/data/shard_stream.h"

namespace ocl::data {

struct StreamingOptions {
  /// batch_size, workers, prefetch, shuffle, seed, rank, world_size, max_steps_per_epoch,
  /// max_bad_fraction (of samples_per_epoch, and of the shards), pin_memory, on_bad_sample (also
  /// called for a shard given up on: index −1, its redacted name and the reason).
  LoaderOptions loader;
  int64_t samples_per_epoch = 0;  // ≥ 1: the epoch's samples over all ranks
  int64_t shuffle_buffer = 1000;  // ≥ 1 samples (encoded bytes) per worker; 1: shard order
  int64_t retries = 3;            // ≥ 0 new tries of a failed shard, retry_delay_s · 2^k apart
  double retry_delay_s = 0.25;
  ShardStreamOptions stream;
};

/// The batches of a streamed training set. Epoch e's shard list is permuted by (seed, e) (shard
/// order with shuffle false); slot k = rank · workers + w takes the shards at positions ≡ k
/// modulo world_size · workers, streams them in that order (again and again, each pass permuted
/// anew, until the epoch's batches are made) through its shuffle buffer, and makes the batches
/// b ≡ w (mod workers) of its rank. A sample that does not decode is replaced by the next
/// decodable one of its batch (and counted); a shard that fails after `retries` new tries
/// (a retry streams it again and skips the samples it had delivered) is counted and its other
/// samples passed over. The samples of batch b therefore depend on (seed, epoch, rank, b,
/// workers, world_size), not on timing, and start_epoch(e, s) skips the earlier batches' samples
/// without decoding them.
class StreamingLoader {
 public:
  /// Throws std::invalid_argument for options out of range and when there are fewer shards than
  /// world_size · workers (naming both).
  StreamingLoader(std::vector<std::string> shards, std::shared_ptr<const Transform> transform,
                  StreamingOptions options);
  ~StreamingLoader();
  StreamingLoader(const StreamingLoader&) = delete;
  StreamingLoader& operator=(const StreamingLoader&) = delete;

  /// samples_per_epoch / world_size samples per rank in whole batches, at most
  /// max_steps_per_epoch.
  int64_t steps_per_epoch() const;
  int64_t samples_per_epoch() const;
  void start_epoch(int64_t epoch, int64_t first_step = 0);
  /// As Loader::next: std::nullopt after the last batch; throws when the unreadable samples or
  /// the failed shards pass data.max_bad_fraction, naming the first ones.
  std::optional<Batch> next();
  int64_t bad_samples() const;
  int64_t bad_shards() const;
  /// The most samples any worker's shuffle buffer held (the memory bound's witness).
  int64_t max_buffered() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The samples in `shards` as the sizes.json beside them says (OpenCLIP's file, which
/// `ocl_pack --format webdataset` writes: {"train-000000.tar": 1000, ...}, keyed by the shards'
/// file names); for a pipe: shard, "beside" is the command with the shard's file name replaced by
/// sizes.json. Returns 0 when there is no such file; throws naming a shard it does not list.
/// `where` gets the file's redacted name.
int64_t count_samples(const std::vector<std::string>& shards, const ShardStreamOptions& options,
                      std::string* where);

/// The file name WebDataset keys a shard by: the last path segment ending in .tar of the URL,
/// path or command ("pipe:aws s3 cp s3://b/train-000001.tar -" → "train-000001.tar"); "" when
/// none.
std::string shard_file_name(const std::string& shard);

}  // namespace ocl::data
