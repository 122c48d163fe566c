// State dicts of LibTorch module trees: PyTorch's `state_dict()` / `load_state_dict()` in C++,
// with a report that names every missing, unexpected and mis-shaped key.
#pragma once

#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "ocl/io/safetensors.h"

namespace ocl::io {

/// All parameters and buffers of `module` and its descendants under their dotted names
/// ("blocks.0.attn.qkv.weight"; timm's for our ViT), undefined ones skipped and a buffer named as a
/// parameter refused. Detached, but sharing storage with the module: clone to keep a snapshot.
TensorMap state_dict(const torch::nn::Module& module);

/// What load_state_dict matched. Each list is sorted by name; ignored keys are not listed.
struct LoadReport {
  std::vector<std::string> missing;           // in the module, not in the file
  std::vector<std::string> unexpected;        // in the file, not in the module
  std::vector<std::string> shape_mismatched;  // "name: file [a, b] vs module [c, d]"
  bool ok() const { return missing.empty() && unexpected.empty() && shape_mismatched.empty(); }
  /// "state dict: 1 missing, 0 unexpected, 1 shape mismatched", then one line per key
  /// ("  missing: fc.bias"), or "state dict: all keys matched".
  std::string summary() const;
};

struct LoadOptions {
  bool strict = true;                          // throw (with summary()) unless ok() after filtering
  std::vector<std::string> ignore_missing;     // name prefixes allowed to be missing (e.g. "head.")
  std::vector<std::string> ignore_unexpected;  // name prefixes allowed in the file but unused
};

/// Copies each file tensor matching a parameter or buffer of `module` in name and shape into it
/// (converting dtype and device) and reports the others; shape mismatches are never loaded nor
/// ignored. Throws c10::Error before copying anything: with strict, for a report not ok() (with
/// summary()); always, naming a tensor that is undefined, an integer for a float, or not finite.
LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors,
                           const LoadOptions& options = {});

}  // namespace ocl::io
