// Feature extraction and the weighted kNN classifier (see include/ocl/engine/knn.h).
#include "ocl/engine/knn.h"

#include <algorithm>

#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/loader.h"

namespace ocl::engine {

Features extract_features(nn::VisionTransformer& encoder, const data::Dataset& dataset,
                          const data::Transform& transform, const torch::Device& device,
                          int64_t batch, int64_t limit, int64_t workers, bool bf16) {
  TORCH_CHECK(batch >= 1, "feature extraction batch must be >= 1, got ", batch);
  // A non-owning view: the loader needs shared pointers, the caller keeps ownership.
  std::shared_ptr<const data::Dataset> ds(&dataset, [](const data::Dataset*) {});
  std::shared_ptr<const data::Transform> tf(&transform, [](const data::Transform*) {});
  data::LoaderOptions o;
  o.batch_size = batch;
  o.workers = std::max<int64_t>(1, workers);
  o.shuffle = false;
  o.drop_last = false;
  const int64_t n = limit > 0 ? std::min(limit, dataset.size()) : dataset.size();
  o.max_steps_per_epoch = (n + batch - 1) / batch;
  data::Loader loader(ds, tf, o);

  const bool was_training = encoder->is_training();
  encoder->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> feats, labels;
  int64_t seen = 0;
  loader.start_epoch(0);
  while (auto b = loader.next()) {
    auto images = data::normalize_images(b->images, device);
    torch::Tensor cls;
    {
      compat::AutocastGuard autocast(device.type(), bf16);
      cls = encoder->forward_features(images).select(1, 0);
    }
    const int64_t take = std::min<int64_t>(cls.size(0), n - seen);
    feats.push_back(
        torch::nn::functional::normalize(cls.narrow(0, 0, take).to(torch::kFloat32),
                                         torch::nn::functional::NormalizeFuncOptions().dim(1))
            .cpu());
    labels.push_back(b->labels.narrow(0, 0, take));
    seen += take;
    if (seen >= n) break;
  }
  encoder->train(was_training);
  TORCH_CHECK(!feats.empty(), "feature extraction: the data set is empty");
  return {torch::cat(feats), torch::cat(labels)};
}

KnnResult knn_classify(const Features& train, const Features& test, int64_t num_classes, int64_t k,
                       double temperature, int64_t chunk) {
  TORCH_CHECK(train.features.dim() == 2 && test.features.dim() == 2 &&
                  train.features.size(1) == test.features.size(1),
              "kNN: features must be [N, D] with the same D, got train ", train.features.sizes(),
              " and test ", test.features.sizes());
  TORCH_CHECK(train.features.size(0) >= 1, "kNN: the training memory bank is empty");
  TORCH_CHECK(num_classes >= 1 && k >= 1 && temperature > 0 && chunk >= 1,
              "kNN: needs num_classes, k, chunk >= 1 and T > 0, got ", num_classes, ", ", k, ", ",
              chunk, ", ", temperature);
  KnnResult r;
  r.k = std::min<int64_t>(k, train.features.size(0));
  const int64_t m = test.features.size(0);
  if (m == 0) return r;
  const int64_t top = std::min<int64_t>(5, num_classes);
  int64_t correct1 = 0, correct5 = 0;
  auto bank_t = train.features.t();
  for (int64_t start = 0; start < m; start += chunk) {
    const int64_t len = std::min(chunk, m - start);
    auto sim = torch::matmul(test.features.narrow(0, start, len), bank_t);  // [len, N]
    auto best = sim.topk(r.k, 1);
    auto weights = (std::get<0>(best) / temperature).exp();  // [len, k]
    auto neighbour_labels =
        train.labels.index_select(0, std::get<1>(best).reshape(-1)).reshape({len, r.k});
    auto votes = torch::zeros({len, num_classes}, torch::kFloat32);
    votes.scatter_add_(1, neighbour_labels, weights);
    auto ranked = std::get<1>(votes.topk(top, 1));  // [len, top]
    auto truth = test.labels.narrow(0, start, len).unsqueeze(1);
    auto hits = ranked.eq(truth);
    correct1 += hits.narrow(1, 0, 1).sum().item<int64_t>();
    correct5 += hits.sum().item<int64_t>();
  }
  r.top1 = 100.0 * static_cast<double>(correct1) / static_cast<double>(m);
  r.top5 = 100.0 * static_cast<double>(correct5) / static_cast<double>(m);
  return r;
}

}  // namespace ocl::engine
