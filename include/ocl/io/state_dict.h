// State dicts of LibTorch module trees: PyTorch's `state_dict()` / `load_state_dict()` in C++,
// with a report that names every missing, unexpected and mis-shaped key.
//
//   auto sd = ocl::io::read_safetensors("vit_small.safetensors").tensors;   // e.g. from timm
//   ocl::io::LoadOptions opts;
//   opts.ignore_missing = {"head."};                                       // fresh classifier
//   auto report = ocl::io::load_state_dict(*vit, sd, opts);                // throws unless ok
#pragma once

#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "ocl/io/safetensors.h"

namespace ocl::io {

/// All parameters and buffers of `module` and its descendants under their dotted names
/// ("blocks.0.attn.qkv.weight"), as named_parameters() / named_buffers() with recurse. Parameters
/// are inserted first, then buffers (a buffer never replaces a parameter of the same name;
/// such a clash throws). Undefined tensors (an absent optional bias) are skipped. The tensors
/// are detached but share storage with the module (no copy): clone them to keep a snapshot
/// that later training steps do not change. Names are the timm names for our ViT.
TensorMap state_dict(const torch::nn::Module& module);

/// What load_state_dict matched. Each list is sorted by name; ignored keys are not listed.
struct LoadReport {
  std::vector<std::string> missing;           // in the module, not in the file
  std::vector<std::string> unexpected;        // in the file, not in the module
  std::vector<std::string> shape_mismatched;  // "name: file [a, b] vs module [c, d]"
  /// All three lists are empty.
  bool ok() const;
  /// Human-readable, one line per key, e.g.
  ///   "state dict: 1 missing, 0 unexpected, 1 shape mismatched\n  missing: fc.bias\n
  ///    shape mismatched: fc.weight: file [3, 4] vs module [2, 4]"
  /// or "state dict: all keys matched".
  std::string summary() const;
};

struct LoadOptions {
  bool strict = true;                          // throw (with summary()) unless ok() after filtering
  std::vector<std::string> ignore_missing;     // name prefixes allowed to be missing (e.g. "head.")
  std::vector<std::string> ignore_unexpected;  // name prefixes allowed in the file but unused
};

/// Copies every file tensor whose name and shape match a parameter or buffer of `module` into it
/// in place (under NoGradGuard, converting dtype and device to the destination's: a float64
/// file loads into a float32 CUDA module), leaves the rest untouched, and reports the others.
/// Shape mismatches are never loaded and are never ignored: with strict, they always throw.
/// With strict (the default) everything is checked BEFORE anything is copied, and a report
/// that is not ok() throws c10::Error carrying summary(): a failing load changes nothing.
/// A prefix in ignore_missing / ignore_unexpected hides the keys that start with it (an empty
/// prefix hides all). Also throws (strict or not, before anything is copied) if a file tensor is
/// undefined, is an integer or boolean tensor where the module holds a floating-point one, or
/// holds a NaN or infinite value, naming it.
LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors,
                           const LoadOptions& options = {});

}  // namespace ocl::io
