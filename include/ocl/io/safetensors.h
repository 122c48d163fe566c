// safetensors reading and writing: the format Python's `safetensors.torch.load_file` /
// `save_file` use, so checkpoints move between ocl and PyTorch/timm without pickle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include <torch/types.h>

namespace ocl::io {

/// Tensor name → tensor, sorted by name.
using TensorMap = std::map<std::string, torch::Tensor>;
/// The optional "__metadata__" string → string map of a safetensors header.
using Metadata = std::map<std::string, std::string>;

/// The contents of one safetensors file.
struct SafetensorsFile {
  TensorMap tensors;
  Metadata metadata;
};

// File layout (https://github.com/huggingface/safetensors):
//   8 bytes   N, little-endian uint64
//   N bytes   JSON object, UTF-8, possibly padded with trailing spaces:
//             {"__metadata__": {"k": "v", ...},                       (optional)
//              "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   rest      the data area; [begin, end) is relative to its first byte, row-major, little-endian.
// Dtypes, both ways: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL. Every function throws c10::Error
// naming the file (`source` or the path), the tensor and the offending value.

/// Parses a whole image in memory into CPU copies, never reading outside [data, data + size).
/// Throws for N > 100 MB (the spec's limit) or past the end, a header that is not a JSON object or
/// has a duplicate key, a malformed entry, another dtype, a count overflowing 64 bits, offsets that
/// do not tile the data area exactly, metadata not all strings, a BOOL byte other than 0 or 1.
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& source);

/// Reads the file at `path` with the checks of parse_safetensors, each tensor straight into its
/// own storage (peak memory is the tensors, not 2× the file).
SafetensorsFile read_safetensors(const std::string& path);

/// A safetensors file's tensor names (in the header's order) and metadata, without its data.
struct SafetensorsHeader {
  std::vector<std::string> names;
  Metadata metadata;
};
/// Reads only the header of the file at `path` (a cheap look at a large file), with
/// read_safetensors' checks of the header and of the data area's layout.
SafetensorsHeader read_safetensors_header(const std::string& path);

/// The bytes of a safetensors file of `tensors` (any device and strides) and `metadata` (omitted
/// when empty), every tensor aligned to its item size as the Python library does. Throws for an
/// empty or reserved name, an undefined tensor, another dtype, or text that is not UTF-8.
std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {});

/// Writes serialize_safetensors(tensors, metadata) to `path` with io::write_file_atomic: a
/// failure throws naming `path` and leaves what was there untouched.
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const Metadata& metadata = {});

}  // namespace ocl::io
