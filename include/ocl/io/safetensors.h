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
// Dtypes, both ways: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL (torch kDouble ... kBool).
//
// Errors: every function throws c10::Error (TORCH_CHECK); the message names the file (`source`
// or the path), the tensor and the offending value.

/// Parses a whole safetensors image held in memory; `source` names it in error messages.
/// The returned tensors are contiguous CPU tensors owning their memory (copies), so `data` may
/// be freed afterwards. Never reads outside [data, data + size). Throws when:
///   - size < 8, or N > 100 MB (the spec's limit), or N > size − 8;
///   - the header is not valid JSON, is not an object, or has a duplicate key;
///   - an entry is not an object or lacks "dtype" (string), "shape" (array of integers ≥ 0) or
///     "data_offsets" (2 integers ≥ 0);
///   - the dtype is not one of the above (e.g. U16 or F8_E4M3 are rejected);
///   - the element or byte count overflows 64 bits;
///   - begin > end, end is past the data area, or end − begin ≠ numel · itemsize;
///   - ranges overlap, or leave a hole / trailing bytes in the data area (the spec forbids
///     both, as does the Python library);
///   - "__metadata__" is not an object of strings;
///   - a BOOL tensor holds a byte other than 0 or 1.
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& source);

/// Reads and parses the file at `path` with the checks of parse_safetensors. Reads the header,
/// then each tensor straight into its own storage: peak memory is the tensors, not 2× the file.
/// Also throws when the file cannot be opened or read (naming `path` and the OS error).
SafetensorsFile read_safetensors(const std::string& path);

/// A safetensors file's tensor names (in the header's order) and metadata, without its data.
struct SafetensorsHeader {
  std::vector<std::string> names;
  Metadata metadata;
};
/// Reads only the header of the file at `path`, with read_safetensors' checks of the header and
/// of the data area's layout (the file's size), so a cheap look at a large file.
SafetensorsHeader read_safetensors_header(const std::string& path);

/// The bytes of a safetensors file holding `tensors` (any device, any strides: written as
/// contiguous CPU data) and `metadata` ("__metadata__" is omitted when empty). The JSON header
/// is padded with spaces to a multiple of 8 bytes and the data is ordered by item size
/// (largest first), then name, so every tensor is aligned to its item size, as the Python
/// library does. Throws for an empty name, the name "__metadata__", an undefined tensor, an
/// unsupported dtype (naming the tensor and its dtype), or a name or metadata string that is
/// not valid UTF-8.
std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {});

/// Writes serialize_safetensors(tensors, metadata) to `path` atomically: a temporary file in the
/// same directory, written, flushed and fsync'ed, then renamed over `path`. A failure (invalid
/// input, unwritable directory, full disk, ...) throws naming `path`, leaves any existing file at
/// `path` untouched and removes the temporary file. POSIX only.
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const Metadata& metadata = {});

}  // namespace ocl::io
