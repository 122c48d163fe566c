// compat.h: the one place that knows LibTorch 1.13 from 2.x. Everything else in ocl calls
// these helpers instead of testing TORCH_VERSION_* itself.
//
// clang-format off
// Differences handled here (see ../shared/LIBTORCH_NOTES.md):
//   attention    1.13 has no public SDPA: softmax(q·kᵀ/√d)·v by hand; 2.x:
//                at::scaled_dot_product_attention
//   autocast     1.13: set_enabled / set_cpu_enabled; 2.4+: set_autocast_enabled(device, ·)
//   zero-grad    Optimizer::zero_grad() sets grads to undefined on 2.x: zero in place ourselves
//   fused AdamW  at::_fused_adamw_ exists from 2.0 only (kHasFusedAdamW), with a CUDA kernel
//                from 2.0 and a CPU kernel from 2.6 (as far as this project checks):
//                fused_adamw_supported(), fused_adamw_()
//   optimiser    Optimizer::state() is keyed by a string of the TensorImpl address on 1.13, by
//                the address itself on 2.x: optimizer_state_key()
//   LayerNorm    1.13's CPU kernel rejects a bf16 input with fp32 weights (autocast leaves
//                layer_norm uncast there): layer_norm() upcasts, as CUDA autocast does
// The c10d differences (ProcessGroup vs Backend, TCPStoreOptions::useLibUV, Gloo's missing
// flat collectives on 1.13) live in src/distributed/communicator.cpp, so that ocl's public headers
// need no Gloo or NCCL headers.
// clang-format on
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/version.h>

#define OCL_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||      \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace ocl::compat {

/// "1.13.0", "2.6.0", ... : the LibTorch these headers belong to.
std::string torch_version();

/// at::scaled_dot_product_attention is public (and has flash / memory-efficient kernels).
inline constexpr bool kHasSdpa = OCL_TORCH_AT_LEAST(2, 0);
/// at::_fused_adamw_ exists (CUDA from 2.0, CPU from 2.6).
inline constexpr bool kHasFusedAdamW = OCL_TORCH_AT_LEAST(2, 0);

/// at::_fused_adamw_ has a kernel for tensors on this device type with this LibTorch: CUDA from
/// 2.0, CPU from 2.6 (the CPU kernel appeared in 2.4; 2.6 is the oldest 2.x this project builds
/// and tests against).
bool fused_adamw_supported(c10::DeviceType device);

/// One at::_fused_adamw_ call (amsgrad and maximize off, no grad scaler): the update
/// torch.optim.AdamW(fused=True) makes for tensors of one device and dtype. `state_steps` are
/// float32 0-d tensors on the parameters' device holding the step number *after* this update
/// (the caller increments, as PyTorch's optimiser does); an entry may be shared by several
/// parameters. Throws where fused_adamw_supported() is false. `found_inf` (optional, a float32
/// 0-d tensor on the parameters' device): where it holds 1 the kernel leaves everything as it
/// was, decided on the device without the host reading it.
void fused_adamw_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                  at::TensorList exp_avg_sqs, at::TensorList state_steps, double lr, double beta1,
                  double beta2, double weight_decay, double eps,
                  const at::Tensor& found_inf = at::Tensor());

/// Scaled dot-product attention without mask or dropout.
/// q, k, v: [B, H, T, hd] → [B, H, T, hd]. Uses SDPA on 2.x, the explicit form on 1.13.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// The kernels at::scaled_dot_product_attention chooses from (LibTorch >= 2.6 lets a program
/// switch each; 1.13 has the explicit form only).
enum class SdpaBackend { kFlash, kMemEfficient, kCuDNN, kMath };
const char* sdpa_backend_name(SdpaBackend backend);
inline constexpr bool kCanChooseSdpaBackend = OCL_TORCH_AT_LEAST(2, 6);

/// Leaves SDPA one backend while it lives (a call it cannot serve then throws), and restores the
/// previous choice after. Throws where kCanChooseSdpaBackend is false.
class SdpaBackendScope {
 public:
  explicit SdpaBackendScope(SdpaBackend only);
  ~SdpaBackendScope();
  SdpaBackendScope(const SdpaBackendScope&) = delete;
  SdpaBackendScope& operator=(const SdpaBackendScope&) = delete;

 private:
  bool flash_ = true, mem_efficient_ = true, cudnn_ = true, math_ = true;
};

/// The explicit softmax(q·kᵀ/√hd)·v, on every version: the 1.13 path, and the reference the
/// SDPA path is tested against.
at::Tensor attention_explicit(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// LayerNorm over the last dimension that accepts an input whose dtype differs from the
/// weight's (a bf16 activation under autocast with fp32 weights): the input is upcast and the
/// result has the weight's dtype, as under CUDA autocast, where layer_norm runs in fp32.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);

/// RAII autocast scope for one device type (CPU or CUDA): enables (or disables) autocast with
/// the given dtype, and restores the previous state, dtype and cache on destruction, as
/// Python's `torch.autocast` context manager does.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, bool enabled, at::ScalarType dtype = at::kBFloat16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool prev_enabled_;
  at::ScalarType prev_dtype_;
};

/// The point a device's current stream has reached when the mark is made: wait() blocks the host
/// until the device has passed it, not for work queued after it (a CPU device is always past
/// it). What lets the host read a step's figures while the next step runs.
class StreamMark {
 public:
  explicit StreamMark(c10::Device device);
  ~StreamMark();
  StreamMark(StreamMark&&) noexcept;
  StreamMark& operator=(StreamMark&&) noexcept;
  void wait() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Is autocast currently on for this device type, and with which dtype.
bool autocast_enabled(c10::DeviceType device);
at::ScalarType autocast_dtype(c10::DeviceType device);

/// The key of parameter `p` in torch::optim::Optimizer::state().
#if OCL_TORCH_AT_LEAST(2, 0)
inline void* optimizer_state_key(const at::Tensor& p) { return p.unsafeGetTensorImpl(); }
#else
std::string optimizer_state_key(const at::Tensor& p);
#endif

/// Zeroes every defined gradient in place (never sets it to undefined), so gradients that are
/// views into communication buckets stay views. The same on 1.13 and 2.x.
void zero_grad(const std::vector<at::Tensor>& params);
/// Sets every gradient to undefined (PyTorch's zero_grad(set_to_none=True)): the next backward
/// then hands each parameter its gradient buffer as is, instead of adding it to a zeroed one
/// (a memset and an extra pass over every gradient per step). Not for gradients that must stay
/// views into communication buckets (zero_grad). The same on 1.13 and 2.x.
void clear_grad(const std::vector<at::Tensor>& params);

}  // namespace ocl::compat
