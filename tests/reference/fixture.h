// What the reference tests share: a float64 fixture written by a PyTorch script (checked for
// the format version the test expects, with the command that regenerates it), and the
// closeness measure every comparison uses.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/io/safetensors.h>

namespace ocl_test {

class ReferenceFixture {
 public:
  /// Reads `path`; a format_version other than `version` is a test failure that names
  /// `regenerate` (the script command) — the tests then run on and show what changed.
  ReferenceFixture(const std::string& path, const std::string& version,
                   const std::string& regenerate)
      : path_(path), file_(ocl::io::read_safetensors(path)) {
    auto it = file_.metadata.find("format_version");
    const std::string found = it == file_.metadata.end() ? "(none)" : it->second;
    if (found != version) {
      ADD_FAILURE() << "fixture " << path << " has format_version " << found
                    << ", this test expects " << version << ". Regenerate it: " << regenerate;
    }
  }

  /// By value (a tensor is a handle): a reference bound to the result would look dangling to
  /// GCC 14.
  torch::Tensor tensor(const std::string& name) const {
    auto it = file_.tensors.find(name);
    if (it == file_.tensors.end())
      throw std::runtime_error("fixture " + path_ + " lacks tensor '" + name + "'");
    return it->second;
  }

  const std::string& meta(const std::string& key) const { return file_.metadata.at(key); }
  const ocl::io::SafetensorsFile& file() const { return file_; }

 private:
  std::string path_;
  ocl::io::SafetensorsFile file_;
};

/// The OCL step fixture (scripts/make_reference.py), which the reference tests and the gpu tests
/// both read: its format version is said once here, so that neither falls behind the script.
inline constexpr const char* kOclStepFixtureVersion = "2";
inline constexpr const char* kOclStepFixtureCommand = "/usr/bin/python3 scripts/make_reference.py";

/// max |actual − expected| / max |expected| ≤ tol: relative to the tensor's scale, so entries
/// near zero do not blow up the measure.
inline ::testing::AssertionResult close(const std::string& what, const torch::Tensor& actual,
                                        const torch::Tensor& expected, double tol) {
  if (!actual.defined()) return ::testing::AssertionFailure() << what << ": undefined tensor";
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure()
           << what << ": shape " << actual.sizes() << " vs reference " << expected.sizes();
  // Both on the CPU: a CUDA result against a CPU fixture, or two CUDA tensors.
  auto a = actual.detach().to(torch::kFloat64).cpu(),
       e = expected.detach().to(torch::kFloat64).cpu();
  const double scale = std::max(e.abs().max().item<double>(), 1e-300);
  const double err = (a - e).abs().max().item<double>() / scale;
  if (err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": relative error " << err << " > " << tol;
}

}  // namespace ocl_test
