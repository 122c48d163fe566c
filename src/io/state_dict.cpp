// State dicts and checked loading: everything is checked before anything is copied.
#include "ocl/io/state_dict.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include <torch/torch.h>

namespace ocl::io {
namespace {

bool has_prefix(const std::string& name, const std::vector<std::string>& prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& p) { return name.compare(0, p.size(), p) == 0; });
}

}  // namespace

TensorMap state_dict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (item.value().defined()) out.emplace(item.key(), item.value().detach());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    if (!item.value().defined()) continue;
    TORCH_CHECK(out.emplace(item.key(), item.value().detach()).second, "state_dict: buffer '",
                item.key(), "' has the name of a parameter");
  }
  return out;
}

std::string LoadReport::summary() const {
  if (ok()) return "state dict: all keys matched";
  std::ostringstream s;
  s << "state dict: " << missing.size() << " missing, " << unexpected.size() << " unexpected, "
    << shape_mismatched.size() << " shape mismatched";
  for (const auto& k : missing) s << "\n  missing: " << k;
  for (const auto& k : unexpected) s << "\n  unexpected: " << k;
  for (const auto& k : shape_mismatched) s << "\n  shape mismatched: " << k;
  return s.str();
}

LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors,
                           const LoadOptions& options) {
  const TensorMap destinations = state_dict(module);
  LoadReport report;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (destination, source)
  for (const auto& [name, dst] : destinations) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      if (!has_prefix(name, options.ignore_missing)) report.missing.push_back(name);
      continue;
    }
    const torch::Tensor& src = it->second;
    TORCH_CHECK(src.defined(), "load_state_dict: tensor '", name, "' in the file is undefined");
    if (src.sizes() != dst.sizes()) {
      report.shape_mismatched.push_back(name + ": file " + c10::str(src.sizes()) + " vs module " +
                                        c10::str(dst.sizes()));
      continue;
    }
    // Whatever strict says: an integer tensor where a weight belongs is a file written wrongly
    // (or a dtype relabelled), and a NaN or infinite weight spoils every step after it.
    TORCH_CHECK(!dst.is_floating_point() || src.is_floating_point(), "load_state_dict: tensor '",
                name, "' is ", src.scalar_type(), " in the file where the module holds ",
                dst.scalar_type(),
                " (an integer or boolean tensor is not a weight: a file written "
                "wrongly or with its dtype relabelled); nothing was loaded");
    if (src.is_floating_point()) {
      const int64_t bad = src.numel() - torch::isfinite(src).sum().item<int64_t>();
      TORCH_CHECK(bad == 0, "load_state_dict: tensor '", name, "' holds ", bad,
                  " non-finite value(s) (NaN or inf) of ", src.numel(), "; nothing was loaded");
    }
    copies.emplace_back(dst, src);
  }
  for (const auto& [name, src] : tensors) {
    if (destinations.count(name) == 0 && !has_prefix(name, options.ignore_unexpected)) {
      report.unexpected.push_back(name);
    }
  }
  // Both maps iterate in name order, so the lists are already sorted.

  TORCH_CHECK(!options.strict || report.ok(), "load_state_dict (strict): ", report.summary(),
              "\n(nothing was loaded; set LoadOptions::strict = false to load the matching keys, "
              "or list name prefixes in ignore_missing / ignore_unexpected)");
  torch::NoGradGuard no_grad;
  // `dst` shares the module's storage (state_dict detaches), so copy_ writes into the module.
  for (auto& [dst, src] : copies) dst.copy_(src);
  return report;
}

}  // namespace ocl::io
