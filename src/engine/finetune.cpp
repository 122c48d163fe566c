// Full fine-tuning (see include/ocl/engine/finetune.h).
#include "ocl/engine/finetune.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/data/rand_augment.h"
#include "ocl/engine/knn.h"
#include "ocl/io/state_dict.h"
#include "ocl/nn/weights.h"
#include "ocl/optim/adamw_state.h"
#include "ocl/optim/adamw_step.h"

namespace ocl::engine {
namespace {

// Distinct streams of per-step randomness from one seed.
constexpr uint64_t kEraseStream = 0x6572617365000000ULL;             // "erase"
constexpr uint64_t kMixStream = 0x6d69780000000000ULL;               // "mix"
constexpr uint64_t kFinetuneDropPathStream = 0x6674647061746800ULL;  // "ftdpath"
constexpr uint64_t kFinetuneHeadStream = 0x6674686561640000ULL;      // "fthead"

constexpr const char* kBestModelFile = "model-best.safetensors";
constexpr const char* kEmaPrefix = "ema.";

}  // namespace

nn::VisionTransformer build_finetune_model(const io::Config& config, int64_t num_classes) {
  TORCH_CHECK(num_classes >= 1, "fine-tuning needs at least one class, got ", num_classes);
  const auto& f = config.finetune;
  const auto derived = io::derive(config, 1);
  auto options =
      nn::encoder_options(config, derived)
          .num_classes(num_classes)
          .drop_path_rate(f.drop_path)
          .global_pool(f.global_pool == "avg" ? nn::GlobalPool::Avg : nn::GlobalPool::Token)
          .freeze_patch_embed(false)
          .trainable_pos_embed(true);
  torch::manual_seed(config.train.seed);
  nn::VisionTransformer model(options);
  // MAE's trunc_normal_(std=2e-5) (bounds ±10⁵σ: a plain normal), from a stream of its own.
  torch::manual_seed(data::sample_seed(config.train.seed ^ kFinetuneHeadStream, 0, 0));
  torch::NoGradGuard no_grad;
  model->head->weight.normal_(0.0, 2e-5);
  model->head->bias.zero_();
  return model;
}

ClassifierAccuracy evaluate_classifier(nn::VisionTransformer& model, const data::Dataset& val,
                                       const data::Transform& transform,
                                       const torch::Device& device, int64_t batch, int64_t workers,
                                       bool bf16, distributed::Communicator* comm) {
  const EvalMode eval_mode(*model);
  const int64_t k = std::min<int64_t>(5, model->options.num_classes());
  // Per image [top-1 hit, top-k hit, cross-entropy]: gathered instead of the logits.
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
  const auto out = map_dataset(forward, val, transform, device, batch, 0, workers, comm);
  const auto means = out.features.to(torch::kFloat64).mean(0);
  ClassifierAccuracy acc;
  acc.images = out.features.size(0);
  acc.top1 = 100.0 * means[0].item<double>();
  acc.top5 = 100.0 * means[1].item<double>();
  acc.loss = means[2].item<double>();
  return acc;
}

namespace {

RunSpec finetune_spec(const io::Config& config, const FinetuneOptions& options,
                      int64_t effective_batch, double lr) {
  RunSpec spec = evaluation_run_spec(config, options.launch.world_size, "ocl_finetune", "finetune",
                                     config.finetune.output_dir, "fine-tuning", effective_batch, lr,
                                     options.weights);
  spec.own_files = {kBestModelFile};
  spec.kind = "fine-tuning";
  const std::string out = spec.output_dir;
  spec.precondition = [out, eval_only = options.eval_only, weights = options.weights,
                       auto_resume = options.resume == "auto"](const std::string& resume_from) {
    if (eval_only && resume_from.empty()) {
      throw std::runtime_error(
          "--eval-only evaluates a fine-tuned model: give it with --resume (a fine-tuning "
          "checkpoint folder, or auto for the newest in " +
          out + ")");
    }
    if (resume_from.empty() && weights.empty()) {
      throw std::runtime_error(
          "no encoder weights: give --weights (a pre-training checkpoint folder, an "
          "encoder.safetensors, or none for the random baseline)" +
          std::string(auto_resume ? "; --resume auto found no checkpoint in " + out : ""));
    }
  };
  return spec;
}

}  // namespace

Finetuner::Finetuner(io::Config config, FinetuneOptions options)
    : config_(validated(std::move(config))),
      recipe_(section_recipe(config_.finetune, options.launch.world_size)),
      run_(config_, options, finetune_spec(config_, options, recipe_.layout.images(), recipe_.lr)) {
  const auto& f = config_.finetune;
  const auto derived = io::derive(config_, run_.process().launch.world_size);

  const int img = static_cast<int>(config_.model.img_size);
  const auto data_config = run_data_config(config_.data, run_.spec().output_dir);
  auto splits = open_splits(run_.process(), data_config, img, config_.train.seed);
  train_set_ = splits.train;
  val_set_ = splits.val;
  val_transform_ = data::make_transform(data_config, img, /*train=*/false);

  model_ = build_finetune_model(config_, train_set_->num_classes());
  if (!run_.resumed())
    run_.process().log->info("{}", nn::load_encoder_weights(model_, options.weights).describe());
  model_->to(run_.process().device);
  model_->train();
  groups_ = optim::layer_decay_groups(*model_, derived.depth, f.weight_decay, f.layer_decay);
  for (const auto& g : groups_)
    trainable_.insert(trainable_.end(), g.params.begin(), g.params.end());
  optimizer_ = optim::make_adamw(groups_, {recipe_.lr, f.beta1, f.beta2, 1e-8});
  fused_adamw_ = optim::resolve_fused_adamw(config_.optim.fused, run_.process().device);
  erasing_.prob = f.reprob;
  mixup_ = {.mixup_alpha = f.mixup,
            .cutmix_alpha = f.cutmix,
            .prob = f.mixup_prob,
            .switch_prob = f.mixup_switch_prob,
            .label_smoothing = f.smoothing,
            .num_classes = train_set_->num_classes()};
  const auto transform = train_transform();
  if (!run_.options().eval_only) {
    auto loader = std::make_unique<data::Loader>(
        train_set_, transform,
        training_loader_options(config_, f.batch_size, f.accum_iter, run_.process().launch,
                                run_.process().device, run_.process().log));
    auto settings = section_loop_settings(config_, f, "finetune", recipe_.lr);
    settings.clip_grad = f.clip_grad;
    settings.nonfinite_hint = "lower finetune.blr or set finetune.clip_grad";
    loop_ = std::make_unique<TrainingLoop>(run_, static_cast<TrainingEngine&>(*this),
                                           loader_source(std::move(loader)), settings);
  }

  if (run_.resumed()) io::load_state_dict(*model_, run_.resumed()->model);
  if (f.model_ema) ema_ = std::make_unique<optim::ModelEma>(model_, f.model_ema_decay);
  if (run_.resumed()) {
    const auto& c = *run_.resumed();
    io::TensorMap ema_tensors;
    for (const auto& [name, tensor] : c.trainer) {
      if (name.rfind(kEmaPrefix, 0) == 0) ema_tensors[name.substr(4)] = tensor;
    }
    if (ema_ && !ema_tensors.empty()) io::load_state_dict(*ema_->model(), ema_tensors);
    if (ema_ && ema_tensors.empty())
      run_.process().log->warn(
          "the checkpoint has no model EMA: the EMA restarts from its weights");
    if (loop_) optim::load_adamw_state(*optimizer_, groups_, c.trainer);
    record_.load(c.trainer, "finetune");
  }
  run_.resume_position(
      [](const io::Config& c) {
        return StepLayout{1, c.finetune.batch_size, c.finetune.accum_iter};
      },
      recipe_.layout, loop_ ? loop_->steps_per_epoch() : 0, recipe_.lr);
  if (loop_) loop_->connect_gradients();
  log_setup(*transform);
}

Finetuner::~Finetuner() = default;

// RandomResizedCrop + flip + RandAugment; random erasing and mixup / cutmix come on the batch.
std::shared_ptr<const data::Transform> Finetuner::train_transform() const {
  const auto& f = config_.finetune;
  io::DataConfig crop = config_.data;
  crop.augment = "rrc_flip";
  crop.crop_scale_min = f.crop_scale_min;
  crop.crop_scale_max = 1.0;
  auto transform = data::make_transform(crop, static_cast<int>(config_.model.img_size), true);
  if (f.auto_augment == "none") return transform;
  try {
    return data::with_rand_augment(transform, data::parse_rand_augment(f.auto_augment));
  } catch (const std::invalid_argument& e) {
    throw io::ConfigError(std::string("finetune.auto_augment: ") + e.what());
  }
}

void Finetuner::log_setup(const data::Transform& train_transform) const {
  const auto& f = config_.finetune;
  const auto derived = io::derive(config_, run_.process().launch.world_size);
  const int64_t img = config_.model.img_size;
  auto& log = *run_.process().log;
  log_startup(run_.process(), run_.spec().app);
  log.info(
      "model: {} {}x{}/{} D{} depth {}, {} classes, {} pooling, drop path {}; {} in {} "
      "layer-decay groups (decay {}, head lr × 1, patch embedding × {:.3g})",
      config_.model.arch, img, img, derived.patch_size, derived.embed_dim, derived.depth,
      train_set_->num_classes(), f.global_pool, f.drop_path, parameter_counts(*model_),
      groups_.size(), f.layer_decay,
      std::pow(f.layer_decay, static_cast<double>(derived.depth + 1)));
  log.info(
      "data: {}; validation: {}; {} steps per epoch of batch {} × accum {} × {} "
      "processes = effective batch {}",
      train_set_->describe(), val_set_->describe(), loop_ ? loop_->steps_per_epoch() : 0,
      f.batch_size, f.accum_iter, run_.process().launch.world_size, recipe_.layout.images());
  log.info(
      "augmentation: {}; random erasing p {}; mixup α {}, cutmix α {} (p {}, switch {}); label "
      "smoothing {}",
      train_transform.describe(), f.reprob, f.mixup, f.cutmix, f.mixup_prob, f.mixup_switch_prob,
      f.smoothing);
  log.info(
      "optim: AdamW β ({}, {}), wd {}, lr {:.3g} (blr {:.3g} × {}/256{}), warmup {} epochs, min lr "
      "{:.3g}, clip {}, EMA {}; AdamW step {} (optim.fused: {})",
      f.beta1, f.beta2, f.weight_decay, recipe_.lr, f.blr, recipe_.layout.images(),
      f.lr > 0 ? "; overridden by finetune.lr" : "", f.warmup_epochs, f.min_lr,
      f.clip_grad > 0 ? fmt::format("{}", f.clip_grad) : std::string("off"),
      f.model_ema ? fmt::format("{}", f.model_ema_decay) : std::string("off"),
      fused_adamw_ ? "fused" : "per parameter", config_.optim.fused);
  log.info("output: {}", run_.spec().output_dir);
}

void Finetuner::set_lr(double lr) { optim::set_learning_rate(*optimizer_, groups_, lr); }

MicroStep Finetuner::forward(const data::Batch& batch, const StepContext& at) {
  // Each image's draws follow (seed, step, its place in the global batch).
  auto images = data::normalize_images(batch.images, run_.process().device);
  if (erasing_.prob > 0) {
    data::random_erasing_(images, erasing_,
                          data::sample_seed(at.seed ^ kEraseStream, at.global_step, at.slot()));
  }
  auto mixed = data::mix_batch(images, batch.labels.to(run_.process().device), mixup_,
                               data::sample_seed(at.seed ^ kMixStream, at.global_step, at.slot()));
  torch::manual_seed(
      data::sample_seed(at.seed ^ kFinetuneDropPathStream, at.global_step, at.slot()));
  torch::Tensor logits;
  {
    compat::AutocastGuard autocast(run_.process().device.type(), run_.process().bf16);
    logits = model_->forward(mixed.images);
  }
  return {data::soft_target_cross_entropy(logits, mixed.targets), {}};
}

void Finetuner::update() {
  optim::adamw_step(*optimizer_, fused_adamw_);
  if (ema_) ema_->update(model_);
}

ClassifierAccuracy Finetuner::evaluate(nn::VisionTransformer& model) {
  return evaluate_classifier(model, *val_set_, *val_transform_, run_.process().device,
                             config_.finetune.batch_size, config_.data.workers, run_.process().bf16,
                             run_.process().comm.get());
}

EpochReport Finetuner::end_of_epoch(const io::TrainingState& state) {
  const auto acc = evaluate(model_);
  const double ema_top1 = ema_ ? evaluate(ema_->model()).top1 : -1;
  if (record_.add(state.epoch, acc) && run_.writes()) {
    io::Metadata meta = nn::encoder_metadata(model_->options);
    meta["format"] = "ocl fine-tuned classifier (timm names)";
    meta["epoch"] = std::to_string(state.epoch);
    meta["top1"] = std::to_string(acc.top1);
    meta["arch"] = config_.model.arch;
    io::write_safetensors(run_.spec().output_dir + "/" + kBestModelFile, io::state_dict(*model_),
                          meta);
  }
  EpochReport report;
  report.text = fmt::format(
      ", val top-1 {:.2f} %, top-5 {:.2f} %, loss {:.4f} ({} images){}; best {:.2f} % at epoch {}",
      acc.top1, acc.top5, acc.loss, acc.images,
      ema_ ? fmt::format(", EMA top-1 {:.2f} %", ema_top1) : "", record_.best_top1,
      record_.best_epoch);
  report.fields = {{"top1", acc.top1},
                   {"top5", acc.top5},
                   {"val_loss", acc.loss},
                   {"best_top1", record_.best_top1}};
  if (ema_) report.fields.emplace_back("ema_top1", ema_top1);
  return report;
}

CheckpointTensors Finetuner::checkpoint_tensors() {
  CheckpointTensors c{io::state_dict(*model_), optim::adamw_state(*optimizer_, groups_),
                      nn::encoder_metadata(model_->options)};
  if (ema_) {
    for (const auto& [name, tensor] : io::state_dict(*ema_->model()))
      c.trainer[kEmaPrefix + name] = tensor;
  }
  record_.save(c.trainer, "finetune");
  return c;
}

FinetuneResult Finetuner::run() {
  if (!run_.options().eval_only) return train_classifier(run_, *loop_, record_);
  const auto acc = evaluate(model_);
  run_.process().log->info("eval of {}: top-1 {:.2f} %, top-5 {:.2f} %, loss {:.4f} ({} images)",
                           run_.last_checkpoint(), acc.top1, acc.top5, acc.loss, acc.images);
  if (ema_) {
    const auto ema = evaluate(ema_->model());
    run_.process().log->info("eval of its EMA: top-1 {:.2f} %, top-5 {:.2f} %", ema.top1, ema.top5);
  }
  return evaluated_classifier(run_, record_, acc);
}

}  // namespace ocl::engine
