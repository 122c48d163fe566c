// What the fuzz targets share: one fuzz input split into the several files or strings a reader
// takes, a scratch folder for the readers that open paths, a check that stops the fuzzer (a
// finding) with a message when an invariant fails, and the entry points.
//
// Each target is a namespace ocl::fuzz::<name>_target with init() and run(data, size). In the
// libFuzzer build (OCL_FUZZ_LIBFUZZER) OCL_FUZZ_ENTRY_POINTS makes them libFuzzer's
// LLVMFuzzerInitialize and LLVMFuzzerTestOneInput; in the unit tests, which replay every corpus
// and every past finding through all targets in one program (tests/unit/test_fuzz_corpora.cpp),
// it makes nothing and fuzz/targets.h declares them.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ocl::fuzz {

/// The line between the parts of an input that stands for several files, e.g. a pack's index
/// and its shards. Seeds are written with it (fuzz/make_seeds.cpp); the fuzzer's mutations may
/// add or remove it, which adds or removes a file.
inline constexpr std::string_view kPartMarker = "\n@@ocl-fuzz-part@@\n";

/// The parts of `data` between markers; one part when there is no marker.
inline std::vector<std::string_view> split_parts(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t at = all.find(kPartMarker, start);
    if (at == std::string_view::npos) break;
    parts.push_back(all.substr(start, at - start));
    start = at + kPartMarker.size();
  }
  parts.push_back(all.substr(start));
  return parts;
}

/// `parts` joined with the marker: how a seed of several files is written.
inline std::string join_parts(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += kPartMarker;
    out += parts[i];
  }
  return out;
}

/// Stops the run as a finding (libFuzzer saves the input) when `ok` is false.
inline void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "ocl fuzz: invariant broken: %s\n", what);
  std::abort();
}

// The scratch folder's path while it exists ("" before it is made and after it is removed).
inline std::string& scratch_dir_made() {
  static std::string made;
  return made;
}

/// A folder of this process's own under $TMPDIR (or /tmp), made on first use, and made anew
/// after remove_scratch_dir_if_made (the unit tests replay several targets in one process when
/// the test program runs whole). The targets write their files there afresh for every input;
/// libFuzzer runs one input at a time per process.
inline const std::string& scratch_dir() {
  std::string& dir = scratch_dir_made();
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string path =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/ocl-fuzz-XXXXXX";
    require(::mkdtemp(path.data()) != nullptr, "cannot make a scratch folder");
    dir = path;
  }
  return dir;
}

/// Removes the scratch folder if this process made one (the unit tests' replay; a libFuzzer run
/// leaves it to scripts/fuzz.sh, which gives each run its own TMPDIR).
inline void remove_scratch_dir_if_made() {
  if (scratch_dir_made().empty()) return;
  std::filesystem::remove_all(scratch_dir_made());
  scratch_dir_made().clear();
}

/// Writes `bytes` to `path` (created or truncated); a failure stops the run (it is the
/// machine's, not a finding, but silently fuzzing nothing would be worse).
inline void write_file(const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  require(fd >= 0, "cannot create a scratch file");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    require(n > 0, "cannot write a scratch file");
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace ocl::fuzz

#ifdef OCL_FUZZ_LIBFUZZER
#define OCL_FUZZ_ENTRY_POINTS(ns)                                           \
  extern "C" int LLVMFuzzerInitialize(int*, char***) {                      \
    ns::init();                                                             \
    return 0;                                                               \
  }                                                                         \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    return ns::run(data, size);                                             \
  }
#else
#define OCL_FUZZ_ENTRY_POINTS(ns)
#endif
