// DINO's weighted k-nearest-neighbour evaluation of frozen features, the representation check of
// pre-training (the kNN monitor) and of ocl_knn: cosine similarity of L2-normalised CLS outputs,
// the k most similar training samples vote with weight exp(sim / T).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <torch/types.h>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"
#include "ocl/distributed/communicator.h"
#include "ocl/engine/run_setup.h"
#include "ocl/io/config.h"
#include "ocl/nn/vision_transformer.h"

namespace ocl::engine {

struct Features {
  torch::Tensor features;  // float32 [N, D] on the CPU (L2-normalised rows unless asked not to)
  torch::Tensor labels;    // int64 [N]
};

/// Maps every image of `dataset` (the first `limit` when limit > 0), through `transform` and
/// normalised on `device`, to a row of `forward`'s output: forward(images [b, 3, H, W], labels
/// [b]) → [b, K], both on `device`, called under NoGradGuard, `batch` images at a time, in data
/// set order. With `comm`, rank r reads images r, r + W, ... and the rows are all-gathered:
/// every rank returns all n rows in order, each image exactly once whatever n mod W, with
/// their labels.
using DatasetForward =
    std::function<torch::Tensor(const torch::Tensor& images, const torch::Tensor& labels)>;
Features map_dataset(const DatasetForward& forward, const data::Dataset& dataset,
                     const data::Transform& transform, const torch::Device& device,
                     int64_t batch = 256, int64_t limit = 0, int64_t workers = 2,
                     distributed::Communicator* comm = nullptr);

/// map_dataset with the encoder's CLS output after the final norm, in eval mode (the training
/// mode restored afterwards). `normalize`: L2-normalise each row (the kNN's cosine); false keeps
/// the raw CLS output (the linear probe's).
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

/// Classifies every row of `test` by the weighted vote of its k nearest rows of `train`
/// (cosine similarity; `num_classes` classes), `chunk` test rows at a time so memory stays
/// bounded; works for any set size, one sample included.
KnnResult knn_classify(const Features& train, const Features& test, int64_t num_classes,
                       int64_t k = 20, double temperature = 0.07, int64_t chunk = 1024);

struct KnnOptions {
  std::vector<int64_t> ks{20};  // several k at once: one top-k search for the largest
  double temperature = 0.07;
  int64_t chunk = 1024;               // test rows per similarity block
  torch::Device device{torch::kCPU};  // where the memory bank and the similarities live
  bool half_bank = false;             // keep the bank in fp16 (half the memory; CUDA)
};

/// knn_classify for every k of `options.ks` (results in that order). With `comm`, rank r
/// classifies test rows r, r + W, ...; every rank returns the figures for the whole test set.
std::vector<KnnResult> knn_evaluate(const Features& train, const Features& test,
                                    int64_t num_classes, const KnnOptions& options,
                                    distributed::Communicator* comm = nullptr);

/// The data of a kNN evaluation, both splits through the evaluation transform.
struct KnnData {
  DataSplits splits;  // train: the memory bank; val: classified
  std::shared_ptr<const data::Transform> transform;
};

/// Opens both splits of `data` (open_splits; `bank`, when given, is the training split) and warns
/// when the bank has fewer than two classes (unlabelled data: every vote is right).
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

/// Extracts both splits' features with `encoder` and classifies the held-out ones; with several
/// ranks each takes its share.
KnnEvaluation evaluate_knn(nn::VisionTransformer& encoder, const KnnData& data,
                           const Process& process, const KnnSettings& settings);

}  // namespace ocl::engine
