// Data-parallel gradient averaging, the counterpart of DistributedDataParallel's reducer: each
// parameter's .grad() is a view into a flat bucket, filled in reverse registration order (the
// order backward produces gradients), and a bucket's all-reduce starts once all its gradients
// are ready, overlapping the rest of backward; buckets start strictly in order on every rank.
// set_sync(false) (DDP's no_sync) accumulates micro-batches locally without communicating.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/types.h>

#include "ocl/distributed/communicator.h"

namespace ocl::distributed {

struct GradSyncOptions {
  double bucket_mb = 25.0;           // later buckets (MiB of gradient)
  double first_bucket_mb = 1.0;      // the first bucket, launched earliest
  bool broadcast_parameters = true;  // copy rank 0's parameters to every rank at construction
};

/// Which parameters (indices into the list given) each bucket holds, in launch order: the list
/// reversed, cut into buckets of at most cap bytes (the first at most first_cap), a bucket never
/// mixing dtypes or devices; a parameter larger than the cap gets a bucket of its own.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<torch::Tensor>& params,
                                                int64_t first_cap_bytes, int64_t cap_bytes);

class GradSynchronizer {
 public:
  /// `params`: the parameters to synchronise (trainable ones only; frozen ones have no
  /// gradient and are left out by the caller). Their gradients become views into the buckets,
  /// zero-initialised. The same parameters in the same order on every rank.
  GradSynchronizer(Communicator& comm, std::vector<torch::Tensor> params, GradSyncOptions options);
  ~GradSynchronizer();
  GradSynchronizer(const GradSynchronizer&) = delete;
  GradSynchronizer& operator=(const GradSynchronizer&) = delete;

  /// false: the next backward passes only accumulate (no communication); true (default): the
  /// next backward all-reduces the accumulated gradients.
  void set_sync(bool sync);
  /// After a synchronised backward: starts any bucket not yet started, waits for every bucket and
  /// divides by the world size, so that each .grad() holds the mean over ranks. A no-op after a
  /// backward with set_sync(false). Throws CollectiveError if a collective failed.
  void finish();

  int64_t num_buckets() const;
  /// Bytes of each bucket, in launch order.
  std::vector<int64_t> bucket_bytes() const;
  /// Bucket all-reduces started since construction (tests check that no_sync skips them).
  int64_t buckets_launched() const;
  /// Buckets of the last synchronised backward whose all-reduce started during backward
  /// (before finish()): how much communication could overlap.
  int64_t buckets_launched_in_backward() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocl::distributed
