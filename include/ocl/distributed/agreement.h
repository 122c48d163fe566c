// Ranks that must run the same thing. At the rendezvous every rank compares a digest of its build
// and of its resolved config with rank 0's: a rank started with another model.depth would abort a
// collective of the wrong size, one with another optim.lr would train on diverged without a word.
// On a mismatch every rank stops with one line naming the ranks and the first key that differs.
// And replicas that must hold the same parameters: a checksum of each, compared across ranks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "ocl/distributed/communicator.h"
#include "ocl/io/config.h"

namespace ocl::distributed {

/// Collective (every rank calls it once, on `device`): throws std::runtime_error on every rank
/// when some rank's `build` (a description of the binary) or `config` differs from rank 0's,
/// naming those ranks and, for a config, the first differing key of each (and on a differing
/// rank both values).
void require_same_build_and_config(Communicator& comm, const torch::Device& device,
                                   const std::string& build, const io::Config& config);

/// Collective: every rank's view of a data set (`what`, e.g. "the training set": its number of
/// images and of classes) compared with rank 0's. Ranks that read different copies of a data
/// set (a node with a partial copy, another version) would shard different permutations and
/// train on overlapping or missing images without a word; on a mismatch every rank throws
/// std::runtime_error naming the ranks that differ and both views.
void require_same_data(Communicator& comm, const torch::Device& device, const std::string& what,
                       int64_t size, int64_t classes);

/// Collective: a checksum of each tensor's bytes on every rank, all-gathered; the first
/// (rank, tensor index) whose checksum differs from rank 0's, or nothing when all agree (every
/// rank returns the same answer).
std::optional<std::pair<int64_t, int64_t>> first_replica_difference(
    Communicator& comm, const torch::Device& device, const std::vector<torch::Tensor>& tensors);

}  // namespace ocl::distributed
