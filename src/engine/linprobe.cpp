// The linear probe (see include/ocl/engine/linprobe.h).
#include "ocl/engine/linprobe.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/io/files.h"
#include "ocl/io/state_dict.h"
#include "ocl/nn/weights.h"

namespace ocl::engine {
namespace {

// Distinct streams of randomness from one seed.
constexpr uint64_t kHeadStream = 0x6865616400000000ULL;   // "head": the head's initialisation
constexpr uint64_t kOrderStream = 0x6f72646572000000ULL;  // "order": cached-features row order

// Earlier versions' one-file checkpoint, which this one cannot continue.
constexpr const char* kOldCheckpointFile = "checkpoint.safetensors";

RunSpec linprobe_spec(const io::Config& config, const LinearProbeOptions& options,
                      int64_t effective_batch, double lr) {
  RunSpec spec = evaluation_run_spec(config, options.launch.world_size, "ocl_linprobe", "linprobe",
                                     config.linprobe.output_dir, "linear probe", effective_batch,
                                     lr, options.weights);
  spec.model_file = kHeadFile;
  spec.kind = "linear probe";
  spec.own_files = {kOldCheckpointFile};
  const std::string out = spec.output_dir;
  spec.precondition = [out, resume = options.resume](const std::string& resume_from) {
    std::string old;
    if (resume == "auto" && resume_from.empty() && io::path_exists(out + "/" + kOldCheckpointFile))
      old = out + "/" + kOldCheckpointFile;
    if (!resume_from.empty() && io::path_exists(resume_from) && !io::is_dir(resume_from))
      old = resume_from;
    if (!old.empty()) {
      throw std::runtime_error(
          "'" + old +
          "' is a one-file linear probe checkpoint of an earlier ocl version; this "
          "version resumes from checkpoint folders (checkpoint-last) and cannot continue it: "
          "start the probe again with --overwrite (or in another linprobe.output_dir)");
    }
  };
  return spec;
}

}  // namespace

optim::Lars make_linprobe_lars(nn::LinearProbeHead& head, double weight_decay) {
  return optim::Lars(head->parameters(),
                     {.momentum = 0.9, .trust_coefficient = 0.001, .weight_decay = weight_decay});
}

ClassifierAccuracy evaluate_head(nn::LinearProbeHead& head, const Features& val,
                                 const torch::Device& device, distributed::Communicator* comm,
                                 int64_t batch) {
  TORCH_CHECK(val.features.dim() == 2 && val.labels.dim() == 1 &&
                  val.features.size(0) == val.labels.size(0),
              "linear probe evaluation: features [N, D] and labels [N] expected, got ",
              val.features.sizes(), " and ", val.labels.sizes());
  TORCH_CHECK(batch >= 1, "linear probe evaluation: batch must be >= 1, got ", batch);
  const EvalMode eval_mode(*head);
  torch::NoGradGuard no_grad;
  const int64_t n = val.features.size(0);
  const int64_t world = comm != nullptr ? comm->world_size() : 1;
  const int64_t rank = comm != nullptr ? comm->rank() : 0;
  const int64_t top = std::min<int64_t>(5, head->fc->options.out_features());
  // Rows rank, rank + W, ...: every row on exactly one rank, whatever n.
  auto mine = torch::arange(rank, n, world, torch::kInt64);
  auto f = val.features.index_select(0, mine);
  auto l = val.labels.index_select(0, mine);
  // [top-1 hits, top-k hits, rows, cross-entropy sum] of this rank's rows, in float64 (exact).
  auto sums = torch::zeros({4}, torch::TensorOptions(torch::kFloat64).device(device));
  for (int64_t start = 0; start < mine.size(0); start += batch) {
    const int64_t len = std::min(batch, mine.size(0) - start);
    auto logits = head->forward(f.narrow(0, start, len).to(device, torch::kFloat32));
    const auto labels = l.narrow(0, start, len).to(device);
    auto hits = std::get<1>(logits.topk(top, 1)).eq(labels.unsqueeze(1));
    const auto loss = torch::nn::functional::cross_entropy(
        logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    sums[0] += hits.narrow(1, 0, 1).sum().to(torch::kFloat64);
    sums[1] += hits.sum().to(torch::kFloat64);
    sums[2] += static_cast<double>(len);
    sums[3] += loss.to(torch::kFloat64);
  }
  if (comm != nullptr)
    comm->all_reduce_sum(sums, distributed::Group::kLoss, "linear probe hit counts");
  const auto v = sums.cpu();
  const double* p = v.data_ptr<double>();
  ClassifierAccuracy acc;
  acc.images = static_cast<int64_t>(p[2]);
  if (acc.images > 0) {
    acc.top1 = 100.0 * p[0] / p[2];
    acc.top5 = 100.0 * p[1] / p[2];
    acc.loss = p[3] / p[2];
  }
  return acc;
}

FeatureRows::FeatureRows(Features rows, int64_t batch_size, int64_t accum_iter, uint64_t seed,
                         int64_t rank, int64_t world_size)
    : rows_(std::move(rows)),
      batch_size_(batch_size),
      accum_iter_(accum_iter),
      rank_(rank),
      world_size_(world_size),
      seed_(seed) {
  TORCH_CHECK(rows_.features.dim() == 2 && rows_.labels.dim() == 1 &&
                  rows_.features.size(0) == rows_.labels.size(0),
              "linear probe: training features [N, D] and labels [N] expected, got ",
              rows_.features.sizes(), " and ", rows_.labels.sizes());
  TORCH_CHECK(
      batch_size >= 1 && accum_iter >= 1 && world_size >= 1 && rank >= 0 && rank < world_size,
      "linear probe: needs batch_size, accum_iter >= 1, 0 <= rank < world_size, got ", batch_size,
      ", ", accum_iter, ", ", rank, ", ", world_size);
}

int64_t FeatureRows::batches_per_epoch() const {
  return size() / (batch_size_ * accum_iter_ * world_size_) * accum_iter_;
}

void FeatureRows::start_epoch(int64_t epoch, int64_t first_batch) {
  // Fisher-Yates on SampleRng: the same order on every platform and rank.
  order_ = torch::arange(size(), torch::kInt64);
  auto* p = order_.data_ptr<int64_t>();
  data::SampleRng rng(data::sample_seed(seed_ ^ kOrderStream, epoch, 0));
  for (int64_t i = size() - 1; i > 0; --i) std::swap(p[i], p[rng.below(i + 1)]);
  next_ = first_batch;
}

data::Batch FeatureRows::next() {
  if (!order_.defined() || next_ >= batches_per_epoch())
    throw std::logic_error("linear probe: no micro-batch left in the epoch");
  const int64_t global = batch_size_ * world_size_;
  const int64_t begin = next_ * global + rank_;
  const auto rows =
      order_.index_select(0, torch::arange(begin, begin + global - rank_, world_size_));
  data::Batch batch;
  batch.images = rows_.features.index_select(0, rows);
  batch.labels = rows_.labels.index_select(0, rows);
  batch.indices = rows;
  batch.step = next_++;
  return batch;
}

LinearProbe::LinearProbe(io::Config config, LinearProbeOptions options)
    : config_(validated(std::move(config))),
      recipe_(section_recipe(config_.linprobe, options.launch.world_size)),
      run_(config_, options, linprobe_spec(config_, options, recipe_.layout.images(), recipe_.lr)) {
  // The frozen encoder: the config's sizes, no head, CLS pooling, eval mode.
  const auto& p = config_.linprobe;
  const uint64_t seed = config_.train.seed;
  const auto derived = io::derive(config_, run_.process().launch.world_size);
  torch::manual_seed(seed);
  encoder_ = nn::VisionTransformer(nn::encoder_options(config_, derived));
  run_.process().log->info("{}", nn::load_encoder_weights(encoder_, options.weights).describe());
  for (auto& param : encoder_->parameters()) param.set_requires_grad(false);
  encoder_->to(run_.process().device);
  encoder_->eval();

  const int img = static_cast<int>(config_.model.img_size);
  const auto data_config = run_data_config(config_.data, run_.spec().output_dir);
  auto splits = open_splits(run_.process(), data_config, img, seed);
  train_set_ = splits.train;
  const auto val_set = splits.val;
  const auto eval_transform = data::make_transform(data_config, img, /*train=*/false);

  // The head, initialised from the seed so that every rank starts the same, and LARS.
  torch::manual_seed(data::sample_seed(seed ^ kHeadStream, 0, 0));
  head_ = nn::LinearProbeHead(derived.embed_dim, train_set_->num_classes());
  head_->to(run_.process().device);
  head_->train();
  trainable_ = head_->parameters();
  lars_ = std::make_unique<optim::Lars>(make_linprobe_lars(head_, p.weight_decay));

  const auto t0 = std::chrono::steady_clock::now();
  val_features_ = extract(*val_set, *eval_transform);
  int64_t train_rows = 0;
  if (!run_.options().eval_only) loop_ = make_loop(data_config, *eval_transform, train_rows);
  run_.process().log->info("features: {} validation{} images extracted in {}",
                           val_features_.labels.size(0),
                           train_rows > 0 ? fmt::format(" and {} training", train_rows) : "",
                           io::format_duration(seconds_since(t0)));

  if (run_.resumed()) resume(*run_.resumed(), derived.embed_dim);
  run_.resume_position(
      [](const io::Config& c) {
        return StepLayout{1, c.linprobe.batch_size, c.linprobe.accum_iter};
      },
      recipe_.layout, loop_ ? loop_->steps_per_epoch() : 0, recipe_.lr);
  // Every rank starts from rank 0's head and BatchNorm statistics.
  if (loop_) loop_->connect_gradients();
  if (run_.process().comm.get())
    run_.process().comm.get()->broadcast_from_rank0(
        {head_->bn->running_mean, head_->bn->running_var}, "linear probe BatchNorm statistics");
  log_setup(*val_set);
}

LinearProbe::~LinearProbe() = default;

Features LinearProbe::extract(const data::Dataset& set, const data::Transform& transform) {
  return extract_features(encoder_, set, transform, run_.process().device,
                          config_.linprobe.batch_size, 0, config_.data.workers, run_.process().bf16,
                          run_.process().comm.get(), /*normalize=*/false);
}

// The loop on the training images (RandomResizedCrop + flip through the frozen encoder), or with
// linprobe.cached_features on `cached_rows` features extracted once (evaluation transform).
std::unique_ptr<TrainingLoop> LinearProbe::make_loop(const io::DataConfig& data_config,
                                                     const data::Transform& eval_transform,
                                                     int64_t& cached_rows) {
  const auto& p = config_.linprobe;
  std::unique_ptr<BatchSource> source;
  if (p.cached_features) {
    run_.process().log->warn(
        "linprobe.cached_features: the head trains on features of the training images "
        "through Resize + CenterCrop, extracted once, without RandomResizedCrop + flip: not "
        "MAE's protocol, the figures are not comparable to the paper's");
    auto rows = extract(*train_set_, eval_transform);
    cached_rows = rows.labels.size(0);
    source = std::make_unique<FeatureRows>(std::move(rows), p.batch_size, p.accum_iter,
                                           config_.train.seed, run_.process().launch.rank,
                                           run_.process().launch.world_size);
  } else {
    auto lo = training_loader_options(config_, p.batch_size, p.accum_iter, run_.process().launch,
                                      run_.process().device, run_.process().log);
    const int img = static_cast<int>(config_.model.img_size);
    source = loader_source(std::make_unique<data::Loader>(
        train_set_, data::make_transform(data_config, img, /*train=*/true), lo));
  }
  auto settings = section_loop_settings(config_, p, "linprobe", recipe_.lr);
  settings.nonfinite_hint = "lower linprobe.blr or linprobe.lr";
  return std::make_unique<TrainingLoop>(run_, static_cast<TrainingEngine&>(*this),
                                        std::move(source), settings);
}

void LinearProbe::resume(const io::Checkpoint& c, int64_t dim) {
  try {
    io::load_state_dict(*head_, c.model);
  } catch (const c10::Error& e) {
    throw std::runtime_error(
        fmt::format("{}: the head does not fit this config ({} features, {} classes): {}", c.path,
                    dim, train_set_->num_classes(), e.what_without_backtrace()));
  }
  const auto named = head_->named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    const auto it = c.trainer.find("optim." + named[i].key() + ".momentum");
    if (it == c.trainer.end()) continue;
    TORCH_CHECK(it->second.sizes() == named[i].value().sizes(), c.path, ": optim.", named[i].key(),
                ".momentum has shape ", it->second.sizes(), ", expected ",
                named[i].value().sizes());
    lars_->momentum_buffers()[i] = it->second.to(run_.process().device, torch::kFloat32);
  }
  record_.load(c.trainer, "linprobe");
}

void LinearProbe::log_setup(const data::Dataset& val_set) const {
  const auto& p = config_.linprobe;
  const int64_t dim = head_->fc->options.in_features();
  log_startup(run_.process(), run_.spec().app, run_.process().bf16 ? " (encoder)" : "");
  run_.process().log->info("data: train {}; val {}; {} classes", train_set_->describe(),
                           val_set.describe(), train_set_->num_classes());
  if (!loop_) return;
  run_.process().log->info(
      "linear probe: head BatchNorm1d({}, affine=false) + Linear({}, {}); {} epochs of {} steps, "
      "batch {} × accum {} × {} processes = effective {}; {}",
      dim, dim, train_set_->num_classes(), p.epochs, loop_->steps_per_epoch(), p.batch_size,
      p.accum_iter, run_.process().launch.world_size, recipe_.layout.images(),
      p.cached_features ? "cached features (no augmentation)"
                        : "RandomResizedCrop + flip (MAE's protocol)");
  run_.process().log->info(
      "optim: LARS momentum 0.9, trust 0.001, wd {}, lr {:.3g} ({}), warmup {} epochs, min lr "
      "{:.3g}",
      p.weight_decay, recipe_.lr,
      p.lr > 0 ? "linprobe.lr" : fmt::format("blr {} × {}/256", p.blr, recipe_.layout.images()),
      p.warmup_epochs, p.min_lr);
  run_.process().log->info("output: {}", run_.spec().output_dir);
}

MicroStep LinearProbe::forward(const data::Batch& batch, const StepContext&) {
  torch::Tensor features;
  if (config_.linprobe.cached_features) {
    features = batch.images.to(run_.process().device, torch::kFloat32);
  } else {
    torch::NoGradGuard no_grad;
    compat::AutocastGuard autocast(run_.process().device.type(), run_.process().bf16);
    auto images = data::normalize_images(batch.images, run_.process().device);
    features = encoder_->forward_features(images).select(1, 0).to(torch::kFloat32);  // CLS
  }
  return {torch::nn::functional::cross_entropy(head_->forward(features),
                                               batch.labels.to(run_.process().device)),
          {}};
}

ClassifierAccuracy LinearProbe::evaluate() {
  // DDP's broadcast_buffers: each rank's BatchNorm saw only its shard; rank 0's statistics are
  // the ones saved, so they are the ones evaluated.
  if (run_.process().comm.get())
    run_.process().comm.get()->broadcast_from_rank0(
        {head_->bn->running_mean, head_->bn->running_var}, "linear probe BatchNorm statistics");
  return evaluate_head(head_, val_features_, run_.process().device, run_.process().comm.get());
}

EpochReport LinearProbe::end_of_epoch(const io::TrainingState& state) {
  const auto acc = evaluate();
  record_.add(state.epoch, acc);
  return {fmt::format(", val top-1 {:.2f} %, top-5 {:.2f} % ({} images; best {:.2f} % at epoch {})",
                      acc.top1, acc.top5, acc.images, record_.best_top1, record_.best_epoch),
          {{"top1", acc.top1}, {"top5", acc.top5}, {"best_top1", record_.best_top1}}};
}

CheckpointTensors LinearProbe::checkpoint_tensors() {
  CheckpointTensors c;
  c.model = io::state_dict(*head_);
  const auto named = head_->named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& mu = lars_->momentum_buffers()[i];
    if (mu.defined()) c.trainer["optim." + named[i].key() + ".momentum"] = mu;
  }
  record_.save(c.trainer, "linprobe");
  return c;
}

LinprobeResult LinearProbe::run() {
  if (!run_.options().eval_only) return train_classifier(run_, *loop_, record_);
  const auto acc = evaluate();
  run_.process().log->info(
      "evaluation of the {} head on {} images: top-1 {:.2f} %, top-5 {:.2f} %, loss {:.4f}",
      run_.resumed() ? fmt::format("resumed (epoch {})", run_.state().epoch) : "initial",
      acc.images, acc.top1, acc.top5, acc.loss);
  return evaluated_classifier(run_, record_, acc);
}

}  // namespace ocl::engine
