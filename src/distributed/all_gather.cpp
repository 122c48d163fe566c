// The differentiable all-gather (see include/ocl/distributed/all_gather.h).
#include "ocl/distributed/all_gather.h"

#include <cstdint>

#include <torch/autograd.h>

namespace ocl::distributed {
namespace {

// The communicator travels through the autograd context as an integer: saved_data holds
// IValues, and the communicator outlives every graph built during training.
class AllGatherFunction : public torch::autograd::Function<AllGatherFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               int64_t comm_address) {
    ctx->saved_data["comm"] = comm_address;
    auto& comm =
        *reinterpret_cast<Communicator*>(comm_address);  // NOLINT(performance-no-int-to-ptr)
    return comm.all_gather(x, Group::kLoss, "features for global negatives");
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto& comm = *reinterpret_cast<Communicator*>(  // NOLINT(performance-no-int-to-ptr)
        ctx->saved_data["comm"].toInt());
    auto local = comm.reduce_scatter_sum(grads[0], Group::kLoss,
                                         "gradients of the features for global negatives");
    return {local, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_gather_with_grad(Communicator& comm, const torch::Tensor& x) {
  return AllGatherFunction::apply(x, static_cast<int64_t>(reinterpret_cast<intptr_t>(&comm)));
}

}  // namespace ocl::distributed
