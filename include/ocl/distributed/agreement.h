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
/// naming those ranks and, for a config, the first differing key of each.
void require_same_build_and_config(Communicator& comm, const torch::Device& device,
                                   const std::string& build, const io::Config& config);

/// Collective: every rank's view of a data set (`what`: its numbers of images and classes)
/// compared with rank 0's, since ranks reading different copies would shard different
/// permutations without a word; on a mismatch every rank throws naming the ranks and both views.
void require_same_data(Communicator& comm, const torch::Device& device, const std::string& what,
                       int64_t size, int64_t classes);

/// Collective: the first (rank, tensor index) whose bytes' checksum differs from rank 0's, or
/// nothing when all agree (every rank returns the same answer).
std::optional<std::pair<int64_t, int64_t>> first_replica_difference(
    Communicator& comm, const torch::Device& device, const std::vector<torch::Tensor>& tensors);

}  // namespace ocl::distributed
