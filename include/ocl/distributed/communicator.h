// The processes of a distributed run, connected through PyTorch's c10d: a TCPStore rendezvous on
// rank 0 and two process groups (NCCL or Gloo), for the gradient buckets and for the loss-side
// collectives, so their orders never interleave. A failed collective names this rank, itself, and
// what the other ranks were last seen doing (from heartbeats each rank keeps in the store).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ocl/compat.h"
#include "ocl/distributed/launch.h"

namespace ocl::distributed {

/// Thrown when a collective fails or times out: a peer died, hung, or the network failed.
class CollectiveError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Group { kGradients, kLoss };

struct CommunicatorOptions {
  std::string backend = "auto";  // auto (NCCL for a CUDA device, Gloo for the CPU) | nccl | gloo
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};  // rendezvous and each collective
  torch::Device device{torch::kCPU};  // where the collectives' tensors live (NCCL: this rank's GPU)
  /// Seconds between heartbeats in the store (0 = none: a failure cannot say which peer stopped).
  double heartbeat_s = 1.0;
};

/// Whether this LibTorch build has the c10d backend ("gloo", "nccl").
bool backend_available(const std::string& backend);

/// Calls off the rendezvous of `launch` with `reason`: every rank still waiting stops at once, not
/// at dist.timeout_s. Does nothing when no store answers within a few seconds.
void abort_rendezvous(const LaunchInfo& launch, const std::string& reason);

/// A finished or pending collective. wait() blocks until it is done (NCCL: until the current
/// stream is ordered after it) and throws CollectiveError if it failed.
class PendingCollective {
 public:
  PendingCollective() = default;
  void wait();

 private:
  friend class Communicator;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

class Communicator {
 public:
  /// Rendezvous with the other processes (rank 0 hosts the store) and connects the groups. Throws
  /// CollectiveError naming the address on a timeout, std::invalid_argument for a lacking backend.
  Communicator(const LaunchInfo& launch, CommunicatorOptions options);
  /// Stops the heartbeat. Does not synchronise: call barrier() first for an orderly end.
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int64_t rank() const;
  int64_t world_size() const;
  const std::string& backend() const;  // "gloo" or "nccl"

  /// Sum of `tensor` over ranks, in place, started now; `what` names it in errors.
  PendingCollective all_reduce_sum_async(torch::Tensor tensor, Group group,
                                         const std::string& what);
  /// The same, waited for.
  void all_reduce_sum(torch::Tensor tensor, Group group, const std::string& what);
  /// Rank-ordered concatenation along dim 0 of every rank's `tensor` (all the same shape):
  /// [W·n, ...]. Not differentiable (see all_gather.h for that).
  torch::Tensor all_gather(const torch::Tensor& tensor, Group group, const std::string& what);
  /// The inverse shape of all_gather: `tensor` [W·n, ...] summed over ranks, and this rank's
  /// block of n rows returned (reduce-scatter; all-reduce + narrow where the backend lacks it).
  torch::Tensor reduce_scatter_sum(const torch::Tensor& tensor, Group group,
                                   const std::string& what);
  /// Every tensor overwritten in place with rank 0's values (one collective per tensor).
  void broadcast_from_rank0(const std::vector<torch::Tensor>& tensors, const std::string& what);
  /// Returns once every rank has called it.
  void barrier(const std::string& what);

  /// Collectives started by this process so far, per group (tests, statistics).
  int64_t collectives_started(Group group) const;

  /// While on (a step that does not wait on the host: engine/loop.h), waiting for an NCCL
  /// collective orders the current stream after it and returns at once, which is also what a
  /// CUDA graph can capture; a failed collective or a dead peer then shows in await_device().
  /// Gloo's collectives (on the CPU) are waited for either way. Returns the previous setting.
  bool set_stream_ordered_waits(bool on);
  /// Blocks until the device has passed `mark` (queued behind stream-ordered collectives),
  /// for at most dist.timeout_s; past it throws CollectiveError naming `what` and what the
  /// peers were last doing, as a failed collective does.
  void await_device(const compat::StreamMark& mark, const std::string& what);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocl::distributed
