// State dicts: dotted names, in-place loading with dtype conversion, exact missing / unexpected /
// shape-mismatch reports, all-or-nothing strict loads and ignore prefixes.
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ocl/io/safetensors.h"
#include "ocl/io/state_dict.h"

using ocl::io::load_state_dict;
using ocl::io::LoadOptions;
using ocl::io::LoadReport;
using ocl::io::state_dict;
using ocl::io::TensorMap;
using Names = std::vector<std::string>;

namespace {

struct InnerImpl : torch::nn::Module {
  InnerImpl() : proj(register_module("proj", torch::nn::Linear(3, 2))) {}
  torch::nn::Linear proj;
};
TORCH_MODULE(Inner);

// fc.{weight,bias} [3, 4] / [3], a buffer running [3], inner.proj.{weight,bias} [2, 3] / [2].
struct NetImpl : torch::nn::Module {
  NetImpl()
      : fc(register_module("fc", torch::nn::Linear(4, 3))),
        running(register_buffer("running", torch::zeros({3}))),
        inner(register_module("inner", Inner())) {}
  torch::nn::Linear fc;
  torch::Tensor running;
  Inner inner;
};
TORCH_MODULE(Net);

const Names kAllNames{"fc.bias", "fc.weight", "inner.proj.bias", "inner.proj.weight", "running"};

Names keys(const TensorMap& m) {
  Names out;
  for (const auto& kv : m) out.push_back(kv.first);
  return out;
}

// Deep copies, to compare against after a load.
TensorMap snapshot(const torch::nn::Module& m) {
  TensorMap out;
  for (const auto& [name, t] : state_dict(m)) out.emplace(name, t.clone());
  return out;
}

bool all_equal(const TensorMap& a, const TensorMap& b) {
  if (keys(a) != keys(b)) return false;
  for (const auto& [name, t] : a) {
    if (!torch::equal(t, b.at(name))) return false;
  }
  return true;
}

std::string state_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "<no exception>";
}

// A file that matches Net in everything except what a test changes: float64, values ≠ Net's.
TensorMap matching_file() {
  TensorMap m;
  m["fc.weight"] = torch::arange(12, torch::kFloat64).reshape({3, 4}) / 8;
  m["fc.bias"] = torch::tensor({0.5, -0.25, 1.0}, torch::kFloat64);
  m["running"] = torch::tensor({7.0, 8.0, 9.0}, torch::kFloat64);
  m["inner.proj.weight"] = torch::full({2, 3}, -1.5, torch::kFloat64);
  m["inner.proj.bias"] = torch::tensor({3.0, 4.0}, torch::kFloat64);
  return m;
}

}  // namespace

TEST(StateDict, NamesAreTheDottedNamesOfParametersAndBuffers) {
  Net net;
  const auto sd = state_dict(*net);
  EXPECT_EQ(keys(sd), kAllNames);
  EXPECT_EQ(sd.at("fc.weight").sizes().vec(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(sd.at("inner.proj.weight").sizes().vec(), (std::vector<int64_t>{2, 3}));
  for (const auto& [name, t] : sd) EXPECT_FALSE(t.requires_grad()) << name;
  // Detached views, not copies: they follow the module.
  EXPECT_EQ(sd.at("fc.weight").data_ptr(), net->fc->weight.data_ptr());
  EXPECT_EQ(sd.at("running").data_ptr(), net->running.data_ptr());
  // A Linear without bias has no "bias" entry.
  EXPECT_EQ(keys(state_dict(*torch::nn::Linear(torch::nn::LinearOptions(2, 2).bias(false)))),
            Names{"weight"});
}

TEST(StateDict, LoadCopiesInPlaceAndConvertsDtype) {
  Net net;
  const auto weight_storage = net->fc->weight.data_ptr();
  const auto file = matching_file();
  const LoadReport report = load_state_dict(*net, file);
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_EQ(report.summary(), "state dict: all keys matched");
  for (const auto& [name, t] : state_dict(*net)) {
    EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name << " keeps the module's dtype";
    EXPECT_TRUE(torch::equal(t, file.at(name).to(torch::kFloat32))) << name;
  }
  EXPECT_EQ(net->fc->weight.data_ptr(), weight_storage) << "loaded in place";
  EXPECT_TRUE(net->fc->weight.requires_grad());
  EXPECT_TRUE(torch::equal(net->running, torch::tensor({7.f, 8.f, 9.f})));
}

TEST(StateDict, NonStrictLoadReportsExactlyAndLoadsTheMatchingKeys) {
  Net net;
  const auto before = snapshot(*net);
  auto file = matching_file();
  file.erase("inner.proj.bias");
  file.erase("running");
  file["fc.weight"] = torch::zeros({5, 4}, torch::kFloat64);
  file["head.weight"] = torch::zeros({10, 3});
  file["extra"] = torch::zeros({});
  LoadOptions options;
  options.strict = false;
  const LoadReport report = load_state_dict(*net, file, options);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.missing, (Names{"inner.proj.bias", "running"}));
  EXPECT_EQ(report.unexpected, (Names{"extra", "head.weight"}));
  EXPECT_EQ(report.shape_mismatched, Names{"fc.weight: file [5, 4] vs module [3, 4]"});

  EXPECT_TRUE(torch::equal(net->fc->weight, before.at("fc.weight"))) << "mismatch not loaded";
  EXPECT_TRUE(torch::equal(net->inner->proj->bias, before.at("inner.proj.bias")));
  EXPECT_TRUE(torch::equal(net->running, before.at("running")));
  EXPECT_TRUE(torch::equal(net->fc->bias, file.at("fc.bias").to(torch::kFloat32)));
  EXPECT_TRUE(
      torch::equal(net->inner->proj->weight, file.at("inner.proj.weight").to(torch::kFloat32)));

  const auto summary = report.summary();
  EXPECT_NE(summary.find("2 missing, 2 unexpected, 1 shape mismatched"), std::string::npos)
      << summary;
  for (const auto* line :
       {"missing: inner.proj.bias", "missing: running", "unexpected: extra",
        "unexpected: head.weight", "shape mismatched: fc.weight: file [5, 4] vs module [3, 4]"}) {
    EXPECT_NE(summary.find(line), std::string::npos) << line << " in " << summary;
  }
}

TEST(StateDict, StrictLoadThrowsNamingEveryKeyAndChangesNothing) {
  Net net;
  const auto before = snapshot(*net);
  auto file = matching_file();  // fc.bias and others would load fine ...
  file.erase("running");
  file["inner.proj.weight"] = torch::zeros({3, 2}, torch::kFloat64);
  file["bogus"] = torch::ones({1});
  const auto msg = state_error_of([&] { load_state_dict(*net, file); });
  for (const auto* needle : {"strict", "missing: running", "unexpected: bogus",
                             "shape mismatched: inner.proj.weight: file [3, 2] vs module [2, 3]"}) {
    EXPECT_NE(msg.find(needle), std::string::npos) << needle << " in " << msg;
  }
  // ... but a failing strict load loads nothing.
  EXPECT_TRUE(all_equal(snapshot(*net), before));

  // Only the shape mismatch left: still fails, still changes nothing.
  file.erase("bogus");
  file["running"] = torch::ones({3});
  OCL_EXPECT_THROW_WITH(load_state_dict(*net, file), "inner.proj.weight");
  EXPECT_TRUE(all_equal(snapshot(*net), before));
}

TEST(StateDict, IgnorePrefixesHideOnlyTheirKeys) {
  Net net;
  const auto before = snapshot(*net);
  auto file = matching_file();
  file.erase("inner.proj.weight");
  file.erase("inner.proj.bias");
  file["head.weight"] = torch::zeros({10, 3});
  file["head.bias"] = torch::zeros({10});
  LoadOptions options;
  options.ignore_missing = {"inner."};
  options.ignore_unexpected = {"head."};
  const auto report = load_state_dict(*net, file, options);  // strict, passes
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_TRUE(torch::equal(net->fc->bias, file.at("fc.bias").to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(net->inner->proj->weight, before.at("inner.proj.weight")));

  // A prefix is a prefix of the dotted name, not a substring: "proj." hides nothing here.
  file["other.bias"] = torch::zeros({1});
  options.ignore_missing = {"proj."};
  options.strict = false;
  const auto partial = load_state_dict(*net, file, options);
  EXPECT_EQ(partial.missing, (Names{"inner.proj.bias", "inner.proj.weight"}));
  EXPECT_EQ(partial.unexpected, Names{"other.bias"});
}

TEST(StateDict, IgnorePrefixesNeverHideShapeMismatches) {
  Net net;
  const auto before = snapshot(*net);
  auto file = matching_file();
  file["fc.weight"] = torch::zeros({1, 4});
  LoadOptions options;
  options.ignore_missing = {"fc."};
  options.ignore_unexpected = {"fc."};
  OCL_EXPECT_THROW_WITH(load_state_dict(*net, file, options),
                        "fc.weight: file [1, 4] vs module [3, 4]");
  EXPECT_TRUE(all_equal(snapshot(*net), before));
}

TEST(StateDict, RoundTripsThroughSafetensors) {
  torch::manual_seed(3);
  Net a, b;
  a->running.copy_(torch::tensor({0.5f, 1.5f, 2.5f}));
  ASSERT_FALSE(torch::equal(a->fc->weight, b->fc->weight));
  const auto bytes = ocl::io::serialize_safetensors(state_dict(*a));
  const auto file = ocl::io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               bytes.size(), "a.safetensors");
  EXPECT_TRUE(load_state_dict(*b, file.tensors).ok());
  EXPECT_TRUE(all_equal(snapshot(*a), snapshot(*b)));
}

TEST(StateDict, RejectsUndefinedFileTensors) {
  Net net;
  auto file = matching_file();
  file["fc.bias"] = torch::Tensor();
  OCL_EXPECT_THROW_WITH(load_state_dict(*net, file), "'fc.bias'");
}

// An integer tensor where the module holds floats (a dtype relabelled F32 → I32 in the file's
// header keeps its byte size), or a weight holding NaN or inf, is refused by name, strict or
// not, and nothing is loaded.
TEST(StateDict, RejectsIntegerWeightsAndNonFiniteValuesBeforeLoadingAnything) {
  for (const bool strict : {true, false}) {
    Net net;
    const auto before = state_dict(*net).at("fc.bias").clone();
    auto file = matching_file();
    file["fc.weight"] = file["fc.weight"].to(torch::kInt32);
    LoadOptions options;
    options.strict = strict;
    OCL_EXPECT_THROW_WITH(load_state_dict(*net, file, options),
                          "tensor 'fc.weight' is Int in the file where the module holds Float");
    EXPECT_TRUE(torch::equal(state_dict(*net).at("fc.bias"), before)) << "nothing loaded";

    file = matching_file();
    file["fc.bias"] = file["fc.bias"].clone();
    file["fc.bias"][0] = std::nan("");
    OCL_EXPECT_THROW_WITH(load_state_dict(*net, file, options),
                          "tensor 'fc.bias' holds 1 non-finite value(s)");
    file["fc.bias"][0] = INFINITY;
    OCL_EXPECT_THROW_WITH(load_state_dict(*net, file, options), "non-finite");
    EXPECT_TRUE(torch::equal(state_dict(*net).at("fc.bias"), before)) << "nothing loaded";
  }
}
