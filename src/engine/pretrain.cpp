// Pre-training (see include/ocl/engine/pretrain.h).
#include "ocl/engine/pretrain.h"

#include <chrono>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/distributed/all_gather.h"
#include "ocl/io/state_dict.h"
#include "ocl/nn/weights.h"
#include "ocl/optim/adamw_state.h"
#include "ocl/optim/adamw_step.h"

namespace ocl::engine {
namespace {

// Distinct streams of per-step randomness from one seed.
constexpr uint64_t kMaskStream = 0x6d61736b00000000ULL;    // "mask"
constexpr uint64_t kDropPathStream = 0x64706174680000ULL;  // "dpath"

// Global negatives: both groups' CLS outputs of every rank in one differentiable all-gather.
ssl::FeatureGather global_negatives(distributed::Communicator& comm) {
  distributed::Communicator* c = &comm;
  return [c](const torch::Tensor& a, const torch::Tensor& b) {
    // [2B, D] per rank → [W, 2B, D]; this rank's rows start at rank · B.
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

}  // namespace

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
  model_ = build_ocl_model(config_, derived_);
  model_->to(run_.process().device);
  model_->train();
  if (run_.process().comm.get() && config_.loss.negatives == "global")
    gather_ = global_negatives(*run_.process().comm.get());
  groups_ = optim::weight_decay_groups(*model_, o.weight_decay);
  for (const auto& g : groups_)
    trainable_.insert(trainable_.end(), g.params.begin(), g.params.end());
  optimizer_ = optim::make_adamw(groups_, {derived_.lr, o.beta1, o.beta2, o.eps});
  fused_adamw_ = optim::resolve_fused_adamw(o.fused, run_.process().device);

  const int img = static_cast<int>(config_.model.img_size);
  data_config_ = run_data_config(config_.data, t.output_dir);
  // Two copies of each crop when the groups take independent colour draws.
  const int views = config_.mask.group_views == "independent" ? 2 : 1;
  auto transform = data::make_pretrain_transform(data_config_, img, views);
  auto loader_options =
      training_loader_options(config_, t.batch_size, o.accum_iter, run_.process().launch,
                              run_.process().device, run_.process().log);
  std::unique_ptr<BatchSource> source;
  if (data::is_streamed(data_config_)) {
    std::string counted_by;
    auto loader = data::make_streaming_loader(data_config_, transform, loader_options, &counted_by);
    data_description_ = "webdataset streamed: " + std::to_string(loader->samples_per_epoch()) +
                        " samples per epoch (from " + counted_by + ") in shards " +
                        data::redact(data_config_.path) + ", shuffle buffer " +
                        std::to_string(data_config_.shuffle_buffer);
    source = streaming_source(std::move(loader));
  } else {
    train_set_ = data::make_dataset(data_config_, img, /*train=*/true, t.seed);
    check_data(run_.process(), *train_set_, "the training set");
    data_description_ = train_set_->describe();
    source = loader_source(
        std::make_unique<data::Loader>(train_set_, std::move(transform), loader_options));
  }
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
                                         std::move(source), settings);

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
    // The monitor's figures so far (older checkpoints have the first alone).
    if (const auto it = c.trainer.find("monitor.knn_history"); it != c.trainer.end()) {
      const auto h = it->second.to(torch::kFloat64).contiguous();
      knn_history_.assign(h.data_ptr<double>(), h.data_ptr<double>() + h.numel());
    } else if (const auto start = c.trainer.find("monitor.knn_start"); start != c.trainer.end()) {
      knn_history_ = {start->second.item<double>()};
    }
  }
  run_.resume_position(
      [this](const io::Config& c) {
        // A streamed epoch's batches depend on how many workers made them (data/streaming.h).
        if (data::is_streamed(data_config_) && c.data.workers != config_.data.workers) {
          run_.process().log->warn(
              "resuming streamed data with data.workers {} where the checkpoint's run had {}: "
              "the rest of this epoch sees other samples than the uninterrupted run would",
              config_.data.workers, c.data.workers);
        }
        return StepLayout{1, c.train.batch_size, c.optim.accum_iter};
      },
      {run_.process().launch.world_size, t.batch_size, o.accum_iter}, loop_->steps_per_epoch(),
      derived_.lr);
  // Parameters broadcast from rank 0; gradients become views into the all-reduce buckets.
  loop_->connect_gradients();
  log_setup();
}

Pretrainer::~Pretrainer() = default;

void Pretrainer::log_setup() const {
  const auto& t = config_.train;
  const auto& o = config_.optim;
  const auto& m = config_.model;
  auto& log = *run_.process().log;
  const int64_t world = run_.process().launch.world_size;
  log_startup(run_.process(), run_.spec().app);
  log.info("model: {} {}x{}/{} D{} depth {} heads {}; {}", m.arch, m.img_size, m.img_size,
           derived_.patch_size, derived_.embed_dim, derived_.depth, derived_.num_heads,
           parameter_counts(*model_));
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
      data_description_, loop_->steps_per_epoch(), t.batch_size, o.accum_iter, world,
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
  if (run_.process().bf16)
    log.info("precision: bf16 autocast, the residual stream between blocks in {} (model.residual)",
             m.residual == "fp32" ? "fp32" : "bf16");
  advise_on_views(config_, log);
  log.info("output: {}", t.output_dir);
}

std::vector<Figure> Pretrainer::figures() const {
  return {{"accuracy", "acc", 3}, {"temperature", "T", 4}, {"pos_cos", "", 4}, {"neg_cos", "", 4}};
}

void Pretrainer::set_lr(double lr) { optim::set_learning_rate(*optimizer_, groups_, lr); }

// The micro-step's inputs on the device (the images normalised, group B's copy of the crops
// where the groups take independent views, the mask noise); the drop-path generator seeded at
// the step's first micro-batch.
Pretrainer::StepInputs Pretrainer::step_inputs(const data::Batch& batch, const StepContext& at) {
  const auto& device = run_.process().device;
  StepInputs in;
  in.images = data::normalize_images(batch.images, device);
  if (batch.second_view.defined()) in.images_b = data::normalize_images(batch.second_view, device);
  in.noise = step_mask_noise(at.seed, at.global_step, at.micro, batch.images.size(0),
                             derived_.num_patches, at.rank, at.world_size)
                 .to(device);
  // Drop path draws from the global generator: seeded per step and rank, for exact resumes; the
  // later micro-batches draw on from the first's, as they must inside a captured step (its
  // replay takes the generator's state once).
  if (at.micro == 0)
    torch::manual_seed(data::sample_seed(at.seed ^ kDropPathStream, at.global_step, at.rank));
  return in;
}

MicroStep Pretrainer::forward(const data::Batch& batch, const StepContext& at) {
  return compute(step_inputs(batch, at));
}

MicroStep Pretrainer::compute(const StepInputs& in) {
  ssl::OCLOutput out;
  {
    compat::AutocastGuard autocast(run_.process().device.type(), run_.process().bf16);
    out = model_->forward(in.images, in.noise, gather_, in.images_b);
  }
  const auto& f = out.figures;
  return {out.loss, {f.accuracy, f.temperature, f.pos_cos, f.neg_cos}};
}

// The staged micro-batch's inputs: forward()'s, made outside the graph (normalize_images copies
// its constants from the host, and a capture cannot seed the generator), copied into buffers of
// its own that the captured graph reads at fixed addresses.
void Pretrainer::stage(const data::Batch& batch, const StepContext& at) {
  const StepInputs in = step_inputs(batch, at);
  if (staged_.size() <= static_cast<size_t>(at.micro)) staged_.resize(at.micro + 1);
  StepInputs& buffers = staged_[at.micro];
  auto copy_in = [](torch::Tensor& buffer, const torch::Tensor& from) {
    if (!from.defined()) return;
    if (!buffer.defined()) buffer = torch::empty_like(from);
    TORCH_CHECK(buffer.sizes() == from.sizes(), "train.cuda_graph: a batch of shape ", from.sizes(),
                " after ", buffer.sizes(), ": a captured step needs one shape");
    buffer.copy_(from, /*non_blocking=*/true);
  };
  copy_in(buffers.images, in.images);
  copy_in(buffers.images_b, in.images_b);
  copy_in(buffers.noise, in.noise);
  if (capturable_) capturable_->load_lr();
}

MicroStep Pretrainer::forward_staged(int64_t micro) { return compute(staged_.at(micro)); }

void Pretrainer::update_staged(const torch::Tensor& found_inf) {
  if (!capturable_) capturable_ = std::make_unique<optim::CapturableAdamW>(*optimizer_);
  capturable_->step(found_inf);
}

void Pretrainer::update() { optim::adamw_step(*optimizer_, fused_adamw_); }
void Pretrainer::update_or_skip(const optim::DeviceSkip& skip) {
  optim::adamw_step(*optimizer_, skip);
}
void Pretrainer::forget_skipped_update() {
  // A staged step's counts are on the device, which skipped it already.
  if (!capturable_) optim::uncount_adamw_step(*optimizer_);
}

EpochReport Pretrainer::end_of_epoch(const io::TrainingState& state) {
  const int64_t every = config_.eval.knn_every;
  if (every <= 0 || (state.epoch % every != 0 && state.epoch != config_.train.epochs)) return {};
  knn_top1_ = run_knn_monitor();
  knn_history_.push_back(knn_top1_);
  const double accuracy = loop_->epoch_figure("accuracy");
  EpochReport report{fmt::format(", kNN top-1 {:.2f} %", knn_top1_), {{"knn_top1", knn_top1_}}};
  // Both figures are recorded whether the alarm fires or not, so a plot shows the gap opening.
  const std::string warning = shortcut_warning(config_.eval, accuracy, knn_history_);
  const double knn_start = knn_history_.size() > 1 ? knn_history_.front() : -1.0;
  const double knn_before =
      knn_history_.size() > 1 ? knn_figure_back(knn_history_, config_.eval.shortcut_window) : -1.0;
  if (run_.writes() && config_.eval.shortcut_alarm)
    run_.record("shortcut", {{"epoch", static_cast<double>(state.epoch)},
                             {"global_step", static_cast<double>(state.global_step)},
                             {"accuracy", accuracy},
                             {"knn_top1", knn_top1_},
                             {"knn_start", knn_start},
                             {"knn_before", knn_before},
                             {"alarm", warning.empty() ? 0.0 : 1.0}});
  if (!warning.empty()) {
    run_.process().log->warn("{}", warning);
    ++shortcut_alarms_;
    report.fields.emplace_back("shortcut_alarm", 1.0);
  }
  return report;
}

CheckpointTensors Pretrainer::checkpoint_tensors() {
  CheckpointTensors c;
  c.model = io::state_dict(*model_->encoder);
  c.model_metadata = nn::encoder_metadata(model_->encoder->options);
  if (capturable_) capturable_->write_back();
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
  // Opened on first use and kept: the same images every time, so the curve is comparable.
  if (!knn_data_) {
    const int img = static_cast<int>(config_.model.img_size);
    // Streamed training shards: the bank from copies of the first shards that hold it.
    auto bank = train_set_ ? train_set_
                           : data::make_dataset(data_config_, img, /*train=*/true,
                                                config_.train.seed, config_.eval.knn_train_size);
    knn_data_ = std::make_unique<KnnData>(
        open_knn_data(run_.process(), data_config_, img, config_.train.seed, std::move(bank)));
  }
  KnnSettings settings;
  settings.batch = config_.train.batch_size;
  settings.workers = config_.data.workers;
  settings.bank_size = e.knn_train_size;
  settings.held_out_size = e.knn_val_size;
  settings.vote.ks = {e.knn_k};
  settings.vote.temperature = e.knn_t;
  const auto knn = evaluate_knn(model_->encoder, *knn_data_, run_.process(), settings);
  const auto& r = knn.results.front();
  run_.process().log->info(
      "kNN monitor (k {}, T {}, {} train / {} held-out images): top-1 {:.2f} %, top-5 {:.2f} % "
      "({:.1f} s)",
      r.k, e.knn_t, knn.bank.labels.size(0), knn.held_out.labels.size(0), r.top1, r.top5,
      knn.seconds);
  if (run_.writes())
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
  const auto start = std::chrono::steady_clock::now();
  auto r = loop_->run();
  result.state = run_.state();
  result.interrupted = r.interrupted;
  result.last_checkpoint = r.last_checkpoint;
  result.step_losses = std::move(r.step_losses);
  result.knn_top1 = knn_top1_;
  result.shortcut_alarms = shortcut_alarms_;
  if (!r.interrupted && !result.step_losses.empty()) {
    run_.process().log->info(
        "done: {} epochs, {} steps in {}; encoder weights (timm names): {}/encoder.safetensors",
        config_.train.epochs, run_.state().global_step, io::format_duration(seconds_since(start)),
        r.last_checkpoint);
  }
  return result;
}

}  // namespace ocl::engine
