// DINO's weighted k-nearest-neighbour classifier on frozen features, the representation check
// of pre-training (the kNN monitor) and of ocl_knn: cosine similarity of L2-normalised
// features, the k most similar training samples vote with weight exp(sim / T).
#pragma once

#include <cstdint>
#include <memory>

#include <torch/types.h>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"
#include "ocl/nn/vision_transformer.h"

namespace ocl::engine {

struct Features {
  torch::Tensor features;  // float32 [N, D], L2-normalised rows, on the CPU
  torch::Tensor labels;    // int64 [N]
};

/// The CLS output after the final norm of every image of `dataset` (the first `limit` when
/// limit > 0), through `transform`, in eval mode without gradients, `batch` images at a time.
/// The encoder's training mode is restored afterwards.
Features extract_features(nn::VisionTransformer& encoder, const data::Dataset& dataset,
                          const data::Transform& transform, const torch::Device& device,
                          int64_t batch = 256, int64_t limit = 0, int64_t workers = 2,
                          bool bf16 = false);

struct KnnResult {
  double top1 = 0;  // percent
  double top5 = 0;  // percent (equals top1 when there are fewer than 5 classes)
  int64_t k = 0;    // the k used (clamped to the memory bank's size)
};

/// Classifies every row of `test` by the weighted vote of its k nearest rows of `train`
/// (cosine similarity; `num_classes` classes), `chunk` test rows at a time so memory stays
/// bounded; works for any set size, one sample included.
KnnResult knn_classify(const Features& train, const Features& test, int64_t num_classes,
                       int64_t k = 20, double temperature = 0.07, int64_t chunk = 1024);

}  // namespace ocl::engine
