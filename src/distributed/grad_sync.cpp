// The bucketed, overlapped gradient all-reduce (see include/ocl/distributed/grad_sync.h).
#include "ocl/distributed/grad_sync.h"

#include <mutex>
#include <stdexcept>
#include <string>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

namespace ocl::distributed {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<torch::Tensor>& params,
                                                int64_t first_cap_bytes, int64_t cap_bytes) {
  std::vector<std::vector<size_t>> buckets;
  int64_t filled = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const auto& p = params[k];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    bool fits = false;
    if (!buckets.empty()) {
      const auto& head = params[buckets.back().front()];
      const int64_t cap = buckets.size() == 1 ? first_cap_bytes : cap_bytes;
      fits = head.scalar_type() == p.scalar_type() && head.device() == p.device() &&
             filled + size <= cap;
    }
    if (!fits) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().push_back(k);
    filled += size;
  }
  return buckets;
}

struct GradSynchronizer::Impl {
  struct Bucket {
    torch::Tensor flat;            // the gradients of its parameters, back to back
    std::vector<size_t> params;    // indices into Impl::params
    int64_t pending = 0;           // parameters not yet ready in this backward
    PendingCollective collective;  // the bucket's all-reduce, once launched
  };

  Communicator* comm = nullptr;
  GradSyncOptions options;
  std::vector<torch::Tensor> params;
  std::vector<size_t> bucket_of;  // parameter index → bucket
  std::vector<Bucket> buckets;
  // Keeps the accumulators (where our hooks live) alive: a variable holds its node only weakly.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::mutex mutex;  // hooks may run on autograd worker threads (one per device)
  bool sync = true;
  bool armed = false;      // a synchronised backward is in progress (or done, not finished)
  size_t next_launch = 0;  // buckets launch strictly in order
  int64_t launched_total = 0, launched_in_backward = 0;

  void arm() {
    for (auto& b : buckets) b.pending = static_cast<int64_t>(b.params.size());
    next_launch = 0;
    launched_in_backward = 0;
    armed = true;
  }

  void launch_ready_in_order() {
    for (; next_launch < buckets.size() && buckets[next_launch].pending == 0; ++next_launch) {
      buckets[next_launch].collective =
          comm->all_reduce_sum_async(buckets[next_launch].flat, Group::kGradients,
                                     "gradient bucket " + std::to_string(next_launch) + " of " +
                                         std::to_string(buckets.size()));
      launched_total += 1;
    }
  }

  void on_gradient_ready(size_t param) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!sync) return;
    if (!armed) arm();
    auto& b = buckets[bucket_of[param]];
    if (b.pending > 0) b.pending -= 1;
    const size_t before = next_launch;
    launch_ready_in_order();
    launched_in_backward += static_cast<int64_t>(next_launch - before);
  }
};

GradSynchronizer::GradSynchronizer(Communicator& comm, std::vector<torch::Tensor> params,
                                   GradSyncOptions options)
    : impl_(std::make_unique<Impl>()) {
  auto& d = *impl_;
  d.comm = &comm;
  d.options = options;
  d.params = std::move(params);
  for (const auto& p : d.params) {
    if (!p.requires_grad() || !p.is_leaf()) {
      throw std::invalid_argument(
          "GradSynchronizer: every parameter must be a leaf that requires grad (leave frozen "
          "parameters out)");
    }
  }
  if (options.broadcast_parameters) comm.broadcast_from_rank0(d.params, "initial parameters");

  const auto mib = [](double m) { return static_cast<int64_t>(m * 1024 * 1024); };
  const auto layout =
      assign_buckets(d.params, mib(options.first_bucket_mb), mib(options.bucket_mb));
  d.bucket_of.assign(d.params.size(), 0);
  for (size_t i = 0; i < layout.size(); ++i) {
    Impl::Bucket b;
    b.params = layout[i];
    int64_t numel = 0;
    for (size_t k : b.params) {
      numel += d.params[k].numel();
      d.bucket_of[k] = i;
    }
    const auto& head = d.params[b.params.front()];
    b.flat = torch::zeros({numel}, head.options().requires_grad(false));
    // Each gradient becomes a view into the bucket, keeping what it held.
    int64_t offset = 0;
    for (size_t k : b.params) {
      auto& p = d.params[k];
      auto view = b.flat.narrow(0, offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        torch::NoGradGuard no_grad;
        view.copy_(p.grad());
      }
      p.mutable_grad() = view;
      offset += p.numel();
    }
    d.buckets.push_back(std::move(b));
  }

  for (size_t k = 0; k < d.params.size(); ++k) {
    auto acc = torch::autograd::impl::grad_accumulator(d.params[k]);
    Impl* self = impl_.get();
    acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [self, k](const torch::autograd::variable_list& outputs,
                  const torch::autograd::variable_list&) {
          self->on_gradient_ready(k);
          return outputs;
        }));
    d.accumulators.emplace_back(std::move(acc));
  }
}

GradSynchronizer::~GradSynchronizer() {
  // Collectives must not outlive their buckets: wait, ignoring failures (finish() reports them).
  for (auto& b : impl_->buckets) {
    try {
      b.collective.wait();
    } catch (...) {
    }
  }
}

void GradSynchronizer::set_sync(bool sync) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->sync = sync;
}

void GradSynchronizer::finish() {
  auto& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mutex);
  if (!d.sync) return;
  if (!d.armed) d.arm();  // a backward that reached none of our parameters
  // Buckets holding parameters that got no gradient this time: launched now, in order.
  for (auto& b : d.buckets) b.pending = 0;
  d.launch_ready_in_order();
  const double inverse = 1.0 / static_cast<double>(d.comm->world_size());
  for (auto& b : d.buckets) {
    b.collective.wait();
    b.flat.mul_(inverse);
  }
  d.armed = false;
}

int64_t GradSynchronizer::num_buckets() const {
  return static_cast<int64_t>(impl_->buckets.size());
}

std::vector<int64_t> GradSynchronizer::bucket_bytes() const {
  std::vector<int64_t> out;
  for (const auto& b : impl_->buckets)
    out.push_back(b.flat.numel() * static_cast<int64_t>(b.flat.element_size()));
  return out;
}

int64_t GradSynchronizer::buckets_launched() const { return impl_->launched_total; }
int64_t GradSynchronizer::buckets_launched_in_backward() const {
  return impl_->launched_in_backward;
}

}  // namespace ocl::distributed
