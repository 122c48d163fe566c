// The fused AdamW step (at::_fused_adamw_ over torch::optim::AdamW's state) against LibTorch's
// own AdamW, the optim.fused switch, and checkpoints that switch between the two paths.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/io/checkpoint.h>
#include <ocl/optim/adamw_state.h>
#include <ocl/optim/adamw_step.h>
#include <ocl/optim/param_groups.h>

namespace {

// Two groups as pre-training builds them (decayed matrices, undecayed vectors), with different
// lr scales and weight decays so a mix-up of group options shows.
std::vector<ocl::optim::ParamGroup> make_groups() {
  torch::manual_seed(3);
  ocl::optim::ParamGroup decay{"decay", {"w1", "w2"}, {}, 0.1, 1.0};
  ocl::optim::ParamGroup no_decay{"no_decay", {"b1", "b2"}, {}, 0.0, 0.3};
  decay.params = {torch::randn({5, 7}).requires_grad_(), torch::randn({3, 4}).requires_grad_()};
  no_decay.params = {torch::randn({7}).requires_grad_(), torch::randn({4}).requires_grad_()};
  return {decay, no_decay};
}

std::vector<ocl::optim::ParamGroup> clone_groups(const std::vector<ocl::optim::ParamGroup>& gs) {
  auto out = gs;
  for (auto& g : out)
    for (auto& p : g.params) p = p.detach().clone().requires_grad_();
  return out;
}

const ocl::optim::AdamWSettings kSettings{2e-2, 0.9, 0.95, 1e-8};

// Gradients for step `step`, the same for every copy of the parameters. Parameter b2 gets none
// on step 1, so its step count lags the others' and the fused path must keep per-parameter
// step numbers (torch::optim::AdamW skips such a parameter and leaves its state as it was).
void set_grads(std::vector<ocl::optim::ParamGroup>& groups, int step) {
  torch::manual_seed(100 + step);
  for (auto& g : groups) {
    for (size_t i = 0; i < g.params.size(); ++i) {
      auto& grad = g.params[i].mutable_grad();
      if (g.names[i] == "b2" && step == 1) {
        grad = torch::Tensor();
        continue;
      }
      grad = torch::randn(g.params[i].sizes()) * (0.5 + step);
    }
  }
}

void run_steps(torch::optim::AdamW& opt, std::vector<ocl::optim::ParamGroup>& groups, int from,
               int to, bool fused) {
  for (int step = from; step < to; ++step) {
    set_grads(groups, step);
    ocl::optim::adamw_step(opt, fused);
  }
}

// Both paths update in float32 but round differently: LibTorch's AdamW forms the bias
// corrections in double and applies five separate float kernels; the fused kernel evaluates
// the whole update per element in float with powf bias corrections. Each step moves a parameter
// by at most ~lr·1 = 2e-2 with a relative rounding difference of a few float ulps (~1e-7), so
// after six steps the paths differ by ~1e-7 absolute on |p| ≲ 3; 2e-6 leaves an order of margin
// while a wrong weight decay (lr·wd·|p| ≈ 2e-3 per step), lr scale or bias correction shows as
// ≥ 1e-4.
constexpr double kAtol = 2e-6;
constexpr double kRtol = 1e-6;

// Every parameter of `a` equal to `b`'s, to the bit.
void expect_equal_params(const std::vector<ocl::optim::ParamGroup>& a,
                         const std::vector<ocl::optim::ParamGroup>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t g = 0; g < a.size(); ++g)
    for (size_t i = 0; i < a[g].params.size(); ++i)
      EXPECT_TRUE(torch::equal(a[g].params[i], b[g].params[i])) << "group " << g << ", " << i;
}

void expect_same(const torch::optim::AdamW& a_opt, const std::vector<ocl::optim::ParamGroup>& a,
                 const torch::optim::AdamW& b_opt, const std::vector<ocl::optim::ParamGroup>& b) {
  const auto sa = ocl::optim::adamw_state(a_opt, a);
  const auto sb = ocl::optim::adamw_state(b_opt, b);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa) {
    ASSERT_TRUE(sb.count(name)) << name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".step") == 0) {
      EXPECT_EQ(t.item<int64_t>(), sb.at(name).item<int64_t>()) << name;
    } else {
      EXPECT_TRUE(torch::allclose(t, sb.at(name), kRtol, kAtol))
          << name << ": max diff " << (t - sb.at(name)).abs().max().item<double>();
    }
  }
  for (size_t g = 0; g < a.size(); ++g) {
    for (size_t i = 0; i < a[g].params.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[g].params[i], b[g].params[i], kRtol, kAtol))
          << a[g].names[i] << ": max diff "
          << (a[g].params[i] - b[g].params[i]).abs().max().item<double>();
    }
  }
}

#define SKIP_WITHOUT_FUSED_CPU()                                                          \
  if (!ocl::compat::fused_adamw_supported(c10::DeviceType::CPU))                          \
  GTEST_SKIP() << "LibTorch " << ocl::compat::torch_version()                             \
               << " has no CPU kernel for at::_fused_adamw_ (CPU needs >= 2.6; the CUDA " \
                  "comparison is gpu.Gpu.FusedAdamWMatchesPlainUpdate)"

TEST(FusedAdamW, SwitchResolvesByDeviceSupport) {
  const c10::Device cpu(c10::kCPU);
  const bool cpu_ok = ocl::compat::fused_adamw_supported(c10::DeviceType::CPU);
  EXPECT_FALSE(ocl::optim::resolve_fused_adamw("off", cpu));
  EXPECT_EQ(ocl::optim::resolve_fused_adamw("auto", cpu), cpu_ok);
  // No LibTorch has a fused kernel for the meta device: "on" must fail naming the key.
  const c10::Device meta(c10::kMeta);
  EXPECT_FALSE(ocl::optim::resolve_fused_adamw("auto", meta));
  try {
    ocl::optim::resolve_fused_adamw("on", meta);
    ADD_FAILURE() << "optim.fused: on for a device without a kernel did not throw";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("optim.fused: on, but LibTorch"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(ocl::optim::resolve_fused_adamw("yes", cpu), c10::Error);
  if (cpu_ok) {
    EXPECT_TRUE(ocl::optim::resolve_fused_adamw("on", cpu));
  } else {
    EXPECT_THROW(ocl::optim::resolve_fused_adamw("on", cpu), c10::Error);
  }
}

TEST(FusedAdamW, UnsupportedDeviceThrowsInsteadOfFallingBack) {
  if (ocl::compat::fused_adamw_supported(c10::DeviceType::CPU))
    GTEST_SKIP() << "LibTorch " << ocl::compat::torch_version()
                 << " has a CPU fused kernel; this checks the error without one";
  auto groups = make_groups();
  auto opt = ocl::optim::make_adamw(groups, kSettings);
  set_grads(groups, 0);
  const auto before = groups[0].params[0].detach().clone();
  try {
    ocl::optim::adamw_step(*opt, /*fused=*/true);
    ADD_FAILURE() << "fused step without a kernel did not throw";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no at::_fused_adamw_ kernel"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(torch::equal(before, groups[0].params[0]));
}

TEST(FusedAdamW, EqualsLibTorchAdamWOverSeveralSteps) {
  SKIP_WITHOUT_FUSED_CPU();
  auto plain = make_groups();
  auto fused = clone_groups(plain);
  auto plain_opt = ocl::optim::make_adamw(plain, kSettings);
  auto fused_opt = ocl::optim::make_adamw(fused, kSettings);
  const auto start = plain[0].params[0].detach().clone();
  run_steps(*plain_opt, plain, 0, 6, /*fused=*/false);
  run_steps(*fused_opt, fused, 0, 6, /*fused=*/true);
  expect_same(*plain_opt, plain, *fused_opt, fused);
  // The comparison is not vacuous: the parameters moved, and b2 has one step fewer.
  EXPECT_GT((plain[0].params[0] - start).abs().max().item<double>(), 1e-2);
  const auto state = ocl::optim::adamw_state(*fused_opt, fused);
  EXPECT_EQ(state.at("optim.w1.step").item<int64_t>(), 6);
  EXPECT_EQ(state.at("optim.b2.step").item<int64_t>(), 5);
}

TEST(FusedAdamW, CheckpointResumesOnEitherPath) {
  SKIP_WITHOUT_FUSED_CPU();
  // Reference: six plain steps in one go.
  auto ref = make_groups();
  auto ref_opt = ocl::optim::make_adamw(ref, kSettings);
  run_steps(*ref_opt, ref, 0, 6, false);

  for (const bool first_fused : {false, true}) {
    SCOPED_TRACE(first_fused ? "fused, then plain" : "plain, then fused");
    auto groups = make_groups();
    auto opt = ocl::optim::make_adamw(groups, kSettings);
    run_steps(*opt, groups, 0, 3, first_fused);
    // What a checkpoint holds, read into a fresh optimiser over fresh copies of the parameters.
    const auto saved = ocl::optim::adamw_state(*opt, groups);
    auto resumed = clone_groups(groups);
    auto resumed_opt = ocl::optim::make_adamw(resumed, kSettings);
    ocl::optim::load_adamw_state(*resumed_opt, resumed, saved);
    run_steps(*resumed_opt, resumed, 3, 6, !first_fused);
    expect_same(*ref_opt, ref, *resumed_opt, resumed);
  }
}

}  // namespace

// train.host_sync: deferred's update: a step found non-finite on the device changes nothing, and
// the step after it, queued before the host learnt of the skip, discounts it in its bias
// correction; once the host takes the step back from its count, the run is the run that never
// had that step.
TEST(FusedAdamW, ADeviceSkipLeavesEverythingAndTheNextStepDiscountsIt) {
  SKIP_WITHOUT_FUSED_CPU();
  auto plain = make_groups();
  auto gated = clone_groups(plain);
  auto plain_opt = ocl::optim::make_adamw(plain, kSettings);
  auto gated_opt = ocl::optim::make_adamw(gated, kSettings);
  const auto one = torch::ones({}), zero = torch::zeros({});
  // Steps 2..5 (every parameter has a gradient there); the gated run's step 3 is non-finite.
  run_steps(*plain_opt, plain, 2, 3, true);
  set_grads(gated, 2);
  ocl::optim::adamw_step(*gated_opt, ocl::optim::DeviceSkip{zero, {}});
  expect_same(*plain_opt, plain, *gated_opt, gated);
  set_grads(gated, 3);
  ocl::optim::adamw_step(*gated_opt, ocl::optim::DeviceSkip{one, zero});
  // Nothing moved; the host has counted the step as it cannot know yet.
  expect_equal_params(plain, gated);
  EXPECT_EQ(ocl::optim::adamw_state(*gated_opt, gated).at("optim.w1.step").item<int64_t>(), 2);
  run_steps(*plain_opt, plain, 4, 5, true);
  set_grads(gated, 4);
  ocl::optim::adamw_step(*gated_opt, ocl::optim::DeviceSkip{zero, one});
  ocl::optim::uncount_adamw_step(*gated_opt);  // the host reads step 3's figures
  expect_same(*plain_opt, plain, *gated_opt, gated);
  run_steps(*plain_opt, plain, 5, 6, true);
  set_grads(gated, 5);
  ocl::optim::adamw_step(*gated_opt, ocl::optim::DeviceSkip{zero, {}});
  expect_same(*plain_opt, plain, *gated_opt, gated);
}

namespace {

// `groups`' gradients for step `step` as set_grads draws them, written into the tensors they
// have (a captured step reads its gradients at fixed addresses).
void copy_grads(std::vector<ocl::optim::ParamGroup>& groups, int step) {
  auto fresh = clone_groups(groups);
  set_grads(fresh, step);
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i = 0; i < groups[g].params.size(); ++i)
      groups[g].params[i].mutable_grad().copy_(fresh[g].params[i].grad());
}

}  // namespace

// train.cuda_graph's AdamW: with the learning rates and step counts on the device it makes the
// fused step's updates, a step with found_inf 1 moves nothing and is not counted, a new learning
// rate is taken at load_lr, and write_back gives the optimiser's state the device's counts.
TEST(FusedAdamW, TheCapturableStepEqualsTheFusedOneAndCountsOnTheDevice) {
  SKIP_WITHOUT_FUSED_CPU();
  auto plain = make_groups();
  auto staged = clone_groups(plain);
  auto plain_opt = ocl::optim::make_adamw(plain, kSettings);
  auto staged_opt = ocl::optim::make_adamw(staged, kSettings);
  const auto one = torch::ones({}), zero = torch::zeros({});
  run_steps(*plain_opt, plain, 2, 3, true);
  set_grads(staged, 2);
  ocl::optim::CapturableAdamW capturable(*staged_opt);
  capturable.step(zero);
  capturable.write_back();
  expect_same(*plain_opt, plain, *staged_opt, staged);
  // A non-finite step: nothing moves, the count stays.
  const auto before = clone_groups(staged);
  copy_grads(staged, 3);
  capturable.step(one);
  capturable.write_back();
  expect_equal_params(staged, before);
  EXPECT_EQ(ocl::optim::adamw_state(*staged_opt, staged).at("optim.w1.step").item<int64_t>(), 1);
  // The same gradients again, finite: the plain run's second step.
  run_steps(*plain_opt, plain, 3, 4, true);
  capturable.step(zero);
  capturable.write_back();
  expect_same(*plain_opt, plain, *staged_opt, staged);
  // Another learning rate, taken when loaded.
  ocl::optim::set_learning_rate(*plain_opt, plain, 5e-3);
  ocl::optim::set_learning_rate(*staged_opt, staged, 5e-3);
  capturable.load_lr();
  run_steps(*plain_opt, plain, 4, 5, true);
  copy_grads(staged, 4);
  capturable.step(zero);
  capturable.write_back();
  expect_same(*plain_opt, plain, *staged_opt, staged);
  EXPECT_EQ(ocl::optim::adamw_state(*staged_opt, staged).at("optim.b2.step").item<int64_t>(), 3);
}
