// The members of a tar archive and where their bytes lie, read from the headers alone, and
// WebDataset's grouping of members into samples: what reading a shard in place needs.
//
//   auto members = ocl::data::index_tar(ocl::data::file_reader(fd, "a.tar"), size, "a.tar");
//   auto samples = ocl::data::group_samples(members, "a.tar");  // key → {"jpg": 0, "cls": 1}
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace ocl::data {

/// Reads `size` bytes at `offset` into `out`; returns how many it read (fewer only at the end).
using ByteReader = std::function<size_t(uint64_t offset, size_t size, uint8_t* out)>;

/// A ByteReader over a file descriptor (pread, retried on EINTR; throws naming `what` on an I/O
/// error).
ByteReader file_reader(int fd, const std::string& what);

/// A ByteReader over bytes in memory (which must outlive it).
ByteReader memory_reader(const uint8_t* data, size_t size);

struct TarMember {
  std::string name;     // the full path inside the archive
  uint64_t offset = 0;  // of its first data byte
  uint64_t size = 0;
};

/// The regular-file members of the tar archive of `total_size` bytes, in archive order.
///
/// The header formats are POSIX ustar (names up to 255 bytes through its prefix field), pax ('x'
/// records before a member: path, size; 'g' global records, whose path and size keys are refused
/// since they would rename every member) and GNU ('L' long names, 'K' long link names, base-256
/// sizes). Every header's checksum is verified and its magic must be "ustar". Regular files are
/// members; directories, links and devices are passed over. The end is one or two zero blocks, or
/// the end of the bytes after a whole member: `ended`, when given, says which (false: no
/// end-of-archive block, as in an archive cut at a member's end or of 0 bytes).
///
/// Throws std::runtime_error naming `what` and the byte offset for a gzip, xz or zstd stream, a
/// header that is not ustar/GNU/pax, a bad checksum, a malformed pax record, and a member or header
/// that runs past the end (a truncated archive).
///
/// Headers are read in archive order and a member's data is never read, so `read` may be a
/// forward-only stream (shard_stream.h): `on_member`, called as each member is found and before
/// the walk reads past it, may read its data then. A stream's `total_size` may be kUnknownSize:
/// its end must then be tar's end-of-archive block (no end block is a cut stream).
inline constexpr uint64_t kUnknownSize = ~uint64_t{0};
std::vector<TarMember> index_tar(const ByteReader& read, uint64_t total_size,
                                 const std::string& what, bool* ended = nullptr,
                                 const std::function<void(const TarMember&)>& on_member = {});

/// WebDataset's key and extension of a member path: the key is the path up to the first dot of
/// its base name ("a/b.c/n01.x.jpg" → "a/b.c/n01"), the extension what follows, lower-cased
/// ("x.jpg"). A base name without a dot has no extension ("" ).
std::pair<std::string, std::string> sample_key(const std::string& path);

/// One sample: consecutive members sharing a key, by extension.
struct TarSample {
  std::string key;
  std::map<std::string, uint32_t> parts;  // extension → index into the member list
};

/// Groups consecutive members with the same key into samples (WebDataset's rule). Throws naming
/// `what`, the key and the members for two members with one key and extension, and for a key
/// that comes back after another key's members (two samples would share it). Members without an
/// extension are refused: WebDataset cannot place them either.
std::vector<TarSample> group_samples(const std::vector<TarMember>& members,
                                     const std::string& what);

/// Bytes read from a file (a member name, a line of a list) as message text: bytes that are not
/// printable ASCII or well-formed UTF-8 written \xNN, and cut after `max_bytes` (the total named),
/// since a pax path may run to a megabyte.
std::string printable(const std::string& bytes, size_t max_bytes = 200);

}  // namespace ocl::data
