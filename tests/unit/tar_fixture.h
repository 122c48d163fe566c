// Shards for the WebDataset tests, written by Python's tarfile (tests/unit/write_tar.py) so that
// ocl's readers are checked against another implementation, and the images they hold.
#pragma once

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>

#include <ocl/data/synthetic.h>

namespace ocl::test {

inline const char* kPython = "/usr/bin/python3";

inline bool have_python() { return ::access(kPython, X_OK) == 0; }

#define OCL_REQUIRE_PYTHON()     \
  if (!ocl::test::have_python()) \
  GTEST_SKIP() << "no " << ocl::test::kPython << ": the shards are written by tarfile"

// A member of a shard to write: its name and its bytes (a file's, or text).
struct Member {
  std::string name, source;  // source: "@<path>" or "=<text>"
};

// Writes `members` into `tar` with Python's tarfile in `format` (pax | gnu | ustar), and dates
// the shard a minute back, so that its index counts as written after it (webdataset.h).
inline void write_tar(const std::string& tar, const std::vector<Member>& members,
                      const std::string& format = "pax") {
  namespace fs = std::filesystem;
  const std::string list = tar + ".members";
  {
    std::ofstream out(list, std::ios::binary);
    for (const auto& m : members) out << m.name << "\t" << m.source << "\n";
  }
  std::string output;
  const int rc = run_exe(kPython,
                         std::string(OCL_FIXTURE_DIR) + "/../unit/write_tar.py '" + tar + "' " +
                             format + " < '" + list + "'",
                         &output);
  ASSERT_EQ(rc, 0) << output;
  fs::remove(list);
  fs::last_write_time(tar, fs::file_time_type::clock::now() - std::chrono::minutes(1));
}

// Synthetic 32×32 images (one size, so that the loader can stack them untransformed).
inline ocl::data::Image shard_image(int i) {
  ocl::data::SyntheticOptions o;
  o.size = 32;
  o.num_classes = 10;
  o.image_size = 32;
  return ocl::data::SyntheticDataset(o).load(i).value();
}

}  // namespace ocl::test
