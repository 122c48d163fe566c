// The linear probe's head (MAE's main_linprobe): BatchNorm1d without affine parameters (it only
// standardises the features, making the lr insensitive to their scale), then a linear classifier.
#pragma once

#include <cstdint>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace ocl::nn {

struct LinearProbeHeadOptions {
  LinearProbeHeadOptions(int64_t dim, int64_t num_classes) : dim_(dim), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, dim);           // the features' width
  TORCH_ARG(int64_t, num_classes);   // the classifier's outputs
  TORCH_ARG(double, bn_eps) = 1e-6;  // MAE's BatchNorm1d(eps=1e-6)
  /// fc.weight ~ N(0, init_std²): MAE's trunc_normal_(std=0.01), whose ±200σ bounds never cut.
  TORCH_ARG(double, init_std) = 0.01;
};

/// features [B, dim] → logits [B, num_classes]. Tensors (timm's / MAE's names):
/// bn.running_mean, bn.running_var, bn.num_batches_tracked, fc.weight, fc.bias.
class LinearProbeHeadImpl : public torch::nn::Cloneable<LinearProbeHeadImpl> {
 public:
  explicit LinearProbeHeadImpl(const LinearProbeHeadOptions& options);
  LinearProbeHeadImpl(int64_t dim, int64_t num_classes)
      : LinearProbeHeadImpl(LinearProbeHeadOptions(dim, num_classes)) {}
  void reset() override;
  /// fc.weight ~ N(0, init_std²) from the global generator, fc.bias = 0.
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& features);

  LinearProbeHeadOptions options;
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(LinearProbeHead);

}  // namespace ocl::nn
