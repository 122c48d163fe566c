// The linear probe (see include/ocl/engine/linprobe.h). One LARS step = accum_iter micro-batches,
// each: images → frozen encoder (no grad, eval mode, bf16 autocast when asked) → CLS feature →
// head (BatchNorm in train mode) → cross-entropy / accum_iter backward; then the rank average of
// the head's gradients, and the LARS update at the step's lr.
#include "ocl/engine/linprobe.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <sys/stat.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/engine/run_setup.h"
#include "ocl/engine/weights.h"
#include "ocl/io/files.h"
#include "ocl/io/safetensors.h"
#include "ocl/io/state_dict.h"

namespace ocl::engine {
namespace {

using Clock = std::chrono::steady_clock;

// Distinct streams of randomness from one seed.
constexpr uint64_t kHeadStream = 0x6865616400000000ULL;   // "head": the head's initialisation
constexpr uint64_t kOrderStream = 0x6f72646572000000ULL;  // "order": cached-features row order

constexpr const char* kCheckpointFile = "checkpoint.safetensors";
constexpr const char* kCheckpointFormat = "ocl linear probe 1";

// A permutation of [0, n) from (seed, epoch): Fisher-Yates on SampleRng, the same on every
// platform and rank.
torch::Tensor epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  auto order = torch::arange(n, torch::kInt64);
  auto* p = order.data_ptr<int64_t>();
  data::SampleRng rng(data::sample_seed(seed ^ kOrderStream, epoch, 0));
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(i + 1)]);
  return order;
}

// One LARS step on the micro-batches (features [b, D] float32, labels [b]) at lars.lr(); with
// `sync`, the gradients are summed locally over the micro-batches and averaged over ranks once,
// during the last micro-batch's backward when `overlap` (dist.overlap), else after it.
// Returns the mean loss over the micro-batches; throws on a non-finite one (`where` says which
// step) before updating anything.
double head_step(LinprobeHead& head, optim::Lars& lars, dist::GradSynchronizer* sync, bool overlap,
                 const std::vector<torch::Tensor>& features,
                 const std::vector<torch::Tensor>& labels, const std::string& where) {
  lars.zero_grad();
  const auto accum = static_cast<int64_t>(features.size());
  torch::Tensor loss_sum;
  for (int64_t m = 0; m < accum; ++m) {
    if (sync != nullptr) sync->set_sync(m == accum - 1 && overlap);
    auto loss = torch::nn::functional::cross_entropy(head->forward(features[m]), labels[m]);
    (loss / static_cast<double>(accum)).backward();
    loss_sum = m == 0 ? loss.detach() : loss_sum + loss.detach();
  }
  if (sync != nullptr) {
    sync->set_sync(true);  // without overlap: finish() starts every bucket now
    sync->finish();
  }
  const double loss = loss_sum.item<double>() / static_cast<double>(accum);
  if (!std::isfinite(loss)) {
    throw std::runtime_error("linear probe: non-finite loss " + std::to_string(loss) + " at " +
                             where + " (lr " + std::to_string(lars.lr()) +
                             "); lower linprobe.blr or linprobe.lr");
  }
  lars.step();
  return loss;
}

double meta_double(const io::Metadata& meta, const std::string& key, const std::string& path) {
  const auto it = meta.find(key);
  if (it == meta.end())
    throw std::runtime_error(path + ": not a linear probe checkpoint (no '" + key +
                             "' in its metadata)");
  try {
    return std::stod(it->second);
  } catch (const std::exception&) {
    throw std::runtime_error(path + ": metadata '" + key + "' is not a number: '" + it->second +
                             "'");
  }
}

std::string number(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The head and its pieces

LinprobeHeadImpl::LinprobeHeadImpl(int64_t dim, int64_t num_classes) {
  TORCH_CHECK(dim >= 1 && num_classes >= 1, "linear probe head: needs dim, num_classes >= 1, got ",
              dim, ", ", num_classes);
  bn = register_module(
      "bn", torch::nn::BatchNorm1d(torch::nn::BatchNormOptions(dim).affine(false).eps(1e-6)));
  fc = register_module("fc", torch::nn::Linear(dim, num_classes));
  reset_parameters();
}

void LinprobeHeadImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(fc->weight, 0.0, 0.01);
  torch::nn::init::zeros_(fc->bias);
}

torch::Tensor LinprobeHeadImpl::forward(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 2 && features.size(1) == fc->options.in_features(),
              "linear probe head: features must be [B, ", fc->options.in_features(), "], got ",
              features.sizes());
  return fc->forward(bn->forward(features));
}

optim::Lars make_linprobe_lars(LinprobeHead& head, double weight_decay) {
  optim::LarsOptions o;
  o.momentum = 0.9;
  o.trust_coefficient = 0.001;
  o.weight_decay = weight_decay;
  return optim::Lars(head->parameters(), o);
}

ProbeAccuracy evaluate_head(LinprobeHead& head, const Features& val, const torch::Device& device,
                            dist::Communicator* comm, int64_t batch) {
  TORCH_CHECK(val.features.dim() == 2 && val.labels.dim() == 1 &&
                  val.features.size(0) == val.labels.size(0),
              "linear probe evaluation: features [N, D] and labels [N] expected, got ",
              val.features.sizes(), " and ", val.labels.sizes());
  TORCH_CHECK(batch >= 1, "linear probe evaluation: batch must be >= 1, got ", batch);
  const bool was_training = head->is_training();
  head->eval();
  torch::NoGradGuard no_grad;
  const int64_t n = val.features.size(0);
  const int64_t world = comm != nullptr ? comm->world_size() : 1;
  const int64_t rank = comm != nullptr ? comm->rank() : 0;
  const int64_t top = std::min<int64_t>(5, head->fc->options.out_features());
  // Rows rank, rank + W, ...: every row on exactly one rank, whatever n.
  auto mine = torch::arange(rank, n, world, torch::kInt64);
  auto f = val.features.index_select(0, mine);
  auto l = val.labels.index_select(0, mine);
  int64_t hit1 = 0, hit5 = 0;
  for (int64_t start = 0; start < mine.size(0); start += batch) {
    const int64_t len = std::min(batch, mine.size(0) - start);
    auto logits = head->forward(f.narrow(0, start, len).to(device, torch::kFloat32));
    auto hits =
        std::get<1>(logits.topk(top, 1)).eq(l.narrow(0, start, len).to(device).unsqueeze(1));
    hit1 += hits.narrow(1, 0, 1).sum().item<int64_t>();
    hit5 += hits.sum().item<int64_t>();
  }
  head->train(was_training);
  auto counts = torch::tensor({hit1, hit5, mine.size(0)}, torch::kInt64);
  if (comm != nullptr) {
    auto c = counts.to(device);
    comm->all_reduce_sum(c, dist::Group::kLoss, "linear probe hit counts");
    counts = c.cpu();
  }
  ProbeAccuracy acc;
  acc.images = counts[2].item<int64_t>();
  if (acc.images > 0) {
    acc.top1 = 100.0 * static_cast<double>(counts[0].item<int64_t>()) / acc.images;
    acc.top5 = 100.0 * static_cast<double>(counts[1].item<int64_t>()) / acc.images;
  }
  return acc;
}

int64_t feature_steps_per_epoch(int64_t rows, const FeatureEpochOptions& o) {
  return rows / (o.batch_size * o.accum_iter * o.world_size);
}

double train_head_on_features(LinprobeHead& head, optim::Lars& lars,
                              const optim::CosineSchedule& schedule, const Features& train,
                              int64_t epoch, const FeatureEpochOptions& o,
                              dist::GradSynchronizer* sync) {
  TORCH_CHECK(train.features.dim() == 2 && train.labels.dim() == 1 &&
                  train.features.size(0) == train.labels.size(0),
              "linear probe: training features [N, D] and labels [N] expected, got ",
              train.features.sizes(), " and ", train.labels.sizes());
  TORCH_CHECK(o.batch_size >= 2 && o.accum_iter >= 1 && o.world_size >= 1 && o.rank >= 0 &&
                  o.rank < o.world_size,
              "linear probe: needs batch_size >= 2, accum_iter >= 1, 0 <= rank < world_size, got ",
              o.batch_size, ", ", o.accum_iter, ", ", o.rank, ", ", o.world_size);
  const int64_t n = train.features.size(0);
  const int64_t steps = feature_steps_per_epoch(n, o);
  const int64_t per_micro = o.batch_size * o.world_size;
  const int64_t global = per_micro * o.accum_iter;
  TORCH_CHECK(steps >= 1, "linear probe: ", n, " training rows do not fill one step of ", global,
              " (batch_size ", o.batch_size, " × accum_iter ", o.accum_iter, " × ", o.world_size,
              " processes)");
  auto order = epoch_order(n, o.seed, epoch);
  head->train();
  double loss_total = 0;
  int64_t taken = 0;
  for (int64_t s = o.first_step; s < steps; ++s) {
    lars.set_lr(schedule.at(static_cast<double>(epoch) +
                            static_cast<double>(s) / static_cast<double>(steps)));
    std::vector<torch::Tensor> f, l;
    for (int64_t m = 0; m < o.accum_iter; ++m) {
      // This rank's rows of micro-batch m: every W-th position, as the image loader shards.
      const int64_t begin = s * global + m * per_micro + o.rank;
      auto rows = order.index_select(
          0, torch::arange(begin, begin + per_micro - o.rank, o.world_size, torch::kInt64));
      f.push_back(train.features.index_select(0, rows).to(o.device, torch::kFloat32));
      l.push_back(train.labels.index_select(0, rows).to(o.device));
    }
    loss_total += head_step(head, lars, sync, o.overlap, f, l,
                            "epoch " + std::to_string(epoch) + ", step " + std::to_string(s));
    ++taken;
  }
  return taken > 0 ? loss_total / static_cast<double>(taken) : NAN;
}

// ---------------------------------------------------------------------------------------------
// The run

LinearProbe::LinearProbe(io::Config config, LinprobeOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  io::validate(config_);
  rank_ = options_.launch.rank;
  world_size_ = options_.launch.world_size;
  const bool writer = rank_ == 0 && !options_.eval_only;
  const auto derived = io::derive(config_, world_size_);
  const auto& p = config_.linprobe;
  const auto& t = config_.train;
  effective_batch_ = p.batch_size * p.accum_iter * world_size_;
  lr_ = io::absolute_lr(p.lr, p.blr, effective_batch_);
  out_ = p.output_dir.empty() ? t.output_dir + "/linprobe" : p.output_dir;
  checkpoint_path_ = out_ + "/" + kCheckpointFile;

  // --- output folder and the checkpoint to resume from
  std::string resume_from;
  if (options_.resume == "auto") {
    if (io::path_exists(checkpoint_path_)) resume_from = checkpoint_path_;
  } else if (!options_.resume.empty()) {
    resume_from =
        io::is_dir(options_.resume) ? options_.resume + "/" + kCheckpointFile : options_.resume;
    if (!io::path_exists(resume_from))
      throw std::runtime_error("--resume: no linear probe checkpoint at '" + resume_from + "'");
  }
  if (writer) {
    io::make_dirs(out_);
    if (options_.resume.empty() && io::path_exists(checkpoint_path_)) {
      if (!options_.overwrite)
        throw std::runtime_error("output folder '" + out_ +
                                 "' already holds a linear probe checkpoint (" + checkpoint_path_ +
                                 "): pass --resume auto to continue it, --overwrite to start "
                                 "again there, or choose another linprobe.output_dir");
      std::remove(checkpoint_path_.c_str());
    }
  }

  // --- logging: rank 0 writes train.log; the others print warnings and errors only
  console_ = options_.console ? options_.console : std::make_shared<ConsoleSink>(stdout, false);
  logger_ = rank_logger(console_, writer ? out_ + "/train.log" : "", config_, rank_);
  config_yaml_ = evaluation_config_yaml(config_, derived, "linear probe", "linprobe",
                                        effective_batch_, lr_, options_.weights);
  if (writer) io::write_text_atomic(out_ + "/config.yaml", config_yaml_);

  // --- device, precision, threads (as pre-training: processes of a node share its cores)
  device_ = resolve_device(t.device, options_.launch);
  bf16_ = use_bf16(config_, device_);
  set_process_threads(config_, options_.launch);
  comm_ = connect_ranks(config_, options_.launch, device_, *logger_);

  // --- the frozen encoder: the config's sizes, no head, CLS pooling, eval mode
  torch::manual_seed(t.seed);
  encoder_ = nn::VisionTransformer(encoder_options(config_, derived));
  const auto report = load_encoder_weights(encoder_, options_.weights);
  logger_->info("{}", report.describe());
  for (auto& param : encoder_->parameters()) param.set_requires_grad(false);
  encoder_->to(device_);
  encoder_->eval();

  // --- data. A read-only data set keeps its file-list cache in the output folder.
  const int img = static_cast<int>(config_.model.img_size);
  const auto data_config = run_data_config(config_.data, out_);
  train_set_ = data::make_dataset(data_config, img, /*train=*/true, t.seed);
  const auto val_set = data::make_dataset(data_config, img, /*train=*/false, t.seed);
  num_classes_ = train_set_->num_classes();
  const auto eval_transform = data::make_transform(data_config, img, /*train=*/false);

  // --- head and LARS: the head initialised from the seed, so every rank starts the same
  torch::manual_seed(data::sample_seed(t.seed ^ kHeadStream, 0, 0));
  head_ = LinprobeHead(derived.embed_dim, num_classes_);
  head_->to(device_);
  lars_ = std::make_unique<optim::Lars>(make_linprobe_lars(head_, p.weight_decay));
  schedule_ = {lr_, p.min_lr, p.warmup_epochs, static_cast<double>(p.epochs)};

  // --- resume: head, LARS momentum, BatchNorm statistics, epoch and the best figure
  if (!resume_from.empty()) {
    auto file = io::read_safetensors(resume_from);
    const auto& meta = file.metadata;
    const auto format = meta.find("format_ocl");
    if (format == meta.end() || format->second != kCheckpointFormat)
      throw std::runtime_error(resume_from +
                               ": not a linear probe checkpoint (metadata format_ocl '" +
                               std::string(format == meta.end() ? "" : format->second) +
                               "', expected '" + kCheckpointFormat + "')");
    io::TensorMap head_tensors;
    for (const auto& [name, tensor] : file.tensors)
      if (name.rfind("head.", 0) == 0) head_tensors[name.substr(5)] = tensor;
    try {
      io::load_state_dict(*head_, head_tensors);
    } catch (const c10::Error& e) {
      throw std::runtime_error(resume_from + ": the head does not fit this config (" +
                               std::to_string(derived.embed_dim) + " features, " +
                               std::to_string(num_classes_) +
                               " classes): " + e.what_without_backtrace());
    }
    const auto named = head_->named_parameters();
    for (size_t i = 0; i < named.size(); ++i) {
      const auto it = file.tensors.find("optim." + named[i].key() + ".momentum");
      if (it != file.tensors.end()) {
        TORCH_CHECK(it->second.sizes() == named[i].value().sizes(), resume_from, ": optim.",
                    named[i].key(), ".momentum has shape ", it->second.sizes(), ", expected ",
                    named[i].value().sizes());
        lars_->momentum_buffers()[i] = it->second.to(device_, torch::kFloat32);
      }
    }
    epoch_ = static_cast<int64_t>(meta_double(meta, "epoch", resume_from));
    step_ = static_cast<int64_t>(meta_double(meta, "step_in_epoch", resume_from));
    best_top1_ = meta_double(meta, "best_top1", resume_from);
    best_epoch_ = static_cast<int64_t>(meta_double(meta, "best_epoch", resume_from));
    last_top1_ = meta_double(meta, "last_top1", resume_from);
    last_top5_ = meta_double(meta, "last_top5", resume_from);
    StepLayout saved_layout{static_cast<int64_t>(meta_double(meta, "world_size", resume_from)),
                            p.batch_size, p.accum_iter};
    const auto cfg = meta.find("config");
    if (cfg != meta.end()) {
      try {
        const auto saved = io::parse_config(cfg->second, {}, resume_from);
        saved_layout.batch_size = saved.linprobe.batch_size;
        saved_layout.accum_iter = saved.linprobe.accum_iter;
        const auto diff = io::config_difference(saved, config_);
        if (!diff.empty() && rank_ == 0)  // every rank reads the same file: say it once
          logger_->warn("resuming with a config that differs from the checkpoint's: {}", diff);
      } catch (const std::exception& e) {
        if (rank_ == 0) logger_->warn("the checkpoint's config cannot be read ({})", e.what());
      }
    }
    step_ = resume_step_in_epoch(epoch_, step_, saved_layout,
                                 {world_size_, p.batch_size, p.accum_iter}, lr_, *logger_);
    resumed_from_ = resume_from;
    logger_->info(
        "resumed from {}: {} epochs done, {} steps into the next; best top-1 {:.2f} % (epoch {})",
        resume_from, epoch_, step_, best_top1_, best_epoch_);
  } else if (options_.resume == "auto") {
    logger_->info("--resume auto: no checkpoint in {}, starting fresh", out_);
  }

  // --- features: the validation set once (the encoder is frozen), and with cached_features
  // the training set too, through the evaluation transform
  const auto t0 = Clock::now();
  val_features_ = extract_features(encoder_, *val_set, *eval_transform, device_, p.batch_size, 0,
                                   config_.data.workers, bf16_, comm_.get(), /*normalize=*/false);
  if (!options_.eval_only) {
    if (p.cached_features) {
      logger_->warn(
          "linprobe.cached_features: the head trains on features of the training images "
          "through Resize + CenterCrop, extracted once, without RandomResizedCrop + flip: not "
          "MAE's protocol, the figures are not comparable to the paper's");
      train_features_ =
          extract_features(encoder_, *train_set_, *eval_transform, device_, p.batch_size, 0,
                           config_.data.workers, bf16_, comm_.get(), /*normalize=*/false);
      FeatureEpochOptions fo;
      fo.batch_size = p.batch_size;
      fo.accum_iter = p.accum_iter;
      fo.world_size = world_size_;
      steps_per_epoch_ = feature_steps_per_epoch(train_features_.features.size(0), fo);
    } else {
      auto lo = training_loader_options(config_, p.batch_size, p.accum_iter, options_.launch,
                                        device_, logger_);
      lo.max_steps_per_epoch = 0;  // train.steps_per_epoch caps pre-training only
      loader_ = std::make_unique<data::Loader>(
          train_set_, data::make_transform(data_config, img, /*train=*/true), lo);
      steps_per_epoch_ = loader_->steps_per_epoch() / p.accum_iter;
    }
    if (steps_per_epoch_ < 1) {
      throw std::runtime_error("the training set (" + std::to_string(train_set_->size()) +
                               " images) does not fill one step of linprobe.batch_size " +
                               std::to_string(p.batch_size) + " × linprobe.accum_iter " +
                               std::to_string(p.accum_iter) + " × " + std::to_string(world_size_) +
                               " processes: lower them");
    }
    if (step_ >= steps_per_epoch_) {  // the epoch got shorter in the new config
      epoch_ += 1;
      step_ = 0;
    }
  }
  logger_->info("features: {} validation{} images extracted in {}", val_features_.labels.size(0),
                train_features_.features.defined()
                    ? " and " + std::to_string(train_features_.labels.size(0)) + " training"
                    : std::string(),
                format_duration(seconds_since(t0)));

  // Every rank starts from rank 0's head and BatchNorm statistics; gradients become views into
  // the all-reduce buckets.
  if (comm_) {
    sync_ = make_grad_sync(*comm_, head_->parameters(), config_, *logger_);
    comm_->broadcast_from_rank0({head_->bn->running_mean, head_->bn->running_var},
                                "linear probe BatchNorm statistics");
  }
  if (writer) {
    // A fresh probe starts a new metrics file; a resumed one keeps the records up to its step.
    const int64_t keep = resume_from.empty() ? -1 : epoch_ * steps_per_epoch_ + step_;
    if (resume_from.empty()) std::remove((out_ + "/metrics.jsonl").c_str());
    metrics_ = std::make_unique<MetricsLog>(out_ + "/metrics.jsonl", keep);
  }

  logger_->info("ocl_linprobe: LibTorch {}, device {}, {}, {} threads", compat::torch_version(),
                device_.str(), bf16_ ? "bf16 autocast (encoder)" : "fp32",
                torch::get_num_threads());
  logger_->info("data: train {}; val {}; {} classes", train_set_->describe(), val_set->describe(),
                num_classes_);
  if (!options_.eval_only) {
    logger_->info(
        "linear probe: head BatchNorm1d({}, affine=false) + Linear({}, {}); {} epochs of {} steps, "
        "batch {} × accum {} × {} processes = effective {}; {}",
        derived.embed_dim, derived.embed_dim, num_classes_, p.epochs, steps_per_epoch_,
        p.batch_size, p.accum_iter, world_size_, effective_batch_,
        p.cached_features ? "cached features (no augmentation)"
                          : "RandomResizedCrop + flip (MAE's protocol)");
    logger_->info(
        "optim: LARS momentum 0.9, trust 0.001, wd {}, lr {:.3g} ({}), warmup {} epochs, min lr "
        "{:.3g}",
        p.weight_decay, lr_,
        p.lr > 0 ? "linprobe.lr"
                 : "blr " + number(p.blr) + " × " + std::to_string(effective_batch_) + "/256",
        p.warmup_epochs, p.min_lr);
    logger_->info("output: {}", out_);
  }
}

LinearProbe::~LinearProbe() = default;

double LinearProbe::train_epoch_images(bool& stop) {
  const int64_t accum = config_.linprobe.accum_iter;
  loader_->start_epoch(epoch_, step_ * accum);
  head_->train();
  double loss_total = 0, win_loss = 0;
  int64_t taken = 0, win_steps = 0, win_images = 0;
  auto win_start = Clock::now();
  while (step_ < steps_per_epoch_) {
    const double epoch_position =
        static_cast<double>(epoch_) + static_cast<double>(step_) / steps_per_epoch_;
    lars_->set_lr(schedule_.at(epoch_position));
    std::vector<torch::Tensor> f, l;
    for (int64_t m = 0; m < accum; ++m) {
      auto batch = loader_->next();
      if (!batch) throw std::logic_error("the loader ended before the epoch's last step");
      auto images = data::normalize_images(batch->images, device_);
      torch::Tensor cls;
      {
        torch::NoGradGuard no_grad;
        compat::AutocastGuard autocast(device_.type(), bf16_);
        cls = encoder_->forward_features(images).select(1, 0);  // [b, D] after the final norm
      }
      f.push_back(cls.to(torch::kFloat32));
      l.push_back(batch->labels.to(device_));
      win_images += images.size(0) * world_size_;
    }
    const double loss =
        head_step(head_, *lars_, sync_.get(), config_.dist.overlap, f, l,
                  "epoch " + std::to_string(epoch_) + ", step " + std::to_string(step_));
    step_ += 1;
    loss_total += loss;
    win_loss += loss;
    taken += 1;
    win_steps += 1;
    const int64_t global_step = epoch_ * steps_per_epoch_ + step_;
    if (global_step % config_.log.every == 0 || step_ == steps_per_epoch_) {
      const double img_s = win_images / std::max(seconds_since(win_start), 1e-9);
      logger_->info("epoch {}/{} step {}/{}  loss {:.4f}  lr {:.3e}  {:.0f} img/s", epoch_ + 1,
                    config_.linprobe.epochs, step_, steps_per_epoch_, win_loss / win_steps,
                    lars_->lr(), img_s);
      if (metrics_)
        metrics_->write(
            "linprobe_step",
            {{"epoch", static_cast<double>(epoch_) + static_cast<double>(step_) / steps_per_epoch_},
             {"global_step", static_cast<double>(global_step)},
             {"loss", win_loss / win_steps},
             {"lr", lars_->lr()},
             {"img_per_s", img_s}});
      win_loss = 0;
      win_steps = win_images = 0;
      win_start = Clock::now();
    }
    const bool signalled =
        options_.stop_requested != nullptr && options_.stop_requested->load() != 0;
    if (any_rank_stopping(comm_.get(), signalled, device_) && step_ < steps_per_epoch_) {
      stop = true;
      break;
    }
  }
  return taken > 0 ? loss_total / static_cast<double>(taken) : NAN;
}

ProbeAccuracy LinearProbe::evaluate() {
  // DDP's broadcast_buffers: each rank's BatchNorm saw only its shard; rank 0's statistics are
  // the ones saved, so they are the ones evaluated.
  if (comm_)
    comm_->broadcast_from_rank0({head_->bn->running_mean, head_->bn->running_var},
                                "linear probe BatchNorm statistics");
  return evaluate_head(head_, val_features_, device_, comm_.get());
}

void LinearProbe::write_checkpoint() {
  if (rank_ != 0) return;  // rank 0 writes for all: the heads are identical
  io::TensorMap tensors;
  for (const auto& [name, tensor] : io::state_dict(*head_))
    tensors["head." + name] = tensor.to(torch::kCPU);
  const auto named = head_->named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& mu = lars_->momentum_buffers()[i];
    if (mu.defined()) tensors["optim." + named[i].key() + ".momentum"] = mu.to(torch::kCPU);
  }
  io::Metadata meta = {{"format_ocl", kCheckpointFormat},
                       {"epoch", std::to_string(epoch_)},
                       {"step_in_epoch", std::to_string(step_)},
                       {"best_top1", number(best_top1_)},
                       {"best_epoch", std::to_string(best_epoch_)},
                       {"last_top1", number(last_top1_)},
                       {"last_top5", number(last_top5_)},
                       {"world_size", std::to_string(world_size_)},
                       {"seed", std::to_string(config_.train.seed)},
                       {"weights", options_.weights},
                       {"config", io::to_yaml(config_)}};
  // Temporary file, fsync, rename: a crash mid-write leaves the previous checkpoint intact.
  io::write_safetensors(checkpoint_path_, tensors, meta);
  logger_->info("checkpoint written: {} (epoch {}{})", checkpoint_path_, epoch_,
                step_ > 0 ? ", step " + std::to_string(step_) : std::string());
}

LinprobeResult LinearProbe::run() {
  LinprobeResult result;
  const auto& p = config_.linprobe;
  auto fill = [&] {
    result.epochs_done = epoch_;
    result.best_top1 = best_top1_;
    result.best_epoch = best_epoch_;
    result.last_top1 = last_top1_;
    result.last_top5 = last_top5_;
  };
  result.checkpoint = resumed_from_;
  if (options_.eval_only) {
    const auto acc = evaluate();
    last_top1_ = acc.top1;
    last_top5_ = acc.top5;
    logger_->info(
        "evaluation of the {} head on {} images: top-1 {:.2f} %, top-5 {:.2f} %",
        resumed_from_.empty() ? "initial" : "resumed (epoch " + std::to_string(epoch_) + ")",
        acc.images, acc.top1, acc.top5);
    fill();
    return result;
  }
  if (epoch_ >= p.epochs) {
    logger_->info(
        "nothing to do: all {} epochs are done ({}); best top-1 {:.2f} % (epoch {}), "
        "last top-1 {:.2f} %",
        p.epochs, resumed_from_, best_top1_, best_epoch_, last_top1_);
    result.nothing_to_do = true;
    fill();
    return result;
  }
  const auto run_start = Clock::now();
  while (epoch_ < p.epochs) {
    const auto epoch_start = Clock::now();
    bool stop = false;
    double loss = NAN;
    if (p.cached_features) {
      FeatureEpochOptions fo;
      fo.batch_size = p.batch_size;
      fo.accum_iter = p.accum_iter;
      fo.seed = config_.train.seed;
      fo.first_step = step_;
      fo.overlap = config_.dist.overlap;
      fo.rank = rank_;
      fo.world_size = world_size_;
      fo.device = device_;
      loss = train_head_on_features(head_, *lars_, schedule_, train_features_, epoch_, fo,
                                    sync_.get());
      step_ = steps_per_epoch_;
    } else {
      loss = train_epoch_images(stop);
    }
    if (stop) {
      write_checkpoint();
      result.checkpoint = checkpoint_path_;
      result.interrupted = true;
      logger_->warn("stopped in epoch {} after step {} of {}; continue with --resume auto",
                    epoch_ + 1, step_, steps_per_epoch_);
      fill();
      return result;
    }
    const double lr = lars_->lr();
    epoch_ += 1;
    step_ = 0;
    const auto acc = evaluate();
    last_top1_ = acc.top1;
    last_top5_ = acc.top5;
    if (acc.top1 > best_top1_) {
      best_top1_ = acc.top1;
      best_epoch_ = epoch_;
    }
    const double seconds = seconds_since(epoch_start);
    logger_->info(
        "epoch {}/{} done in {}: loss {:.4f}, val top-1 {:.2f} %, top-5 {:.2f} % ({} images; "
        "best {:.2f} % at epoch {})",
        epoch_, p.epochs, format_duration(seconds), loss, acc.top1, acc.top5, acc.images,
        best_top1_, best_epoch_);
    if (metrics_)
      metrics_->write("linprobe_epoch",
                      {{"epoch", static_cast<double>(epoch_)},
                       {"global_step", static_cast<double>(epoch_ * steps_per_epoch_)},
                       {"loss", loss},
                       {"lr", lr},
                       {"top1", acc.top1},
                       {"top5", acc.top5},
                       {"best_top1", best_top1_},
                       {"epoch_time_s", seconds}});
    result.epochs.push_back({epoch_, loss, lr, acc.top1, acc.top5, seconds});
    const bool save_now = epoch_ % p.save_every == 0 || epoch_ == p.epochs;
    if (save_now) {
      write_checkpoint();
      result.checkpoint = checkpoint_path_;
    }
    const bool signalled =
        options_.stop_requested != nullptr && options_.stop_requested->load() != 0;
    if (any_rank_stopping(comm_.get(), signalled, device_) && epoch_ < p.epochs) {
      if (!save_now) write_checkpoint();
      result.checkpoint = checkpoint_path_;
      result.interrupted = true;
      logger_->warn("stopped after epoch {}; continue with --resume auto", epoch_);
      fill();
      return result;
    }
  }
  if (comm_) comm_->barrier("end of the linear probe");
  logger_->info("done: {} epochs in {}; best top-1 {:.2f} % (epoch {}), last top-1 {:.2f} %",
                p.epochs, format_duration(seconds_since(run_start)), best_top1_, best_epoch_,
                last_top1_);
  fill();
  return result;
}

}  // namespace ocl::engine
