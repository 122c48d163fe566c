// safetensors parsing and serialisation, every header value checked before it is used.
#include "ocl/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "ocl/io/files.h"

// The data area is little-endian and is copied byte for byte into tensor storage.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "ocl::io safetensors support assumes a little-endian host");
#endif

namespace ocl::io {
namespace {

using json = nlohmann::json;

// The spec's limit: it bounds what a corrupt length can make us allocate before other checks.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeInfo {
  const char* name;
  c10::ScalarType type;
  uint64_t itemsize;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", c10::ScalarType::Double, 8}, {"F32", c10::ScalarType::Float, 4},
    {"F16", c10::ScalarType::Half, 2},   {"BF16", c10::ScalarType::BFloat16, 2},
    {"I64", c10::ScalarType::Long, 8},   {"I32", c10::ScalarType::Int, 4},
    {"I16", c10::ScalarType::Short, 2},  {"I8", c10::ScalarType::Char, 1},
    {"U8", c10::ScalarType::Byte, 1},    {"BOOL", c10::ScalarType::Bool, 1},
};

template <typename Match>
const DtypeInfo* find_dtype(Match match) {
  for (const auto& d : kDtypes) {
    if (match(d)) return &d;
  }
  return nullptr;
}

// One validated header entry: where its bytes lie in the data area and what they become.
struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

struct Header {
  std::vector<Entry> entries;
  Metadata metadata;
};

// The 8-byte little-endian header length N, checked against the limit and the image size.
uint64_t checked_header_length(const uint8_t* first8, uint64_t total_size,
                               const std::string& source) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | first8[i];
  TORCH_CHECK(n <= kMaxHeaderBytes, "safetensors '", source, "': header length ", n,
              " exceeds the 100 MB limit of the format (corrupt file or not safetensors?)");
  TORCH_CHECK(n <= total_size - 8, "safetensors '", source, "': header length ", n,
              " is larger than the ", total_size - 8, " bytes that follow it (truncated file?)");
  TORCH_CHECK(n >= 2, "safetensors '", source, "': header length ", n,
              " is too short for a JSON object");
  return n;
}

std::string where(const std::string& source, const std::string& tensor) {
  return "safetensors '" + source + "', tensor '" + tensor + "': ";
}

// Parses the JSON while watching what the DOM would hide: nlohmann keeps the last of duplicate
// keys silently, and a deeply nested value would cost memory before we could reject it.
json parse_header_json(const char* text, size_t n, const std::string& source) {
  // nlohmann's lexer ends input at a NUL, which would accept "{}\0garbage"; JSON never holds one.
  const void* nul = std::memchr(text, '\0', n);
  TORCH_CHECK(nul == nullptr, "safetensors '", source,
              "': header is not valid JSON (NUL byte at header offset ",
              static_cast<const char*>(nul) - text, ")");
  std::vector<std::set<std::string>> open_objects;  // keys seen, per open object (depth < 2)
  std::optional<std::string> duplicate;
  std::string tensor, field;  // the latest keys at depths 1 and 2
  struct TooDeep {};  // thrown from the callback: nlohmann itself throws from the same places
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        // A valid header has containers at depths 0 to 2 only (header, entry, shape); stopping
        // at the first deeper one keeps a hostile 100 MB of "[[[[" from costing gigabytes.
        if (depth >= 3) throw TooDeep{};
        if (event == json::parse_event_t::object_start && depth < 2) open_objects.emplace_back();
        return true;
      case json::parse_event_t::object_end:
        if (depth < 2 && !open_objects.empty()) open_objects.pop_back();
        return true;
      case json::parse_event_t::key: {
        if (depth > 2 || open_objects.empty()) return true;
        const auto& key = parsed.get_ref<const std::string&>();
        (depth == 1 ? tensor : field) = key;
        if (!open_objects.back().insert(key).second && !duplicate) {
          duplicate = depth == 1 ? "duplicate tensor name '" + key + "'"
                                 : "tensor '" + tensor + "' has a duplicate key '" + key + "'";
        }
        return true;
      }
      default:
        return true;
    }
  };
  json header;
  try {
    header = json::parse(text, text + n, callback);
  } catch (const json::exception& e) {
    TORCH_CHECK(false, "safetensors '", source, "': header is not valid JSON (", e.what(), ")");
  } catch (const TooDeep&) {
    TORCH_CHECK(false, "safetensors '", source, "', tensor '", tensor, "': \"", field,
                "\" nests JSON deeper than a safetensors header allows");
  }
  TORCH_CHECK(!duplicate, "safetensors '", source, "': ", *duplicate);
  TORCH_CHECK(header.is_object(), "safetensors '", source,
              "': header must be a JSON object, got a ", header.type_name());
  return header;
}

std::string dtype_names() {
  std::string names;
  for (const auto& d : kDtypes) names += std::string(names.empty() ? "" : " ") + d.name;
  return names;
}

Entry parse_entry(const std::string& name, const json& value, uint64_t data_size,
                  const std::string& source) {
  const auto at = where(source, name);
  TORCH_CHECK(value.is_object(), at, "entry must be a JSON object, got ", value.dump());
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    TORCH_CHECK(value.contains(key), at, "entry has no \"", key, "\": ", value.dump());
  }
  Entry e{name, nullptr, {}, 0, 0};

  const auto& dtype = value["dtype"];
  TORCH_CHECK(dtype.is_string(), at, "\"dtype\" must be a string, got ", dtype.dump());
  e.dtype = find_dtype([&](const DtypeInfo& d) { return dtype.get<std::string>() == d.name; });
  TORCH_CHECK(e.dtype != nullptr, at, "unsupported dtype ", dtype.dump(),
              " (supported: ", dtype_names(), ")");

  const auto& shape = value["shape"];
  TORCH_CHECK(shape.is_array(), at, "\"shape\" must be an array of integers, got ", shape.dump());
  // Overflow-checked products: a corrupt shape must not wrap into a size passing the offset checks.
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& dim : shape) {
    TORCH_CHECK(dim.is_number_integer(), at, "\"shape\" must hold integers, got ", shape.dump());
    TORCH_CHECK(dim.is_number_unsigned(), at, "negative dimension ", dim.dump(), " in shape ",
                shape.dump());
    const uint64_t d = dim.get<uint64_t>();
    TORCH_CHECK(d <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), at, "dimension ",
                d, " in shape ", shape.dump(), " overflows int64");
    e.shape.push_back(static_cast<int64_t>(d));
    overflow |= __builtin_mul_overflow(numel, d, &numel);  // once set, numel is never used
  }
  // A zero dimension makes the tensor empty whatever the other dimensions multiply to.
  if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) {
    numel = 0;
    overflow = false;
  }
  TORCH_CHECK(!overflow && numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), at,
              "element count of shape ", shape.dump(), " overflows int64");
  TORCH_CHECK(numel <= std::numeric_limits<uint64_t>::max() / e.dtype->itemsize, at,
              "byte size of ", e.dtype->name, " ", shape.dump(), " overflows 64 bits");
  const uint64_t nbytes = numel * e.dtype->itemsize;

  const auto& offsets = value["data_offsets"];
  TORCH_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                  offsets[1].is_number_unsigned(),
              at, "\"data_offsets\" must be two non-negative integers [begin, end], got ",
              offsets.dump());
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  TORCH_CHECK(e.begin <= e.end, at, "data_offsets ", offsets.dump(), " have begin > end");
  TORCH_CHECK(e.end <= data_size, at, "data_offsets ", offsets.dump(), " end past the ", data_size,
              "-byte data area (truncated file?)");
  TORCH_CHECK(e.end - e.begin == nbytes, at, "data_offsets ", offsets.dump(), " hold ",
              e.end - e.begin, " bytes but ", e.dtype->name, " ", shape.dump(), " needs ", nbytes);
  return e;
}

Header parse_header(const char* text, size_t n, uint64_t data_size, const std::string& source) {
  const json root = parse_header_json(text, n, source);
  Header h;
  for (const auto& [name, value] : root.items()) {
    if (name == kMetadataKey) {
      TORCH_CHECK(value.is_object(), "safetensors '", source,
                  "': \"__metadata__\" must be an object of strings, got ", value.dump());
      for (const auto& [key, v] : value.items()) {
        TORCH_CHECK(v.is_string(), "safetensors '", source, "': metadata value of '", key,
                    "' must be a string, got ", v.dump());
        h.metadata.emplace(key, v.get<std::string>());
      }
      continue;
    }
    h.entries.push_back(parse_entry(name, value, data_size, source));
  }

  // The spec requires the ranges to tile the data area exactly: no overlap (two tensors sharing
  // bytes), no holes and no trailing bytes (room for a polyglot payload).
  std::vector<const Entry*> sorted;
  for (const auto& e : h.entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : sorted) {
    TORCH_CHECK(e->begin >= covered, "safetensors '", source, "': tensor '", e->name,
                "' at data_offsets [", e->begin, ", ", e->end, "] overlaps tensor '",
                previous ? previous->name : "", "' at [", previous ? previous->begin : 0, ", ",
                covered, "]");
    TORCH_CHECK(e->begin == covered, "safetensors '", source, "': bytes [", covered, ", ", e->begin,
                ") of the data area before tensor '", e->name, "' belong to no tensor");
    covered = e->end;
    previous = e;
  }
  TORCH_CHECK(covered == data_size, "safetensors '", source, "': the last ", data_size - covered,
              " bytes of the ", data_size, "-byte data area belong to no tensor");
  return h;
}

// `h`'s tensors, `fill(entry, storage)` writing their bytes; a BOOL byte not 0 or 1 is refused.
template <typename Fill>
SafetensorsFile load_tensors(Header& h, const std::string& source, Fill fill) {
  SafetensorsFile file;
  file.metadata = std::move(h.metadata);
  for (const auto& e : h.entries) {
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->type));
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    // A zero-element tensor may have no storage, and memcpy from null is undefined even for 0.
    if (e.end > e.begin) fill(e, p);
    for (uint64_t i = 0; e.dtype->type == c10::ScalarType::Bool && i < e.end - e.begin; ++i) {
      TORCH_CHECK(p[i] <= 1, where(source, e.name), "BOOL byte ", i, " is ", static_cast<int>(p[i]),
                  ", not 0 or 1");
    }
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

// Owns a POSIX file descriptor; closes it on every exit path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads exactly n bytes at `offset`; throws naming `path` on an error or a short read.
void read_exact(int fd, uint8_t* dst, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    const ssize_t got = ::pread(fd, dst, chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    TORCH_CHECK(got >= 0, "safetensors '", path, "': read failed: ", os_error(errno));
    TORCH_CHECK(got > 0, "safetensors '", path, "': file ended early (truncated while reading?)");
    dst += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

// The opened file and its checked header (the data area's layout included, not its bytes).
struct OpenedFile {
  Fd fd;
  uint64_t header_length = 0;
  Header header;
};

OpenedFile open_safetensors(const std::string& path) {
  // O_NONBLOCK: a FIFO given by mistake is refused below instead of blocking the open forever.
  OpenedFile f{Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK))};
  const Fd& fd = f.fd;
  TORCH_CHECK(fd.get() >= 0, "safetensors: cannot open '", path, "': ", os_error(errno));
  struct stat st {};
  TORCH_CHECK(::fstat(fd.get(), &st) == 0, "safetensors: cannot stat '", path,
              "': ", os_error(errno));
  TORCH_CHECK(S_ISREG(st.st_mode), "safetensors: '", path, "' is not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  TORCH_CHECK(size >= 8, "safetensors '", path, "': ", size,
              " bytes is shorter than the 8-byte header length");

  uint8_t first8[8];
  read_exact(fd.get(), first8, 8, 0, path);
  const uint64_t n = checked_header_length(first8, size, path);
  std::string text(n, '\0');
  read_exact(fd.get(), reinterpret_cast<uint8_t*>(text.data()), n, 8, path);
  f.header_length = n;
  f.header = parse_header(text.data(), n, size - 8 - n, path);
  return f;
}

}  // namespace

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& source) {
  TORCH_CHECK(size >= 8, "safetensors '", source, "': ", size,
              " bytes is shorter than the 8-byte header length");
  TORCH_CHECK(data != nullptr, "safetensors '", source, "': null data pointer");
  const uint64_t n = checked_header_length(data, size, source);
  const uint8_t* area = data + 8 + n;
  Header h = parse_header(reinterpret_cast<const char*>(data + 8), n, size - 8 - n, source);
  return load_tensors(h, source, [&](const Entry& e, uint8_t* dst) {
    std::memcpy(dst, area + e.begin, e.end - e.begin);
  });
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  auto f = open_safetensors(path);
  SafetensorsHeader header;
  header.metadata = std::move(f.header.metadata);
  for (const auto& e : f.header.entries) header.names.push_back(e.name);
  return header;
}

SafetensorsFile read_safetensors(const std::string& path) {
  auto f = open_safetensors(path);
  return load_tensors(f.header, path, [&](const Entry& e, uint8_t* dst) {
    read_exact(f.fd.get(), dst, e.end - e.begin, 8 + f.header_length + e.begin, path);
  });
}

std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  struct Item {
    std::string name;
    const DtypeInfo* dtype;
    torch::Tensor data;  // contiguous, CPU
  };
  std::vector<Item> items;
  for (const auto& [name, tensor] : tensors) {
    TORCH_CHECK(!name.empty(), "safetensors: tensor names must be non-empty");
    TORCH_CHECK(name != kMetadataKey, "safetensors: a tensor cannot be named '", kMetadataKey,
                "' (reserved for the metadata)");
    TORCH_CHECK(tensor.defined(), "safetensors: tensor '", name, "' is undefined");
    const auto type = tensor.scalar_type();  // C++17 lambdas capture no structured binding
    const DtypeInfo* dtype = find_dtype([&](const DtypeInfo& d) { return type == d.type; });
    TORCH_CHECK(dtype != nullptr, "safetensors: tensor '", name, "' has unsupported dtype ", type,
                " (supported: ", dtype_names(), ")");
    items.push_back({name, dtype, tensor.detach().to(torch::kCPU).contiguous()});
  }
  // Largest item size first: with the header padded to 8 bytes every tensor starts aligned.
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (a.dtype->itemsize != b.dtype->itemsize) return a.dtype->itemsize > b.dtype->itemsize;
    return a.name < b.name;
  });

  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& item : items) {
    const uint64_t nbytes = item.data.nbytes();
    header[item.name] = {{"dtype", item.dtype->name},
                         {"shape", item.data.sizes().vec()},
                         {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    TORCH_CHECK(false, "safetensors: a tensor name or metadata string is not valid UTF-8 (",
                e.what(), ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
  out += text;
  for (const auto& item : items) {
    out.append(static_cast<const char*>(item.data.data_ptr()), item.data.nbytes());
  }
  return out;
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const Metadata& metadata) {
  // Serialise first: invalid input throws before anything touches the disk.
  const std::string bytes = serialize_safetensors(tensors, metadata);
  try {
    write_file_atomic(path, bytes);
  } catch (const std::runtime_error& e) {
    TORCH_CHECK(false, "safetensors: ", e.what());
  }
}

}  // namespace ocl::io
