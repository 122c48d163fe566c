// Every seed of fuzz/corpus/ and every past finding of fuzz/regressions/ replayed through the fuzz
// targets' own code (fuzz/*_fuzz.cpp, compiled here without libFuzzer): a finding fixed once stays
// fixed, and the targets' invariants hold on the seeds in every build (both LibTorch versions,
// GCC), not only in the clang fuzz build. A broken invariant aborts the test (its input is
// printed first); an unexpected exception fails it.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "targets.h"
#include <gtest/gtest.h>

#include "ocl/data/dataset.h"

namespace {

namespace fs = std::filesystem;

struct Target {
  const char* name;
  void (*init)();
  int (*run)(const uint8_t*, size_t);
};

// How GoogleTest (and so CTest's test names) shows a target: by name.
void PrintTo(const Target& target, std::ostream* os) { *os << target.name; }

#define OCL_TARGET(name) \
  Target { #name, ocl::fuzz::name##_target::init, ocl::fuzz::name##_target::run }
const Target kTargets[] = {OCL_TARGET(safetensors), OCL_TARGET(pack),  OCL_TARGET(jpeg_region),
                           OCL_TARGET(image),       OCL_TARGET(cifar), OCL_TARGET(config),
                           OCL_TARGET(state_json),  OCL_TARGET(tar)};
#undef OCL_TARGET

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

class FuzzCorpus : public testing::TestWithParam<Target> {};

TEST_P(FuzzCorpus, SeedsAndPastFindingsPass) {
  const Target& target = GetParam();
  const int64_t pixel_limit = ocl::data::max_image_pixels();  // the image targets lower it
  target.init();
  const fs::path fuzz_dir = OCL_FUZZ_DIR;
  const auto seeds = files_in(fuzz_dir / "corpus" / target.name);
  EXPECT_GE(seeds.size(), 3u) << "fuzz/corpus/" << target.name << " holds too few seeds";
  auto inputs = seeds;
  const auto findings = files_in(fuzz_dir / "regressions" / target.name);
  inputs.insert(inputs.end(), findings.begin(), findings.end());
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replaying %s\n", path.c_str());
    try {
      target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& e) {
      ADD_FAILURE() << path << ": " << e.what();
    }
  }
  ocl::fuzz::remove_scratch_dir_if_made();
  ocl::data::set_max_image_pixels(pixel_limit);
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzCorpus, testing::ValuesIn(kTargets),
                         [](const testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
