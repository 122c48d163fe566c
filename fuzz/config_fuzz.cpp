// Fuzz target: the YAML config reader with --set overrides (io::parse_config). The input is the
// YAML text, then optionally a part marker and one override per line ("optim.lr=1e-3").
// Findings beyond the sanitizers': an error other than ConfigError, or an accepted config that
// does not read back equal from its own YAML (what a run folder's config.yaml holds).
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "targets.h"

#include "ocl/io/config.h"

namespace ocl::fuzz::config_target {

void init() {}

int run(const uint8_t* data, size_t size) {
  const auto parts = ocl::fuzz::split_parts(data, size);
  const std::string yaml(parts[0]);
  std::vector<std::string> overrides;
  for (size_t p = 1; p < parts.size(); ++p) {
    size_t start = 0;
    const std::string_view lines = parts[p];
    while (start <= lines.size()) {
      const size_t end = std::min(lines.find('\n', start), lines.size());
      overrides.emplace_back(lines.substr(start, end - start));
      start = end + 1;
    }
  }
  ocl::io::Config config;
  try {
    config = ocl::io::parse_config(yaml, overrides, "fuzz.yaml");
  } catch (const ocl::io::ConfigError&) {
    return 0;
  }
  // Accepted: its YAML must be accepted too (no catch: a throw is a finding) and read back equal.
  const std::string written = ocl::io::to_yaml(config);
  const auto again = ocl::io::parse_config(written, {}, "written config");
  ocl::fuzz::require(again == config, "a config does not read back equal from its own YAML");
  for (int64_t world : {1, 3, 64}) {
    try {
      const auto derived = ocl::io::derive(config, world);
      ocl::fuzz::require(derived.effective_batch > 0, "a derived effective batch is not positive");
      ocl::io::to_yaml_with_derived(config, derived);
    } catch (const ocl::io::ConfigError&) {
    }
  }
  return 0;
}

}  // namespace ocl::fuzz::config_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::config_target)
