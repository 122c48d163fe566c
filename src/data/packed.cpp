// The pack index codec, the shard writer with its resumable progress file, and the mapped reader.
#include "ocl/data/packed.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "ocl/data/image_folder.h"
#include "ocl/io/files.h"

namespace ocl::data {
namespace {

constexpr char kPackMagic[8] = {'O', 'C', 'L', 'P', 'A', 'C', 'K', '1'};
constexpr char kEndMagic[8] = {'O', 'C', 'L', 'P', 'A', 'C', 'K', 'E'};
constexpr uint32_t kPackVersion = 1;
constexpr size_t kRecordBytes = 32;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 4 + 4 + 8;

// Little-endian encoding into a byte string.
void put(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads fields from an index file's bytes; running past the end is a truncated index.
class Cursor {
 public:
  Cursor(const std::string& bytes, const std::string& path) : bytes_(bytes), path_(path) {}
  uint64_t get(int n) {
    need(static_cast<size_t>(n));
    uint64_t v = 0;
    for (int i = 0; i < n; ++i)
      v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes_[at_ + i])) << (8 * i);
    at_ += static_cast<size_t>(n);
    return v;
  }
  std::string take(size_t n) {
    need(n);
    std::string s = bytes_.substr(at_, n);
    at_ += n;
    return s;
  }
  size_t at() const { return at_; }

 private:
  void need(size_t n) const {
    if (bytes_.size() - at_ < n)
      throw std::runtime_error("pack index '" + path_ + "' is truncated (" +
                               std::to_string(bytes_.size()) + " bytes)");
  }
  const std::string& bytes_;
  const std::string& path_;
  size_t at_ = 0;
};

void write_all(int fd, const uint8_t* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot write '" + path + "': " + io::os_error(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

std::string shard_name(uint32_t shard) {
  char name[32];
  std::snprintf(name, sizeof name, "shard-%05u.bin", shard);
  return name;
}

// Whether the shard's first record (when it lies within `available` bytes of `fd`) has the
// checksum the index gives it: a truncated shard does, another pack's shard does not.
bool first_record_matches(const PackIndex& index, int fd, uint32_t shard, uint64_t available) {
  for (const auto& r : index.records) {
    if (r.shard != shard) continue;
    if (r.offset + r.size > available) return true;  // nothing to check before the cut
    std::vector<uint8_t> bytes(r.size);
    const ssize_t n = ::pread(fd, bytes.data(), bytes.size(), static_cast<off_t>(r.offset));
    return n == static_cast<ssize_t>(bytes.size()) &&
           pack_crc32(bytes.data(), bytes.size()) == r.crc32;
  }
  return true;
}

}  // namespace

const char* pack_encoding_name(PackEncoding encoding) {
  return encoding == PackEncoding::Raw ? "raw" : "jpeg";
}

std::string pack_index_path(const std::string& folder) { return folder + "/index.ocl"; }
std::string pack_progress_path(const std::string& folder) { return folder + "/progress.ocl"; }
std::string pack_shard_path(const std::string& folder, uint32_t shard) {
  return folder + "/" + shard_name(shard);
}

Image shrink_to_short_side(const Image& image, int max_short_side, Interpolation interpolation) {
  const int short_side = std::min(image.height, image.width);
  if (max_short_side <= 0 || short_side <= max_short_side) return image;
  const double scale = static_cast<double>(max_short_side) / short_side;
  const int height = image.height <= image.width
                         ? max_short_side
                         : std::max(1, static_cast<int>(std::lround(image.height * scale)));
  const int width = image.width < image.height
                        ? max_short_side
                        : std::max(1, static_cast<int>(std::lround(image.width * scale)));
  return resize_image(image, height, width, interpolation);
}

uint32_t pack_crc32(const uint8_t* data, size_t size) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  while (size > 0) {  // zlib takes uInt lengths
    const uInt n = static_cast<uInt>(std::min<size_t>(size, std::numeric_limits<uInt>::max()));
    crc = ::crc32(crc, data, n);
    data += n;
    size -= n;
  }
  return static_cast<uint32_t>(crc);
}

void write_pack_index(const std::string& path, const PackIndex& index) {
  std::string out(kPackMagic, sizeof kPackMagic);
  std::string names;
  for (const auto& n : index.class_names) names += n + "\n";
  put(out, kPackVersion, 4);
  put(out, static_cast<uint32_t>(index.encoding), 4);
  put(out, index.records.size(), 8);
  put(out, index.shard_sizes.size(), 4);
  put(out, index.class_names.size(), 4);
  put(out, names.size(), 8);
  out += names;
  put(out, index.writer_options.size(), 8);
  out += index.writer_options;
  for (uint64_t s : index.shard_sizes) put(out, s, 8);
  for (const auto& r : index.records) {
    put(out, r.shard, 4);
    put(out, r.size, 4);
    put(out, r.offset, 8);
    put(out, static_cast<uint32_t>(r.label), 4);
    put(out, r.height, 2);
    put(out, r.width, 2);
    put(out, r.crc32, 4);
    put(out, r.source, 4);
  }
  put(out, pack_crc32(reinterpret_cast<const uint8_t*>(out.data()), out.size()), 4);
  out.append(kEndMagic, sizeof kEndMagic);
  io::write_file_atomic(path, out);
}

// The index's records after its shard sizes, each checked against them and the header.
template <class Bad>
void read_records(Cursor& c, PackIndex& index, uint64_t records, uint32_t shards, uint32_t classes,
                  const Bad& bad) {
  index.records.resize(static_cast<size_t>(records));
  for (uint64_t i = 0; i < records; ++i) {
    PackRecord& r = index.records[i];
    r.shard = static_cast<uint32_t>(c.get(4));
    r.size = static_cast<uint32_t>(c.get(4));
    r.offset = c.get(8);
    r.label = static_cast<int32_t>(static_cast<uint32_t>(c.get(4)));
    r.height = static_cast<uint16_t>(c.get(2));
    r.width = static_cast<uint16_t>(c.get(2));
    r.crc32 = static_cast<uint32_t>(c.get(4));
    r.source = static_cast<uint32_t>(c.get(4));
    const std::string where = "record " + std::to_string(i);
    if (r.shard >= shards)
      throw bad(fmt::format("{} is in shard {} of {}", where, r.shard, shards));
    if (r.offset > index.shard_sizes[r.shard] || r.size > index.shard_sizes[r.shard] - r.offset)
      throw bad(fmt::format("{} lies outside {} ({} bytes)", where, shard_name(r.shard),
                            index.shard_sizes[r.shard]));
    // As PackWriter::add: at least 1 x 1 pixels in 1 byte (0 x 0 raw would pass the size check).
    if (r.height == 0 || r.width == 0 || r.size == 0)
      throw bad(
          fmt::format("{} holds an image of {} x {} pixels in {} bytes (a record is at least "
                      "1 x 1 pixels, 1 byte)",
                      where, r.height, r.width, r.size));
    if (r.label < 0 || static_cast<uint32_t>(r.label) >= classes)
      throw bad(fmt::format("{} has label {} of {} classes", where, r.label, classes));
    if (index.encoding == PackEncoding::Raw && uint64_t{r.size} != uint64_t{r.height} * r.width * 3)
      throw bad(
          fmt::format("{}: raw size {} is not {} x {} x 3", where, r.size, r.height, r.width));
  }
}

PackIndex read_pack_index(const std::string& path) {
  const std::string bytes = io::read_text_file(path);
  auto bad = [&](const std::string& what) {
    return std::runtime_error("pack index '" + path + "': " + what);
  };
  if (bytes.size() < sizeof kPackMagic ||
      std::memcmp(bytes.data(), kPackMagic, sizeof kPackMagic) != 0)
    throw bad("not an ocl pack index (no OCLPACK1 header)");
  const size_t trailer = 4 + sizeof kEndMagic;
  if (bytes.size() < kHeaderBytes + trailer ||
      std::memcmp(bytes.data() + bytes.size() - sizeof kEndMagic, kEndMagic, sizeof kEndMagic) != 0)
    throw bad("truncated (" + std::to_string(bytes.size()) + " bytes, no end marker)");
  const size_t body = bytes.size() - trailer;
  Cursor crc_at(bytes, path);
  crc_at.take(body);
  const auto stored = static_cast<uint32_t>(crc_at.get(4));
  const uint32_t computed = pack_crc32(reinterpret_cast<const uint8_t*>(bytes.data()), body);
  if (stored != computed) throw bad("checksum mismatch: the index is corrupt");

  Cursor c(bytes, path);
  c.take(sizeof kPackMagic);
  const auto version = static_cast<uint32_t>(c.get(4));
  if (version != kPackVersion)
    throw bad(fmt::format("format version {}, this build reads version {}", version, kPackVersion));
  PackIndex index;
  const auto encoding = static_cast<uint32_t>(c.get(4));
  if (encoding > 1) throw bad("unknown encoding " + std::to_string(encoding));
  index.encoding = static_cast<PackEncoding>(encoding);
  const uint64_t records = c.get(8);
  const auto shards = static_cast<uint32_t>(c.get(4));
  const auto classes = static_cast<uint32_t>(c.get(4));
  const uint64_t names_bytes = c.get(8);
  if (names_bytes > body) throw bad("class names larger than the file");
  const std::string names = c.take(static_cast<size_t>(names_bytes));
  size_t start = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == '\n') {
      index.class_names.push_back(names.substr(start, i - start));
      start = i + 1;
    }
  }
  if (index.class_names.size() != classes || start != names.size())
    throw bad(
        fmt::format("holds {} class names, header says {}", index.class_names.size(), classes));
  const uint64_t options_bytes = c.get(8);
  if (options_bytes > body) throw bad("writer options larger than the file");
  index.writer_options = c.take(static_cast<size_t>(options_bytes));
  // records · 32 is compared only once it cannot wrap (a count near 2^64 could match a small file).
  const uint64_t rest = body - c.at();
  if (records > rest / kRecordBytes || rest != uint64_t{shards} * 8 + records * kRecordBytes)
    throw bad(fmt::format("size does not match {} shards and {} records", shards, records));
  for (uint32_t s = 0; s < shards; ++s) index.shard_sizes.push_back(c.get(8));
  read_records(c, index, records, shards, classes, bad);
  return index;
}

PackWriter::PackWriter(const std::string& folder, std::vector<std::string> class_names,
                       PackWriterOptions options, bool resume)
    : folder_(folder), options_(std::move(options)) {
  if (options_.max_shard_bytes == 0)
    throw std::invalid_argument("PackWriter: max_shard_bytes must be > 0");
  for (const auto& n : class_names) {
    if (n.find('\n') != std::string::npos)
      throw std::invalid_argument("PackWriter: class name with a newline: '" + n + "'");
  }
  io::make_dirs(folder_);
  if (io::path_exists(pack_index_path(folder_)))
    throw std::runtime_error("'" + folder_ +
                             "' already holds a finished pack (index.ocl): remove it or write "
                             "to another folder");
  index_.encoding = options_.encoding;
  index_.class_names = std::move(class_names);
  index_.writer_options = options_.description;
  const std::string progress = pack_progress_path(folder_);
  if (io::path_exists(progress)) {
    if (!resume)
      throw std::runtime_error("'" + folder_ +
                               "' holds a pack in progress (progress.ocl): resume it, or remove "
                               "the folder to start again");
    PackIndex done = read_pack_index(progress);
    if (done.writer_options != options_.description || done.encoding != options_.encoding ||
        done.class_names != index_.class_names)
      throw std::runtime_error("the pack in progress in '" + folder_ + "' was started with '" +
                               done.writer_options + "', not '" + options_.description +
                               "' (or other classes): remove the folder to start again");
    for (uint32_t s = 0; s < done.shard_sizes.size(); ++s) {
      const std::string path = pack_shard_path(folder_, s);
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) < done.shard_sizes[s])
        throw std::runtime_error("cannot resume the pack in '" + folder_ + "': " + path +
                                 " is missing or shorter than progress.ocl says");
      if (static_cast<uint64_t>(st.st_size) > done.shard_sizes[s] &&
          ::truncate(path.c_str(), static_cast<off_t>(done.shard_sizes[s])) != 0)
        throw std::runtime_error("cannot truncate '" + path + "': " + io::os_error(errno));
    }
    index_ = std::move(done);
  }
  // Shards after the last closed one are what an interruption left: start them again.
  for (uint32_t s = static_cast<uint32_t>(index_.shard_sizes.size());; ++s) {
    const std::string path = pack_shard_path(folder_, s);
    if (!io::path_exists(path)) break;
    std::remove(path.c_str());
  }
}

PackWriter::~PackWriter() {
  if (fd_ >= 0) ::close(fd_);  // an unfinished shard: a resumed writer discards it
}

void PackWriter::open_shard() {
  const std::string path =
      pack_shard_path(folder_, static_cast<uint32_t>(index_.shard_sizes.size()));
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot create '" + path + "': " + io::os_error(errno));
  shard_bytes_ = 0;
}

void PackWriter::close_shard() {
  const std::string path =
      pack_shard_path(folder_, static_cast<uint32_t>(index_.shard_sizes.size()));
  if (::fsync(fd_) != 0)
    throw std::runtime_error("cannot sync '" + path + "': " + io::os_error(errno));
  ::close(fd_);
  fd_ = -1;
  index_.shard_sizes.push_back(shard_bytes_);
  write_pack_index(pack_progress_path(folder_), index_);
}

int64_t PackWriter::next_source() const {
  return index_.records.empty() ? 0 : int64_t{index_.records.back().source} + 1;
}

void PackWriter::add(const uint8_t* data, size_t size, int32_t label, int height, int width,
                     int64_t source) {
  if (finished_) throw std::logic_error("PackWriter::add after finish()");
  if (label < 0 || static_cast<size_t>(label) >= index_.class_names.size())
    throw std::invalid_argument(
        fmt::format("PackWriter::add: label {} of {} classes", label, index_.class_names.size()));
  if (height <= 0 || width <= 0 || height > 65535 || width > 65535)
    throw std::invalid_argument(
        fmt::format("PackWriter::add: image size {} x {} outside 1..65535", height, width));
  if (size == 0 || size > std::numeric_limits<uint32_t>::max())
    throw std::invalid_argument("PackWriter::add: record of " + std::to_string(size) + " bytes");
  if (options_.encoding == PackEncoding::Raw &&
      size != static_cast<size_t>(height) * static_cast<size_t>(width) * 3)
    throw std::invalid_argument(fmt::format(
        "PackWriter::add: raw record of {} bytes is not {} x {} x 3", size, height, width));
  if (fd_ >= 0 && shard_bytes_ > 0 && shard_bytes_ + size > options_.max_shard_bytes) close_shard();
  if (fd_ < 0) open_shard();
  const uint32_t shard = static_cast<uint32_t>(index_.shard_sizes.size());
  write_all(fd_, data, size, pack_shard_path(folder_, shard));
  PackRecord r;
  r.shard = shard;
  r.size = static_cast<uint32_t>(size);
  r.offset = shard_bytes_;
  r.label = label;
  r.height = static_cast<uint16_t>(height);
  r.width = static_cast<uint16_t>(width);
  r.crc32 = pack_crc32(data, size);
  const int64_t src = source >= 0 ? source : static_cast<int64_t>(index_.records.size());
  if (src > std::numeric_limits<uint32_t>::max())
    throw std::invalid_argument("PackWriter::add: source index " + std::to_string(src) +
                                " beyond 2^32");
  r.source = static_cast<uint32_t>(src);
  index_.records.push_back(r);
  shard_bytes_ += size;
}

void PackWriter::flush() {
  if (fd_ >= 0) close_shard();
}

void PackWriter::finish() {
  if (finished_) return;
  if (fd_ >= 0) close_shard();
  if (index_.records.empty())
    throw std::runtime_error("no images were packed into '" + folder_ + "'");
  PackIndex final_index = index_;
  final_index.writer_options.clear();
  write_pack_index(pack_index_path(folder_), final_index);
  std::remove(pack_progress_path(folder_).c_str());
  finished_ = true;
}

struct PackedDataset::Mapping {
  std::string path;
  const uint8_t* data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data != nullptr) ::munmap(const_cast<uint8_t*>(data), size);
  }
};

PackedDataset::PackedDataset(const std::string& folder) : folder_(folder) {
  const std::string index_path = pack_index_path(folder_);
  if (!io::path_exists(index_path))
    throw std::runtime_error("'" + folder_ + "' is not a pack: no index.ocl" +
                             (io::path_exists(pack_progress_path(folder_))
                                  ? " (ocl_pack did not finish: rerun it)"
                                  : ""));
  index_ = read_pack_index(index_path);
  for (uint32_t s = 0; s < index_.shard_sizes.size(); ++s) {
    auto m = std::make_unique<Mapping>();
    m->path = pack_shard_path(folder_, s);
    const int fd = ::open(m->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw std::runtime_error("pack '" + folder_ + "': cannot open " + shard_name(s) + ": " +
                               io::os_error(errno));
    struct stat st {};
    ::fstat(fd, &st);
    const auto actual = static_cast<uint64_t>(st.st_size);
    const uint64_t expected = index_.shard_sizes[s];
    if (actual != expected) {
      std::string why = " (the index and the shards do not belong together)";
      if (actual < expected && !first_record_matches(index_, fd, s, actual)) {
        why = " and its first record does not match the index's checksum" + why;
      } else if (actual < expected) {
        why = " (truncated";
        for (size_t i = 0; i < index_.records.size(); ++i) {
          const auto& r = index_.records[i];
          if (r.shard == s && r.offset + r.size > actual) {
            why += ", from record " + std::to_string(i) + " on";
            break;
          }
        }
        why += ")";
      }
      ::close(fd);
      throw std::runtime_error(fmt::format("pack '{}': {} has {} bytes, the index says {}{}",
                                           folder_, shard_name(s), actual, expected, why));
    }
    if (expected > 0) {
      void* p = ::mmap(nullptr, static_cast<size_t>(expected), PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const std::string why = io::os_error(errno);
        ::close(fd);
        throw std::runtime_error("pack '" + folder_ + "': cannot map " + shard_name(s) + ": " +
                                 why);
      }
      // Records are read in a shuffled order: no read-ahead beyond the pages asked for.
      ::madvise(p, static_cast<size_t>(expected), MADV_RANDOM);
      m->data = static_cast<const uint8_t*>(p);
      m->size = static_cast<size_t>(expected);
    }
    ::close(fd);  // the mapping stays valid
    shards_.push_back(std::move(m));
  }
}

PackedDataset::~PackedDataset() = default;

const PackRecord& PackedDataset::record(int64_t index) const {
  if (index < 0 || index >= size())
    throw std::out_of_range("pack '" + folder_ + "': record " + std::to_string(index) +
                            " out of range [0, " + std::to_string(size()) + ")");
  return index_.records[static_cast<size_t>(index)];
}

int64_t PackedDataset::label(int64_t index) const { return record(index).label; }

std::optional<Image> PackedDataset::load(int64_t index, BadSample* error) const {
  return load_region(index, RegionPlanner{}, error);
}

std::optional<Image> PackedDataset::load_region(int64_t index, const RegionPlanner& plan,
                                                BadSample* error) const {
  const PackRecord& r = record(index);
  const uint8_t* data = shards_[r.shard]->data + r.offset;
  // The mapping is MADV_RANDOM: ask for the (never empty) record's pages at once, in one read.
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(begin), reinterpret_cast<uintptr_t>(data) + r.size - begin,
            MADV_WILLNEED);
  const uint32_t crc = pack_crc32(data, r.size);
  if (crc != r.crc32)
    throw std::runtime_error(
        fmt::format("pack '{}': record {} in {} is corrupt (CRC-32 {}, the index says {})", folder_,
                    index, shard_name(r.shard), crc, r.crc32));
  if (index_.encoding == PackEncoding::Raw) {
    const int h = static_cast<int>(r.height), w = static_cast<int>(r.width);
    const DecodeRegion region = plan ? plan(h, w) : DecodeRegion{};
    if (region.height <= 0 || region.width <= 0) return Image{h, w, {data, data + r.size}, {}};
    Image image;
    // Raw pixels need no decoding: copy just the crop's rows and columns (scale ignored).
    const int top = std::clamp(region.top, 0, h - 1), left = std::clamp(region.left, 0, w - 1);
    image.height = std::clamp(region.height, 1, h - top);
    image.width = std::clamp(region.width, 1, w - left);
    image.window = SourceWindow{h, w, top, left, 1};
    image.pixels.resize(static_cast<size_t>(image.height) * image.width * 3);
    const size_t row = static_cast<size_t>(image.width) * 3;
    for (int y = 0; y < image.height; ++y) {
      std::memcpy(image.pixels.data() + y * row,
                  data + (static_cast<size_t>(top + y) * w + left) * 3, row);
    }
    return image;
  }
  std::string reason;
  auto image = decode_image(data, r.size, plan, &reason);
  if (!image && error != nullptr)
    *error = BadSample{index, shards_[r.shard]->path + " record " + std::to_string(index), reason};
  return image;
}

std::string PackedDataset::describe() const {
  uint64_t bytes = 0;
  for (uint64_t s : index_.shard_sizes) bytes += s;
  const double mib = static_cast<double>(bytes) / (1u << 20);
  char amount[32];
  if (mib >= 1024) {
    std::snprintf(amount, sizeof amount, "%.2f GiB", mib / 1024);
  } else {
    std::snprintf(amount, sizeof amount, "%.1f MiB", mib);
  }
  return std::string("packed (") + pack_encoding_name(index_.encoding) + "): " + folder_ + ", " +
         std::to_string(size()) + " images, " + std::to_string(num_classes()) + " classes, " +
         std::to_string(index_.shard_sizes.size()) + " shards, " + amount;
}

}  // namespace ocl::data
