// DINO's weighted k-nearest-neighbour evaluation of frozen features, the representation check of
// pre-training (the kNN monitor) and of ocl_knn: cosine similarity of L2-normalised CLS outputs,
// the k most similar training samples vote with weight exp(sim / T).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"
#include "ocl/distributed/communicator.h"
#include "ocl/engine/run_setup.h"
#include "ocl/io/config.h"
#include "ocl/nn/vision_transformer.h"

namespace ocl::engine {

/// Keeps `module` in eval mode while it lives, then restores its mode.
class EvalMode {
 public:
  explicit EvalMode(torch::nn::Module& m) : module_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalMode() { module_.train(was_training_); }

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

struct Features {
  torch::Tensor features;  // float32 [N, D] on the CPU (L2-normalised rows unless asked not to)
  torch::Tensor labels;    // int64 [N]
};

/// Maps every image of `dataset` (the first `limit` when limit > 0), transformed and normalised
/// on `device`, to a row of forward(images [b, 3, H, W], labels [b]) → [b, K] (under
/// NoGradGuard), in data set order. With `comm`, rank r reads images r, r + W, ... and every rank
/// returns all rows, each image exactly once.
using DatasetForward =
    std::function<torch::Tensor(const torch::Tensor& images, const torch::Tensor& labels)>;
Features map_dataset(const DatasetForward& forward, const data::Dataset& dataset,
                     const data::Transform& transform, const torch::Device& device,
                     int64_t batch = 256, int64_t limit = 0, int64_t workers = 2,
                     distributed::Communicator* comm = nullptr);

/// map_dataset with the encoder's CLS output in eval mode (its mode restored after); `normalize`:
/// L2-normalised rows (the kNN's), else raw (the linear probe's).
Features extract_features(nn::VisionTransformer& encoder, const data::Dataset& dataset,
                          const data::Transform& transform, const torch::Device& device,
                          int64_t batch = 256, int64_t limit = 0, int64_t workers = 2,
                          bool bf16 = false, distributed::Communicator* comm = nullptr,
                          bool normalize = true);

struct KnnResult {
  double top1 = 0;  // percent
  double top5 = 0;  // percent (equals top1 when there are fewer than 5 classes)
  int64_t k = 0;    // the k used (clamped to the memory bank's size)
};

/// Classifies every row of `test` by the weighted vote of its k nearest rows of `train` (cosine
/// similarity), `chunk` test rows at a time so memory stays bounded.
KnnResult knn_classify(const Features& train, const Features& test, int64_t num_classes,
                       int64_t k = 20, double temperature = 0.07, int64_t chunk = 1024);

struct KnnOptions {
  std::vector<int64_t> ks{20};  // several k at once: one top-k search for the largest
  double temperature = 0.07;
  int64_t chunk = 1024;               // test rows per similarity block
  torch::Device device{torch::kCPU};  // where the memory bank and the similarities live
  bool half_bank = false;             // keep the bank in fp16 (half the memory; CUDA)
};

/// knn_classify for every k of `options.ks`; with `comm`, sharded over ranks (whole-set figures).
std::vector<KnnResult> knn_evaluate(const Features& train, const Features& test,
                                    int64_t num_classes, const KnnOptions& options,
                                    distributed::Communicator* comm = nullptr);

/// The data of a kNN evaluation, both splits through the evaluation transform.
struct KnnData {
  DataSplits splits;  // train: the memory bank; val: classified
  std::shared_ptr<const data::Transform> transform;
};

/// Opens both splits (open_splits; `bank`: the training split, if open) and warns when the bank
/// has fewer than two classes (every vote is then right).
KnnData open_knn_data(const Process& process, const io::DataConfig& data, int img, uint64_t seed,
                      std::shared_ptr<const data::Dataset> bank = nullptr);

struct KnnSettings {
  int64_t batch = 256, workers = 2;          // images per forward, loader workers
  int64_t bank_size = 0, held_out_size = 0;  // the first N images of each split (0: all)
  KnnOptions vote;                           // its device is the process's
};

struct KnnEvaluation {
  Features bank, held_out;
  std::vector<KnnResult> results;  // one per k of settings.vote.ks
  double seconds = 0;              // extraction and classification
};

/// Extracts both splits' features with `encoder` and classifies the held-out ones.
KnnEvaluation evaluate_knn(nn::VisionTransformer& encoder, const KnnData& data,
                           const Process& process, const KnnSettings& settings);

}  // namespace ocl::engine
