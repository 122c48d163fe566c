// Helpers shared by the test suites.
#pragma once

#include <stdlib.h>  // mkdtemp

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

namespace ocl::test {

/// A new empty folder in the test temporary directory, named `prefix` and a unique suffix.
inline std::string make_temp_dir(const std::string& prefix) {
  std::string path = testing::TempDir() + prefix + "XXXXXX";
  EXPECT_NE(::mkdtemp(path.data()), nullptr) << "cannot make a folder like " << path;
  return path;
}

/// The bytes of a file ("" when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// How many times `needle` occurs in `text` (overlapping occurrences count).
inline int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

/// Runs `exe args` through the shell; returns its exit status (-1 when it did not exit) and
/// appends its stdout and stderr to `output`.
inline int run_exe(const std::string& exe, const std::string& args, std::string* output) {
  const std::string cmd = exe + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace ocl::test

// Expects `statement` to throw c10::Error or std::exception whose message contains `needle`.
#define OCL_EXPECT_THROW_WITH(statement, needle)                                                   \
  do {                                                                                             \
    bool ocl_thrown_ = false;                                                                      \
    try {                                                                                          \
      statement;                                                                                   \
    } catch (const c10::Error& e) {                                                                \
      ocl_thrown_ = true;                                                                          \
      EXPECT_NE(std::string(e.what_without_backtrace()).find(needle), std::string::npos)           \
          << "message: " << e.what_without_backtrace();                                            \
    } catch (const std::exception& e) {                                                            \
      ocl_thrown_ = true;                                                                          \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what(); \
    }                                                                                              \
    EXPECT_TRUE(ocl_thrown_) << #statement " did not throw";                                       \
  } while (0)
