// Fuzz target: the tar member index and WebDataset's sample grouping (data::index_tar and
// data::group_samples) on the input as an archive. Every 512-byte block that carries the
// "ustar" magic gets its header checksum recomputed first (else nearly every mutation of a
// header would stop at the checksum), except in inputs of odd length, which keep theirs so that
// the checksum check is fuzzed too. Findings beyond the sanitizers': an
// exception other than std::runtime_error, a refusal without a reason, and a member the index
// places outside the archive, off the block grid, or over the header or data of the member
// before it.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "fuzz_support.h"
#include "targets.h"

#include "ocl/data/tar_index.h"

namespace ocl::fuzz::tar_target {

void init() {}

int run(const uint8_t* input, size_t size) {
  std::vector<uint8_t> bytes(input, input + size);
  if (size % 2 == 0) {
    for (size_t at = 0; at + 512 <= size; at += 512) {
      uint8_t* h = bytes.data() + at;
      if (std::memcmp(h + 257, "ustar", 5) != 0) continue;
      std::memset(h + 148, ' ', 8);
      unsigned sum = 0;
      for (size_t i = 0; i < 512; ++i) sum += h[i];
      std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum & 0777777u);
    }
  }
  const uint8_t* data = bytes.data();
  std::vector<ocl::data::TarMember> members;
  try {
    members = ocl::data::index_tar(ocl::data::memory_reader(data, size), size, "fuzz.tar");
  } catch (const std::runtime_error& e) {
    ocl::fuzz::require(std::strlen(e.what()) > 0, "an archive refused without a reason");
    return 0;
  }
  uint64_t free_from = 0;  // where the previous member's padded data ended
  for (const auto& m : members) {
    ocl::fuzz::require(m.offset % 512 == 0, "a member's data off the 512-byte grid");
    ocl::fuzz::require(m.offset >= free_from + 512, "a member's data over the member before it");
    ocl::fuzz::require(m.offset <= size && m.size <= size - m.offset,
                       "a member's data past the end of the archive");
    ocl::fuzz::require(!m.name.empty(), "a member without a name");
    free_from = m.offset + m.size + (512 - m.size % 512) % 512;
  }
  try {
    const auto samples = ocl::data::group_samples(members, "fuzz.tar");
    size_t parts = 0;
    for (const auto& s : samples) {
      for (const auto& [ext, index] : s.parts) {
        ocl::fuzz::require(index < members.size(), "a sample part that is no member");
        ocl::fuzz::require(!ext.empty(), "a sample part without an extension");
        ++parts;
      }
    }
    ocl::fuzz::require(parts == members.size(), "samples that lose or repeat members");
  } catch (const std::runtime_error& e) {
    ocl::fuzz::require(std::strlen(e.what()) > 0, "samples refused without a reason");
  }
  return 0;
}

}  // namespace ocl::fuzz::tar_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::tar_target)
