// The meanings of config values shared with the layers above io (see include/ocl/io/spec.h).
#include "ocl/io/spec.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <utility>

namespace ocl::io {
namespace {

// In the order messages list them: the long names by size, then the short forms.
const std::vector<std::pair<std::string, VitSizes>>& presets() {
  static const std::vector<std::pair<std::string, VitSizes>> table = [] {
    const VitSizes tiny{16, 192, 12, 3}, small{16, 384, 12, 6}, base{16, 768, 12, 12},
        large{16, 1024, 24, 16}, huge{14, 1280, 32, 16};
    return std::vector<std::pair<std::string, VitSizes>>{
        {"vit_tiny_patch16", tiny}, {"vit_small_patch16", small},
        {"vit_base_patch16", base}, {"vit_large_patch16", large},
        {"vit_huge_patch14", huge}, {"vit_t16", tiny},
        {"vit_s16", small},         {"vit_b16", base},
        {"vit_l16", large},         {"vit_h14", huge}};
  }();
  return table;
}

void set_option(RandAugmentSpec& o, const std::string& section, const std::string& spec) {
  // A section is a key of letters followed by its number, e.g. "mstd0.5".
  size_t split = 0;
  while (split < section.size() && std::isalpha(static_cast<unsigned char>(section[split])))
    ++split;
  const std::string key = section.substr(0, split), value = section.substr(split);
  char* end = nullptr;
  const double v = value.empty() ? 0.0 : std::strtod(value.c_str(), &end);
  if (value.empty() || end != value.c_str() + value.size() || !std::isfinite(v))
    throw std::invalid_argument("rand_augment: bad number in section '" + section + "' of '" +
                                spec + "'");
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("rand_augment: section '" + section + "' of '" + spec +
                                 "': " + why);
  };
  if (key == "m") {
    if (v < 0) throw bad("magnitude must be >= 0");
    o.magnitude = v;
  } else if (key == "n") {
    if (v < 0 || v != std::floor(v) || v > 100) throw bad("expected an integer in [0, 100]");
    o.num_ops = static_cast<int>(v);
  } else if (key == "mstd") {
    if (v < 0) throw bad("magnitude std must be >= 0");
    o.magnitude_std = v > 100 ? std::numeric_limits<double>::infinity() : v;  // timm's rule
  } else if (key == "mmax") {
    if (v < 0) throw bad("magnitude max must be >= 0");
    o.magnitude_max = v;
  } else if (key == "inc") {
    if (v != 0 && v != 1) throw bad("expected inc0 or inc1");
    o.increasing = v == 1;
  } else if (key == "p") {
    if (v < 0 || v > 1) throw bad("probability must be in [0, 1]");
    o.prob = v;
  } else {
    throw bad("unknown key '" + key + "' (known: m, n, mstd, mmax, inc, p)");
  }
}

}  // namespace

const VitSizes* find_vit_preset(const std::string& name) {
  for (const auto& [n, sizes] : presets()) {
    if (n == name) return &sizes;
  }
  return nullptr;
}

const std::vector<std::string>& vit_preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& kv : presets()) n.push_back(kv.first);
    return n;
  }();
  return names;
}

int64_t kept_token_count(int64_t num_patches, double mask_ratio) {
  const double per_group = static_cast<double>(num_patches) * (1.0 - mask_ratio) / 2.0;
  return static_cast<int64_t>(std::floor(per_group + 1e-9)) * 2;
}

RandAugmentSpec parse_rand_augment_spec(const std::string& spec) {
  if (spec.rfind("rand", 0) != 0 || (spec.size() > 4 && spec[4] != '-')) {
    throw std::invalid_argument(
        "rand_augment: expected 'rand[-section...]' (e.g. "
        "'rand-m9-mstd0.5-inc1'), got '" +
        spec + "'");
  }
  RandAugmentSpec o;  // timm's defaults for keys the string leaves out
  // Sections after "rand-", split at every '-'.
  for (size_t start = 5; spec.size() > 4; start = spec.find('-', start) + 1) {
    const size_t end = std::min(spec.find('-', start), spec.size());
    const std::string section = spec.substr(start, end - start);
    if (section.empty())
      throw std::invalid_argument("rand_augment: empty section in '" + spec + "'");
    set_option(o, section, spec);
    if (end == spec.size()) break;
  }
  return o;
}

}  // namespace ocl::io
