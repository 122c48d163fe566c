// The one place that knows LibTorch 1.13 from 2.x: the rest of ocl calls these helpers instead of
// testing TORCH_VERSION_* itself (the c10d differences live in src/distributed/communicator.cpp,
// so that public headers need no Gloo or NCCL headers).
#pragma once

#include <functional>
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

/// at::_fused_adamw_ has a kernel for this device type in this LibTorch: CUDA from 2.0, CPU from
/// 2.6 (the kernel came in 2.4; 2.6 is the oldest 2.x this project builds and tests against).
bool fused_adamw_supported(c10::DeviceType device);

/// One at::_fused_adamw_ call (no amsgrad, maximize or grad scaler) on tensors of one device and
/// dtype. `state_steps`: float32 0-d tensors there, the step number after this update; `found_inf`
/// (optional, the same kind): 1 leaves everything unchanged. Throws where unsupported.
void fused_adamw_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                  at::TensorList exp_avg_sqs, at::TensorList state_steps, double lr, double beta1,
                  double beta2, double weight_decay, double eps,
                  const at::Tensor& found_inf = at::Tensor());

/// The same with the learning rate in a 0-d float32 tensor on the parameters' device, so that a
/// replayed CUDA graph takes each step's rate (LibTorch >= 2.6; throws before).
void fused_adamw_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                  at::TensorList exp_avg_sqs, at::TensorList state_steps, const at::Tensor& lr,
                  double beta1, double beta2, double weight_decay, double eps,
                  const at::Tensor& found_inf);

/// Attention without mask or dropout, q, k, v: [B, H, T, hd] → [B, H, T, hd]. SDPA on 2.x, the
/// explicit form on 1.13.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// The kernels at::scaled_dot_product_attention chooses from (LibTorch >= 2.6 lets a program
/// switch each; 1.13 has the explicit form only).
enum class SdpaBackend { kFlash, kMemEfficient, kCuDNN, kMath };
const char* sdpa_backend_name(SdpaBackend backend);
inline constexpr bool kCanChooseSdpaBackend = OCL_TORCH_AT_LEAST(2, 6);

/// Leaves SDPA one backend while it lives (a call it cannot serve throws), then restores the
/// previous choice. Throws where kCanChooseSdpaBackend is false.
class SdpaBackendScope {
 public:
  explicit SdpaBackendScope(SdpaBackend only);
  ~SdpaBackendScope();
  SdpaBackendScope(const SdpaBackendScope&) = delete;
  SdpaBackendScope& operator=(const SdpaBackendScope&) = delete;

 private:
  bool flash_ = true, mem_efficient_ = true, cudnn_ = true, math_ = true;
};

/// softmax(q·kᵀ/√hd)·v on every version: the 1.13 path and the SDPA path's reference.
at::Tensor attention_explicit(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// LayerNorm over the last dimension of an input of another dtype than the weight's (1.13's CPU
/// kernel rejects bf16 with fp32 weights): the result has the weight's dtype, as under autocast.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);

/// RAII autocast scope for one device type (CPU or CUDA), as Python's `torch.autocast`: enables
/// (or disables) it with `dtype`, and restores the previous state, dtype and cache after.
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

/// The point a device's current stream has reached: wait() blocks the host until the device has
/// passed it, not for work queued after it (no-op on CPU). Lets the host read a step's figures.
class StreamMark {
 public:
  explicit StreamMark(c10::Device device);
  ~StreamMark();
  StreamMark(StreamMark&&) noexcept;
  StreamMark& operator=(StreamMark&&) noexcept;
  void wait() const;
  /// Whether the device has passed it, without waiting.
  bool reached() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Work captured once as a CUDA graph and replayed: captured on a side stream (thread-local mode,
/// so the loader's threads may go on; autocast's weight cache off, as capture requires), in the
/// graph's own memory pool; warm_up runs the same work uncaptured on that stream first (lazy
/// initialisations cannot happen inside a capture). Replays run on the current stream. Where
/// LibTorch is not a CUDA build (can_capture_graphs false) every call throws.
bool can_capture_graphs();
class CudaGraph {
 public:
  CudaGraph();
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  void warm_up(const std::function<void()>& work);
  void capture(const std::function<void()>& work);
  void replay();
  bool captured() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Is autocast currently on for this device type, and with which dtype.
bool autocast_enabled(c10::DeviceType device);
at::ScalarType autocast_dtype(c10::DeviceType device);

/// The key of parameter `p` in torch::optim::Optimizer::state(): its TensorImpl's address on
/// 2.x, a string of it on 1.13.
#if OCL_TORCH_AT_LEAST(2, 0)
inline void* optimizer_state_key(const at::Tensor& p) { return p.unsafeGetTensorImpl(); }
#else
std::string optimizer_state_key(const at::Tensor& p);
#endif

/// Zeroes every defined gradient in place (Optimizer::zero_grad() sets them to undefined on 2.x),
/// so gradients that are views into communication buckets stay views.
void zero_grad(const std::vector<at::Tensor>& params);
/// Sets every gradient to undefined (set_to_none=True): backward then hands each parameter its
/// gradient instead of adding to a zeroed one. Not for views into buckets (zero_grad).
void clear_grad(const std::vector<at::Tensor>& params);

}  // namespace ocl::compat
