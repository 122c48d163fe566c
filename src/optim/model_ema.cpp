// The model EMA (see include/ocl/optim/model_ema.h).
#include "ocl/optim/model_ema.h"

#include <torch/torch.h>

#include "ocl/io/state_dict.h"

namespace ocl::optim {

ModelEma::ModelEma(const nn::VisionTransformer& model, double decay) : decay_(decay) {
  TORCH_CHECK(decay >= 0.0 && decay < 1.0, "model EMA decay must be in [0, 1), got ", decay);
  ema_ =
      nn::VisionTransformer(std::dynamic_pointer_cast<nn::VisionTransformerImpl>(model->clone()));
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
  ema_->eval();
}

void ModelEma::update(const nn::VisionTransformer& model) {
  torch::NoGradGuard no_grad;
  const auto source = io::state_dict(*model);
  for (auto& [name, target] : io::state_dict(*ema_)) {
    const auto& value = source.at(name);
    if (target.is_floating_point()) {
      target.mul_(decay_).add_(value.to(target.dtype()), 1.0 - decay_);
    } else {
      target.copy_(value);
    }
  }
}

}  // namespace ocl::optim
