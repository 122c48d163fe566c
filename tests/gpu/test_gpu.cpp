// GPU tests (label gpu): the CUDA paths against CPU references. Each test skips its CUDA part
// without CUDA, so the suite builds and passes on CPU-only machines and CI; what can run without
// a GPU runs before the skip (the fixture's format version, the CPU loss curve), so a CPU run
// still catches a stale fixture or a broken comparison. On a GPU machine: `ctest -L gpu`. The CPU
// counterparts are in tests/reference (float64 fixture), tests/unit/test_compat.cpp (SDPA vs
// explicit) and tests/unit/test_adamw_step.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "reference/fixture.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/distributed/all_gather.h>
#include <ocl/distributed/communicator.h>
#include <ocl/distributed/grad_sync.h>
#include <ocl/distributed/launch.h>
#include <ocl/engine/pretrain.h>
#include <ocl/io/checkpoint.h>
#include <ocl/ocl.h>
#include <ocl/ops/linear.h>
#include <ocl/ops/linear_gelu.h>
#include <ocl/ops/residual_layer_norm.h>
#include <ocl/optim/adamw_state.h>
#include <ocl/optim/adamw_step.h>
#include <ocl/optim/param_groups.h>

namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (or a CPU-only LibTorch)"

constexpr const char* kFixture = OCL_FIXTURE_DIR "/ocl_reference.safetensors";

const ocl_test::ReferenceFixture& fixture() {
  static const ocl_test::ReferenceFixture f(kFixture, ocl_test::kOclStepFixtureVersion,
                                            ocl_test::kOclStepFixtureCommand);
  return f;
}

double meta(const std::string& key) { return std::stod(fixture().meta(key)); }

// The fixture's tiny OCL model (see tests/reference/test_reference.cpp) in float32 on `device`,
// its blocks through ocl::ops where `fused`.
ocl::ssl::OCL reference_model(const torch::Device& device, bool fused = false) {
  ocl::ssl::OCL model(ocl::nn::VisionTransformerOptions(static_cast<int64_t>(meta("img_size")),
                                                        static_cast<int64_t>(meta("patch_size")),
                                                        static_cast<int64_t>(meta("embed_dim")),
                                                        static_cast<int64_t>(meta("depth")),
                                                        static_cast<int64_t>(meta("num_heads")))
                          .freeze_patch_embed(false)
                          .fused(fused),
                      ocl::ssl::OCLOptions()
                          .mask_ratio(meta("mask_ratio"))
                          .kappa(meta("kappa"))
                          .temperature(meta("temperature"))
                          .max_logit_scale(meta("max_logit_scale")));
  ocl::io::TensorMap weights;
  for (const auto& [name, tensor] : fixture().file().tensors) {
    if (name.rfind("param.", 0) == 0) weights[name.substr(6)] = tensor.to(torch::kFloat32);
  }
  auto report = ocl::io::load_state_dict(*model, weights,
                                         ocl::io::LoadOptions{true, {"encoder.pos_embed"}, {}});
  EXPECT_TRUE(report.ok()) << report.summary();
  model->to(device);
  return model;
}

// Saves and restores the TF32 switches a test changes, so that tests do not leak settings.
struct Tf32Scope {
  bool cublas = at::globalContext().allowTF32CuBLAS();
  bool cudnn = at::globalContext().allowTF32CuDNN();
  explicit Tf32Scope(bool allow) {
    at::globalContext().setAllowTF32CuBLAS(allow);
    at::globalContext().setAllowTF32CuDNN(allow);
  }
  ~Tf32Scope() {
    at::globalContext().setAllowTF32CuBLAS(cublas);
    at::globalContext().setAllowTF32CuDNN(cudnn);
  }
};

struct Tolerances {
  double forward;   // CLS outputs, loss, figures
  double gradient;  // every parameter's gradient
};

// One OCL step of the reference model on CUDA, every named tensor against the float64 fixture.
void expect_reference_step(bool bf16, const Tolerances& tol) {
  const torch::Device cuda(torch::kCUDA);
  auto model = reference_model(cuda);
  const auto images = fixture().tensor("input.images").to(cuda, torch::kFloat32);
  // The noise stays float64 so that the argsort gives the fixture's indices exactly.
  const auto noise = fixture().tensor("input.noise").to(cuda);
  ocl::ssl::OCLOutput out;
  {
    ocl::compat::AutocastGuard autocast(c10::DeviceType::CUDA, bf16);
    out = model->forward(images, noise);
  }
  EXPECT_TRUE(torch::equal(out.split.ids_a.cpu(), fixture().tensor("out.ids_a")));
  EXPECT_TRUE(torch::equal(out.split.ids_b.cpu(), fixture().tensor("out.ids_b")));
  EXPECT_TRUE(ocl_test::close("cls_a", out.cls_a, fixture().tensor("out.cls_a"), tol.forward));
  EXPECT_TRUE(ocl_test::close("cls_b", out.cls_b, fixture().tensor("out.cls_b"), tol.forward));
  EXPECT_TRUE(ocl_test::close("loss", out.loss, fixture().tensor("out.loss"), tol.forward));
  EXPECT_TRUE(ocl_test::close("pos_cos", out.figures.pos_cos, fixture().tensor("out.pos_cos"),
                              tol.forward));
  out.loss.backward();
  for (const auto& p : model->named_parameters()) {
    EXPECT_TRUE(ocl_test::close("grad " + p.key(), p.value().grad(),
                                fixture().tensor("grad." + p.key()), tol.gradient));
  }
}

// TF32 rounds matmul inputs to a 10-bit mantissa (relative 2^-11 ≈ 5e-4) and accumulates in
// fp32; everything else stays fp32. bf16 (below) rounds 8× more coarsely and also rounds the
// activations, and measured on CPU reaches 1.3e-2 (forward) and 5e-2 (gradients), so TF32 should
// stay under ~2e-3 / ~1e-2. 1e-2 / 3e-2 leave that margin for the different CUDA kernels and
// still catch a wrong index, constant or kernel (errors of order 1). Plain fp32 on CPU is at
// ~2e-6 of this fixture.
TEST(Gpu, ReferenceStepInTf32MatchesFloat64Fixture) {
  fixture();  // read before the skip: a CPU run catches a fixture of another format version
  SKIP_WITHOUT_CUDA();
  Tf32Scope tf32(true);
  expect_reference_step(/*bf16=*/false, {1e-2, 3e-2});
}

// bf16 keeps 8 significant bits (relative 2^-9 ≈ 2e-3 per rounding), and autocast rounds
// activations as well as matmul inputs. With CPU bf16 autocast on this fixture the largest errors
// are 1.3e-2 (cls_a / cls_b; loss 6e-3) and 5e-2 (the gradient of patch_embed.proj.bias; the
// others ≤ 3.3e-2); 5e-2 / 1.5e-1 allow ~3× for the different CUDA kernels while an error of
// order 1 (wrong mask, wrong scale, a dropped term) still fails.
TEST(Gpu, ReferenceStepInBf16MatchesFloat64Fixture) {
  fixture();  // read before the skip, as above
  SKIP_WITHOUT_CUDA();
  expect_reference_step(/*bf16=*/true, {5e-2, 1.5e-1});
}

// The losses of `steps` training steps of the fixture's tiny model on `device` in fp32 from the
// fixture's weights: the pre-training optimiser (MAE's weight-decay groups, ocl's AdamW step,
// fused where the device has it, lr 1e-3, β 0.9 / 0.95), on a batch sequence drawn on the CPU
// (images and mask noise), so that every device sees the same inputs and the same masks.
std::vector<double> loss_curve(const torch::Device& device, int steps, bool bf16 = false,
                               bool fused_blocks = false) {
  auto model = reference_model(device, fused_blocks);
  model->train();
  auto groups = ocl::optim::weight_decay_groups(*model, 0.05);
  auto optimizer = ocl::optim::make_adamw(groups, {1e-3, 0.9, 0.95, 1e-8});
  const bool fused = ocl::optim::resolve_fused_adamw("auto", device);
  const auto size = static_cast<int64_t>(meta("img_size"));
  const auto patches = (size / static_cast<int64_t>(meta("patch_size"))) *
                       (size / static_cast<int64_t>(meta("patch_size")));
  constexpr int64_t kBatch = 16;
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    torch::manual_seed(1000 + step);
    const auto images = torch::randn({kBatch, 3, size, size}).to(device);
    const auto noise = torch::rand({kBatch, patches}, torch::kFloat64).to(device);
    ocl::compat::zero_grad(model->parameters());
    ocl::ssl::OCLOutput out;
    {
      ocl::compat::AutocastGuard autocast(device.type(), bf16);
      out = model->forward(images, noise);
    }
    out.loss.backward();
    ocl::optim::adamw_step(*optimizer, fused);
    losses.push_back(out.loss.item<double>());
  }
  return losses;
}

// The CUDA step against the CPU step over 20 steps in fp32 with TF32 on (the default on a GPU):
// the same loss curve. Measured on the CPU, bf16 autocast (whose roundings are 8× coarser than
// TF32's and fall on activations too) moves this curve by at most 2.4e-3 of the loss, largest at
// the first step and not growing over the 20 (the loss falls from 4.06 to 2.79), so TF32 should
// stay near 3e-4; 5e-3 leaves room for the different CUDA kernels and the fused AdamW while a
// wrong update, mask or kernel (the loss moves by 0.1–0.5 a step early on) fails. The CPU half
// runs everywhere, so that the comparison's inputs and its falling curve are checked without a GPU.
constexpr double kCurveTolerance = 5e-3;  // relative to the loss (at least 1)
constexpr double kCurveDrop = 0.5;        // the CPU loss must fall at least this much in 20 steps

TEST(Gpu, CudaAndCpuStepsGiveTheSameLossCurve) {
  const auto cpu = loss_curve(torch::kCPU, 20);
  ASSERT_EQ(cpu, loss_curve(torch::kCPU, 20)) << "the CPU curve is not reproducible";
  EXPECT_LT(cpu.back(), cpu.front() - kCurveDrop) << "the CPU loss did not fall";
  SKIP_WITHOUT_CUDA();
  Tf32Scope tf32(true);
  const auto cuda = loss_curve(torch::kCUDA, 20);
  ASSERT_EQ(cpu.size(), cuda.size());
  double worst = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double scale = std::max(1.0, std::abs(cpu[i]));
    worst = std::max(worst, std::abs(cuda[i] - cpu[i]) / scale);
    EXPECT_NEAR(cuda[i], cpu[i], kCurveTolerance * scale) << "step " << i;
  }
  RecordProperty("largest_relative_difference", std::to_string(worst));
  std::printf("CUDA vs CPU loss curve, 20 steps: largest relative difference %.2e\n", worst);
}

// compat::attention (flash / memory-efficient SDPA kernels on CUDA in bf16) against the explicit
// softmax(q·kᵀ/√d)·v, both from the same bf16 inputs and both measured against the explicit
// form in float32. The fused kernels accumulate in fp32 and round once; the explicit bf16 form
// rounds the scores, the probabilities and the output (each 2^-9 relative), so it is the less
// exact of the two; the SDPA path must be within the explicit bf16 path's error budget: 1e-2 of
// the largest entry for outputs and 2e-2 for gradients (the backward has one more product).
TEST(Gpu, SdpaMatchesExplicitAttentionInBf16) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  // ViT-B/16's attention shape: 12 heads of 64, 1 + 196·(1 − 0.3)/2 ≈ 70 tokens per group.
  auto make = [&] { return torch::randn({4, 12, 70, 64}, opts).requires_grad_(); };
  auto q = make(), k = make(), v = make();
  auto q32 = q.detach().to(torch::kFloat32).requires_grad_();
  auto k32 = k.detach().to(torch::kFloat32).requires_grad_();
  auto v32 = v.detach().to(torch::kFloat32).requires_grad_();
  const auto dout = torch::randn({4, 12, 70, 64}, opts);

  auto ref = ocl::compat::attention_explicit(q32, k32, v32);
  ref.backward(dout.to(torch::kFloat32));
  auto sdpa = ocl::compat::attention(q, k, v);
  EXPECT_EQ(sdpa.scalar_type(), torch::kBFloat16);
  sdpa.backward(dout);
  auto q2 = q.detach().clone().requires_grad_(), k2 = k.detach().clone().requires_grad_(),
       v2 = v.detach().clone().requires_grad_();
  auto explicit_bf16 = ocl::compat::attention_explicit(q2, k2, v2);
  explicit_bf16.backward(dout);

  EXPECT_TRUE(ocl_test::close("sdpa out", sdpa, ref.detach(), 1e-2));
  EXPECT_TRUE(ocl_test::close("explicit bf16 out", explicit_bf16, ref.detach(), 1e-2));
  EXPECT_TRUE(ocl_test::close("sdpa dq", q.grad(), q32.grad(), 2e-2));
  EXPECT_TRUE(ocl_test::close("sdpa dk", k.grad(), k32.grad(), 2e-2));
  EXPECT_TRUE(ocl_test::close("sdpa dv", v.grad(), v32.grad(), 2e-2));
  EXPECT_TRUE(ocl_test::close("sdpa vs explicit bf16", sdpa, explicit_bf16, 2e-2));
}

// The fused CUDA AdamW (one multi-tensor kernel per group) against torch::optim::AdamW on the
// same CUDA tensors, over six steps of two groups with different lr scales and weight decays.
// Both run in fp32 with different rounding (see tests/unit/test_adamw_step.cpp): after six
// steps of at most lr = 2e-2 each the paths differ by ~1e-7; 2e-6 absolute leaves margin while a
// wrong weight decay or lr scale (≥ 1e-4) fails.
TEST(Gpu, FusedAdamWMatchesPlainUpdate) {
  SKIP_WITHOUT_CUDA();
  if (!ocl::compat::fused_adamw_supported(c10::DeviceType::CUDA))
    GTEST_SKIP() << "LibTorch " << ocl::compat::torch_version() << " has no at::_fused_adamw_";
  const torch::Device cuda(torch::kCUDA);
  auto make_groups = [&] {
    torch::manual_seed(3);
    ocl::optim::ParamGroup decay{"decay", {"w1", "w2"}, {}, 0.1, 1.0};
    ocl::optim::ParamGroup no_decay{"no_decay", {"b1"}, {}, 0.0, 0.3};
    decay.params = {torch::randn({64, 48}).to(cuda).requires_grad_(),
                    torch::randn({3, 4}).to(cuda).requires_grad_()};
    no_decay.params = {torch::randn({48}).to(cuda).requires_grad_()};
    return std::vector<ocl::optim::ParamGroup>{decay, no_decay};
  };
  const ocl::optim::AdamWSettings settings{2e-2, 0.9, 0.95, 1e-8};
  auto plain = make_groups(), fused = make_groups();
  auto plain_opt = ocl::optim::make_adamw(plain, settings);
  auto fused_opt = ocl::optim::make_adamw(fused, settings);
  for (int step = 0; step < 6; ++step) {
    torch::manual_seed(100 + step);
    for (size_t g = 0; g < plain.size(); ++g) {
      for (size_t i = 0; i < plain[g].params.size(); ++i) {
        const auto grad = torch::randn(plain[g].params[i].sizes()).to(cuda) * (0.5 + step);
        plain[g].params[i].mutable_grad() = grad.clone();
        fused[g].params[i].mutable_grad() = grad.clone();
      }
    }
    ocl::optim::adamw_step(*plain_opt, false);
    ocl::optim::adamw_step(*fused_opt, true);
  }
  const auto sp = ocl::optim::adamw_state(*plain_opt, plain);
  const auto sf = ocl::optim::adamw_state(*fused_opt, fused);
  ASSERT_EQ(sp.size(), sf.size());
  for (const auto& [name, t] : sp) {
    EXPECT_TRUE(torch::allclose(t.cpu(), sf.at(name).cpu(), 1e-6, 2e-6)) << name;
  }
  for (size_t g = 0; g < plain.size(); ++g) {
    for (size_t i = 0; i < plain[g].params.size(); ++i) {
      EXPECT_TRUE(torch::allclose(plain[g].params[i].cpu(), fused[g].params[i].cpu(), 1e-6, 2e-6))
          << plain[g].names[i];
    }
  }
}

// NCCL with one rank (the GPU machines have one GPU): rendezvous, every collective the training
// step uses on CUDA tensors, and the differentiable all-gather of the loss with its backward.
// ocl::ops' CUDA kernels against their ATen composites, forward and backward, at ViT-B's and
// ViT-L's widths (rows: 4 sequences of 61 tokens, four column partials, the last one short), in
// float32 and in autocast's mixes: a float32 stream with bf16 branches, and all bf16. bf16
// results may differ by the rounding of one bf16 step (2^-8 relative).
double max_relative(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.to(torch::kFloat64).cpu(), w = want.to(torch::kFloat64).cpu();
  return ((g - w).abs() / (w.abs() + 1.0)).max().item<double>();
}

TEST(GpuOps, FusedKernelsMatchTheirComposites) {
  SKIP_WITHOUT_CUDA();
  ASSERT_TRUE(ocl::ops::cuda_kernels_compiled()) << "a CUDA build without ocl::ops' kernels";
  using ocl::ops::Path;
  struct Mix {
    torch::ScalarType stream, branch, normed;
    double tolerance;
  };
  const Mix mixes[] = {{torch::kFloat32, torch::kFloat32, torch::kFloat32, 1e-5},
                       {torch::kFloat32, torch::kBFloat16, torch::kBFloat16, 1.6e-2},
                       {torch::kBFloat16, torch::kBFloat16, torch::kBFloat16, 1.6e-2}};
  for (const int64_t D : {768, 1024}) {
    for (const auto& m : mixes) {
      SCOPED_TRACE("D " + std::to_string(D) + ", stream " + c10::toString(m.stream) + ", branch " +
                   c10::toString(m.branch));
      torch::manual_seed(5);
      const auto cuda = torch::TensorOptions().device(torch::kCUDA);
      auto x = torch::randn({4, 61, D}, cuda.dtype(m.stream)).requires_grad_();
      auto h = torch::randn({4, 61, D}, cuda.dtype(m.branch)).requires_grad_();
      auto w = (1 + 0.1 * torch::randn({D}, cuda)).requires_grad_();
      auto b = (0.1 * torch::randn({D}, cuda)).requires_grad_();
      auto up_y = torch::randn({4, 61, D}, cuda.dtype(m.stream));
      auto up_n = torch::randn({4, 61, D}, cuda.dtype(m.normed));
      std::vector<torch::Tensor> outs[2], grads[2];
      for (const int k : {0, 1}) {
        auto r = ocl::ops::residual_layer_norm(x, h, w, b, 1e-6, m.normed,
                                               k ? Path::kKernel : Path::kComposite);
        EXPECT_EQ(r.normed.scalar_type(), m.normed);
        outs[k] = {r.residual, r.normed};
        grads[k] = torch::autograd::grad({(r.residual.to(torch::kFloat32) * up_y).sum() +
                                          (r.normed.to(torch::kFloat32) * up_n).sum()},
                                         {x, h, w, b});
      }
      EXPECT_LT(max_relative(outs[1][0], outs[0][0]), m.tolerance) << "residual";
      EXPECT_LT(max_relative(outs[1][1], outs[0][1]), m.tolerance) << "normed";
      const char* names[] = {"x", "h", "weight", "bias"};
      // The weight and bias gradients sum 244 rows: a few bf16 steps of relative error.
      for (size_t i = 0; i < 4; ++i)
        EXPECT_LT(max_relative(grads[1][i], grads[0][i]), i < 2 ? m.tolerance : 4 * m.tolerance)
            << "gradient of " << names[i];

      const int64_t H = 4 * D;
      auto a = torch::randn({4, 61, D}, cuda.dtype(m.branch)).requires_grad_();
      auto w1 = (0.02 * torch::randn({H, D}, cuda.dtype(m.branch))).requires_grad_();
      auto b1 = (0.02 * torch::randn({H}, cuda.dtype(m.branch))).requires_grad_();
      auto up = torch::randn({4, 61, H}, cuda.dtype(m.branch));
      std::vector<torch::Tensor> lg[2];
      torch::Tensor out[2];
      for (const int k : {0, 1}) {
        out[k] = ocl::ops::linear_gelu(a, w1, b1, k ? Path::kKernel : Path::kComposite);
        lg[k] = torch::autograd::grad({(out[k] * up).sum()}, {a, w1, b1});
      }
      EXPECT_LT(max_relative(out[1], out[0]), m.tolerance) << "linear_gelu";
      for (size_t i = 0; i < 3; ++i)
        EXPECT_LT(max_relative(lg[1][i], lg[0][i]), 4 * m.tolerance) << "linear_gelu grad " << i;

      // ops::linear at the step's three shapes with a bias (qkv D → 3D, proj D → D, fc2
      // 4D → D): the weight gradient's GEMM with the bias gradient in cuBLASLt's epilogue,
      // taken every time (no fallback to a separate reduction).
      const int64_t fallbacks = ocl::ops::linear_bias_grad_fallbacks();
      for (const auto& [in, out_features] :
           std::vector<std::pair<int64_t, int64_t>>{{D, 3 * D}, {D, D}, {H, D}}) {
        auto li = torch::randn({4, 61, in}, cuda.dtype(m.branch)).requires_grad_();
        auto lw = (0.02 * torch::randn({out_features, in}, cuda.dtype(m.branch))).requires_grad_();
        auto lb = (0.02 * torch::randn({out_features}, cuda.dtype(m.branch))).requires_grad_();
        auto lu = torch::randn({4, 61, out_features}, cuda.dtype(m.branch));
        std::vector<torch::Tensor> g[2];
        for (const int k : {0, 1}) {
          auto o = ocl::ops::linear(li, lw, lb, k ? Path::kKernel : Path::kComposite);
          g[k] = torch::autograd::grad({(o * lu).sum()}, {li, lw, lb});
        }
        for (size_t i = 0; i < 3; ++i)
          EXPECT_LT(max_relative(g[1][i], g[0][i]), 4 * m.tolerance)
              << "linear " << in << " -> " << out_features << " grad " << i;
      }
      EXPECT_EQ(ocl::ops::linear_bias_grad_fallbacks(), fallbacks)
          << "cuBLASLt offered no bias-gradient epilogue for these shapes";
    }
  }
}

// model.fused on against off over 50 bf16 steps on the GPU: the same training within bf16's
// noise. Two bf16 runs that round in different places drift apart by about what bf16 moves the
// fp32 curve (2.4e-3 of the loss over 20 steps, above); 1e-2 allows for 50 steps, while a wrong
// gradient in a fused op (the loss moves by 0.1–0.5 a step early on) fails.
TEST(GpuOps, FusedBlocksGiveThePlainBf16LossCurve) {
  SKIP_WITHOUT_CUDA();
  const torch::Device cuda(torch::kCUDA);
  const auto plain = loss_curve(cuda, 50, /*bf16=*/true, /*fused=*/false);
  const auto fused = loss_curve(cuda, 50, /*bf16=*/true, /*fused=*/true);
  EXPECT_LT(plain.back(), plain.front() - kCurveDrop) << "the bf16 loss did not fall";
  double worst = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double scale = std::max(1.0, std::abs(plain[i]));
    worst = std::max(worst, std::abs(fused[i] - plain[i]) / scale);
    EXPECT_NEAR(fused[i], plain[i], 1e-2 * scale) << "step " << i;
  }
  std::printf("fused vs plain bf16 loss curve, 50 steps: largest relative difference %.2e\n",
              worst);
}

// train.cuda_graph on the GPU: two epochs of pre-training (16 steps, a checkpoint after each
// epoch) with the step captured after three uncaptured ones give the uncaptured deferred run's
// losses (fp32: the same kernels, replayed), with one micro-batch a step and with two (drop path
// on: the captured step's draws are the uncaptured one's), and the log names the capture.
TEST(GpuGraph, TheCapturedStepGivesTheUncapturedLosses) {
  SKIP_WITHOUT_CUDA();
  auto run = [](bool graph, int64_t accum) {
    const auto dir = ocl::test::make_temp_dir("ocl_gpu_graph_");
    std::vector<std::string> sets = {"model.arch=custom",      "model.img_size=32",
                                     "model.patch_size=4",     "model.embed_dim=64",
                                     "model.depth=2",          "model.num_heads=4",
                                     "data.dataset=synthetic", "data.synthetic_train_size=256",
                                     "data.workers=1",         "model.drop_path=0.1",
                                     "train.epochs=2",         "train.device=cuda",
                                     "train.precision=fp32",   "train.host_sync=deferred",
                                     "optim.fused=on",         "eval.knn_every=0",
                                     "log.progress=lines",     "train.output_dir=" + dir};
    sets.push_back("train.batch_size=" + std::to_string(32 / accum));
    sets.push_back("optim.accum_iter=" + std::to_string(accum));
    if (graph) sets.push_back("train.cuda_graph=on");
    ocl::engine::PretrainOptions o;
    o.console = std::make_shared<ocl::io::ConsoleSink>(stderr, false);
    ocl::engine::Pretrainer p(ocl::io::parse_config("", sets), o);
    const auto losses = p.run().step_losses;
    return std::make_pair(losses, ocl::test::read_file(dir + "/train.log"));
  };
  for (const int64_t accum : {1, 2}) {
    SCOPED_TRACE("accum " + std::to_string(accum));
    const auto [plain, plain_log] = run(false, accum);
    const auto [graph, graph_log] = run(true, accum);
    ASSERT_EQ(plain.size(), 16u);
    ASSERT_EQ(graph.size(), plain.size());
    for (size_t i = 0; i < plain.size(); ++i)
      EXPECT_NEAR(graph[i], plain[i], 1e-4 * std::max(1.0, std::abs(plain[i]))) << "step " << i;
    EXPECT_NE(graph_log.find("the step captured at global step 4"), std::string::npos) << graph_log;
  }
}

// A communicator of one rank over NCCL on GPU 0 (the GPU machines have one GPU).
std::unique_ptr<ocl::distributed::Communicator> one_rank_nccl(
    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  ocl::distributed::LaunchInfo launch;
  launch.master_port = ocl::distributed::free_tcp_port();
  launch.source = "test";
  ocl::distributed::CommunicatorOptions o;
  o.backend = "nccl";
  o.device = torch::Device(torch::kCUDA, 0);
  o.timeout = timeout;
  o.heartbeat_s = 0;
  return std::make_unique<ocl::distributed::Communicator>(launch, o);
}

// A distributed step's collectives inside a CUDA graph, over NCCL with one rank (one GPU): the
// gradient buckets' all-reduce during backward and the loss's all-gather and its backward's
// reduce-scatter, waited for stream-ordered, captured once and replayed on new inputs, give the
// uncaptured step's gradients; the host learns the step is done through await_device.
TEST(GpuGraph, NcclCollectivesAreCapturedWithTheStep) {
  SKIP_WITHOUT_CUDA();
  if (!ocl::distributed::backend_available("nccl")) GTEST_SKIP() << "no NCCL process group";
  auto comm_holder = one_rank_nccl();
  auto& comm = *comm_holder;
  const auto cuda = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat32);
  torch::manual_seed(0);
  torch::nn::Linear model(16, 8);
  model->to(torch::kCUDA);
  std::vector<torch::Tensor> params = model->parameters();
  ocl::distributed::GradSyncOptions sync_options;
  sync_options.first_bucket_mb = 0.0001;  // two buckets: the bias alone, then the weight
  ocl::distributed::GradSynchronizer sync(comm, params, sync_options);
  ASSERT_EQ(sync.num_buckets(), 2);
  auto input = torch::zeros({4, 16}, cuda);
  const auto step = [&] {
    for (auto& p : params) p.mutable_grad().zero_();
    sync.set_sync(true);
    auto features = ocl::distributed::all_gather_with_grad(comm, model->forward(input));
    (features * features).sum().backward();
    sync.finish();
  };
  const auto expected_grads = [&](const torch::Tensor& x) {
    auto w = params[0].detach().clone().requires_grad_(),
         b = params[1].detach().clone().requires_grad_();
    auto out = torch::nn::functional::linear(x, w, b);
    (out * out).sum().backward();
    return std::make_pair(w.grad(), b.grad());
  };
  ocl::compat::CudaGraph graph;
  const bool before = comm.set_stream_ordered_waits(true);
  EXPECT_FALSE(before);
  for (int i = 0; i < 3; ++i) graph.warm_up(step);
  graph.capture(step);
  for (int i = 0; i < 3; ++i) {
    input.copy_(torch::randn({4, 16}, cuda));
    graph.replay();
    comm.await_device(ocl::compat::StreamMark(torch::Device(torch::kCUDA)), "replay");
    const auto [w, b] = expected_grads(input);
    EXPECT_TRUE(torch::allclose(params[0].grad(), w, 1e-5, 1e-5)) << "replay " << i;
    EXPECT_TRUE(torch::allclose(params[1].grad(), b, 1e-5, 1e-5)) << "replay " << i;
  }
  comm.set_stream_ordered_waits(false);
  comm.barrier("end of the captured NCCL test");
}

// A deferred step's collectives are not waited for on the host, so a hung peer shows where the
// host reads the step's figures: await_device gives up after dist.timeout_s (here 1 s, behind
// 2.7 PFLOP of queued GEMMs: seconds on an H100 by its bf16 peak) with a CollectiveError that names
// what it waited for.
TEST(GpuGraph, AwaitDeviceGivesUpAfterTheTimeoutNamingTheStep) {
  SKIP_WITHOUT_CUDA();
  if (!ocl::distributed::backend_available("nccl")) GTEST_SKIP() << "no NCCL process group";
  auto comm_holder = one_rank_nccl(std::chrono::seconds(1));
  auto& comm = *comm_holder;
  const auto cuda = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  auto a = torch::randn({8192, 8192}, cuda), out = torch::empty({8192, 8192}, cuda);
  torch::cuda::synchronize();
  for (int i = 0; i < 2500; ++i) torch::mm_out(out, a, a);
  const ocl::compat::StreamMark mark(torch::Device(torch::kCUDA));
  const auto start = std::chrono::steady_clock::now();
  try {
    comm.await_device(mark, "the collectives of global step 7");
    ADD_FAILURE() << "await_device returned although the device had not got past the mark";
  } catch (const ocl::distributed::CollectiveError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the collectives of global step 7"), std::string::npos) << what;
    EXPECT_NE(what.find("within dist.timeout_s (1 s)"), std::string::npos) << what;
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(waited, 2.5) << "await_device waited for the device instead of the timeout";
  torch::cuda::synchronize();
  EXPECT_TRUE(mark.reached());
}

TEST(GpuNccl, OneRankCollectivesRunOverNccl) {
  SKIP_WITHOUT_CUDA();
  if (!ocl::distributed::backend_available("nccl")) {
    GTEST_SKIP() << "this build has no NCCL process group (the CMake check did not define "
                    "USE_C10D_NCCL)";
  }
  auto comm_holder = one_rank_nccl();
  auto& comm = *comm_holder;
  EXPECT_EQ(comm.backend(), "nccl");
  const auto cuda = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat32);
  auto t = torch::arange(12, cuda).view({3, 4});
  const auto expected = t.clone();
  comm.all_reduce_sum(t, ocl::distributed::Group::kGradients, "test tensor");
  EXPECT_TRUE(torch::equal(t.cpu(), expected.cpu()));
  EXPECT_TRUE(torch::equal(comm.all_gather(t, ocl::distributed::Group::kLoss, "test").cpu(),
                           expected.cpu()));
  EXPECT_TRUE(torch::equal(comm.reduce_scatter_sum(t, ocl::distributed::Group::kLoss, "test").cpu(),
                           expected.cpu()));
  auto b = torch::full({5}, 3.0, cuda);
  comm.broadcast_from_rank0({b}, "test");
  EXPECT_TRUE(torch::equal(b.cpu(), torch::full({5}, 3.0)));
  auto x = torch::randn({4, 8}, cuda).requires_grad_();
  auto gathered = ocl::distributed::all_gather_with_grad(comm, x);
  EXPECT_TRUE(torch::equal(gathered.detach().cpu(), x.detach().cpu()));
  (gathered * 2).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad().cpu(), torch::full({4, 8}, 2.0)));
  comm.barrier("end of the NCCL test");
}

}  // namespace
