// Data-parallel gradient averaging, like DistributedDataParallel's reducer: each .grad() is a view
// into a flat bucket, filled in reverse registration order, and a bucket's all-reduce starts once
// all its gradients are ready (strictly in order on every rank), overlapping the rest of backward.
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

/// Each bucket's parameter indices in launch order: the list reversed, cut into buckets of at most
/// cap bytes (the first first_cap), never mixing dtypes or devices (an oversized one alone).
std::vector<std::vector<size_t>> assign_buckets(const std::vector<torch::Tensor>& params,
                                                int64_t first_cap_bytes, int64_t cap_bytes);

class GradSynchronizer {
 public:
  /// `params`: the trainable parameters, the same in the same order on every rank. Their
  /// gradients become views into the buckets, keeping their values (else zero).
  GradSynchronizer(Communicator& comm, std::vector<torch::Tensor> params, GradSyncOptions options);
  ~GradSynchronizer();
  GradSynchronizer(const GradSynchronizer&) = delete;
  GradSynchronizer& operator=(const GradSynchronizer&) = delete;

  /// false: the next backward passes only accumulate (no communication); true (default): the
  /// next backward all-reduces the accumulated gradients.
  void set_sync(bool sync);
  /// After a synchronised backward (else a no-op): starts the buckets not yet started, waits for
  /// all, and divides by the world size: each .grad() holds the mean. Throws CollectiveError.
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
