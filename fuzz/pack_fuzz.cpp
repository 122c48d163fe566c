// Fuzz target: the packed data set's index and shard reader (data::read_pack_index and
// PackedDataset). The input is index.ocl, then a part marker before each shard file. The index's
// trailer CRC is recomputed before reading (else nearly every mutation would stop at the
// checksum), and, for an index that reads, the records' CRCs too, written back by the pack's own
// writer: so the reader's size, offset, label and raw-size checks, and the decoding of records,
// are what gets fuzzed. Findings beyond the sanitizers': an exception other than
// std::runtime_error (an index inside the pack reported out of range included), a record
// refused without a reason, an image that does not match its size, a label that is no class.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "fuzz_support.h"
#include "targets.h"

#include "ocl/data/dataset.h"
#include "ocl/data/packed.h"

namespace ocl::fuzz::pack_target {

namespace {
constexpr int64_t kPixelLimit = int64_t{1} << 22;
constexpr size_t kMaxShards = 8;     // files written per input
constexpr int64_t kMaxRecords = 64;  // records decoded per input
}  // namespace

void init() { ocl::data::set_max_image_pixels(kPixelLimit); }

int run(const uint8_t* data, size_t size) {
  const auto parts = ocl::fuzz::split_parts(data, size);
  const std::string folder = ocl::fuzz::scratch_dir();
  std::string index(parts[0]);
  if (index.size() >= 12) {  // u32 CRC-32 of everything before it, then "OCLPACKE"
    const size_t body = index.size() - 12;
    const uint32_t crc =
        ocl::data::pack_crc32(reinterpret_cast<const uint8_t*>(index.data()), body);
    for (int i = 0; i < 4; ++i) index[body + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  }
  const std::string index_path = ocl::data::pack_index_path(folder);
  ocl::fuzz::write_file(index_path, index);
  for (size_t s = 0; s < kMaxShards; ++s) {
    const std::string path = ocl::data::pack_shard_path(folder, static_cast<uint32_t>(s));
    if (s + 1 < parts.size()) {
      ocl::fuzz::write_file(path, parts[s + 1]);
    } else {
      std::remove(path.c_str());  // a shard of the previous input
    }
  }

  try {
    auto read = ocl::data::read_pack_index(index_path);
    // Record CRCs that match the shard bytes they point at (where those exist), so that loads
    // reach the decoders.
    for (auto& r : read.records) {
      if (r.shard + 1 >= parts.size()) continue;
      const std::string_view shard = parts[r.shard + 1];
      if (r.offset <= shard.size() && r.size <= shard.size() - r.offset)
        r.crc32 = ocl::data::pack_crc32(reinterpret_cast<const uint8_t*>(shard.data()) + r.offset,
                                        r.size);
    }
    ocl::data::write_pack_index(index_path, read);
  } catch (const std::runtime_error&) {
    return 0;  // the reader refused the index: what is wanted of a bad one
  }

  try {
    ocl::data::PackedDataset pack(folder);
    const int64_t n = std::min<int64_t>(pack.size(), kMaxRecords);
    for (int64_t i = 0; i < n; ++i) {
      ocl::data::BadSample bad;
      for (const bool crop : {false, true}) {
        const auto image =
            crop ? pack.load_region(
                       i,
                       [](int h, int w) {
                         return ocl::data::DecodeRegion{h / 4, w / 4, h / 2 + 1, w / 2 + 1, 2};
                       },
                       &bad)
                 : pack.load(i, &bad);
        if (!image) {
          ocl::fuzz::require(!bad.reason.empty(), "a record was refused without a reason");
          continue;
        }
        ocl::fuzz::require(image->height > 0 && image->width > 0 &&
                               image->pixels.size() == static_cast<size_t>(image->height) *
                                                           static_cast<size_t>(image->width) * 3,
                           "a record's pixels do not match its size");
      }
      ocl::fuzz::require(
          pack.label(i) >= 0 && pack.label(i) < static_cast<int64_t>(pack.class_names().size()),
          "a record's label is not one of the pack's classes");
    }
  } catch (const std::out_of_range&) {
    ocl::fuzz::require(false, "a record inside the pack was out of range");
  } catch (const std::runtime_error&) {
  }
  return 0;
}

}  // namespace ocl::fuzz::pack_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::pack_target)
