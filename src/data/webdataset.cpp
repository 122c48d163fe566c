// WebDataset shards read in place (see include/ocl/data/webdataset.h).
#include "ocl/data/webdataset.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

#include <sys/stat.h>

#include "ocl/data/image_folder.h"  // decode_image
#include "ocl/data/shard_stream.h"
#include "ocl/data/tar_index.h"
#include "ocl/io/files.h"

namespace ocl::data {
namespace {
namespace fs = std::filesystem;

constexpr const char* kIndexMagic = "ocl-wds-index 2";
constexpr const char* kImageExtensions[] = {"jpg", "jpeg", "png", "webp"};
// A million classes: far past any public label set (ImageNet-21k has 21,841), and small enough
// that the class list, the kNN votes and a probe's head stay in memory. A .cls beyond it is
// damaged data, named as such, not a reason to allocate gigabytes.
constexpr int64_t kMaxLabel = 999'999;
constexpr int64_t kMaxTrustedGapNs = 2'000'000'000;  // see the header: modified near indexing

// ---- the shard spec ---------------------------------------------------------------------------

// Expands the first brace of `pattern` (recursively the rest); appends to `out`.
void expand_braces(const std::string& pattern, const std::string& spec,
                   std::vector<std::string>* out) {
  auto bad = [&](const std::string& why) {
    return std::runtime_error("shard pattern '" + spec + "': " + why);
  };
  const size_t open = pattern.find('{');
  if (open == std::string::npos) {
    if (pattern.find('}') != std::string::npos) throw bad("a '}' without its '{'");
    out->push_back(pattern);
    return;
  }
  const size_t close = pattern.find('}', open);
  if (close == std::string::npos) throw bad("a '{' without its '}'");
  const std::string inside = pattern.substr(open + 1, close - open - 1);
  const std::string head = pattern.substr(0, open), tail = pattern.substr(close + 1);
  if (inside.find('{') != std::string::npos) throw bad("nested braces are not supported");
  std::vector<std::string> choices;
  const size_t dots = inside.find("..");
  if (dots != std::string::npos) {
    const std::string a = inside.substr(0, dots), b = inside.substr(dots + 2);
    auto number = [&](const std::string& s) {
      if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
        throw bad("'{" + inside + "}' is not a range of non-negative integers");
      return std::stoll(s);
    };
    const int64_t from = number(a), to = number(b);
    if (to < from) throw bad("the range {" + inside + "} is empty (it counts down)");
    if (to - from >= 10'000'000)
      throw bad("the range {" + inside + "} names more than 10,000,000 shards");
    const size_t width = a.size() > 1 && a[0] == '0' ? a.size() : 0;  // zero padding
    for (int64_t i = from; i <= to; ++i) {
      std::string s = std::to_string(i);
      if (s.size() < width) s.insert(0, width - s.size(), '0');
      choices.push_back(s);
    }
  } else {
    std::stringstream in(inside);
    std::string item;
    while (std::getline(in, item, ',')) choices.push_back(item);
    if (inside.empty() || inside.back() == ',') choices.push_back("");
    if (choices.size() < 2)
      throw bad("'{" + inside + "}' is neither a range {a..b} nor a list {x,y}");
  }
  for (const auto& c : choices) expand_braces(head + c + tail, spec, out);
}

// ---- the cached index -------------------------------------------------------------------------

struct ShardStamp {
  int64_t size = 0, mtime_ns = 0;
  bool operator==(const ShardStamp& o) const { return size == o.size && mtime_ns == o.mtime_ns; }
};

ShardStamp stamp_of(const struct stat& st) {
  return {static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

int64_t now_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// The index file of a shard: beside it, or in the cache folder under its absolute path's name.
std::vector<std::string> index_paths(const std::string& shard, const std::string& cache_dir) {
  std::vector<std::string> paths = {shard + ".ocl-index"};
  if (!cache_dir.empty()) {
    std::string name = fs::absolute(shard).lexically_normal().string();
    for (char& c : name) {
      if (c == '/') c = '%';
    }
    paths.push_back((fs::path(cache_dir) / (name + ".ocl-index")).string());
  }
  return paths;
}

// One shard's samples, labels as in its .cls (-1: none), and whether tar's end-of-archive blocks
// close it (index_tar's `ended`).
struct ShardIndex {
  std::vector<WebDataset::Sample> samples;
  bool ended = true;
};

// The text index: magic / "shard <size> <mtime_ns> <indexed_ns> <ended 0|1>" / "samples <n>" / per
// sample "<offset> <size> <label> <image member>". Members with line breaks make no index.
bool write_index(const std::string& path, const ShardStamp& stamp, int64_t indexed_ns,
                 const ShardIndex& index) {
  std::ostringstream out;
  out << kIndexMagic << "\nshard " << stamp.size << " " << stamp.mtime_ns << " " << indexed_ns
      << " " << index.ended << "\nsamples " << index.samples.size() << "\n";
  for (const auto& s : index.samples) {
    if (s.member.find_first_of("\r\n") != std::string::npos) return false;
    out << s.offset << " " << s.size << " " << s.label << " " << s.member << "\n";
  }
  try {
    io::write_text_atomic(path, out.str());
    return true;
  } catch (const std::runtime_error&) {
    return false;  // an unwritable folder: the caller tries the next place
  }
}

// The cached samples when the index matches the shard; nullopt (index again) otherwise.
std::optional<ShardIndex> read_index(const std::string& path, const ShardStamp& stamp,
                                     uint32_t shard) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string line, word;
  if (!std::getline(in, line) || line != kIndexMagic) return std::nullopt;
  ShardStamp cached;
  int64_t indexed_ns = 0;
  size_t n = 0;
  if (!std::getline(in, line)) return std::nullopt;
  std::istringstream head(line);
  ShardIndex index;
  if (!(head >> word >> cached.size >> cached.mtime_ns >> indexed_ns >> index.ended) ||
      word != "shard")
    return std::nullopt;
  if (!(cached == stamp) || indexed_ns - stamp.mtime_ns < kMaxTrustedGapNs) return std::nullopt;
  if (!std::getline(in, line)) return std::nullopt;
  std::istringstream count(line);
  if (!(count >> word >> n) || word != "samples") return std::nullopt;
  auto& samples = index.samples;
  samples.reserve(std::min<size_t>(n, 1 << 20));
  for (size_t i = 0; i < n; ++i) {
    if (!std::getline(in, line)) return std::nullopt;
    std::istringstream row(line);
    WebDataset::Sample s;
    s.shard = shard;
    int64_t label = 0;
    if (!(row >> s.offset >> s.size >> label) || row.get() != ' ') return std::nullopt;
    std::getline(row, s.member);
    if (s.member.empty() || label < -1 || label > kMaxLabel ||
        s.size > static_cast<uint64_t>(stamp.size) ||
        s.offset > static_cast<uint64_t>(stamp.size) - s.size)
      return std::nullopt;
    s.label = static_cast<int32_t>(label);
    samples.push_back(std::move(s));
  }
  if (std::getline(in, line)) return std::nullopt;  // more than it said
  return index;
}

// Reads one shard's headers into samples (the slow path the cache spares).
ShardIndex index_shard(int fd, const std::string& shard, uint64_t size, uint32_t shard_id) {
  const auto read = file_reader(fd, shard);
  ShardIndex index;
  const auto members = index_tar(read, size, shard, &index.ended);
  const auto groups = group_samples(members, shard);
  auto& samples = index.samples;
  samples.reserve(groups.size());
  bool with_label = false, without_label = false;
  std::string first_without;
  for (const auto& g : groups) {
    // The last sample short of its image or label where no end-of-archive block follows: the shard
    // was cut inside it (not a sample written without them).
    const bool last_of_cut = !index.ended && &g == &groups.back();
    auto cut_short = [&] {
      return std::runtime_error(shard + ": the shard ends inside sample '" + printable(g.key) +
                                "', after its member '" + printable(members.back().name) +
                                "' at byte " + std::to_string(size) +
                                " (the shard's size): it was cut short");
    };
    WebDataset::Sample s;
    s.shard = shard_id;
    const TarMember* image = nullptr;
    for (const char* ext : kImageExtensions) {
      const auto it = g.parts.find(ext);
      if (it == g.parts.end()) continue;
      const TarMember& m = members[it->second];
      if (image != nullptr) {
        throw std::runtime_error(shard + ": sample '" + printable(g.key) + "' has two images, '" +
                                 printable(image->name) + "' and '" + printable(m.name) + "'");
      }
      image = &m;
    }
    if (image == nullptr) {
      if (last_of_cut) throw cut_short();
      std::string names;
      size_t listed = 0;
      for (const auto& [ext, i] : g.parts) {
        if (++listed <= 4) names += (names.empty() ? "" : ", ") + printable(members[i].name);
      }
      if (listed > 4) names += " and " + std::to_string(listed - 4) + " more";
      throw std::runtime_error(
          shard + ": sample '" + printable(g.key) +
          "' has no image (.jpg, .jpeg, .png or .webp); its members: " + names);
    }
    s.offset = image->offset;
    s.size = image->size;
    s.member = image->name;
    const auto cls = g.parts.find("cls");
    if (cls == g.parts.end()) {
      if (last_of_cut && with_label) throw cut_short();
      s.label = -1;
      if (!without_label) first_without = g.key;
      without_label = true;
    } else {
      const TarMember& m = members[cls->second];
      const std::string where = shard + ": member '" + printable(m.name) + "'";
      if (m.size > 64)
        throw std::runtime_error(where + " holds " + std::to_string(m.size) +
                                 " bytes, not a class index");
      std::string text(static_cast<size_t>(m.size), '\0');
      if (read(m.offset, text.size(), reinterpret_cast<uint8_t*>(text.data())) != text.size())
        throw std::runtime_error(where + " cannot be read: truncated");
      s.label = parse_class_index(text, where);
      with_label = true;
    }
    samples.push_back(std::move(s));
  }
  if (with_label && without_label) {
    throw std::runtime_error(shard + ": sample '" + printable(first_without) +
                             "' has no .cls member while other samples have one");
  }
  return index;
}

bool read_member(const std::string& shard, uint64_t offset, uint64_t size,
                 std::vector<uint8_t>* bytes, std::string* reason) {
  const int fd = ::open(shard.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *reason = std::string("cannot open the shard: ") + std::strerror(errno);
    return false;
  }
  bytes->resize(static_cast<size_t>(size));
  size_t got = 0;
  try {
    got = file_reader(fd, shard)(offset, bytes->size(), bytes->data());
  } catch (const std::system_error& e) {
    *reason = e.what();
  }
  ::close(fd);
  if (reason->empty() && got != bytes->size())
    *reason = "the shard ends inside the image (changed since it was indexed?)";
  return reason->empty();
}

// Whether `spec` names one shard: by its name, or for a file by its bytes (a list of shards is
// text, while tar headers and gzip's header hold NUL bytes).
bool names_a_shard(const std::string& spec) {
  for (const char* ext : {".tar", ".tgz", ".tar.gz", ".tar.xz", ".tar.zst"}) {
    const size_t n = std::strlen(ext);
    if (spec.size() >= n && spec.compare(spec.size() - n, n, ext) == 0) return true;
  }
  std::ifstream in(spec, std::ios::binary);
  char head[512];
  in.read(head, sizeof(head));
  return std::memchr(head, 0, static_cast<size_t>(in.gcount())) != nullptr;
}

}  // namespace

namespace {

std::vector<std::string> expand_spec(const std::string& spec) {
  if (spec.empty()) throw std::runtime_error("no shards: the shard pattern is empty");
  std::error_code ec;
  if (fs::is_directory(spec, ec)) {
    throw std::runtime_error("'" + spec +
                             "' is a folder: name the shards by a pattern "
                             "(/data/train-{000000..000127}.tar), one .tar file, or a text file "
                             "listing one shard per line");
  }
  std::vector<std::string> shards;
  if (spec.find('{') != std::string::npos || is_remote_shard(spec) || names_a_shard(spec)) {
    expand_braces(spec, spec, &shards);
  } else {
    std::ifstream in(spec);
    if (!in) {
      throw std::runtime_error("'" + spec +
                               "' is neither a shard pattern (ending in .tar, braces for "
                               "ranges) nor a readable list of shards");
    }
    const fs::path base = fs::path(spec).parent_path();
    std::string line;
    for (int64_t number = 1; std::getline(in, line); ++number) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      const size_t start = line.find_first_not_of(' ');
      if (start == std::string::npos || line[start] == '#') continue;
      if (printable(line, 4096) != line) {
        throw std::runtime_error("the shard list '" + spec + "', line " + std::to_string(number) +
                                 ": '" + printable(line, 60) +
                                 "' is not a path (one shard's path per line, as text)");
      }
      const fs::path p(line.substr(start));
      shards.push_back(p.is_absolute() || is_remote_shard(p.string()) ? p.string()
                                                                      : (base / p).string());
    }
    if (shards.empty()) throw std::runtime_error("the shard list '" + spec + "' names no shard");
  }
  std::set<std::string> seen;
  for (const auto& s : shards) {
    if (!seen.insert(fs::path(s).lexically_normal().string()).second)
      throw std::runtime_error("shard '" + s + "' is named twice by '" + spec + "'");
  }
  return shards;
}

}  // namespace

std::vector<std::string> expand_shard_spec(const std::string& spec) {
  try {
    return expand_spec(spec);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(redact(e.what()));  // a URL's credentials stay out of messages
  }
}

int32_t parse_class_index(const std::string& text, const std::string& where) {
  size_t a = 0, b = text.size();
  while (a < b && std::isspace(static_cast<unsigned char>(text[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(text[b - 1]))) --b;
  const std::string t = text.substr(a, b - a);
  if (t.empty() || t.size() > 20 || t.find_first_not_of("0123456789") != std::string::npos) {
    throw std::runtime_error(where + " holds '" + printable(t, 40) +
                             "', not a class index (a decimal integer from 0)");
  }
  const unsigned long long v = std::stoull(t);
  if (v > static_cast<unsigned long long>(kMaxLabel)) {
    throw std::runtime_error(where + " holds class " + t +
                             ", out of range: ocl takes class indices 0 .. " +
                             std::to_string(kMaxLabel) + " (a million classes)");
  }
  return static_cast<int32_t>(v);
}

WebDataset::WebDataset(const std::string& spec, const WebDatasetOptions& options)
    : spec_(spec), shards_(expand_shard_spec(spec)) {
  if (shards_.size() > std::numeric_limits<uint32_t>::max())
    throw std::runtime_error("'" + spec + "' names too many shards");
  bool printed = false;
  bool labelled = false, unlabelled = false;
  // Shards of 0 bytes, and shards that end without tar's end-of-archive blocks.
  std::vector<std::string> empty, cut;
  std::string first_unlabelled_shard;
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    const std::string& shard = shards_[i];
    const int fd = ::open(shard.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      throw std::runtime_error("shard '" + shard + "' (from '" + spec +
                               "') cannot be opened: " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw std::runtime_error("shard '" + shard + "' is " +
                               (S_ISDIR(st.st_mode) ? "a folder" : "not a regular file") +
                               ", not a tar file");
    }
    const ShardStamp stamp = stamp_of(st);
    std::optional<ShardIndex> index;
    const auto paths = index_paths(shard, options.cache_dir);
    if (options.use_cache) {
      for (const auto& p : paths) {
        index = read_index(p, stamp, i);
        if (index) break;
      }
    }
    if (!index) {
      if (options.progress) {
        std::fprintf(stderr, "\rwebdataset: indexing shard %u of %zu (%s)", i + 1, shards_.size(),
                     shard.c_str());
        printed = true;
      }
      const int64_t started = now_ns();
      try {
        index = index_shard(fd, shard, static_cast<uint64_t>(stamp.size), i);
      } catch (...) {
        ::close(fd);
        if (printed) std::fprintf(stderr, "\n");
        throw;
      }
      ++shards_indexed_;
      const int64_t indexed = now_ns();
      index_seconds_ += static_cast<double>(indexed - started) * 1e-9;
      bool cached = !options.use_cache;
      for (const auto& p : paths) {
        if (!cached) cached = write_index(p, stamp, indexed, *index);
      }
      if (!cached) {
        warnings_.push_back("webdataset: no writable place for the index of '" + shard +
                            "' (beside it, or data.cache_dir): it is indexed on every start");
      }
    }
    ::close(fd);
    if (stamp.size == 0) {
      empty.push_back(shard);
    } else if (!index->ended) {
      cut.push_back(shard);
    }
    for (auto& s : index->samples) {
      (s.label < 0 ? unlabelled : labelled) = true;
      if (s.label < 0 && first_unlabelled_shard.empty()) first_unlabelled_shard = shard;
      samples_.push_back(std::move(s));
    }
  }
  if (printed) std::fprintf(stderr, "\n");
  // Warnings, not errors, as the loader treats bad data (data.max_bad_fraction): it goes on past
  // the bad samples it can count. The samples read here are whole, and those a cut lost cannot be
  // counted, so the run goes on, saying which shards may be missing some.
  std::vector<std::string> notes;
  auto named = [](const std::vector<std::string>& s) {
    return "shard '" + s[0] + "'" +
           (s.size() > 1 ? " (and " + std::to_string(s.size() - 1) + " more)" : "");
  };
  if (!empty.empty()) notes.push_back(named(empty) + " is empty (0 bytes)");
  if (!cut.empty()) {
    notes.push_back(named(cut) +
                    " ends without tar's end-of-archive blocks: it may have been cut short at a "
                    "sample boundary (copied or written in part), its last samples missing");
  }
  if (samples_.empty()) {
    std::string message = "the shards of '" + spec + "' hold no sample";
    for (const auto& n : notes) message += "; " + n;
    throw std::runtime_error(message);
  }
  for (const auto& n : notes) warnings_.push_back("webdataset: " + n);
  if (labelled && unlabelled) {
    throw std::runtime_error("shard '" + first_unlabelled_shard +
                             "' has samples without a .cls member while other shards label "
                             "theirs: label every sample or none");
  }
  int32_t top = 0;
  for (auto& s : samples_) {
    if (s.label < 0) s.label = 0;
    top = std::max(top, s.label);
  }
  if (unlabelled) {
    classes_ = {"unlabelled"};
  } else {
    for (int32_t c = 0; c <= top; ++c) classes_.push_back(std::to_string(c));
  }
}

int64_t WebDataset::label(int64_t index) const {
  if (index < 0 || index >= size())
    throw std::out_of_range("WebDataset: sample " + std::to_string(index) + " of " +
                            std::to_string(size()));
  return samples_[static_cast<size_t>(index)].label;
}

std::string WebDataset::sample_path(int64_t index) const {
  label(index);  // the range check
  const auto& s = samples_[static_cast<size_t>(index)];
  return shards_[s.shard] + ":" + s.member;
}

std::optional<Image> WebDataset::load(int64_t index, BadSample* error) const {
  return load_region(index, RegionPlanner{}, error);
}

std::optional<Image> WebDataset::load_region(int64_t index, const RegionPlanner& plan,
                                             BadSample* error) const {
  label(index);  // the range check
  const auto& s = samples_[static_cast<size_t>(index)];
  std::vector<uint8_t> bytes;
  std::string reason;
  std::optional<Image> image;
  if (read_member(shards_[s.shard], s.offset, s.size, &bytes, &reason)) {
    image = plan ? decode_image(bytes.data(), bytes.size(), plan, &reason)
                 : decode_image(bytes.data(), bytes.size(), &reason);
  }
  if (!image && error) *error = BadSample{index, sample_path(index), reason};
  return image;
}

std::string WebDataset::describe() const {
  std::ostringstream out;
  out << "webdataset: " << samples_.size() << " samples in " << shards_.size() << " shards ("
      << spec_ << "), " << classes_.size() << (classes_.size() == 1 ? " class" : " classes");
  if (shards_indexed_ > 0) {
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%.3f", index_seconds_);
    out << ", " << shards_indexed_ << " shards indexed in " << seconds << " s";
  }
  return out.str();
}

}  // namespace ocl::data
