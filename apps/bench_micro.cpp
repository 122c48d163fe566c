// The micro-benchmarks of ocl_bench --micro (see bench.h).
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench.h"
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/ops/linear.h>
#include <ocl/ops/linear_gelu.h>
#include <ocl/ops/residual_layer_norm.h>

namespace ocl::apps {
namespace {

// Each linear of a block as the step runs it: the forward product, the input's gradient and the
// weight's gradient, in TFLOP/s (2·M·N·K a product).
void bench_gemms(const MicroShapes& s, const torch::TensorOptions& opts) {
  torch::NoGradGuard no_grad;
  const int64_t T = s.sequences * s.seq, D = s.dim, H = s.mlp_hidden;
  struct Linear {
    const char* name;
    int64_t in, out;
  };
  for (const Linear& l :
       {Linear{"qkv", D, 3 * D}, Linear{"proj", D, D}, Linear{"fc1", D, H}, Linear{"fc2", H, D}}) {
    const auto x = torch::randn({T, l.in}, opts), w = torch::randn({l.out, l.in}, opts);
    const auto g = torch::randn({T, l.out}, opts);
    struct Product {
      const char* pass;
      std::function<void()> run;
      int64_t m, n, k;
    };
    const Product products[] = {
        {"fwd", [&] { torch::mm(x, w.t()); }, T, l.out, l.in},
        {"dgrad", [&] { torch::mm(g, w); }, T, l.in, l.out},
        {"wgrad", [&] { torch::mm(g.t(), x); }, l.out, l.in, T},
    };
    for (const auto& p : products) {
      const double secs = seconds_per_call(opts.device(), p.run);
      std::printf("gemm=%s.%s M=%lld N=%lld K=%lld ms=%.4f tflops=%.2f\n", l.name, p.pass,
                  (long long)p.m, (long long)p.n, (long long)p.k, 1e3 * secs,
                  2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) *
                      static_cast<double>(p.k) / secs / 1e12);
    }
  }
}

// Attention forward and backward at the step's shape, per SDPA backend (where LibTorch lets a
// program choose one), and the explicit form.
void bench_attention(const MicroShapes& s, const torch::TensorOptions& opts) {
  const int64_t hd = s.dim / s.heads;
  auto make = [&] {
    return torch::randn({s.sequences, s.heads, s.seq, hd}, opts).requires_grad_();
  };
  const auto q = make(), k = make(), v = make();
  const auto grad = torch::randn({s.sequences, s.heads, s.seq, hd}, opts);
  auto time = [&](const std::string& name, const std::function<torch::Tensor()>& attend) {
    try {
      const double secs = seconds_per_call(opts.device(), [&] {
        torch::autograd::grad({attend()}, {q, k, v}, {grad});
      });
      std::printf("attention=%s shape=%lldx%lldx%lldx%lld fwd_bwd_ms=%.4f\n", name.c_str(),
                  (long long)s.sequences, (long long)s.heads, (long long)s.seq, (long long)hd,
                  1e3 * secs);
    } catch (const std::exception& e) {
      std::string why = e.what();
      why = why.substr(0, why.find('\n'));
      std::printf("attention=%s unsupported=\"%s\"\n", name.c_str(), why.c_str());
    }
  };
  time("explicit", [&] { return compat::attention_explicit(q, k, v); });
  if (!compat::kCanChooseSdpaBackend) return;
  using compat::SdpaBackend;
  for (const auto b :
       {SdpaBackend::kFlash, SdpaBackend::kMemEfficient, SdpaBackend::kCuDNN, SdpaBackend::kMath}) {
    time(compat::sdpa_backend_name(b), [&] {
      compat::SdpaBackendScope only(b);
      return compat::attention(q, k, v);
    });
  }
}

// Each fused operation forward and backward, composite against kernel, with the bytes the
// kernels move (what they read and write once) over the kernel's time.
void bench_fused_ops(const MicroShapes& s, const torch::TensorOptions& opts,
                     c10::ScalarType dtype) {
  const int64_t T = s.sequences * s.seq, D = s.dim, H = s.mlp_hidden;
  const double es = static_cast<double>(c10::elementSize(dtype));
  const auto x = torch::randn({T, D}, opts).requires_grad_();
  const auto h = torch::randn({T, D}, opts).requires_grad_();
  const auto w = torch::ones({D}, opts.dtype(torch::kFloat)).requires_grad_();
  const auto b = torch::zeros({D}, opts.dtype(torch::kFloat)).requires_grad_();
  const auto gy = torch::randn({T, D}, opts), gn = torch::randn({T, D}, opts);
  const auto w1 = torch::randn({H, D}, opts).mul_(0.02).requires_grad_();
  const auto b1 = torch::zeros({H}, opts).requires_grad_();
  const auto g1 = torch::randn({T, H}, opts);
  for (const auto path : {ops::Path::kComposite, ops::Path::kKernel}) {
    const char* name = path == ops::Path::kKernel ? "kernel" : "composite";
    if (path == ops::Path::kKernel && opts.device().is_cuda() && !ops::cuda_kernels_compiled()) {
      std::printf("op=residual_layer_norm path=kernel unsupported=\"no CUDA kernels built\"\n");
      continue;
    }
    try {
      const double ln = seconds_per_call(opts.device(), [&] {
        auto r = ops::residual_layer_norm(x, h, w, b, 1e-6, dtype, path);
        torch::autograd::grad({r.residual, r.normed}, {x, h, w, b}, {gy, gn});
      });
      // Forward reads x, h and writes y, n; backward reads both gradients, y, and writes x's
      // gradient, then reads the normed gradient and y again for the weights'.
      const double ln_bytes = 10.0 * static_cast<double>(T * D) * es;
      std::printf("op=residual_layer_norm path=%s rows=%lld D=%lld fwd_bwd_ms=%.4f gb_per_s=%.1f\n",
                  name, (long long)T, (long long)D, 1e3 * ln, ln_bytes / ln / 1e9);
      const double lg = seconds_per_call(opts.device(), [&] {
        auto out = ops::linear_gelu(x, w1, b1, path);
        torch::autograd::grad({out}, {x, w1, b1}, {g1});
      });
      std::printf("op=linear_gelu path=%s rows=%lld K=%lld H=%lld fwd_bwd_ms=%.4f\n", name,
                  (long long)T, (long long)D, (long long)H, 1e3 * lg);
      // fc2's shape (H → D): the bias gradient in the weight gradient's GEMM, or a reduction.
      const auto a2 = torch::randn({T, H}, opts).requires_grad_();
      const auto w2 = torch::randn({D, H}, opts).mul_(0.02).requires_grad_();
      const auto b2 = torch::zeros({D}, opts).requires_grad_();
      const int64_t fallbacks = ops::linear_bias_grad_fallbacks();
      const double li = seconds_per_call(opts.device(), [&] {
        auto out = ops::linear(a2, w2, b2, path);
        torch::autograd::grad({out}, {a2, w2, b2}, {gy});
      });
      std::printf("op=linear path=%s rows=%lld K=%lld N=%lld fwd_bwd_ms=%.4f%s\n", name,
                  (long long)T, (long long)H, (long long)D, 1e3 * li,
                  ops::linear_bias_grad_fallbacks() != fallbacks ? " epilogue=fallback" : "");
    } catch (const std::exception& e) {
      std::string why = e.what();
      why = why.substr(0, why.find('\n'));
      std::printf("op=fused path=%s unsupported=\"%s\"\n", name, why.c_str());
    }
  }
}

}  // namespace

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

double seconds_per_call(const c10::Device& device, const std::function<void()>& fn,
                        double min_seconds) {
  fn();
  synchronize(device);
  int64_t reps = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double secs = 0;
  while (reps < 3 || secs < min_seconds) {
    fn();
    ++reps;
    synchronize(device);
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return secs / static_cast<double>(reps);
}

void run_micro_benchmarks(const MicroShapes& shapes, const c10::Device& device,
                          c10::ScalarType dtype) {
  const auto opts = torch::TensorOptions().device(device).dtype(dtype);
  std::printf("micro sequences=%lld seq=%lld D=%lld heads=%lld hidden=%lld dtype=%s\n",
              (long long)shapes.sequences, (long long)shapes.seq, (long long)shapes.dim,
              (long long)shapes.heads, (long long)shapes.mlp_hidden, c10::toString(dtype));
  bench_gemms(shapes, opts);
  bench_attention(shapes, opts);
  bench_fused_ops(shapes, opts, dtype);
}

}  // namespace ocl::apps
