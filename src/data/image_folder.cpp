// ImageFolder: the torchvision-ordered scan of root/<class>/**/<image>, its on-disk file list
// cache, and decoding to 8-bit RGB: JPEG through libjpeg-turbo, PNG through libspng, other
// formats (any depth and channel layout) through OpenCV's imgcodecs where the build has it.
#include "ocl/data/image_folder.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <sys/stat.h>

#ifdef OCL_WITH_IMGCODECS
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

#include "ocl/data/jpeg.h"
#include "ocl/data/png.h"
#include "ocl/io/files.h"

namespace ocl::data {
namespace fs = std::filesystem;
using io::join_path;
namespace {

constexpr const char* kCacheMagic = "ocl-filelist 1";
// A folder modified this close to (or after) the scan may change again within the same mtime
// tick unseen (git's "racily clean"; FAT's 2 s resolution): such a cache entry is not trusted.
constexpr int64_t kRacySlackNs = 2'000'000'000;

struct Stamp {
  int64_t sec = 0, nsec = 0;
  bool operator==(const Stamp& o) const { return sec == o.sec && nsec == o.nsec; }
  int64_t ns() const { return sec * 1'000'000'000 + nsec; }
};

bool stat_dir(const std::string& path, Stamp* stamp, std::pair<dev_t, ino_t>* id = nullptr) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
#ifdef __APPLE__
  *stamp = {static_cast<int64_t>(st.st_mtimespec.tv_sec), st.st_mtimespec.tv_nsec};
#else
  *stamp = {static_cast<int64_t>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec};
#endif
  if (id) *id = {st.st_dev, st.st_ino};
  return true;
}

// Lists `dir`'s visible sub-folders and image files, sorted, links followed (as torchvision's
// os.walk(followlinks=True)). Returns "" or why the listing stopped (what came before is kept).
std::string list_dir(const std::string& dir, std::vector<std::string>* dirs,
                     std::vector<std::string>* images) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') continue;  // hidden
    std::error_code type_ec;
    if (it->is_directory(type_ec)) {
      if (dirs) dirs->push_back(name);
    } else if (images && it->is_regular_file(type_ec) && has_image_extension(name)) {
      images->push_back(name);
    }
  }
  if (dirs) std::sort(dirs->begin(), dirs->end());
  if (images) std::sort(images->begin(), images->end());
  return ec ? ec.message() : "";
}

struct DirStamp {
  std::string rel;  // root-relative
  Stamp mtime;
};

struct Scan {
  std::vector<std::string> root_dirs;  // every non-hidden sub-folder of root, sorted
  std::vector<DirStamp> dirs;          // every folder under them, the class folders included
  std::vector<std::string> classes;    // the sub-folders holding at least one image
  std::vector<std::vector<std::string>> files;  // root-relative, per class
  std::vector<std::string> unreadable;          // "<folder>: <reason>" of folders not listed
  std::vector<std::string> empty;               // readable class folders holding no image
};

// Class folder `name`'s images, in make_dataset's order (sorted(os.walk(...)), files by name).
void scan_class(const std::string& root, const std::string& name, Scan* scan) {
  const size_t unreadable_before = scan->unreadable.size();
  std::vector<std::pair<std::string, std::vector<std::string>>> folders;
  std::set<std::pair<dev_t, ino_t>> visited;  // a symlink cycle is walked once
  std::vector<std::string> pending{name};
  while (!pending.empty()) {
    const std::string rel = pending.back();
    pending.pop_back();
    DirStamp stamp{rel, {}};
    std::pair<dev_t, ino_t> id;
    if (!stat_dir(join_path(root, rel), &stamp.mtime, &id) || !visited.insert(id).second) continue;
    scan->dirs.push_back(stamp);
    std::vector<std::string> subdirs, images;
    if (auto error = list_dir(join_path(root, rel), &subdirs, &images); !error.empty())
      scan->unreadable.push_back(join_path(root, rel) + ": " + error);
    for (const auto& d : subdirs) pending.push_back(join_path(rel, d));
    for (auto& f : images) f = join_path(rel, f);
    folders.emplace_back(rel, std::move(images));
  }
  std::sort(folders.begin(), folders.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> files;
  for (auto& f : folders) files.insert(files.end(), f.second.begin(), f.second.end());
  if (files.empty()) {
    // (An unreadable one is warned about instead; the class-list check of the splits names it.)
    if (scan->unreadable.size() == unreadable_before) scan->empty.push_back(name);
    return;
  }
  scan->classes.push_back(name);
  scan->files.push_back(std::move(files));
}

bool has_line_break(const std::string& s) { return s.find_first_of("\r\n") != std::string::npos; }

// The cache, a text file:
//   ocl-filelist 1 / root <root> / scanned <sec> <nsec>
//   subdirs <n>, then n names / dirs <n>, then n lines "<sec> <nsec> <rel>"
//   classes <n>, then per class "class <count> <name>" and <count> root-relative paths
void write_cache(const std::string& path, const std::string& root, const Stamp& scanned,
                 const Scan& scan) {
  bool line_break = has_line_break(root);
  for (const auto& d : scan.root_dirs) line_break |= has_line_break(d);
  for (const auto& d : scan.dirs) line_break |= has_line_break(d.rel);
  for (const auto& c : scan.files)
    for (const auto& f : c) line_break |= has_line_break(f);
  if (line_break) return;  // a line-based file cannot hold such names: go without a cache
  std::ostringstream out;
  out << kCacheMagic << "\nroot " << root << "\nscanned " << scanned.sec << " " << scanned.nsec
      << "\nsubdirs " << scan.root_dirs.size() << "\n";
  for (const auto& d : scan.root_dirs) out << d << "\n";
  out << "dirs " << scan.dirs.size() << "\n";
  for (const auto& d : scan.dirs) out << d.mtime.sec << " " << d.mtime.nsec << " " << d.rel << "\n";
  out << "classes " << scan.classes.size() << "\n";
  for (size_t c = 0; c < scan.classes.size(); ++c) {
    out << "class " << scan.files[c].size() << " " << scan.classes[c] << "\n";
    for (const auto& f : scan.files[c]) out << f << "\n";
  }
  // Replaced atomically; an unwritable location (a read-only data set) just means no cache.
  try {
    io::write_text_atomic(path, out.str());
  } catch (const std::runtime_error&) {
  }
}

// Reads a cache and checks it against the tree; std::nullopt (rebuild) on any mismatch.
std::optional<Scan> read_cache(const std::string& path, const std::string& root) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string line;
  auto next = [&](const std::string& prefix, std::string* rest) {
    if (!std::getline(in, line) || line.compare(0, prefix.size(), prefix) != 0) return false;
    *rest = line.substr(prefix.size());
    return true;
  };
  auto number = [](const std::string& text, size_t* n) {
    try {
      *n = static_cast<size_t>(std::stoull(text));
    } catch (const std::exception&) {
      return false;
    }
    return true;
  };
  auto count = [&](const std::string& prefix, size_t* n) {
    std::string rest;
    return next(prefix, &rest) && number(rest, n);
  };
  std::string rest;
  if (!std::getline(in, line) || line != kCacheMagic || !next("root ", &rest) || rest != root ||
      !next("scanned ", &rest)) {
    return std::nullopt;
  }
  Stamp scanned;
  std::istringstream scanned_text(rest);
  if (!(scanned_text >> scanned.sec >> scanned.nsec)) return std::nullopt;
  Scan scan;
  size_t n = 0;
  if (!count("subdirs ", &n)) return std::nullopt;
  for (size_t i = 0; i < n; ++i) {
    if (!std::getline(in, line)) return std::nullopt;
    scan.root_dirs.push_back(line);
  }
  // A class folder added, removed or renamed changes root's listing.
  std::vector<std::string> current;
  list_dir(root, &current, nullptr);
  if (current != scan.root_dirs) return std::nullopt;
  if (!count("dirs ", &n)) return std::nullopt;
  for (size_t i = 0; i < n; ++i) {
    DirStamp d;
    if (!std::getline(in, line)) return std::nullopt;
    std::istringstream s(line);
    if (!(s >> d.mtime.sec >> d.mtime.nsec) || s.get() != ' ') return std::nullopt;
    std::getline(s, d.rel);
    Stamp actual;
    if (d.mtime.ns() >= scanned.ns() - kRacySlackNs || !stat_dir(join_path(root, d.rel), &actual) ||
        !(actual == d.mtime)) {
      return std::nullopt;
    }
    scan.dirs.push_back(std::move(d));
  }
  if (!count("classes ", &n)) return std::nullopt;
  for (size_t c = 0; c < n; ++c) {
    if (!next("class ", &rest)) return std::nullopt;
    const size_t space = rest.find(' ');
    if (space == std::string::npos) return std::nullopt;
    size_t files = 0;
    if (!number(rest.substr(0, space), &files)) return std::nullopt;
    scan.classes.push_back(rest.substr(space + 1));
    scan.files.emplace_back();
    for (size_t i = 0; i < files; ++i) {
      if (!std::getline(in, line)) return std::nullopt;
      scan.files.back().push_back(line);
    }
  }
  if (scan.classes.empty()) return std::nullopt;
  return scan;
}

// Whole-file read: a missing, unreadable or shrinking file is a reason string, not an exception.
bool read_file(const std::string& path, std::vector<uint8_t>* data, std::string* reason) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  auto failed = [&](const char* what) {
    *reason = what + io::os_error(errno);
    if (fd >= 0) ::close(fd);
    return false;
  };
  if (fd < 0) return failed("cannot open: ");
  struct stat st {};
  if (::fstat(fd, &st) != 0) return failed("cannot stat: ");
  data->resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < data->size()) {
    const ssize_t r = ::read(fd, data->data() + got, data->size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return failed("read error: ");
    if (r == 0) break;  // truncated while reading: decode what arrived
    got += static_cast<size_t>(r);
  }
  data->resize(got);
  ::close(fd);
  return true;
}

std::optional<Image> fail(std::string* reason, const std::string& why) {
  if (reason) *reason = why;
  return std::nullopt;
}

std::atomic<int64_t> g_max_image_pixels{kDefaultMaxImagePixels};

// The format the first bytes announce of those ocl hands to OpenCV (BMP, WebP, TIFF, PNM), or
// nullptr: nothing else (not GIF: OpenCV 4.6 tries the next signature) may reach Debian's
// imgcodecs, whose GDCM aborts the process on a 137-byte corrupt file (fuzz/image_fuzz.cpp).
const char* format_of(const uint8_t* data, size_t size) {
  auto starts = [&](const char* magic, size_t n, size_t at = 0) {
    return size >= at + n && std::memcmp(data + at, magic, n) == 0;
  };
  if (starts("BM", 2)) return "a BMP image";
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return "a WebP image";
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return "a TIFF image";
  if (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '7') return "a PNM/PPM/PGM image";
  return nullptr;
}

// Everything but PNG and the JPEGs libjpeg-turbo takes: OpenCV's imdecode where the build has
// imgcodecs, else an error naming the build that reads it. `known`: a format the caller saw.
std::optional<Image> decode_with_opencv(const uint8_t* data, size_t size, const char* known,
                                        std::string* reason) {
  if (!known) known = format_of(data, size);
#ifndef OCL_WITH_IMGCODECS
  if (!known)
    return fail(reason, "not a decodable image (not JPEG or PNG: unknown format or corrupt data)");
  return fail(reason, std::string(known) +
                          ": this build of ocl decodes JPEG and PNG only (it was built without "
                          "OpenCV's imgcodecs); rebuild with libopencv-imgcodecs-dev and "
                          "-DOCL_WITH_IMGCODECS=ON to read it, or convert the file");
#else
  if (!known)
    return fail(reason,
                "not a decodable image (not JPEG, PNG, BMP, WebP, TIFF or PNM: unknown format or "
                "corrupt data)");
  // OpenCV's stderr warnings about bad input repeat what the reason carries: its default log
  // level (info/warning) drops to errors once; a level someone chose (debug, silent) stays.
  static std::once_flag quiet;
  std::call_once(quiet, [] {
    namespace logging = cv::utils::logging;
    const auto level = logging::getLogLevel();
    if (level == logging::LOG_LEVEL_INFO || level == logging::LOG_LEVEL_WARNING) {
      logging::setLogLevel(logging::LOG_LEVEL_ERROR);
    }
  });
  if (size > static_cast<size_t>(INT_MAX)) return fail(reason, "file larger than 2 GiB");
  cv::Mat decoded;
  try {
    // IMREAD_UNCHANGED keeps depth and alpha for the explicit conversions below, and ignores
    // EXIF orientation as PIL's Image.open does (torchvision's loader).
    decoded = cv::imdecode(cv::Mat(1, static_cast<int>(size), CV_8U, const_cast<uint8_t*>(data)),
                           cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    return fail(reason, std::string("decoder error: ") + e.what());
  }
  if (decoded.empty())
    return fail(reason, "not a decodable image (unknown format or corrupt data)");
  if (decoded.depth() != CV_8U) {
    // 16-bit: 65535 → 255 (PIL's convert("RGB") clips 16-bit values instead); float: [0, 1].
    const double scale = decoded.depth() == CV_16U                                ? 1.0 / 257.0
                         : decoded.depth() == CV_32F || decoded.depth() == CV_64F ? 255.0
                                                                                  : 1.0;
    cv::Mat converted;
    decoded.convertTo(converted, CV_8U, scale);
    decoded = converted;
  }
  Image out;
  out.height = decoded.rows;
  out.width = decoded.cols;
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  cv::Mat rgb(out.height, out.width, CV_8UC3, out.pixels.data());
  switch (decoded.channels()) {
    case 1:
    case 2: {  // grey, grey + alpha
      cv::Mat grey;
      cv::extractChannel(decoded, grey, 0);
      cv::cvtColor(grey, rgb, cv::COLOR_GRAY2RGB);
      break;
    }
    case 3:  // OpenCV decodes to BGR (CMYK JPEGs included: libjpeg's output is converted)
      cv::cvtColor(decoded, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:  // alpha dropped, as PIL's RGBA → RGB conversion does
      cv::cvtColor(decoded, rgb, cv::COLOR_BGRA2RGB);
      break;
    default:
      return fail(reason, "unsupported channel count " + std::to_string(decoded.channels()));
  }
  if (rgb.data != out.pixels.data()) return fail(reason, "internal: colour conversion reallocated");
  return out;
#endif
}

}  // namespace

bool has_image_extension(const std::string& filename) {
  const auto dot = filename.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = filename.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const char* const kExtensions[] = {"jpg", "jpeg", "png", "webp", "bmp",
                                            "tif", "tiff", "ppm", "pgm"};
  return std::any_of(std::begin(kExtensions), std::end(kExtensions),
                     [&](const char* e) { return ext == e; });
}

void set_max_image_pixels(int64_t pixels) {
  if (pixels < 1)
    throw std::invalid_argument("max image pixels must be >= 1, got " + std::to_string(pixels));
  g_max_image_pixels.store(pixels);
}

int64_t max_image_pixels() { return g_max_image_pixels.load(); }

std::string image_size_refusal(int64_t height, int64_t width) {
  const int64_t limit = max_image_pixels();
  if (height * width <= limit) return "";
  return fmt::format("{}x{} = {} pixels, above the limit of {} (data.max_image_pixels)", width,
                     height, height * width, limit);
}

void check_rgb(const Image& image, const char* what) {
  if (image.height > 0 && image.width > 0 &&
      image.pixels.size() == static_cast<size_t>(image.height) * image.width * 3)
    return;
  throw std::invalid_argument(
      fmt::format("{}: image of {}x{} holds {} bytes, expected height*width*3", what, image.height,
                  image.width, image.pixels.size()));
}

std::optional<Image> decode_image(const uint8_t* data, size_t size, std::string* reason) {
  return decode_image(data, size, RegionPlanner{}, reason);
}

std::optional<Image> decode_image(const uint8_t* data, size_t size, const RegionPlanner& plan,
                                  std::string* reason) {
  if (size == 0) return fail(reason, "empty file");
  bool unsupported_jpeg = false;
  if (looks_like_jpeg(data, size)) {
    auto image = decode_jpeg(data, size, plan, reason, &unsupported_jpeg);
    if (!unsupported_jpeg) return image;
  }
  if (looks_like_png(data, size)) return decode_png(data, size, reason);
  return decode_with_opencv(data, size, unsupported_jpeg ? "a CMYK, YCCK or 12-bit JPEG" : nullptr,
                            reason);
}

ImageFolderDataset::ImageFolderDataset(const std::string& root, const ImageFolderOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    throw std::runtime_error("ImageFolder: '" + root + "' is not a folder");
  root_ = fs::absolute(root, ec).lexically_normal().string();
  if (ec) root_ = root;
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  const std::string cache =
      options.cache_path.empty() ? join_path(root_, ".ocl-filelist.txt") : options.cache_path;

  std::optional<Scan> scan;
  if (options.use_cache) scan = read_cache(cache, root_);
  from_cache_ = scan.has_value();
  if (!scan) {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const Stamp started{static_cast<int64_t>(now.tv_sec), now.tv_nsec};
    scan.emplace();
    if (auto error = list_dir(root_, &scan->root_dirs, nullptr); !error.empty())
      throw std::runtime_error("ImageFolder: cannot list '" + root_ + "': " + error);
    for (const auto& name : scan->root_dirs) scan_class(root_, name, &*scan);
    if (!scan->empty.empty())
      throw std::runtime_error(fmt::format(
          "ImageFolder: the class folder{} '{}' under '{}' hold no image; every class needs one "
          "(as in torchvision), or the labels after it shift: add its images or remove it",
          scan->empty.size() > 1 ? "s" : "", fmt::join(scan->empty, "', '"), root_));
    for (const auto& u : scan->unreadable)
      warnings_.push_back("ImageFolder: cannot list the folder " + u +
                          "; its images are left out (a class folder that cannot be read at all "
                          "is missing from the classes)");
    if (scan->classes.empty())
      throw std::runtime_error("ImageFolder: no class folder with an image under '" + root_ +
                               "' (expected <root>/<class>/<image>)" +
                               (scan->unreadable.empty() ? "" : "; " + warnings_.front()));
    // A list with unreadable folders is not cached: the next start scans (and warns) again.
    if (options.use_cache && scan->unreadable.empty()) write_cache(cache, root_, started, *scan);
  }
  classes_ = std::move(scan->classes);
  for (size_t c = 0; c < scan->files.size(); ++c) {
    for (auto& f : scan->files[c]) {
      files_.push_back(std::move(f));
      labels_.push_back(static_cast<int32_t>(c));
    }
  }
}

const std::string& ImageFolderDataset::file(int64_t index) const {
  if (index < 0 || index >= size())
    throw std::out_of_range("ImageFolder: index " + std::to_string(index) + " out of range [0, " +
                            std::to_string(size()) + ")");
  return files_[static_cast<size_t>(index)];
}

int64_t ImageFolderDataset::label(int64_t index) const {
  file(index);
  return labels_[static_cast<size_t>(index)];
}

std::optional<Image> ImageFolderDataset::load(int64_t index, BadSample* error) const {
  return load_region(index, RegionPlanner{}, error);
}

std::optional<Image> ImageFolderDataset::load_region(int64_t index, const RegionPlanner& plan,
                                                     BadSample* error) const {
  const std::string path = join_path(root_, file(index));
  std::vector<uint8_t> bytes;
  std::string reason;
  std::optional<Image> image;
  if (read_file(path, &bytes, &reason)) {
    image = decode_image(bytes.data(), bytes.size(), plan, &reason);
  }
  if (!image && error) *error = BadSample{index, path, reason};
  return image;
}

std::string ImageFolderDataset::describe() const {
  return fmt::format("imagefolder: {}, {} images, {} classes{}", root_, files_.size(),
                     classes_.size(), from_cache_ ? " (file list from cache)" : "");
}

}  // namespace ocl::data
