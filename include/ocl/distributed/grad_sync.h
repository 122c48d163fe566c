// Data-parallel gradient averaging, the C++ counterpart of the reducer inside PyTorch's
// DistributedDataParallel: gradients live in flat buckets (each parameter's .grad() is a view
// into one), a hook on each parameter's gradient accumulator marks it ready during backward,
// and a bucket's all-reduce starts as soon as all its parameters are ready, overlapping the
// rest of backward. Buckets are filled in reverse registration order (the order backward
// produces gradients), the first one small (~1 MiB) so that communication starts early, the
// rest ~25 MiB; they are started strictly in bucket order on every rank, as collectives must be.
//
//   GradSynchronizer sync(comm, trainable_params, {});   // broadcasts rank 0's parameters
//   loss.backward();                                    // buckets launch as gradients arrive
//   sync.finish();                                      // waits; .grad() is the rank average
//
// Accumulating micro-batches: with set_sync(false) (DDP's no_sync) backward only accumulates
// locally; the last micro-batch runs with set_sync(true) and communicates the sums once.
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
  bool sync_enabled() const;
  /// After a synchronised backward: starts any bucket whose parameters got no gradient (their
  /// gradient is left as it was: zero after zero_grad), waits for every bucket, and divides by
  /// the world size. Each .grad() then holds the mean over ranks. A no-op after a backward run
  /// with set_sync(false). Throws CollectiveError if a collective failed.
  void finish();

  int64_t num_buckets() const;
  /// Bytes of each bucket, in launch order.
  std::vector<int64_t> bucket_bytes() const;
  /// Bucket all-reduces started since construction (tests check that no_sync skips them).
  int64_t buckets_launched() const;
  /// Buckets of the last synchronised backward whose all-reduce started during backward
  /// (before finish()): how much communication could overlap.
  int64_t buckets_launched_in_backward() const;
  /// Makes every parameter's .grad() a bucket view again (after code that replaced it).
  void rebind_gradients();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocl::distributed
