// AdamW's per-parameter state as named tensors, the form checkpoints keep it in
// (trainer.safetensors: "optim.<parameter>.exp_avg", ".exp_avg_sq", ".step"), and back.
#pragma once

#include <vector>

#include <torch/optim/adamw.h>

#include "ocl/io/safetensors.h"
#include "ocl/optim/param_groups.h"

namespace ocl::optim {

/// The state of the parameters of `groups`, under their ParamGroup::names (".step": int64 0-d).
io::TensorMap adamw_state(const torch::optim::AdamW& optimizer,
                          const std::vector<ParamGroup>& groups);

/// Restores what adamw_state wrote into `optimizer` (built over the same groups). Throws naming
/// the parameter when a tensor is missing or has another shape.
void load_adamw_state(torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups,
                      const io::TensorMap& tensors);

}  // namespace ocl::optim
