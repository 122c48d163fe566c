// Full fine-tuning (see include/ocl/engine/finetune.h). One AdamW step = accum_iter
// micro-batches, each: uint8 images → normalised on the device → random erasing → mixup / cutmix
// (soft targets with label smoothing) → the ViT (train mode: drop path; bf16 autocast when
// asked) → soft-target cross-entropy / accum_iter backward; then the rank average of the
// gradients, optional clipping, the update at the step's lr times each layer's scale, and the
// EMA update.
#include "ocl/engine/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/data/rand_augment.h"
#include "ocl/engine/knn.h"
#include "ocl/engine/run_setup.h"
#include "ocl/engine/weights.h"
#include "ocl/io/files.h"
#include "ocl/io/state_dict.h"
#include "ocl/optim/adamw_step.h"

namespace ocl::engine {
namespace {

using Clock = std::chrono::steady_clock;

// Distinct streams of per-step randomness from one seed.
constexpr uint64_t kEraseStream = 0x6572617365000000ULL;     // "erase"
constexpr uint64_t kMixStream = 0x6d69780000000000ULL;       // "mix"
constexpr uint64_t kDropPathStream = 0x6674647061746800ULL;  // "ftdpath"
constexpr uint64_t kHeadStream = 0x6674686561640000ULL;      // "fthead"

constexpr const char* kBestModelFile = "model-best.safetensors";

// The trainer-file keys of the best figures (0-d float64 tensors beside the AdamW state).
constexpr const char* kBestTop1Key = "finetune.best_top1";
constexpr const char* kBestEpochKey = "finetune.best_epoch";
constexpr const char* kEmaPrefix = "ema.";

}  // namespace

nn::VisionTransformer build_finetune_model(const io::Config& config, int64_t num_classes) {
  TORCH_CHECK(num_classes >= 1, "fine-tuning needs at least one class, got ", num_classes);
  const auto& f = config.finetune;
  const auto derived = io::derive(config, 1);
  auto options =
      encoder_options(config, derived)
          .num_classes(num_classes)
          .drop_path_rate(f.drop_path)
          .global_pool(f.global_pool == "avg" ? nn::GlobalPool::Avg : nn::GlobalPool::Token)
          .freeze_patch_embed(false)
          .trainable_pos_embed(true);
  torch::manual_seed(config.train.seed);
  nn::VisionTransformer model(options);
  // MAE's main_finetune: trunc_normal_(head.weight, std=2e-5) (bounds ±2 = ±10⁵σ: a plain
  // normal), bias 0. Its own stream, so the head does not depend on the encoder's draws.
  torch::manual_seed(data::sample_seed(config.train.seed ^ kHeadStream, 0, 0));
  torch::NoGradGuard no_grad;
  model->head->weight.normal_(0.0, 2e-5);
  model->head->bias.zero_();
  return model;
}

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

ClassifierAccuracy evaluate_classifier(nn::VisionTransformer& model, const data::Dataset& val,
                                       const data::Transform& transform,
                                       const torch::Device& device, int64_t batch, int64_t workers,
                                       bool bf16, dist::Communicator* comm) {
  const bool was_training = model->is_training();
  model->eval();
  const int64_t k = std::min<int64_t>(5, model->options.num_classes());
  // Per image [top-1 hit, top-k hit, cross-entropy]: three numbers gathered instead of the
  // logits (ImageNet: 50,000 × 1,000 per rank).
  auto forward = [&](const torch::Tensor& images, const torch::Tensor& labels) {
    torch::Tensor logits;
    {
      compat::AutocastGuard autocast(device.type(), bf16);
      logits = model->forward(images);
    }
    logits = logits.to(torch::kFloat32);
    const auto target = labels.view({-1, 1});
    const auto top = std::get<1>(logits.topk(k, 1));
    const auto hit1 = top.narrow(1, 0, 1).eq(target).to(torch::kFloat32);
    const auto hitk = top.eq(target).any(1, /*keepdim=*/true).to(torch::kFloat32);
    const auto loss = torch::logsumexp(logits, 1, /*keepdim=*/true) - logits.gather(1, target);
    return torch::cat({hit1, hitk, loss}, 1);
  };
  Features out;
  try {
    out = map_dataset(forward, val, transform, device, batch, 0, workers, comm);
  } catch (...) {
    model->train(was_training);
    throw;
  }
  model->train(was_training);
  const auto means = out.features.to(torch::kFloat64).mean(0);
  ClassifierAccuracy acc;
  acc.images = out.features.size(0);
  acc.top1 = 100.0 * means[0].item<double>();
  acc.top5 = 100.0 * means[1].item<double>();
  acc.loss = means[2].item<double>();
  return acc;
}

// Figures of one optimiser step (means over its micro-batches and the ranks).
struct Finetuner::StepFigures {
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t images = 0;      // the whole step's, all ranks
  double data_wait_s = 0;  // this rank's wait for the loader
  bool stop = false;       // a stop was requested on some rank
};

Finetuner::Finetuner(io::Config config, FinetuneOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  io::validate(config_);
  rank_ = options_.launch.rank;
  world_size_ = options_.launch.world_size;
  const auto& f = config_.finetune;
  const auto& t = config_.train;
  const bool writer = is_writer() && !options_.eval_only;
  effective_batch_ = f.batch_size * f.accum_iter * world_size_;
  lr_ = io::absolute_lr(f.lr, f.blr, effective_batch_);
  out_ = f.output_dir.empty() ? t.output_dir + "/finetune" : f.output_dir;

  // --- output folder and the checkpoint to resume from: never silently mix two runs
  std::string resume_from;
  if (options_.resume == "auto") {
    resume_from = latest_checkpoint(out_);
  } else if (!options_.resume.empty()) {
    resume_from = options_.resume;
  }
  if (options_.eval_only && resume_from.empty()) {
    throw std::runtime_error(
        "--eval-only evaluates a fine-tuned model: give it with --resume (a fine-tuning "
        "checkpoint folder, or auto for the newest in " +
        out_ + ")");
  }
  if (resume_from.empty() && options_.weights.empty()) {
    throw std::runtime_error(
        "no encoder weights: give --weights (a pre-training checkpoint folder, an "
        "encoder.safetensors, or none for the random baseline)" +
        std::string(options_.resume == "auto" ? "; --resume auto found no checkpoint in " + out_
                                              : ""));
  }
  if (writer) {
    io::make_dirs(out_);
    const std::string previous = latest_checkpoint(out_);
    if (options_.resume.empty() && !previous.empty()) {
      if (!options_.overwrite) {
        throw std::runtime_error("output folder '" + out_ + "' already holds a fine-tuning run (" +
                                 previous +
                                 "): pass --resume auto to continue it, --overwrite to start "
                                 "again there, or choose another finetune.output_dir");
      }
      remove_checkpoints(out_);
      std::remove((out_ + "/" + kBestModelFile).c_str());
    }
  }

  // --- logging, config
  console_ = options_.console ? options_.console
                              : std::make_shared<ConsoleSink>(
                                    stdout, writer && want_status_line(config_.log.progress));
  logger_ = rank_logger(console_, writer ? out_ + "/train.log" : "", config_, rank_);
  const auto derived = io::derive(config_, world_size_);
  config_yaml_ = evaluation_config_yaml(config_, derived, "fine-tuning", "finetune",
                                        effective_batch_, lr_, options_.weights);
  if (writer) io::write_text_atomic(out_ + "/config.yaml", config_yaml_);

  // --- device, precision, threads, the other ranks
  device_ = resolve_device(t.device, options_.launch);
  bf16_ = use_bf16(config_, device_);
  tf32_ = set_tf32(config_, device_);
  set_process_threads(config_, options_.launch);
  comm_ = connect_ranks(config_, options_.launch, device_, *logger_);

  // --- data (run_data_config: a read-only data set keeps its file-list cache in out_)
  const int img = static_cast<int>(config_.model.img_size);
  const auto data_config = run_data_config(config_.data, out_);
  train_set_ = data::make_dataset(data_config, img, /*train=*/true, t.seed);
  val_set_ = data::make_dataset(data_config, img, /*train=*/false, t.seed);
  val_transform_ = data::make_transform(data_config, img, /*train=*/false);
  const int64_t num_classes = train_set_->num_classes();

  // --- model: the pre-trained encoder (or the random one) and a new head
  model_ = build_finetune_model(config_, num_classes);
  if (resume_from.empty()) {
    logger_->info("{}", load_encoder_weights(model_, options_.weights).describe());
  }
  model_->to(device_);
  model_->train();

  // --- optimiser: MAE's layer-wise lr decay groups
  groups_ = optim::layer_decay_groups(*model_, derived.depth, f.weight_decay, f.layer_decay);
  for (const auto& g : groups_)
    trainable_.insert(trainable_.end(), g.params.begin(), g.params.end());
  optimizer_ = optim::make_adamw(groups_, {lr_, f.beta1, f.beta2, 1e-8});
  fused_adamw_ = optim::resolve_fused_adamw(config_.optim.fused, device_);
  schedule_ = {lr_, f.min_lr, f.warmup_epochs, static_cast<double>(f.epochs)};

  // --- training data and its augmentation: RandomResizedCrop + flip + RandAugment here; random
  // erasing and mixup / cutmix on the normalised batch
  data::RandomResizedCropOptions crop;
  crop.size = img;
  crop.scale_min = f.crop_scale_min;
  crop.scale_max = 1.0;
  crop.ratio_min = config_.data.crop_ratio_min;
  crop.ratio_max = config_.data.crop_ratio_max;
  crop.interpolation = data::parse_interpolation(config_.data.interpolation);
  crop.hflip = config_.data.hflip;
  crop.decode = data::parse_region_decode(config_.data.decode);
  auto train_transform = data::random_resized_crop(crop);
  if (f.auto_augment != "none") {
    data::RandAugmentOptions ra;
    try {
      ra = data::parse_rand_augment(f.auto_augment);
    } catch (const std::invalid_argument& e) {
      throw io::ConfigError(std::string("finetune.auto_augment: ") + e.what());
    }
    train_transform = data::with_rand_augment(train_transform, ra);
  }
  erasing_.prob = f.reprob;
  mixup_.mixup_alpha = f.mixup;
  mixup_.cutmix_alpha = f.cutmix;
  mixup_.prob = f.mixup_prob;
  mixup_.switch_prob = f.mixup_switch_prob;
  mixup_.label_smoothing = f.smoothing;
  mixup_.num_classes = num_classes;
  const auto lo = training_loader_options(config_, f.batch_size, f.accum_iter, options_.launch,
                                          device_, logger_);
  loader_ = std::make_unique<data::Loader>(train_set_, train_transform, lo);
  steps_per_epoch_ = loader_->steps_per_epoch() / f.accum_iter;
  if (steps_per_epoch_ < 1 && !options_.eval_only) {
    throw std::runtime_error("the training set (" + std::to_string(train_set_->size()) +
                             " images) does not fill one optimiser step of finetune.batch_size " +
                             std::to_string(f.batch_size) + " × finetune.accum_iter " +
                             std::to_string(f.accum_iter) + ": lower them or use more data");
  }

  // --- resume: the whole classifier, AdamW, the EMA, the best figures and the position
  state_.seed = t.seed;
  int64_t keep_metrics_through = -1;
  if (!resume_from.empty()) {
    Checkpoint c = load_checkpoint(resume_from);
    io::load_state_dict(*model_, c.encoder);
    io::TensorMap ema_tensors;
    for (const auto& [name, tensor] : c.trainer) {
      if (name.rfind(kEmaPrefix, 0) == 0) ema_tensors[name.substr(4)] = tensor;
    }
    if (f.model_ema) {
      ema_ = std::make_unique<ModelEma>(model_, f.model_ema_decay);
      if (!ema_tensors.empty()) {
        io::load_state_dict(*ema_->model(), ema_tensors);
      } else {
        logger_->warn("the checkpoint has no model EMA: the EMA restarts from its weights");
      }
    }
    if (!options_.eval_only) load_adamw_state(*optimizer_, groups_, c.trainer);
    if (c.trainer.count(kBestTop1Key)) {
      best_top1_ = c.trainer.at(kBestTop1Key).item<double>();
      best_epoch_ = c.trainer.at(kBestEpochKey).item<int64_t>();
    }
    state_ = c.state;
    // The saved layout comes from the checkpoint's own config (its batch may differ from
    // this one's); a config that cannot be read is assumed to be this one.
    StepLayout saved_layout{state_.world_size, f.batch_size, f.accum_iter};
    try {
      const auto saved = io::parse_config(c.config_yaml, {}, c.path + "/config.yaml");
      saved_layout.batch_size = saved.finetune.batch_size;
      saved_layout.accum_iter = saved.finetune.accum_iter;
    } catch (const std::exception& e) {
      logger_->warn("the checkpoint's config cannot be read ({}); using the given config",
                    e.what());
    }
    state_.step_in_epoch =
        resume_step_in_epoch(state_.epoch, state_.step_in_epoch, saved_layout,
                             {world_size_, f.batch_size, f.accum_iter}, lr_, *logger_);
    if (state_.step_in_epoch >= steps_per_epoch_ && steps_per_epoch_ > 0) {
      state_.epoch += 1;
      state_.step_in_epoch = 0;
    }
    last_checkpoint_ = c.path;
    keep_metrics_through = state_.global_step;
    logger_->info("resumed from {}: epoch {}, step {} of the epoch, global step {}", c.path,
                  state_.epoch, state_.step_in_epoch, state_.global_step);
  } else if (f.model_ema) {
    ema_ = std::make_unique<ModelEma>(model_, f.model_ema_decay);
  }
  state_.world_size = world_size_;
  if (writer) {
    if (resume_from.empty()) std::remove((out_ + "/metrics.jsonl").c_str());
    metrics_ = std::make_unique<MetricsLog>(out_ + "/metrics.jsonl", keep_metrics_through);
  }
  if (comm_ && !options_.eval_only) {
    // Parameters are broadcast from rank 0; gradients become views into the all-reduce buckets.
    grad_sync_ = make_grad_sync(*comm_, trainable_, config_, *logger_);
  }

  int64_t params = 0;
  for (const auto& p : trainable_) params += p.numel();
  logger_->info("ocl_finetune: LibTorch {}, device {}, {}{}, {} threads", compat::torch_version(),
                device_.str(), bf16_ ? "bf16 autocast" : "fp32",
                device_.is_cuda() ? (tf32_ ? " (TF32 on for fp32 matmuls)" : " (TF32 off)") : "",
                torch::get_num_threads());
  logger_->info(
      "model: {} {}x{}/{} D{} depth {}, {} classes, {} pooling, drop path {}; {:.2f} M trainable "
      "parameters in {} layer-decay groups (decay {}, head lr × 1, patch embedding × {:.3g})",
      config_.model.arch, img, img, derived.patch_size, derived.embed_dim, derived.depth,
      num_classes, f.global_pool, f.drop_path, params / 1e6, groups_.size(), f.layer_decay,
      std::pow(f.layer_decay, static_cast<double>(derived.depth + 1)));
  logger_->info(
      "data: {}; validation: {}; {} steps per epoch of batch {} × accum {} × {} "
      "processes = effective batch {}",
      train_set_->describe(), val_set_->describe(), steps_per_epoch_, f.batch_size, f.accum_iter,
      world_size_, effective_batch_);
  logger_->info(
      "augmentation: {}; random erasing p {}; mixup α {}, cutmix α {} (p {}, switch {}); label "
      "smoothing {}",
      train_transform->describe(), f.reprob, f.mixup, f.cutmix, f.mixup_prob, f.mixup_switch_prob,
      f.smoothing);
  logger_->info(
      "optim: AdamW β ({}, {}), wd {}, lr {:.3g} (blr {:.3g} × {}/256{}), warmup {} epochs, min lr "
      "{:.3g}, clip {}, EMA {}",
      f.beta1, f.beta2, f.weight_decay, lr_, f.blr, effective_batch_,
      f.lr > 0 ? "; overridden by finetune.lr" : "", f.warmup_epochs, f.min_lr,
      f.clip_grad > 0 ? fmt::format("{}", f.clip_grad) : std::string("off"),
      f.model_ema ? fmt::format("{}", f.model_ema_decay) : std::string("off"));
  logger_->info("optim: AdamW step {} (optim.fused: {})",
                fused_adamw_ ? "fused (at::_fused_adamw_)" : "per parameter (torch::optim::AdamW)",
                config_.optim.fused);
  logger_->info("output: {}", out_);
}

Finetuner::~Finetuner() {
  if (console_) console_->clear_status();
}

void Finetuner::train_step(StepFigures& st) {
  const auto& f = config_.finetune;
  const int64_t accum = f.accum_iter;
  st.lr = schedule_.at(static_cast<double>(state_.epoch) +
                       static_cast<double>(state_.step_in_epoch) / steps_per_epoch_);
  optim::set_learning_rate(*optimizer_, groups_, st.lr);
  compat::zero_grad(trainable_);

  torch::Tensor loss_sum;
  for (int64_t micro = 0; micro < accum; ++micro) {
    const auto wait_start = Clock::now();
    auto batch = loader_->next();
    st.data_wait_s += seconds_since(wait_start);
    if (!batch) throw std::logic_error("the loader ended before the epoch's last step");
    // Each image's randomness is a function of (seed, step, its place in the global batch).
    const int64_t slot = micro * world_size_ + rank_;
    auto images = data::normalize_images(batch->images, device_);
    if (erasing_.prob > 0) {
      data::random_erasing_(
          images, erasing_,
          data::sample_seed(state_.seed ^ kEraseStream, state_.global_step, slot));
    }
    auto mixed =
        data::mix_batch(images, batch->labels.to(device_), mixup_,
                        data::sample_seed(state_.seed ^ kMixStream, state_.global_step, slot));
    torch::manual_seed(data::sample_seed(state_.seed ^ kDropPathStream, state_.global_step, slot));
    if (grad_sync_) grad_sync_->set_sync(micro == accum - 1 && config_.dist.overlap);
    torch::Tensor logits;
    {
      compat::AutocastGuard autocast(device_.type(), bf16_);
      logits = model_->forward(mixed.images);
    }
    auto loss = data::soft_target_cross_entropy(logits, mixed.targets);
    (loss / static_cast<double>(accum)).backward();
    loss_sum = micro == 0 ? loss.detach() : loss_sum + loss.detach();
    st.images += images.size(0) * world_size_;
  }
  if (grad_sync_) {
    grad_sync_->set_sync(true);
    grad_sync_->finish();  // gradients are now the mean over ranks
  }
  auto norm = optim::grad_norm(trainable_);
  if (f.clip_grad > 0) optim::clip_grads(trainable_, norm, f.clip_grad);
  // One host sync per step: the loss must be checked before the update.
  const bool stop_here = options_.stop_requested != nullptr && options_.stop_requested->load() != 0;
  auto per_rank = torch::stack(
      {loss_sum.to(torch::kFloat64),
       torch::full({}, stop_here ? 1.0 : 0.0, loss_sum.options().dtype(torch::kFloat64))});
  if (comm_) comm_->all_reduce_sum(per_rank, dist::Group::kLoss, "step figures");
  auto figures = torch::cat({per_rank, norm.to(torch::kFloat64).view({1})}).cpu();
  const double* v = figures.data_ptr<double>();
  st.loss = v[0] / static_cast<double>(accum) / static_cast<double>(world_size_);
  st.stop = v[1] > 0;
  st.grad_norm = v[2];
  if (!std::isfinite(st.loss) || !std::isfinite(st.grad_norm)) {
    std::ostringstream what;
    what << "fine-tuning: non-finite " << (std::isfinite(st.loss) ? "gradient" : "loss")
         << " at epoch " << state_.epoch << ", step " << state_.step_in_epoch << " of "
         << steps_per_epoch_ << " (global step " << state_.global_step << "): loss " << st.loss
         << ", grad norm " << st.grad_norm << ", lr " << st.lr
         << "; lower finetune.blr or set finetune.clip_grad; last good checkpoint: "
         << (last_checkpoint_.empty() ? "none" : last_checkpoint_);
    throw std::runtime_error(what.str());
  }
  optim::adamw_step(*optimizer_, fused_adamw_);
  if (ema_) ema_->update(model_);
  state_.global_step += 1;
  state_.step_in_epoch += 1;
  steps_this_run_ += 1;
}

ClassifierAccuracy Finetuner::evaluate(nn::VisionTransformer& model) {
  return evaluate_classifier(model, *val_set_, *val_transform_, device_,
                             config_.finetune.batch_size, config_.data.workers, bf16_, comm_.get());
}

std::string Finetuner::write_checkpoint() {
  if (!is_writer()) return "";  // rank 0 writes for all: the ranks' weights are identical
  io::TensorMap trainer = adamw_state(*optimizer_, groups_);
  if (ema_) {
    for (const auto& [name, tensor] : io::state_dict(*ema_->model()))
      trainer[kEmaPrefix + name] = tensor;
  }
  trainer[kBestTop1Key] = torch::full({}, best_top1_, torch::kFloat64);
  trainer[kBestEpochKey] = torch::full({}, best_epoch_, torch::kInt64);
  last_checkpoint_ = save_checkpoint(out_, state_, io::state_dict(*model_), trainer, config_yaml_,
                                     config_.finetune.keep_last);
  logger_->info("checkpoint: {}", last_checkpoint_);
  return last_checkpoint_;
}

void Finetuner::write_best_model() {
  if (!is_writer()) return;
  io::Metadata meta{{"format", "ocl fine-tuned classifier (timm names)"},
                    {"epoch", std::to_string(best_epoch_)},
                    {"top1", std::to_string(best_top1_)},
                    {"arch", config_.model.arch}};
  io::write_safetensors(out_ + "/" + kBestModelFile, io::state_dict(*model_), meta);
}

FinetuneResult Finetuner::run() {
  FinetuneResult result;
  const auto& f = config_.finetune;
  auto fill = [&] {
    result.epochs_done = state_.epoch;
    result.best_top1 = best_top1_;
    result.best_epoch = best_epoch_;
    if (result.checkpoint.empty()) result.checkpoint = last_checkpoint_;
  };

  if (options_.eval_only) {
    const auto acc = evaluate(model_);
    result.last_top1 = acc.top1;
    result.last_top5 = acc.top5;
    logger_->info("eval of {}: top-1 {:.2f} %, top-5 {:.2f} %, loss {:.4f} ({} images)",
                  last_checkpoint_, acc.top1, acc.top5, acc.loss, acc.images);
    if (ema_) {
      const auto ema = evaluate(ema_->model());
      logger_->info("eval of its EMA: top-1 {:.2f} %, top-5 {:.2f} %", ema.top1, ema.top5);
    }
    fill();
    return result;
  }
  if (state_.epoch >= f.epochs) {
    logger_->info("nothing to do: all {} epochs are done (checkpoint {})", f.epochs,
                  last_checkpoint_);
    result.nothing_to_do = true;
    fill();
    return result;
  }
  auto stop_after_steps = [&] {
    return options_.stop_after_steps > 0 && steps_this_run_ >= options_.stop_after_steps;
  };
  const auto run_start = Clock::now();
  const int64_t total_steps = f.epochs * steps_per_epoch_;
  const int64_t run_start_step = state_.global_step;

  while (state_.epoch < f.epochs) {
    loader_->start_epoch(state_.epoch, state_.step_in_epoch * f.accum_iter);
    const auto epoch_start = Clock::now();
    double epoch_loss = 0, last_lr = 0;
    int64_t epoch_steps = 0;
    double win_loss = 0, win_wait = 0;
    int64_t win_steps = 0, win_images = 0;
    auto win_start = Clock::now();
    while (state_.step_in_epoch < steps_per_epoch_) {
      StepFigures st;
      train_step(st);
      epoch_loss += st.loss;
      epoch_steps += 1;
      last_lr = st.lr;
      win_loss += st.loss;
      win_wait += st.data_wait_s;
      win_steps += 1;
      win_images += st.images;
      const double elapsed = seconds_since(run_start);
      const int64_t done_here = state_.global_step - run_start_step;
      const double eta =
          elapsed / std::max<int64_t>(1, done_here) * (total_steps - state_.global_step);
      if (state_.global_step % config_.log.every == 0 || state_.step_in_epoch == steps_per_epoch_) {
        const double window = seconds_since(win_start);
        const double img_s = win_images / std::max(window, 1e-9);
        logger_->info(
            "epoch {}/{} step {}/{} (global {}): loss {:.4f}, lr {:.3g}, grad norm {:.3f}, "
            "{:.1f} img/s, data wait {:.0f} %, ETA {}",
            state_.epoch + 1, f.epochs, state_.step_in_epoch, steps_per_epoch_, state_.global_step,
            win_loss / win_steps, st.lr, st.grad_norm, img_s,
            100 * win_wait / std::max(window, 1e-9), format_duration(eta));
        if (metrics_)
          metrics_->write("finetune_step",
                          {{"epoch", static_cast<double>(state_.epoch) +
                                         static_cast<double>(state_.step_in_epoch) /
                                             static_cast<double>(steps_per_epoch_)},
                           {"global_step", static_cast<double>(state_.global_step)},
                           {"loss", win_loss / win_steps},
                           {"lr", st.lr},
                           {"grad_norm", st.grad_norm},
                           {"img_per_s", img_s}});
        win_loss = win_wait = 0;
        win_steps = win_images = 0;
        win_start = Clock::now();
      }
      console_->set_status(fmt::format("finetune epoch {}/{} step {}/{} loss {:.4f} ETA {}",
                                       state_.epoch + 1, f.epochs, state_.step_in_epoch,
                                       steps_per_epoch_, st.loss, format_duration(eta)));
      // A stop at the epoch's last step is handled after its evaluation, below.
      if ((st.stop || stop_after_steps()) && state_.step_in_epoch < steps_per_epoch_) {
        console_->clear_status();
        logger_->warn("stop requested: writing a checkpoint at global step {}", state_.global_step);
        result.checkpoint = write_checkpoint();
        result.interrupted = true;
        logger_->warn("stopped at epoch {}, step {}; continue with --resume auto", state_.epoch,
                      state_.step_in_epoch);
        fill();
        return result;
      }
    }
    console_->clear_status();
    state_.epoch += 1;
    state_.step_in_epoch = 0;
    const double train_loss = epoch_loss / std::max<int64_t>(1, epoch_steps);
    const auto acc = evaluate(model_);
    double ema_top1 = -1;
    if (ema_) ema_top1 = evaluate(ema_->model()).top1;
    result.last_top1 = acc.top1;
    result.last_top5 = acc.top5;
    const bool improved = acc.top1 > best_top1_;
    if (improved) {
      best_top1_ = acc.top1;
      best_epoch_ = state_.epoch;
      write_best_model();
    }
    const double seconds = seconds_since(epoch_start);
    logger_->info(
        "epoch {}/{} done in {}: train loss {:.4f}, val top-1 {:.2f} %, top-5 {:.2f} %, loss "
        "{:.4f} ({} images){}; best {:.2f} % at epoch {}",
        state_.epoch, f.epochs, format_duration(seconds), train_loss, acc.top1, acc.top5, acc.loss,
        acc.images, ema_ ? fmt::format(", EMA top-1 {:.2f} %", ema_top1) : "", best_top1_,
        best_epoch_);
    if (metrics_) {
      MetricFields fields{{"epoch", static_cast<double>(state_.epoch)},
                          {"global_step", static_cast<double>(state_.global_step)},
                          {"train_loss", train_loss},
                          {"lr", last_lr},
                          {"top1", acc.top1},
                          {"top5", acc.top5},
                          {"val_loss", acc.loss},
                          {"best_top1", best_top1_},
                          {"epoch_time_s", seconds}};
      if (ema_) fields.emplace_back("ema_top1", ema_top1);
      metrics_->write("finetune_epoch", fields);
    }
    result.epochs.push_back(
        {state_.epoch, train_loss, last_lr, acc.top1, acc.top5, acc.loss, ema_top1, seconds});
    const bool save_now = state_.epoch % f.save_every == 0 || state_.epoch == f.epochs;
    if (save_now) result.checkpoint = write_checkpoint();
    const bool signalled =
        options_.stop_requested != nullptr && options_.stop_requested->load() != 0;
    if ((any_rank_stopping(comm_.get(), signalled, device_) || stop_after_steps()) &&
        state_.epoch < f.epochs) {
      if (!save_now) result.checkpoint = write_checkpoint();
      result.interrupted = true;
      logger_->warn("stopped after epoch {}; continue with --resume auto", state_.epoch);
      fill();
      return result;
    }
  }
  if (comm_) comm_->barrier("end of fine-tuning");
  logger_->info("done: {} epochs in {}; best top-1 {:.2f} % (epoch {}), last top-1 {:.2f} %",
                f.epochs, format_duration(seconds_since(run_start)), best_top1_, best_epoch_,
                result.last_top1);
  fill();
  return result;
}

}  // namespace ocl::engine
