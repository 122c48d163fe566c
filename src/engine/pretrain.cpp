// Pre-training (see include/ocl/engine/pretrain.h): OCL's step on a micro-batch (normalise on
// the device, draw the masks, OCL forward under bf16 autocast when asked), AdamW, the kNN
// monitor and the checkpoint's content; the shared loop (engine/loop.h) does the rest.
#include "ocl/engine/pretrain.h"

#include <algorithm>
#include <chrono>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/distributed/all_gather.h"
#include "ocl/engine/knn.h"
#include "ocl/io/state_dict.h"
#include "ocl/nn/weights.h"
#include "ocl/optim/adamw_state.h"
#include "ocl/optim/adamw_step.h"

namespace ocl::engine {
namespace {

using Clock = std::chrono::steady_clock;

// Distinct streams of per-step randomness from one seed.
constexpr uint64_t kMaskStream = 0x6d61736b00000000ULL;    // "mask"
constexpr uint64_t kDropPathStream = 0x64706174680000ULL;  // "dpath"

// How many monitor runs back the alarm's recent gain is measured over, for a non-empty history
// of `n` figures: `window`, or all there are before the last.
size_t runs_back(size_t n, int64_t window) {
  return std::min(n - 1, static_cast<size_t>(std::max<int64_t>(window, 0)));
}

}  // namespace

double knn_figure_back(const std::vector<double>& knn_history, int64_t window) {
  if (knn_history.empty()) return -1;
  return knn_history[knn_history.size() - 1 - runs_back(knn_history.size(), window)];
}

std::string shortcut_warning(const io::EvalConfig& eval, double accuracy,
                             const std::vector<double>& knn_history) {
  const size_t n = knn_history.size();
  if (!eval.shortcut_alarm || n < 2 || !(accuracy >= 0) || accuracy < eval.shortcut_accuracy)
    return "";
  if (std::any_of(knn_history.begin(), knn_history.end(), [](double v) { return v < 0; }))
    return "";
  const double start = knn_history.front(), now = knn_history.back();
  // The figure eval.shortcut_window runs back (the first when there are fewer): a run that
  // learned at first and then stalled while the task was solved by a shared cue.
  const size_t back = runs_back(n, eval.shortcut_window);
  const double before = knn_history[n - 1 - back];
  const double gain = now - start, recent = now - before;
  if (gain >= eval.shortcut_knn_gain && recent >= eval.shortcut_knn_gain) return "";
  const std::string moved =
      gain < eval.shortcut_knn_gain
          ? fmt::format("moved {:+.2f} points since the start ({:.2f} -> {:.2f} %", gain, start,
                        now)
          : fmt::format("moved {:+.2f} points over the last {} monitor runs ({:.2f} -> {:.2f} %",
                        recent, back, before, now);
  return fmt::format(
      "shortcut alarm: contrastive accuracy {:.3f} (>= eval.shortcut_accuracy {}) while kNN "
      "top-1 {}, less than eval.shortcut_knn_gain {}): the two token groups are being matched by "
      "a cue they both see, such as a per-image colour or lighting, not by content. "
      "Remove the cue: model.input_norm=patch (each patch standardised before the patch "
      "embedding, so the flat colour it shares with its image is gone; the evaluation apps then "
      "need the same setting), with mask.group_views=independent each group from its own copy "
      "of the crop: data.illumination for a lighting gradient, "
      "data.photometric=simclr for colour casts; configs/quickstart_robust.yaml has them "
      "together; see docs/shortcuts.md",
      accuracy, eval.shortcut_accuracy, moved, eval.shortcut_knn_gain);
}

ssl::OCL build_ocl_model(const io::Config& config, const io::DerivedConfig& derived) {
  torch::manual_seed(config.train.seed);
  return ssl::OCL(nn::encoder_options(config, derived),
                  ssl::OCLOptions()
                      .mask_ratio(config.mask.ratio)
                      .kappa(config.loss.kappa)
                      .learnable_temperature(config.loss.learnable_temperature)
                      .temperature(config.loss.temperature)
                      .max_logit_scale(config.loss.max_logit_scale));
}

torch::Tensor step_mask_noise(uint64_t seed, int64_t global_step, int64_t micro, int64_t batch,
                              int64_t num_patches, int64_t rank, int64_t world_size) {
  const uint64_t step_seed = data::sample_seed(seed ^ kMaskStream, global_step, micro);
  auto noise = torch::empty({batch, num_patches});
  for (int64_t i = 0; i < batch; ++i) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(
        data::sample_seed(step_seed, /*epoch=*/0, /*index=*/i * world_size + rank));
    noise[i] = torch::rand({num_patches}, gen);
  }
  return noise;
}

ssl::FeatureGather global_negatives(distributed::Communicator& comm) {
  distributed::Communicator* c = &comm;
  return [c](const torch::Tensor& a, const torch::Tensor& b) {
    // One collective for both groups: [2B, D] per rank → [W, 2B, D].
    const int64_t n = a.size(0);
    auto all = distributed::all_gather_with_grad(*c, torch::cat({a, b}, 0))
                   .view({c->world_size(), 2 * n, a.size(1)});
    ssl::GatheredFeatures g;
    g.a_all = all.narrow(1, 0, n).reshape({-1, a.size(1)});
    g.b_all = all.narrow(1, n, n).reshape({-1, a.size(1)});
    g.offset = c->rank() * n;
    return g;
  };
}

Pretrainer::Pretrainer(io::Config config, PretrainOptions options)
    : config_(validated(std::move(config))),
      derived_(io::derive(config_, options.launch.world_size)),
      run_(config_, std::move(options),
           {.app = "ocl_pretrain",
            .output_dir = config_.train.output_dir,
            .output_key = "train.output_dir",
            .config_yaml = io::to_yaml_with_derived(config_, derived_)}) {
  const auto& t = config_.train;
  const auto& o = config_.optim;
  // The model, initialised from the seed: the same config gives the same start.
  model_ = build_ocl_model(config_, derived_);
  model_->to(run_.device());
  model_->train();
  if (run_.comm() && config_.loss.negatives == "global") gather_ = global_negatives(*run_.comm());
  groups_ = optim::weight_decay_groups(*model_, o.weight_decay);
  for (const auto& g : groups_)
    trainable_.insert(trainable_.end(), g.params.begin(), g.params.end());
  optimizer_ = optim::make_adamw(groups_, {derived_.lr, o.beta1, o.beta2, o.eps});
  fused_adamw_ = optim::resolve_fused_adamw(o.fused, run_.device());

  // Data (run_data_config: a read-only data set keeps its file-list cache in the run's folder).
  const int img = static_cast<int>(config_.model.img_size);
  data_config_ = run_data_config(config_.data, t.output_dir);
  train_set_ = data::make_dataset(data_config_, img, /*train=*/true, t.seed);
  run_.check_data(*train_set_, "the training set");
  // Two copies of each crop when the groups take independent colour draws.
  const int views = config_.mask.group_views == "independent" ? 2 : 1;
  auto loader = std::make_unique<data::Loader>(
      train_set_, data::make_pretrain_transform(data_config_, img, views),
      training_loader_options(config_, t.batch_size, o.accum_iter, run_.launch(), run_.device(),
                              run_.logger()));
  // Pre-training's recipe spans two sections (train, optim); its records are "step", "epoch".
  const struct {
    int64_t epochs, accum_iter, batch_size, save_every, keep_last;
    double min_lr, warmup_epochs;
  } recipe{t.epochs,    o.accum_iter, t.batch_size,   t.save_every,
           t.keep_last, o.min_lr,     o.warmup_epochs};
  LoopSettings settings = section_loop_settings(config_, recipe, "train", derived_.lr);
  settings.records = "";
  settings.clip_grad = o.clip_grad;
  loop_ = std::make_unique<TrainingLoop>(run_, static_cast<TrainingEngine&>(*this),
                                         loader_source(std::move(loader)), settings);

  if (run_.resumed()) {
    const auto& c = *run_.resumed();
    io::load_state_dict(*model_->encoder, c.model);
    io::TensorMap model_rest;  // the logit scale
    for (const auto& [name, tensor] : c.trainer) {
      if (name.rfind("model.", 0) == 0) model_rest[name.substr(6)] = tensor;
    }
    io::LoadOptions rest_options;
    rest_options.ignore_missing = {"encoder."};
    io::load_state_dict(*model_, model_rest, rest_options);
    optim::load_adamw_state(*optimizer_, groups_, c.trainer);
    // The monitor's figures so far; a checkpoint written before the history was kept has the
    // first figure alone.
    if (const auto it = c.trainer.find("monitor.knn_history"); it != c.trainer.end()) {
      const auto h = it->second.to(torch::kFloat64).contiguous();
      knn_history_.assign(h.data_ptr<double>(), h.data_ptr<double>() + h.numel());
    } else if (const auto start = c.trainer.find("monitor.knn_start"); start != c.trainer.end()) {
      knn_history_ = {start->second.item<double>()};
    }
  }
  run_.resume_position(
      [](const io::Config& c) {
        return StepLayout{1, c.train.batch_size, c.optim.accum_iter};
      },
      {run_.world_size(), t.batch_size, o.accum_iter}, loop_->steps_per_epoch(), derived_.lr);
  // Parameters are broadcast from rank 0 (the same initialisation or checkpoint everywhere,
  // made certain); gradients become views into the all-reduce buckets.
  loop_->connect_gradients();
  log_setup();
}

Pretrainer::~Pretrainer() = default;

void Pretrainer::log_setup() const {
  const auto& t = config_.train;
  const auto& o = config_.optim;
  const auto& m = config_.model;
  auto& log = run_.log();
  const int64_t world = run_.world_size();
  run_.log_startup();
  log.info("model: {} {}x{}/{} D{} depth {} heads {}; {}", m.arch, m.img_size, m.img_size,
           derived_.patch_size, derived_.embed_dim, derived_.depth, derived_.num_heads,
           RunContext::parameter_counts(*model_));
  const bool global = world > 1 && config_.loss.negatives == "global";
  log.info(
      "OCL: mask ratio {} → {} + {} of {} patches per image, κ {}, T {} ({}), negatives: {} per "
      "positive ({})",
      config_.mask.ratio, derived_.tokens_per_group, derived_.tokens_per_group,
      derived_.num_patches, config_.loss.kappa, config_.loss.temperature,
      config_.loss.learnable_temperature ? "learnable" : "fixed",
      (global ? world : 1) * t.batch_size - 1,
      world == 1 ? "one process"
                 : (global ? "global: gathered from all " + std::to_string(world) + " processes"
                           : "local: this process's batch only"));
  log.info(
      "data: {}; {} steps per epoch of batch {} × accum {} × {} processes = effective batch {}",
      train_set_->describe(), loop_->steps_per_epoch(), t.batch_size, o.accum_iter, world,
      derived_.effective_batch);
  log.info(
      "optim: AdamW β ({}, {}), wd {}, lr {:.3g} (blr {:.3g} × {}/256{}), warmup {} epochs, min lr "
      "{:.3g}",
      o.beta1, o.beta2, o.weight_decay, derived_.lr, o.blr, derived_.effective_batch,
      o.lr > 0 ? "; overridden by optim.lr" : "", o.warmup_epochs, o.min_lr);
  log.info("optim: AdamW step {} (optim.fused: {})",
           fused_adamw_ ? "fused (at::_fused_adamw_, one kernel per group)"
                        : "per parameter (torch::optim::AdamW)",
           o.fused);
  // What each copy of the crop draws: data.photometric's preset, the illumination gradient and
  // the pixel noise.
  const auto& d = config_.data;
  const bool augmented = d.photometric != "none" || d.illumination > 0 || d.noise > 0 || d.blur > 0;
  const std::string drawn = fmt::format(
      "photometric '{}'{}{}{}", d.photometric,
      d.illumination > 0 ? fmt::format(", illumination {}", d.illumination) : std::string(),
      d.noise > 0 ? fmt::format(", noise {}", d.noise) : std::string(),
      d.blur > 0 ? fmt::format(", blur {}", d.blur) : std::string());
  if (config_.mask.group_views == "shared" && augmented) {
    // One colour draw per image is a colour signature both groups see: a cue of its own.
    log.warn(
        "{} with mask.group_views shared: one colour draw per image, seen by both token groups, "
        "adds a per-image colour cue instead of removing one (docs/shortcuts.md); "
        "mask.group_views=independent draws it for each group",
        drawn);
  }
  if (config_.mask.group_views == "independent") {
    if (!augmented) {
      log.warn(
          "mask.group_views independent with data.photometric none: both groups would read the "
          "same pixels, so the groups share one image (set data.photometric, data.illumination, "
          "data.noise or data.blur)");
    } else {
      log.info(
          "views: each group reads its own copy of the crop, {} drawn apart (one more patch "
          "embedding per step)",
          drawn);
    }
  }
  log.info("output: {}", t.output_dir);
}

std::vector<Figure> Pretrainer::figures() const {
  return {{"accuracy", "acc", 3}, {"temperature", "T", 4}, {"pos_cos", "", 4}, {"neg_cos", "", 4}};
}

void Pretrainer::set_lr(double lr) { optim::set_learning_rate(*optimizer_, groups_, lr); }

MicroStep Pretrainer::forward(const data::Batch& batch, const StepContext& at) {
  auto images = data::normalize_images(batch.images, run_.device());
  // Independent group views: group B's copy of the crops.
  torch::Tensor images_b;
  if (batch.second_view.defined())
    images_b = data::normalize_images(batch.second_view, run_.device());
  auto noise = step_mask_noise(at.seed, at.global_step, at.micro, images.size(0),
                               derived_.num_patches, at.rank, at.world_size)
                   .to(run_.device());
  // Drop path draws from the global generator: seeded per micro-step and rank, for exact resumes.
  torch::manual_seed(data::sample_seed(at.seed ^ kDropPathStream, at.global_step, at.slot()));
  ssl::OCLOutput out;
  {
    compat::AutocastGuard autocast(run_.device().type(), run_.bf16());
    out = model_->forward(images, noise, gather_, images_b);
  }
  const auto& f = out.figures;
  return {out.loss, {f.accuracy, f.temperature, f.pos_cos, f.neg_cos}};
}

void Pretrainer::update() { optim::adamw_step(*optimizer_, fused_adamw_); }
void Pretrainer::update_or_skip(const optim::DeviceSkip& skip) {
  optim::adamw_step(*optimizer_, skip);
}
void Pretrainer::forget_skipped_update() { optim::uncount_adamw_step(*optimizer_); }

EpochReport Pretrainer::end_of_epoch(const io::TrainingState& state) {
  const int64_t every = config_.eval.knn_every;
  if (every <= 0 || (state.epoch % every != 0 && state.epoch != config_.train.epochs)) return {};
  knn_top1_ = run_knn_monitor();
  knn_history_.push_back(knn_top1_);
  const double accuracy = loop_->epoch_figure("accuracy");
  EpochReport report{fmt::format(", kNN top-1 {:.2f} %", knn_top1_), {{"knn_top1", knn_top1_}}};
  // The shortcut alarm: both figures go to metrics.jsonl whether it fires or not, so the plot
  // shows the gap opening.
  const std::string warning = shortcut_warning(config_.eval, accuracy, knn_history_);
  const double knn_start = knn_history_.size() > 1 ? knn_history_.front() : -1.0;
  const double knn_before =
      knn_history_.size() > 1 ? knn_figure_back(knn_history_, config_.eval.shortcut_window) : -1.0;
  if (run_.records() && config_.eval.shortcut_alarm)
    run_.record("shortcut", {{"epoch", static_cast<double>(state.epoch)},
                             {"global_step", static_cast<double>(state.global_step)},
                             {"accuracy", accuracy},
                             {"knn_top1", knn_top1_},
                             {"knn_start", knn_start},
                             {"knn_before", knn_before},
                             {"alarm", warning.empty() ? 0.0 : 1.0}});
  if (!warning.empty()) {
    run_.log().warn("{}", warning);
    ++shortcut_alarms_;
    report.fields.emplace_back("shortcut_alarm", 1.0);
  }
  return report;
}

CheckpointTensors Pretrainer::checkpoint_tensors() {
  CheckpointTensors c;
  c.model = io::state_dict(*model_->encoder);
  c.model_metadata = nn::encoder_metadata(model_->encoder->options);
  c.trainer = optim::adamw_state(*optimizer_, groups_);
  for (const auto& [name, tensor] : io::state_dict(*model_)) {
    if (name.rfind("encoder.", 0) != 0) c.trainer["model." + name] = tensor;
  }
  // The alarm's figures survive a resume (knn_start as well, for a binary that reads only it).
  if (!knn_history_.empty()) {
    c.trainer["monitor.knn_history"] =
        torch::tensor(knn_history_, torch::dtype(torch::kFloat64)).clone();
    c.trainer["monitor.knn_start"] = torch::tensor(knn_history_.front(), torch::kFloat64);
  }
  return c;
}

double Pretrainer::run_knn_monitor() {
  const auto& e = config_.eval;
  const int img = static_cast<int>(config_.model.img_size);
  // Built on first use and kept: the same images every time, so the curve is comparable.
  if (!knn_bank_) {
    knn_bank_ = data::make_dataset(data_config_, img, /*train=*/true, config_.train.seed);
    knn_held_out_ = data::make_dataset(data_config_, img, /*train=*/false, config_.train.seed);
    data::require_same_classes(*knn_bank_, *knn_held_out_);
    knn_transform_ = data::make_transform(data_config_, img, /*train=*/false);
  }
  const auto& bank = knn_bank_;
  const auto& held_out = knn_held_out_;
  const auto& transform = knn_transform_;
  const auto t0 = Clock::now();
  // Every rank extracts and classifies its share; the figures are the whole sets'.
  auto train_f =
      extract_features(model_->encoder, *bank, *transform, run_.device(), config_.train.batch_size,
                       e.knn_train_size, config_.data.workers, run_.bf16(), run_.comm());
  auto val_f = extract_features(model_->encoder, *held_out, *transform, run_.device(),
                                config_.train.batch_size, e.knn_val_size, config_.data.workers,
                                run_.bf16(), run_.comm());
  KnnOptions ko;
  ko.ks = {e.knn_k};
  ko.temperature = e.knn_t;
  ko.device = run_.device();
  auto r = knn_evaluate(train_f, val_f, bank->num_classes(), ko, run_.comm()).front();
  run_.log().info(
      "kNN monitor (k {}, T {}, {} train / {} held-out images): top-1 {:.2f} %, top-5 {:.2f} % "
      "({:.1f} s)",
      r.k, e.knn_t, train_f.labels.size(0), val_f.labels.size(0), r.top1, r.top5,
      seconds_since(t0));
  if (run_.records())
    run_.record("knn", {{"epoch", static_cast<double>(run_.state().epoch)},
                        {"global_step", static_cast<double>(run_.state().global_step)},
                        {"knn_top1", r.top1},
                        {"knn_top5", r.top5},
                        {"knn_k", static_cast<double>(r.k)}});
  return r.top1;
}

PretrainResult Pretrainer::run() {
  PretrainResult result;
  // The kNN figure of the encoder at initialisation: the baseline the curve must rise above.
  if (config_.eval.knn_every > 0 && run_.state().global_step == 0) {
    knn_top1_ = run_knn_monitor();
    knn_history_ = {knn_top1_};
  }
  const auto start = Clock::now();
  auto r = loop_->run();
  result.state = run_.state();
  result.interrupted = r.interrupted;
  result.last_checkpoint = r.last_checkpoint;
  result.step_losses = std::move(r.step_losses);
  result.knn_top1 = knn_top1_;
  result.shortcut_alarms = shortcut_alarms_;
  if (!r.interrupted && !result.step_losses.empty()) {
    run_.log().info(
        "done: {} epochs, {} steps in {}; encoder weights (timm names): {}/encoder.safetensors",
        config_.train.epochs, run_.state().global_step, io::format_duration(seconds_since(start)),
        r.last_checkpoint);
  }
  return result;
}

}  // namespace ocl::engine
