// A model EMA (timm's ModelEmaV2, as MAE's fine-tuning uses it): a frozen copy of a ViT whose
// parameters and buffers follow the trained model's after each optimiser step,
// ema = decay · ema + (1 − decay) · model (integer buffers are copied).
#pragma once

#include "ocl/nn/vision_transformer.h"

namespace ocl::optim {

class ModelEma {
 public:
  /// A copy of `model` in eval mode without gradients; decay in [0, 1).
  ModelEma(const nn::VisionTransformer& model, double decay);
  void update(const nn::VisionTransformer& model);
  nn::VisionTransformer& model() { return ema_; }

 private:
  nn::VisionTransformer ema_{nullptr};
  double decay_;
};

}  // namespace ocl::optim
