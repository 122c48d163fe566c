// Feature extraction and the weighted kNN classifier (see include/ocl/engine/knn.h).
#include "ocl/engine/knn.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/data/loader.h"

namespace ocl::engine {
namespace {

// The first `n` samples of another data set (the loader shards and pads a whole data set).
class PrefixView : public data::Dataset {
 public:
  PrefixView(const data::Dataset& base, int64_t n) : base_(base), n_(n) {}
  int64_t size() const override { return n_; }
  const std::vector<std::string>& class_names() const override { return base_.class_names(); }
  int64_t label(int64_t index) const override { return base_.label(check(index)); }
  std::optional<data::Image> load(int64_t index, data::BadSample* error) const override {
    return base_.load(check(index), error);
  }
  std::string describe() const override {
    return base_.describe() + " (first " + std::to_string(n_) + ")";
  }

 private:
  int64_t check(int64_t index) const {
    if (index < 0 || index >= n_) throw std::out_of_range("PrefixView: index out of range");
    return index;
  }
  const data::Dataset& base_;
  int64_t n_;
};

// [W·m, ...] gathered blocks, rank r's row k being sample r + k·W, → the first n samples in
// order (the tail of the last round is the loader's wrap-around padding).
torch::Tensor interleave_ranks(const torch::Tensor& gathered, int64_t world, int64_t n) {
  const int64_t m = gathered.size(0) / world;
  std::vector<int64_t> shape = gathered.sizes().vec();
  shape[0] = m;
  shape.insert(shape.begin(), world);  // [W, m, ...]
  return gathered.view(shape).transpose(0, 1).reshape({world * m, -1}).narrow(0, 0, n);
}

}  // namespace

Features map_dataset(const DatasetForward& forward, const data::Dataset& dataset,
                     const data::Transform& transform, const torch::Device& device, int64_t batch,
                     int64_t limit, int64_t workers, distributed::Communicator* comm) {
  TORCH_CHECK(batch >= 1, "map_dataset: batch must be >= 1, got ", batch);
  const int64_t n = limit > 0 ? std::min(limit, dataset.size()) : dataset.size();
  TORCH_CHECK(n >= 1, "map_dataset: the data set is empty");
  const int64_t world = comm != nullptr ? comm->world_size() : 1;
  // The loader takes a shared pointer; the caller keeps ownership of the data set.
  std::shared_ptr<const data::Dataset> ds = std::make_shared<PrefixView>(dataset, n);
  std::shared_ptr<const data::Transform> tf(&transform, [](const data::Transform*) {});
  data::LoaderOptions o;
  o.batch_size = batch;
  o.workers = std::max<int64_t>(1, workers);
  o.shuffle = false;
  o.drop_last = false;
  o.rank = comm != nullptr ? comm->rank() : 0;
  o.world_size = world;
  // Every rank reads ceil(n / W) samples (the last round padded by wrapping), so the gathered
  // blocks have one size.
  const int64_t per_rank = (n + world - 1) / world;
  o.max_steps_per_epoch = (per_rank + batch - 1) / batch;
  data::Loader loader(ds, tf, o);

  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> rows, labels;
  loader.start_epoch(0);
  while (auto b = loader.next()) {
    auto batch_labels = b->labels.to(device);
    auto out = forward(data::normalize_images(b->images, device), batch_labels).to(torch::kFloat32);
    TORCH_CHECK(out.dim() == 2 && out.size(0) == b->images.size(0),
                "map_dataset: the forward must return one row per image, got ", out.sizes(),
                " for ", b->images.size(0), " images");
    rows.push_back(out);
    labels.push_back(batch_labels);
  }
  auto f = torch::cat(rows), l = torch::cat(labels);
  TORCH_CHECK(f.size(0) == per_rank, "map_dataset: expected ", per_rank, " samples, got ",
              f.size(0));
  if (world == 1) return {f.cpu(), l.cpu()};
  f = comm->all_gather(f, distributed::Group::kLoss, "per-image outputs");
  l = comm->all_gather(l, distributed::Group::kLoss, "per-image labels");
  return {interleave_ranks(f, world, n).cpu(), interleave_ranks(l, world, n).view({-1}).cpu()};
}

Features extract_features(nn::VisionTransformer& encoder, const data::Dataset& dataset,
                          const data::Transform& transform, const torch::Device& device,
                          int64_t batch, int64_t limit, int64_t workers, bool bf16,
                          distributed::Communicator* comm, bool normalize) {
  const EvalMode eval_mode(*encoder);
  auto forward = [&](const torch::Tensor& images, const torch::Tensor& /*labels*/) {
    torch::Tensor cls;
    {
      compat::AutocastGuard autocast(device.type(), bf16);
      cls = encoder->forward_features(images).select(1, 0);
    }
    cls = cls.to(torch::kFloat32);
    return normalize ? torch::nn::functional::normalize(
                           cls, torch::nn::functional::NormalizeFuncOptions().dim(1))
                     : cls;
  };
  return map_dataset(forward, dataset, transform, device, batch, limit, workers, comm);
}

std::vector<KnnResult> knn_evaluate(const Features& train, const Features& test,
                                    int64_t num_classes, const KnnOptions& options,
                                    distributed::Communicator* comm) {
  TORCH_CHECK(train.features.dim() == 2 && test.features.dim() == 2 &&
                  train.features.size(1) == test.features.size(1),
              "kNN: features must be [N, D] with the same D, got train ", train.features.sizes(),
              " and test ", test.features.sizes());
  TORCH_CHECK(train.features.size(0) >= 1, "kNN: the training memory bank is empty");
  TORCH_CHECK(!options.ks.empty(), "kNN: no k given");
  for (int64_t k : options.ks) TORCH_CHECK(k >= 1, "kNN: k must be >= 1, got ", k);
  TORCH_CHECK(num_classes >= 1 && options.temperature > 0 && options.chunk >= 1,
              "kNN: needs num_classes, chunk >= 1 and T > 0, got ", num_classes, ", ",
              options.chunk, ", ", options.temperature);
  const auto& dev = options.device;
  const int64_t bank_size = train.features.size(0);
  const int64_t kmax =
      std::min<int64_t>(*std::max_element(options.ks.begin(), options.ks.end()), bank_size);
  const auto bank_dtype = options.half_bank ? torch::kFloat16 : torch::kFloat32;
  auto bank_t = train.features.to(dev, bank_dtype).t();
  auto bank_labels = train.labels.to(dev);
  const int64_t top = std::min<int64_t>(5, num_classes);
  const size_t nk = options.ks.size();
  // correct[2i] / [2i+1]: top-1 / top-5 hits for ks[i], over this rank's test rows.
  auto correct = torch::zeros({static_cast<int64_t>(2 * nk)}, torch::kInt64);
  const int64_t world = comm != nullptr ? comm->world_size() : 1;
  const int64_t rank = comm != nullptr ? comm->rank() : 0;
  const int64_t m = test.features.size(0);
  // This rank's rows: rank, rank + W, ...
  auto mine = torch::arange(rank, m, world, torch::kInt64);
  auto test_f = test.features.index_select(0, mine);
  auto test_l = test.labels.index_select(0, mine);
  for (int64_t start = 0; start < mine.size(0); start += options.chunk) {
    const int64_t len = std::min(options.chunk, mine.size(0) - start);
    auto q = test_f.narrow(0, start, len).to(dev, bank_dtype);
    auto sim = torch::matmul(q, bank_t).to(torch::kFloat32);  // [len, N]
    auto best = sim.topk(kmax, 1);                            // sorted, most similar first
    auto weights_all = (std::get<0>(best) / options.temperature).exp();
    auto labels_all =
        bank_labels.index_select(0, std::get<1>(best).reshape(-1)).reshape({len, kmax});
    auto truth = test_l.narrow(0, start, len).to(dev).unsqueeze(1);
    for (size_t i = 0; i < nk; ++i) {
      const int64_t k = std::min<int64_t>(options.ks[i], bank_size);
      auto votes = torch::zeros({len, num_classes}, weights_all.options());
      votes.scatter_add_(1, labels_all.narrow(1, 0, k), weights_all.narrow(1, 0, k));
      auto hits = std::get<1>(votes.topk(top, 1)).eq(truth);
      correct[2 * i] += hits.narrow(1, 0, 1).sum().item<int64_t>();
      correct[2 * i + 1] += hits.sum().item<int64_t>();
    }
  }
  if (comm != nullptr) {
    auto counts = correct.to(dev);
    comm->all_reduce_sum(counts, distributed::Group::kLoss, "kNN hit counts");
    correct = counts.cpu();
  }
  std::vector<KnnResult> out;
  for (size_t i = 0; i < nk; ++i) {
    KnnResult r;
    r.k = std::min<int64_t>(options.ks[i], bank_size);
    if (m > 0) {
      r.top1 = 100.0 * static_cast<double>(correct[2 * i].item<int64_t>()) / m;
      r.top5 = 100.0 * static_cast<double>(correct[2 * i + 1].item<int64_t>()) / m;
    }
    out.push_back(r);
  }
  return out;
}

KnnResult knn_classify(const Features& train, const Features& test, int64_t num_classes, int64_t k,
                       double temperature, int64_t chunk) {
  return knn_evaluate(train, test, num_classes,
                      {.ks = {k}, .temperature = temperature, .chunk = chunk})
      .front();
}

KnnData open_knn_data(const Process& process, const io::DataConfig& data, int img, uint64_t seed,
                      std::shared_ptr<const data::Dataset> bank) {
  KnnData d{open_splits(process, data, img, seed, std::move(bank)), nullptr};
  if (d.splits.train->num_classes() < 2) {
    process.log->warn(
        "kNN: the data has {} class: every neighbour votes for it, so top-1 is 100 % whatever the "
        "encoder learned; give labelled data (class folders, .cls members) for a figure that "
        "means something",
        d.splits.train->num_classes());
  }
  d.transform = data::make_transform(data, img, /*train=*/false);
  return d;
}

KnnEvaluation evaluate_knn(nn::VisionTransformer& encoder, const KnnData& data,
                           const Process& process, const KnnSettings& s) {
  const auto t0 = std::chrono::steady_clock::now();
  KnnEvaluation e;
  auto* comm = process.comm.get();
  e.bank = extract_features(encoder, *data.splits.train, *data.transform, process.device, s.batch,
                            s.bank_size, s.workers, process.bf16, comm);
  e.held_out = extract_features(encoder, *data.splits.val, *data.transform, process.device, s.batch,
                                s.held_out_size, s.workers, process.bf16, comm);
  KnnOptions vote = s.vote;
  vote.device = process.device;
  e.results = knn_evaluate(e.bank, e.held_out, data.splits.train->num_classes(), vote, comm);
  e.seconds = seconds_since(t0);
  return e;
}

}  // namespace ocl::engine
