// Fuzz target: the safetensors reader (header JSON, offsets, dtypes, shapes), in memory and from a
// file. Findings beyond the sanitizers': an error other than c10::Error, the two readers
// disagreeing, and a file that parses but does not survive writing and reading back unchanged.
#include <cstring>
#include <optional>
#include <string>

#include "fuzz_support.h"
#include "targets.h"
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include "ocl/io/safetensors.h"

namespace ocl::fuzz::safetensors_target {

namespace {

// Same names, dtypes, shapes, bytes (bitwise: NaN payloads included) and metadata.
bool same(const ocl::io::SafetensorsFile& a, const ocl::io::SafetensorsFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (auto ia = a.tensors.begin(), ib = b.tensors.begin(); ia != a.tensors.end(); ++ia, ++ib) {
    const torch::Tensor& x = ia->second;
    const torch::Tensor& y = ib->second;
    if (ia->first != ib->first || x.scalar_type() != y.scalar_type() || x.sizes() != y.sizes() ||
        !x.is_contiguous() || !y.is_contiguous())
      return false;
    const size_t bytes = static_cast<size_t>(x.numel()) * x.element_size();
    if (bytes > 0 && std::memcmp(x.data_ptr(), y.data_ptr(), bytes) != 0) return false;
  }
  return true;
}

}  // namespace

void init() {}

int run(const uint8_t* data, size_t size) {
  std::optional<ocl::io::SafetensorsFile> parsed;
  try {
    parsed = ocl::io::parse_safetensors(data, size, "fuzz input");
  } catch (const c10::Error&) {
  }
  // The file reader reads the header, then each tensor straight into its storage: a second
  // implementation of the same checks, which must reach the same verdict and the same tensors.
  const std::string path = ocl::fuzz::scratch_dir() + "/input.safetensors";
  ocl::fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});
  std::optional<ocl::io::SafetensorsFile> read;
  try {
    read = ocl::io::read_safetensors(path);
  } catch (const c10::Error&) {
  }
  ocl::fuzz::require(parsed.has_value() == read.has_value(),
                     "parse_safetensors and read_safetensors disagree on accepting the input");
  if (!parsed) return 0;
  ocl::fuzz::require(same(*parsed, *read), "parse_safetensors and read_safetensors differ");

  // What was accepted is written back (any failure here is a finding: no catch) and must read
  // back as it was.
  const std::string bytes = ocl::io::serialize_safetensors(parsed->tensors, parsed->metadata);
  const auto again = ocl::io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                bytes.size(), "round trip");
  ocl::fuzz::require(same(*parsed, again), "a parsed file does not survive a round trip");
  return 0;
}

}  // namespace ocl::fuzz::safetensors_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::safetensors_target)
