// A differentiable all-gather across ranks, for contrastive losses with global negatives: the
// forward concatenates every rank's rows; the backward sums the incoming gradient over ranks
// (every rank's loss depends on every rank's rows) and returns this rank's block.
//
//   auto all = ocl::distributed::all_gather_with_grad(comm, features);   // [B, D] → [W·B, D]
#pragma once

#include <torch/types.h>

#include "ocl/distributed/communicator.h"

namespace ocl::distributed {

/// `x` [n, ...] (the same shape on every rank) → [W·n, ...], rank r's rows at r·n. Runs on the
/// loss-side process group. Backward: reduce-scatter (sum) of the gradient, so that the
/// gradient of a sum of per-rank losses reaches each rank's own rows exactly.
torch::Tensor all_gather_with_grad(Communicator& comm, const torch::Tensor& x);

}  // namespace ocl::distributed
