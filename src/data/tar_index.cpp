// The tar member index and WebDataset's sample grouping (see include/ocl/data/tar_index.h).
//
// Written by hand rather than with libarchive: libarchive reads the same formats but documents no
// way to learn where an entry's data begins in the archive (archive_read_header_position gives
// where its first header began, and pax and GNU long-name entries put a variable number of blocks
// between the two), and the readers here need exactly that offset.
#include "ocl/data/tar_index.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

namespace ocl::data {
namespace {

constexpr uint64_t kBlock = 512;
// A pax or GNU long-name header's data is read into memory: a few hundred bytes in practice,
// refused past this (a damaged size field would otherwise ask for gigabytes).
constexpr uint64_t kMaxMetaBytes = uint64_t{1} << 20;

// ustar header fields: offset and length.
struct Field {
  size_t at, len;
};
constexpr Field kName{0, 100}, kSize{124, 12}, kChecksum{148, 8}, kType{156, 1}, kMagic{257, 6},
    kVersion{263, 2}, kPrefix{345, 155};

std::string at_byte(const std::string& what, uint64_t offset) {
  return what + ", byte " + std::to_string(offset);
}

// Compressed archives are named, not read: the index needs random reads at member offsets, and
// reaching a member of a compressed stream means decompressing everything before it (zlib could
// read a .tar.gz, but each image would then cost a pass over its shard).
struct Compression {
  const char* magic;
  size_t size;
  const char* name;
  const char* command;
};
constexpr Compression kCompressions[] = {{"\x1f\x8b", 2, "gzip", "gunzip -k"},
                                         {"\xfd\x37\x7a\x58\x5a\x00", 6, "xz", "unxz -k"},
                                         {"\x28\xb5\x2f\xfd", 4, "zstd", "unzstd"}};

// A NUL-terminated (or full-width) text field.
std::string text_field(const uint8_t* h, Field f) {
  const char* p = reinterpret_cast<const char*>(h + f.at);
  return std::string(p, strnlen(p, f.len));
}

// An octal number field: leading spaces, digits, then NUL or spaces. nullopt-like: false when
// it is not one.
bool parse_octal(const uint8_t* h, Field f, uint64_t* value) {
  size_t i = 0;
  while (i < f.len && h[f.at + i] == ' ') ++i;
  uint64_t v = 0;
  size_t digits = 0;
  for (; i < f.len && h[f.at + i] >= '0' && h[f.at + i] <= '7'; ++i, ++digits) {
    if (v > (std::numeric_limits<uint64_t>::max() >> 3)) return false;
    v = (v << 3) | static_cast<uint64_t>(h[f.at + i] - '0');
  }
  for (; i < f.len; ++i) {
    if (h[f.at + i] != ' ' && h[f.at + i] != '\0') return false;
  }
  *value = v;
  return digits > 0;
}

// The size field: octal, or GNU's base-256 (the first byte's high bit set, big-endian after it).
bool parse_size(const uint8_t* h, uint64_t* value) {
  if ((h[kSize.at] & 0x80) == 0) return parse_octal(h, kSize, value);
  if (h[kSize.at] & 0x40) return false;  // negative
  uint64_t v = h[kSize.at] & 0x3f;
  for (size_t i = 1; i < kSize.len; ++i) {
    if (v > (std::numeric_limits<uint64_t>::max() >> 8)) return false;
    v = (v << 8) | h[kSize.at + i];
  }
  *value = v;
  return true;
}

// The header checksum: the sum of its bytes with the checksum field read as spaces (unsigned,
// POSIX; some old writers summed signed bytes, also accepted).
bool checksum_ok(const uint8_t* h) {
  uint64_t stored = 0;
  if (!parse_octal(h, kChecksum, &stored)) return false;
  int64_t unsigned_sum = 0, signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= kChecksum.at && i < kChecksum.at + kChecksum.len;
    const uint8_t b = in_field ? ' ' : h[i];
    unsigned_sum += b;
    signed_sum += static_cast<int8_t>(b);
  }
  return static_cast<int64_t>(stored) == unsigned_sum || static_cast<int64_t>(stored) == signed_sum;
}

std::string total_text(uint64_t total) {
  return total == kUnknownSize ? std::string("a stream of unknown length")
                               : std::to_string(total) + " bytes in all";
}

std::runtime_error ends_inside(const std::string& what, uint64_t offset, const char* part,
                               uint64_t total) {
  return std::runtime_error(at_byte(what, offset) + ": the archive ends inside " + part + " (" +
                            total_text(total) + "): it is truncated");
}

// pax extended header records: "<length> <key>=<value>\n", the length counting the whole
// record. Only the keys that place a member matter here (path, size); others are read past.
void parse_pax(const std::string& data, const std::string& where, bool global, std::string* path,
               uint64_t* size, bool* has_size) {
  size_t pos = 0;
  while (pos < data.size()) {
    if (data[pos] == '\0') break;  // some writers pad the record block with NULs
    size_t p = pos, length = 0, digits = 0;
    while (p < data.size() && std::isdigit(static_cast<unsigned char>(data[p]))) {
      if (length > kMaxMetaBytes) break;
      length = length * 10 + static_cast<size_t>(data[p] - '0');
      ++p, ++digits;
    }
    if (digits == 0 || p >= data.size() || data[p] != ' ' || length <= digits + 1 ||
        pos + length > data.size() || data[pos + length - 1] != '\n') {
      throw std::runtime_error(where + ": malformed pax record at byte " + std::to_string(pos) +
                               " of the extended header (expected \"<length> <key>=<value>\\n\")");
    }
    const std::string record = data.substr(p + 1, pos + length - 1 - (p + 1));
    const size_t eq = record.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw std::runtime_error(where + ": malformed pax record '" + printable(record, 60) +
                               "' (no key=value)");
    }
    const std::string key = record.substr(0, eq), value = record.substr(eq + 1);
    if ((key == "path" || key == "size") && global) {
      throw std::runtime_error(where + ": a global pax header sets '" + key +
                               "', which would apply to every member: not supported");
    }
    if (key == "path") {
      *path = value;
    } else if (key == "size") {
      uint64_t v = 0;
      bool ok = !value.empty() && value.size() <= 20;
      for (char c : value) {
        if (!std::isdigit(static_cast<unsigned char>(c))) ok = false;
      }
      if (ok) {
        errno = 0;
        const unsigned long long parsed = std::strtoull(value.c_str(), nullptr, 10);
        ok = errno == 0;
        v = parsed;
      }
      if (!ok)
        throw std::runtime_error(where + ": pax size '" + printable(value, 40) + "' is not a size");
      *size = v;
      *has_size = true;
    }
    pos += length;
  }
}

}  // namespace

ByteReader file_reader(int fd, const std::string& what) {
  return [fd, what](uint64_t offset, size_t size, uint8_t* out) {
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        throw std::system_error(errno, std::generic_category(),
                                "cannot read " + what + " at byte " + std::to_string(offset));
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  };
}

ByteReader memory_reader(const uint8_t* data, size_t size) {
  return [data, size](uint64_t offset, size_t n, uint8_t* out) -> size_t {
    if (offset >= size) return 0;
    const size_t got = static_cast<size_t>(std::min<uint64_t>(n, size - offset));
    std::memcpy(out, data + offset, got);
    return got;
  };
}

namespace {

// What extended headers said about the member that follows them.
struct Pending {
  std::string path;
  uint64_t size = 0;
  bool has_size = false;
  bool any() const { return !path.empty() || has_size; }
};

// A verified header block: its type, size, and whether it is POSIX ustar (whose prefix field
// extends the name; GNU headers use that space for other things).
struct Header {
  char type = 0;
  uint64_t size = 0;
  bool posix = false;
};

Header check_header(const uint8_t* h, const std::string& where) {
  if (!checksum_ok(h))
    throw std::runtime_error(where + ": not a tar header (its checksum does not match)");
  const std::string magic = text_field(h, kMagic);
  if (magic != "ustar" && magic != "ustar ") {
    throw std::runtime_error(where + ": a tar header that is not ustar, GNU or pax (magic '" +
                             printable(magic) + "'): rewrite the shard with a POSIX tar writer");
  }
  Header header;
  header.type = static_cast<char>(h[kType.at]);
  header.posix =
      std::memcmp(h + kMagic.at, "ustar\0", 6) == 0 && std::memcmp(h + kVersion.at, "00", 2) == 0;
  if (!parse_size(h, &header.size))
    throw std::runtime_error(where + ": the header's size field is not a number");
  return header;
}

uint64_t padded(uint64_t size) { return size + (kBlock - size % kBlock) % kBlock; }

// A pax ('x', 'g') or GNU long-name ('L', 'K') header's data, read into `pending`.
void read_extended(const ByteReader& read, const Header& header, uint64_t data, uint64_t total_size,
                   const std::string& what, const std::string& where, Pending* pending) {
  if (header.size > kMaxMetaBytes) {
    throw std::runtime_error(where + ": an extended header of " + std::to_string(header.size) +
                             " bytes (at most " + std::to_string(kMaxMetaBytes) + ")");
  }
  if (data + padded(header.size) > total_size) {
    throw std::runtime_error(where + ": an extended header's " + std::to_string(header.size) +
                             " bytes run past the end of the archive (" + total_text(total_size) +
                             "): it is truncated");
  }
  std::string meta(static_cast<size_t>(header.size), '\0');
  if (read(data, meta.size(), reinterpret_cast<uint8_t*>(meta.data())) != meta.size())
    throw ends_inside(what, data, "an extended header", total_size);
  if (header.type == 'x' || header.type == 'g') {
    parse_pax(meta, where, header.type == 'g', &pending->path, &pending->size, &pending->has_size);
  } else if (header.type == 'L') {
    pending->path = std::string(meta.c_str());  // NUL-terminated inside its data
  }
}

}  // namespace

std::vector<TarMember> index_tar(const ByteReader& read, uint64_t total_size,
                                 const std::string& what, bool* ended,
                                 const std::function<void(const TarMember&)>& on_member) {
  std::vector<TarMember> members;
  uint8_t h[kBlock];
  const size_t head = read(0, std::min<uint64_t>(total_size, 6), h);
  for (const auto& c : kCompressions) {
    if (head >= c.size && std::memcmp(h, c.magic, c.size) == 0) {
      const std::string command = c.command;
      throw std::runtime_error(
          what + ": " + c.name + "-compressed, not a tar archive: " +
          (total_size == kUnknownSize
               ? "a streamed shard is read uncompressed (decompress it in the command: 'pipe:... "
                 "| " +
                     command.substr(0, command.find(' ')) + " -c')"
               : "shards are read in place, uncompressed (decompress it first: " + command +
                     " FILE)"));
    }
  }
  if (ended) *ended = false;
  uint64_t offset = 0;
  Pending pending;  // what the headers before a member said about it
  while (offset < total_size) {
    // A zero block is the end-of-archive marker. tar pads to whole blocks: a partial block is a
    // cut archive, unless it is zero padding.
    const size_t left = static_cast<size_t>(std::min(kBlock, total_size - offset));
    const size_t got = read(offset, left, h);
    if (got == left && std::all_of(h, h + left, [](uint8_t b) { return b == 0; })) {
      if (ended) *ended = true;
      break;
    }
    if (got != kBlock) throw ends_inside(what, offset, "a header", total_size);
    const std::string where = at_byte(what, offset);
    const Header header = check_header(h, where);
    const uint64_t data = offset + kBlock;
    const char type = header.type;
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      read_extended(read, header, data, total_size, what, where, &pending);
      offset = data + padded(header.size);
      continue;
    }
    std::string name = pending.path;
    if (name.empty()) {
      name = text_field(h, kName);
      const std::string prefix = header.posix ? text_field(h, kPrefix) : "";
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    // A pax size replaces the header's (which cannot hold 8 GiB or more).
    const uint64_t size = pending.has_size ? pending.size : header.size;
    pending = Pending{};
    // Links, devices, directories and FIFOs have no data whatever their size field says (as
    // Python's tarfile reads them); other types (GNU sparse files, unknown ones) are passed over
    // by their size. A cut inside a member's padding to its block is a cut archive too.
    const bool dataless = type >= '1' && type <= '6';
    if (!dataless &&
        (size > total_size || padded(size) > total_size || data > total_size - padded(size))) {
      throw std::runtime_error(where + ": member '" + printable(name) + "' (" +
                               std::to_string(size) + " bytes) runs past the end of the archive (" +
                               total_text(total_size) + "): it is truncated");
    }
    if (type == '0' || type == '\0' || type == '7') {
      if (name.empty()) throw std::runtime_error(where + ": a file member without a name");
      members.push_back({name, data, size});
      if (on_member) on_member(members.back());
    }
    offset = data + (dataless ? 0 : padded(size));
  }
  if (pending.any()) {
    throw std::runtime_error(what +
                             ": the archive ends after an extended header, without the "
                             "member it describes: it is truncated");
  }
  return members;
}

std::pair<std::string, std::string> sample_key(const std::string& path) {
  const size_t slash = path.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = path.find('.', base);
  if (dot == std::string::npos) return {path, ""};
  std::string ext = path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return {path.substr(0, dot), ext};
}

std::vector<TarSample> group_samples(const std::vector<TarMember>& members,
                                     const std::string& what) {
  std::vector<TarSample> samples;
  std::unordered_map<std::string, size_t> seen;  // key → its sample
  for (size_t i = 0; i < members.size(); ++i) {
    auto [key, ext] = sample_key(members[i].name);
    if (ext.empty()) {
      throw std::runtime_error(what + ": member '" + printable(members[i].name) +
                               "' has no extension (WebDataset names members <key>.<ext>)");
    }
    if (samples.empty() || samples.back().key != key) {
      const auto [it, fresh] = seen.emplace(key, samples.size());
      if (!fresh) {
        throw std::runtime_error(what + ": key '" + printable(key) + "' comes back at member '" +
                                 printable(members[i].name) +
                                 "' after other samples: a sample's members "
                                 "must be consecutive");
      }
      samples.push_back({key, {}});
    }
    auto& parts = samples.back().parts;
    if (!parts.emplace(ext, static_cast<uint32_t>(i)).second) {
      throw std::runtime_error(what + ": two members named '" + printable(members[i].name) +
                               "' in sample '" + printable(key) + "'");
    }
  }
  return samples;
}

std::string printable(const std::string& bytes, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < max_bytes;) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    // A UTF-8 lead byte and the number of bytes of its sequence (1: not a lead byte).
    const size_t n = c >= 0xc2 && c < 0xe0   ? 2
                     : c >= 0xe0 && c < 0xf0 ? 3
                     : c >= 0xf0 && c < 0xf5 ? 4
                                             : 1;
    size_t k = 1;
    while (k < n && i + k < bytes.size() && (bytes[i + k] & 0xc0) == 0x80) ++k;
    if (n > 1 && k == n) {
      out.append(bytes, i, n);
      i += n;
      continue;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
    ++i;
  }
  if (bytes.size() > max_bytes) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

}  // namespace ocl::data
