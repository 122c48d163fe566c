// The threaded data loader: worker threads decode and transform samples into uint8 batches
// ahead of the training step (a bounded queue), in an order and with augmentations fixed by
// (seed, epoch, sample index) alone: the same batches whatever the number of workers. Each
// rank of a distributed run reads its own shard of every epoch's permutation.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <torch/types.h>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"

namespace ocl::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  int64_t workers = 4;    // ≥ 1 threads
  int64_t prefetch = 4;   // ≥ 1 batches made ahead of the consumer
  bool shuffle = true;    // a permutation from (seed, epoch); false: index order
  bool drop_last = true;  // drop the last partial batch of each rank
  uint64_t seed = 0;
  /// Sharding (DistributedSampler's): the epoch's permutation is padded by wrapping to a
  /// multiple of world_size and rank r takes positions r, r + W, r + 2W, ...
  int64_t rank = 0;
  int64_t world_size = 1;
  /// Cap on batches per epoch, 0 = no cap.
  int64_t max_steps_per_epoch = 0;
  /// Unreadable samples tolerated: more than max_bad_fraction · dataset size of them in the run so
  /// far makes next() throw. Counted per distinct sample when its batch is delivered, so the count
  /// does not depend on threads or prefetching.
  double max_bad_fraction = 0.01;
  /// Pin batches in page-locked memory (only when CUDA is available).
  bool pin_memory = false;
  /// Called (from a worker thread, serialised) for every unreadable sample, as it is met: also
  /// for batches made ahead and then dropped by start_epoch or the destructor.
  std::function<void(const BadSample&)> on_bad_sample;
};

struct Batch {
  torch::Tensor images;   // uint8 [B, 3, H, W]
  torch::Tensor labels;   // int64 [B]
  torch::Tensor indices;  // int64 [B], the dataset indices actually loaded
  int64_t step = 0;       // batch position in the epoch, 0-based
  /// uint8 [B, 3, H, W]: the same crops drawn again photometrically, from a transform with two
  /// views (Transform::views); undefined otherwise.
  torch::Tensor second_view;
};

/// A batch's tensors filled one sample at a time (both loaders: loader.h's and streaming.h's):
/// the transform's views, HWC → CHW, label and index. `transform` may be null (images batched as
/// they are, all of one size).
class BatchWriter {
 public:
  BatchWriter(const Transform* transform, int64_t count, bool pin);
  /// Row `row` ← `decoded` transformed for `seed`; throws naming `index` when its size differs.
  void put(int64_t row, const Image& decoded, uint64_t seed, int64_t label, int64_t index);
  Batch finish(int64_t step);

 private:
  void allocate(int64_t h, int64_t w);
  const Transform* transform_;
  int64_t count_;
  bool pin_;
  int64_t h_ = 0, w_ = 0;
  torch::Tensor labels_, indices_;
  std::vector<torch::Tensor> images_;
};

/// Batches per epoch of this rank for a data set of `dataset_size` samples under `options`:
/// ceil(size / world_size) samples per rank (DistributedSampler's padding), cut into batches
/// (drop_last: whole ones only), at most max_steps_per_epoch. Loader::steps_per_epoch is this.
int64_t batches_per_epoch(int64_t dataset_size, const LoaderOptions& options);

class Loader {
 public:
  /// `transform` may be null: images are then batched as loaded and must all share one size.
  /// Throws std::invalid_argument for options out of range.
  Loader(std::shared_ptr<const Dataset> dataset, std::shared_ptr<const Transform> transform,
         LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t steps_per_epoch() const;  // batches_per_epoch(dataset size, options)
  /// Starts `epoch` at batch `first_step` (resuming mid-epoch skips the earlier batches
  /// without loading them). Stops the previous epoch's work if any.
  void start_epoch(int64_t epoch, int64_t first_step = 0);
  /// The next batch of the epoch, in order; std::nullopt after the last; std::logic_error
  /// before the first start_epoch. Throws std::runtime_error when too many samples were
  /// unreadable (naming the count, the limit and the first few files), or a worker's exception.
  std::optional<Batch> next();
  /// Unreadable samples met so far (all epochs, distinct samples, in delivered batches), each
  /// replaced by the next readable one.
  int64_t bad_samples() const;

  const Dataset& dataset() const { return *dataset_; }

 private:
  void shutdown();  // stops and joins the workers
  struct Impl;
  std::shared_ptr<const Dataset> dataset_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocl::data
