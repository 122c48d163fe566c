// Ranks that must run the same thing. Every rank compares digests of its build and resolved config
// with rank 0's (another model.depth would abort a collective of the wrong size, another optim.lr
// train on silently) and stops naming the ranks and first differing key; and checksums of
// parameters that replicas must hold alike.
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

/// Collective (every rank calls it once, on `device`): throws std::runtime_error on every rank when
/// some rank's `build` or `config` differs from rank 0's, naming them and each's first key.
void require_same_build_and_config(Communicator& comm, const torch::Device& device,
                                   const std::string& build, const io::Config& config);

/// Collective: every rank's view of data set `what` (images, classes) compared with rank 0's, as
/// ranks reading different copies would shard silently; a mismatch throws naming both views.
void require_same_data(Communicator& comm, const torch::Device& device, const std::string& what,
                       int64_t size, int64_t classes);

/// Collective: the first (rank, tensor index) whose bytes' checksum differs from rank 0's, or
/// nothing when all agree (every rank returns the same answer).
std::optional<std::pair<int64_t, int64_t>> first_replica_difference(
    Communicator& comm, const torch::Device& device, const std::vector<torch::Tensor>& tensors);

}  // namespace ocl::distributed
