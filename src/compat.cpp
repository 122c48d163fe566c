// Version-dependent implementations behind include/ocl/compat.h.
#include "ocl/compat.h"

#include <chrono>
#include <cmath>
#include <iterator>
#include <thread>

#include <ATen/autocast_mode.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/C++17.h>  // c10::guts::to_string, as LibTorch 1.13 keys optimiser state
#include <c10/util/Exception.h>

namespace ocl::compat {

std::string torch_version() { return TORCH_VERSION; }

at::Tensor attention_explicit(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "attention expects [B, H, T, hd] tensors, got q ", q.sizes(), ", k ", k.sizes(),
              ", v ", v.sizes());
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto weights = at::softmax(at::matmul(q, k.transpose(-2, -1)) * scale, -1);
  return at::matmul(weights, v);
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if OCL_TORCH_AT_LEAST(2, 0)
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "attention expects [B, H, T, hd] tensors, got q ", q.sizes(), ", k ", k.sizes(),
              ", v ", v.sizes());
  try {
    return at::scaled_dot_product_attention(q, k, v);
  } catch (const c10::Error& e) {
    // The backends allowed (model.attention) cannot run this call: say which setting did it.
    const std::string what = e.what_without_backtrace();
    // LibTorch's words for it: "No available kernel" (CUDA), "No viable backend" (CPU).
    TORCH_CHECK(what.find("No available kernel") == std::string::npos &&
                    what.find("No viable backend") == std::string::npos,
                "attention: no SDPA kernel this process allows (model.attention) runs q ",
                q.sizes(), " ", q.scalar_type(), " on ", q.device(),
                "; model.attention: auto lets SDPA choose");
    throw;
  }
#else
  return attention_explicit(q, k, v);
#endif
}

const char* sdpa_backend_name(SdpaBackend backend) {
  static const char* const names[] = {"flash", "mem_efficient", "cudnn", "math"};  // enum order
  const auto i = static_cast<size_t>(backend);
  return i < std::size(names) ? names[i] : "?";
}

SdpaBackendScope::SdpaBackendScope(SdpaBackend only) {
#if OCL_TORCH_AT_LEAST(2, 6)
  auto& c = at::globalContext();
  flash_ = c.userEnabledFlashSDP();
  mem_efficient_ = c.userEnabledMemEfficientSDP();
  cudnn_ = c.userEnabledCuDNNSDP();
  math_ = c.userEnabledMathSDP();
  c.setSDPUseFlash(only == SdpaBackend::kFlash);
  c.setSDPUseMemEfficient(only == SdpaBackend::kMemEfficient);
  c.setSDPUseCuDNN(only == SdpaBackend::kCuDNN);
  c.setSDPUseMath(only == SdpaBackend::kMath);
#else
  (void)only;
  TORCH_CHECK(false, "choosing an SDPA backend needs LibTorch >= 2.6, this is ", TORCH_VERSION);
#endif
}

SdpaBackendScope::~SdpaBackendScope() {
#if OCL_TORCH_AT_LEAST(2, 6)
  auto& c = at::globalContext();
  c.setSDPUseFlash(flash_);
  c.setSDPUseMemEfficient(mem_efficient_);
  c.setSDPUseCuDNN(cudnn_);
  c.setSDPUseMath(math_);
#else
  (void)flash_, (void)mem_efficient_, (void)cudnn_, (void)math_;
#endif
}

bool fused_adamw_supported(c10::DeviceType device) {
  if (device == c10::DeviceType::CUDA) return OCL_TORCH_AT_LEAST(2, 0);
  if (device == c10::DeviceType::CPU) return OCL_TORCH_AT_LEAST(2, 6);
  return false;
}

namespace {

// at::_fused_adamw_ with its fixed arguments; `lr` a double, or a tensor (LibTorch >= 2.6).
template <typename Lr>
void call_fused_adamw(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                      at::TensorList exp_avg_sqs, at::TensorList state_steps, const Lr& lr,
                      double beta1, double beta2, double weight_decay, double eps,
                      const at::Tensor& found_inf) {
#if OCL_TORCH_AT_LEAST(2, 0)
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, state_steps, lr,
                    beta1, beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false,
                    /*grad_scale=*/c10::nullopt,
                    found_inf.defined() ? c10::optional<at::Tensor>(found_inf) : c10::nullopt);
#else
  (void)params, (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)state_steps, (void)lr;
  (void)beta1, (void)beta2, (void)weight_decay, (void)eps, (void)found_inf;
#endif
}

}  // namespace

void fused_adamw_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                  at::TensorList exp_avg_sqs, at::TensorList state_steps, double lr, double beta1,
                  double beta2, double weight_decay, double eps, const at::Tensor& found_inf) {
  TORCH_CHECK(!params.empty(), "fused AdamW: no parameters");
  TORCH_CHECK(fused_adamw_supported(params[0].device().type()), "fused AdamW: LibTorch ",
              TORCH_VERSION, " has no at::_fused_adamw_ kernel for ", params[0].device().type(),
              " tensors");
  call_fused_adamw(params, grads, exp_avgs, exp_avg_sqs, state_steps, lr, beta1, beta2,
                   weight_decay, eps, found_inf);
}

void fused_adamw_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                  at::TensorList exp_avg_sqs, at::TensorList state_steps, const at::Tensor& lr,
                  double beta1, double beta2, double weight_decay, double eps,
                  const at::Tensor& found_inf) {
  TORCH_CHECK(!params.empty(), "fused AdamW: no parameters");
  TORCH_CHECK(OCL_TORCH_AT_LEAST(2, 6) && fused_adamw_supported(params[0].device().type()),
              "fused AdamW with a tensor learning rate needs LibTorch >= 2.6, this is ",
              TORCH_VERSION);
  call_fused_adamw(params, grads, exp_avgs, exp_avg_sqs, state_steps, lr, beta1, beta2,
                   weight_decay, eps, found_inf);
}

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps) {
  const auto dtype = weight.defined() ? weight.scalar_type() : x.scalar_type();
  return at::layer_norm(x.scalar_type() == dtype ? x : x.to(dtype), {x.size(-1)}, weight, bias,
                        eps);
}

struct StreamMark::Impl {
  c10::Event event;
  explicit Impl(c10::DeviceType type) : event(type) {}
};

StreamMark::StreamMark(c10::Device device) {
  if (device.is_cpu()) return;
  const c10::impl::VirtualGuardImpl guard(device.type());
  impl_ = std::make_unique<Impl>(device.type());
  impl_->event.record(guard.getStream(device));
}

StreamMark::~StreamMark() = default;
StreamMark::StreamMark(StreamMark&&) noexcept = default;
StreamMark& StreamMark::operator=(StreamMark&&) noexcept = default;

void StreamMark::wait() const {
  if (!impl_) return;
#if OCL_TORCH_AT_LEAST(2, 6)
  impl_->event.synchronize();
#else
  while (!impl_->event.query()) std::this_thread::sleep_for(std::chrono::microseconds(50));
#endif
}

bool StreamMark::reached() const { return !impl_ || impl_->event.query(); }

bool autocast_enabled(c10::DeviceType device) {
#if OCL_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(device);
#else
  TORCH_CHECK(device == c10::kCPU || device == c10::kCUDA, "autocast: unsupported device type ",
              device);
  return device == c10::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

at::ScalarType autocast_dtype(c10::DeviceType device) {
#if OCL_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(device);
#else
  TORCH_CHECK(device == c10::kCPU || device == c10::kCUDA, "autocast: unsupported device type ",
              device);
  return device == c10::kCPU ? at::autocast::get_autocast_cpu_dtype()
                             : at::autocast::get_autocast_gpu_dtype();
#endif
}

namespace {
void set_autocast(c10::DeviceType device, bool enabled, at::ScalarType dtype) {
#if OCL_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::kCPU) {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
}
}  // namespace

AutocastGuard::AutocastGuard(c10::DeviceType device, bool enabled, at::ScalarType dtype)
    : device_(device),
      prev_enabled_(autocast_enabled(device)),
      prev_dtype_(autocast_dtype(device)) {
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf,
              "autocast dtype must be bfloat16 or float16, got ", dtype);
  set_autocast(device_, enabled, dtype);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  // As torch.autocast.__exit__: leaving the outermost scope drops the cast-weight cache.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(device_, prev_enabled_, prev_dtype_);
}

#if !OCL_TORCH_AT_LEAST(2, 0)
std::string optimizer_state_key(const at::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}
#endif

void zero_grad(const std::vector<at::Tensor>& params) {
  at::NoGradGuard no_grad;
  for (const auto& p : params) {
    // mutable_grad() is the gradient slot itself; zeroing it keeps its storage (and any view).
    auto& g = const_cast<at::Tensor&>(p).mutable_grad();
    if (g.defined()) g.zero_();
  }
}

void clear_grad(const std::vector<at::Tensor>& params) {
  for (const auto& p : params) const_cast<at::Tensor&>(p).mutable_grad().reset();
}

}  // namespace ocl::compat
