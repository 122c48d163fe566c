// The fused kernels on CUDA (see kernels.h): the LayerNorm after a residual add, forward (one
// warp a row) and backward (one warp a row for the input's gradient, one thread a column and
// partial for the weight and bias gradients), and GELU's derivative fused with the bias
// gradient (one thread a column and partial). The arithmetic is fused_math.h's, which the host
// emulation shares. A linear's weight gradient is one cuBLASLt GEMM whose epilogue also reduces
// the bias gradient.
#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>

#include <cublasLt.h>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "fused_math.h"
#include "kernels.h"

namespace ocl::ops::kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // warps per block of the row kernels
constexpr int kColumnsPerBlock = 256;

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename A, typename T>
__device__ __forceinline__ A load(const T* p, int64_t i) {
  return static_cast<A>(p[i]);
}

// y = x + h (h may be null), then n = LayerNorm(y): one warp per row. The statistics are taken
// from y as stored (rounded to TR), as the composite computes them from its residual tensor.
template <typename TR, typename TH, typename TO, typename A>
__global__ void layer_norm_forward_kernel(const TR* __restrict__ x, const TH* __restrict__ h,
                                          const A* __restrict__ weight,
                                          const A* __restrict__ bias, TR* __restrict__ y,
                                          TO* __restrict__ n, A* __restrict__ mean_out,
                                          A* __restrict__ rstd_out, int64_t rows, int64_t width,
                                          double eps) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const int lane = threadIdx.x;
  const int64_t o = row * width;
  A sum = 0;
  for (int64_t c = lane; c < width; c += kWarp) {
    const A v = load<A>(x, o + c) + (h ? load<A>(h, o + c) : A(0));
    y[o + c] = static_cast<TR>(v);
    sum += load<A>(y, o + c);
  }
  const A mean = warp_sum(sum) / static_cast<A>(width);
  A squares = 0;
  for (int64_t c = lane; c < width; c += kWarp) {
    const A d = load<A>(y, o + c) - mean;
    squares += d * d;
  }
  const A rstd = math::layer_norm_rstd(warp_sum(squares), width, eps);
  for (int64_t c = lane; c < width; c += kWarp)
    n[o + c] = static_cast<TO>((load<A>(y, o + c) - mean) * rstd * weight[c] + bias[c]);
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

// The input's gradient (and h's, in its own dtype, when it differs): one warp per row.
template <typename TR, typename TH, typename TO, typename A>
__global__ void layer_norm_backward_kernel(const TO* __restrict__ grad_n,
                                           const TR* __restrict__ grad_y,
                                           const TR* __restrict__ y, const A* __restrict__ mean,
                                           const A* __restrict__ rstd,
                                           const A* __restrict__ weight, TR* __restrict__ grad_x,
                                           TH* __restrict__ grad_h, int64_t rows, int64_t width) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const int lane = threadIdx.x;
  const int64_t o = row * width;
  const A m = mean[row], r = rstd[row];
  A sum_d = 0, sum_d_xhat = 0;
  for (int64_t c = lane; c < width; c += kWarp) {
    const A xhat = (load<A>(y, o + c) - m) * r, d = load<A>(grad_n, o + c) * weight[c];
    sum_d += d;
    sum_d_xhat += d * xhat;
  }
  const A mean_d = warp_sum(sum_d) / static_cast<A>(width);
  const A mean_d_xhat = warp_sum(sum_d_xhat) / static_cast<A>(width);
  for (int64_t c = lane; c < width; c += kWarp) {
    const A xhat = (load<A>(y, o + c) - m) * r;
    const A g = math::layer_norm_grad(load<A>(grad_n, o + c) * weight[c], xhat, mean_d,
                                      mean_d_xhat, r, grad_y ? load<A>(grad_y, o + c) : A(0));
    grad_x[o + c] = static_cast<TR>(g);
    if (grad_h) grad_h[o + c] = static_cast<TH>(g);
  }
}

// The weight's and bias's gradient partials: thread (column c, partial p) sums rows
// [p·kRowsPerPartial, (p+1)·kRowsPerPartial); consecutive threads read consecutive columns.
template <typename TR, typename TO, typename A>
__global__ void layer_norm_weight_grad_kernel(const TO* __restrict__ grad_n,
                                              const TR* __restrict__ y,
                                              const A* __restrict__ mean,
                                              const A* __restrict__ rstd,
                                              A* __restrict__ weight_partials,
                                              A* __restrict__ bias_partials, int64_t rows,
                                              int64_t width) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnsPerBlock + threadIdx.x;
  const int64_t p = blockIdx.y;
  if (c >= width) return;
  const int64_t end = min(rows, (p + 1) * math::kRowsPerPartial);
  A sw = 0, sb = 0;
  for (int64_t row = p * math::kRowsPerPartial; row < end; ++row) {
    const A g = load<A>(grad_n, row * width + c);
    sw += g * (load<A>(y, row * width + c) - mean[row]) * rstd[row];
    sb += g;
  }
  weight_partials[p * width + c] = sw;
  bias_partials[p * width + c] = sb;
}

// grad_pre = grad_out · GELU'(pre) and the bias gradient's partials, in one pass.
template <typename T, typename A>
__global__ void gelu_backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ pre,
                                     T* __restrict__ grad_pre, A* __restrict__ bias_partials,
                                     int64_t rows, int64_t width) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnsPerBlock + threadIdx.x;
  const int64_t p = blockIdx.y;
  if (c >= width) return;
  const int64_t end = min(rows, (p + 1) * math::kRowsPerPartial);
  A sb = 0;
  for (int64_t row = p * math::kRowsPerPartial; row < end; ++row) {
    const int64_t i = row * width + c;
    const T g = static_cast<T>(load<A>(grad_out, i) * math::gelu_grad(load<A>(pre, i)));
    grad_pre[i] = g;
    sb += static_cast<A>(g);  // the bias gradient of the gradient as stored, as at::sum would
  }
  bias_partials[p * width + c] = sb;
}

// The dtypes the kernels are built for: one dtype throughout (float, double, bf16, half), a
// float32 residual stream with bf16 / half branches and normed outputs (autocast's mix), or a
// bf16 / half stream with a float32 normed output (the encoder's final norm, whose output keeps
// its weight's dtype). Other mixes are converted to one of these first.
template <typename F>
void dispatch_one(at::ScalarType t, F&& f) {
  switch (t) {
    case at::kFloat: f(float{}); break;
    case at::kDouble: f(double{}); break;
    case at::kBFloat16: f(c10::BFloat16{}); break;
    case at::kHalf: f(c10::Half{}); break;
    default: TORCH_CHECK(false, "ocl::ops CUDA kernels: unsupported dtype ", t);
  }
}

bool is_low_precision(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

// Whether (residual, other) is a built pair: equal, or float32 with bf16 / half either way.
bool built_pair(at::ScalarType residual, at::ScalarType other) {
  return other == residual || (residual == at::kFloat && is_low_precision(other)) ||
         (is_low_precision(residual) && other == at::kFloat);
}

// The dtype a stream of R pairs with, as one of the built pairs.
template <typename R, typename F>
void with_partner(at::ScalarType t, F&& f) {
  if constexpr (std::is_same_v<R, float>) {
    dispatch_one(t, [&](auto o) {
      if constexpr (!std::is_same_v<decltype(o), double>) f(o);
    });
  } else if (t == at::kFloat) {
    if constexpr (!std::is_same_v<R, double>) f(float{});
  } else {
    f(R{});
  }
}

// f(R, A, B) for a residual dtype and two dtypes paired with it (each a built pair).
template <typename F>
void dispatch_layer_norm(at::ScalarType residual, at::ScalarType a, at::ScalarType b, F&& f) {
  TORCH_INTERNAL_ASSERT(built_pair(residual, a) && built_pair(residual, b));
  dispatch_one(residual, [&](auto r) {
    using R = decltype(r);
    with_partner<R>(a, [&](auto x) { with_partner<R>(b, [&](auto y) { f(r, x, y); }); });
  });
}

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

void check_cuda(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.is_cuda() && t.is_contiguous(), "ocl::ops CUDA kernels: ", what,
              " must be a contiguous CUDA tensor");
}

LayerNormForward cuda_layer_norm_forward(const at::Tensor& x_in, const at::Tensor& h_in,
                                         const at::Tensor& weight, const at::Tensor& bias,
                                         double eps, at::ScalarType residual_dtype,
                                         at::ScalarType normed_dtype) {
  auto x = x_in.scalar_type() == residual_dtype ? x_in : x_in.to(residual_dtype);
  auto h = h_in;
  if (h.defined() && !built_pair(residual_dtype, h.scalar_type())) h = h.to(residual_dtype);
  const auto out_dtype = built_pair(residual_dtype, normed_dtype) ? normed_dtype : residual_dtype;
  check_cuda(x, "x");
  const int64_t D = x.size(-1), R = x.numel() / D;
  const auto acc = residual_dtype == at::kDouble ? at::kDouble : at::kFloat;
  LayerNormForward out{at::empty_like(x), at::empty(x.sizes(), x.options().dtype(out_dtype)),
                       at::empty({R}, x.options().dtype(acc)),
                       at::empty({R}, x.options().dtype(acc))};
  if (R > 0) {
    const dim3 block(kWarp, kRowsPerBlock);
    const dim3 grid(static_cast<unsigned>((R + kRowsPerBlock - 1) / kRowsPerBlock));
    auto stream = at::cuda::getCurrentCUDAStream();
    const auto h_dtype = h.defined() ? h.scalar_type() : residual_dtype;
    dispatch_layer_norm(residual_dtype, h_dtype, out_dtype, [&](auto r, auto hh, auto o) {
      using TR = decltype(r);
      using TH = decltype(hh);
      using TO = decltype(o);
      using A = acc_t<TR>;
      layer_norm_forward_kernel<TR, TH, TO, A><<<grid, block, 0, stream>>>(
          x.data_ptr<TR>(), h.defined() ? h.data_ptr<TH>() : nullptr, weight.data_ptr<A>(),
          bias.data_ptr<A>(), out.residual.data_ptr<TR>(), out.normed.data_ptr<TO>(),
          out.mean.data_ptr<A>(), out.rstd.data_ptr<A>(), R, D, eps);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (out_dtype != normed_dtype) out.normed = out.normed.to(normed_dtype);
  return out;
}

LayerNormBackward cuda_layer_norm_backward(const at::Tensor& grad_normed_in,
                                           const at::Tensor& grad_residual,
                                           const at::Tensor& residual, const at::Tensor& mean,
                                           const at::Tensor& rstd, const at::Tensor& weight,
                                           at::ScalarType h_dtype) {
  const auto rd = residual.scalar_type();
  auto grad_normed = built_pair(rd, grad_normed_in.scalar_type()) ? grad_normed_in
                                                                   : grad_normed_in.to(rd);
  check_cuda(residual, "residual");
  check_cuda(grad_normed, "grad_normed");
  if (grad_residual.defined()) check_cuda(grad_residual, "grad_residual");
  const int64_t D = residual.size(-1), R = residual.numel() / D, P = math::partial_count(R);
  TORCH_CHECK(P <= 65535, "ocl::ops CUDA kernels: ", R, " rows is more than a grid holds");
  const auto acc = mean.scalar_type();
  const bool own_h = h_dtype != rd && built_pair(rd, h_dtype);
  LayerNormBackward out{at::empty_like(residual),
                        own_h ? at::empty(residual.sizes(), residual.options().dtype(h_dtype))
                              : at::Tensor(),
                        at::zeros({P, D}, residual.options().dtype(acc)),
                        at::zeros({P, D}, residual.options().dtype(acc))};
  if (R > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    dispatch_layer_norm(rd, own_h ? h_dtype : rd, grad_normed.scalar_type(),
                        [&](auto r, auto hh, auto o) {
      using TR = decltype(r);
      using TH = decltype(hh);
      using TO = decltype(o);
      using A = acc_t<TR>;
      layer_norm_backward_kernel<TR, TH, TO, A>
          <<<dim3(static_cast<unsigned>((R + kRowsPerBlock - 1) / kRowsPerBlock)),
             dim3(kWarp, kRowsPerBlock), 0, stream>>>(
              grad_normed.data_ptr<TO>(),
              grad_residual.defined() ? grad_residual.data_ptr<TR>() : nullptr,
              residual.data_ptr<TR>(), mean.data_ptr<A>(), rstd.data_ptr<A>(),
              weight.data_ptr<A>(), out.grad_residual.data_ptr<TR>(),
              own_h ? out.grad_h.data_ptr<TH>() : nullptr, R, D);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      layer_norm_weight_grad_kernel<TR, TO, A>
          <<<dim3(static_cast<unsigned>((D + kColumnsPerBlock - 1) / kColumnsPerBlock),
                  static_cast<unsigned>(P)),
             dim3(kColumnsPerBlock), 0, stream>>>(
              grad_normed.data_ptr<TO>(), residual.data_ptr<TR>(), mean.data_ptr<A>(),
              rstd.data_ptr<A>(), out.weight_partials.data_ptr<A>(),
              out.bias_partials.data_ptr<A>(), R, D);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (h_dtype != rd && !own_h) out.grad_h = out.grad_residual.to(h_dtype);
  return out;
}

std::pair<at::Tensor, at::Tensor> cuda_gelu_backward(const at::Tensor& grad_out,
                                                     const at::Tensor& pre) {
  check_cuda(grad_out, "grad_out");
  check_cuda(pre, "pre");
  const int64_t H = pre.size(-1), R = pre.numel() / H, P = math::partial_count(R);
  TORCH_CHECK(P <= 65535, "ocl::ops CUDA kernels: ", R, " rows is more than a grid holds");
  const auto acc = pre.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_pre = at::empty_like(pre);
  auto partials = at::zeros({P, H}, pre.options().dtype(acc));
  if (R > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    dispatch_one(pre.scalar_type(), [&](auto t) {
      using T = decltype(t);
      using A = acc_t<T>;
      gelu_backward_kernel<T, A>
          <<<dim3(static_cast<unsigned>((H + kColumnsPerBlock - 1) / kColumnsPerBlock),
                  static_cast<unsigned>(P)),
             dim3(kColumnsPerBlock), 0, stream>>>(grad_out.data_ptr<T>(), pre.data_ptr<T>(),
                                                  grad_pre.data_ptr<T>(), partials.data_ptr<A>(),
                                                  R, H);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_pre, partials};
}

std::atomic<int64_t> bias_grad_fallbacks{0};

#define OCL_CUBLASLT_CHECK(expr)                                                        \
  do {                                                                                  \
    const cublasStatus_t status_ = (expr);                                              \
    TORCH_CHECK(status_ == CUBLAS_STATUS_SUCCESS, "ocl::ops: cuBLASLt's " #expr           \
                " failed with cublasStatus_t ", static_cast<int>(status_));            \
  } while (0)

// cuBLASLt's descriptors, destroyed with their holder.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  ~MatmulDesc() {
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};
struct MatrixLayout {
  cublasLtMatrixLayout_t layout = nullptr;
  MatrixLayout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
    OCL_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
  }
  ~MatrixLayout() { cublasLtMatrixLayoutDestroy(layout); }
};
struct MatmulPreference {
  cublasLtMatmulPreference_t preference = nullptr;
  ~MatmulPreference() {
    if (preference) cublasLtMatmulPreferenceDestroy(preference);
  }
};

template <typename T>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t what, const T& v) {
  OCL_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc, what, &v, sizeof(v)));
}

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// The largest power of two up to 256 that divides the address: the alignment cuBLASLt may assume.
uint32_t alignment(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0) a /= 2;
  return a;
}

// What decides a weight-gradient GEMM's algorithm: its sizes, types, operands' alignment, device.
struct AlgoKey {
  int64_t R, N, K;
  int type, compute;
  uint32_t align_a, align_b, align_d;
  int device;
  bool operator<(const AlgoKey& o) const {
    return std::tie(R, N, K, type, compute, align_a, align_b, align_d, device) <
           std::tie(o.R, o.N, o.K, o.type, o.compute, o.align_a, o.align_b, o.align_d, o.device);
  }
};

// cuBLASLt's heuristic asked once per key (a step asks for the same few shapes every time):
// the algorithm, or none where it offers none.
template <typename Query>
std::optional<cublasLtMatmulAlgo_t> cached_algo(const AlgoKey& key, Query&& query) {
  static std::mutex mutex;
  static std::map<AlgoKey, std::optional<cublasLtMatmulAlgo_t>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  const auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  cublasLtMatmulHeuristicResult_t heuristic{};
  std::optional<cublasLtMatmulAlgo_t> algo;
  if (query(key, heuristic)) algo = heuristic.algo;
  cache.emplace(key, algo);
  return algo;
}

// dW = grad_outᵀ·x with the bias gradient in the GEMM's epilogue. In cuBLASLt's column-major
// terms the row-major [N, K] weight gradient is D [K, N] = A·op(B) with A = x as [K, R] and
// B = grad_out as [N, R] transposed; BGRADB reduces B over the GEMM's k = R into the [N] bias.
std::pair<at::Tensor, at::Tensor> cuda_weight_bias_grad(const at::Tensor& grad_out,
                                                        const at::Tensor& x) {
  check_cuda(grad_out, "grad_out");
  check_cuda(x, "x");
  TORCH_CHECK(grad_out.dim() == 2 && x.dim() == 2 && grad_out.size(0) == x.size(0) &&
                  grad_out.scalar_type() == x.scalar_type(),
              "ocl::ops weight_bias_grad: grad_out [R, N] and x [R, K] of one dtype, got ",
              grad_out.sizes(), " ", grad_out.scalar_type(), " and ", x.sizes(), " ",
              x.scalar_type());
  const int64_t R = grad_out.size(0), N = grad_out.size(1), K = x.size(1);
  const auto t = grad_out.scalar_type();
  const auto composite = [&] {
    ++bias_grad_fallbacks;
    return std::make_pair(at::mm(grad_out.t(), x), grad_out.sum(0));
  };
  cudaDataType_t type;
  if (t == at::kBFloat16)
    type = CUDA_R_16BF;
  else if (t == at::kHalf)
    type = CUDA_R_16F;
  else if (t == at::kFloat)
    type = CUDA_R_32F;
  else
    return composite();
  constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
  if (R == 0 || N == 0 || K == 0 || R > kMaxDim || N > kMaxDim || K > kMaxDim) return composite();

  // fp32 GEMMs take TF32 where PyTorch's matmuls may (torch.backends.cuda.matmul.allow_tf32).
  const auto compute = t == at::kFloat && at::globalContext().allowTF32CuBLAS()
                           ? CUBLAS_COMPUTE_32F_FAST_TF32
                           : CUBLAS_COMPUTE_32F;
  MatmulDesc desc;
  OCL_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&desc.desc, compute, CUDA_R_32F));
  set_attribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_N);
  set_attribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_T);
  set_attribute(desc.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BGRADB);
  auto grad_w = at::empty({N, K}, grad_out.options());
  auto grad_b = at::empty({N}, grad_out.options());
  void* bias = grad_b.data_ptr();
  set_attribute(desc.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  const MatrixLayout a(type, K, R, K), b(type, N, R, N), d(type, K, N, K);

  // The workspace from PyTorch's caching allocator (inside a CUDA graph: the graph's pool).
  auto workspace = at::empty({static_cast<int64_t>(kWorkspaceBytes)}, x.options().dtype(at::kByte));
  auto handle = at::cuda::getCurrentCUDABlasLtHandle();
  const auto algo = cached_algo(
      {R, N, K, static_cast<int>(type), static_cast<int>(compute), alignment(x.data_ptr()),
       alignment(grad_out.data_ptr()), alignment(grad_w.data_ptr()), grad_out.device().index()},
      [&](const AlgoKey& key, cublasLtMatmulHeuristicResult_t& heuristic) {
        MatmulPreference preference;
        OCL_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&preference.preference));
        const auto set = [&](cublasLtMatmulPreferenceAttributes_t what, auto v) {
          OCL_CUBLASLT_CHECK(
              cublasLtMatmulPreferenceSetAttribute(preference.preference, what, &v, sizeof(v)));
        };
        set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, kWorkspaceBytes);
        // Algorithms that need more alignment than these operands have are left out (cuBLASLt
        // assumes 256 bytes otherwise).
        set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a);
        set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b);
        set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_d);
        set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_d);
        int found = 0;
        return cublasLtMatmulAlgoGetHeuristic(handle, desc.desc, a.layout, b.layout, d.layout,
                                              d.layout, preference.preference, 1, &heuristic,
                                              &found) == CUBLAS_STATUS_SUCCESS &&
               found > 0;
      });
  if (!algo) return composite();
  const float alpha = 1.0f, beta = 0.0f;
  OCL_CUBLASLT_CHECK(cublasLtMatmul(handle, desc.desc, &alpha, x.data_ptr(), a.layout,
                                    grad_out.data_ptr(), b.layout, &beta, grad_w.data_ptr(),
                                    d.layout, grad_w.data_ptr(), d.layout, &*algo,
                                    workspace.data_ptr(), kWorkspaceBytes,
                                    at::cuda::getCurrentCUDAStream()));
  return {grad_w, grad_b};
}

}  // namespace

int64_t weight_bias_grad_fallbacks() { return bias_grad_fallbacks.load(); }

const Kernels* cuda() {
  static const Kernels kernels{cuda_layer_norm_forward, cuda_layer_norm_backward,
                               cuda_gelu_backward, cuda_weight_bias_grad};
  return &kernels;
}

}  // namespace ocl::ops::kernels
