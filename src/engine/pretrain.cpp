// The pre-training loop (see include/ocl/engine/pretrain.h). One optimiser step = accum_iter
// loader batches, each: normalise on the device → OCL forward (bf16 autocast when asked) →
// loss / accum_iter backward; then gradient norm (clip), non-finite check, lr, AdamW step.
#include "ocl/engine/pretrain.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <ATen/CPUGeneratorImpl.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/data/factory.h"
#include "ocl/dist/all_gather.h"
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
constexpr uint64_t kMaskStream = 0x6d61736b00000000ULL;    // "mask"
constexpr uint64_t kDropPathStream = 0x64706174680000ULL;  // "dpath"

}  // namespace

ssl::OCL build_ocl_model(const io::Config& config, const io::DerivedConfig& derived) {
  torch::manual_seed(config.train.seed);
  return ssl::OCL(encoder_options(config, derived),
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

ssl::FeatureGather global_negatives(dist::Communicator& comm) {
  dist::Communicator* c = &comm;
  return [c](const torch::Tensor& a, const torch::Tensor& b) {
    // One collective for both groups: [2B, D] per rank → [W, 2B, D].
    const int64_t n = a.size(0);
    auto all = dist::all_gather_with_grad(*c, torch::cat({a, b}, 0))
                   .view({c->world_size(), 2 * n, a.size(1)});
    ssl::GatheredFeatures g;
    g.a_all = all.narrow(1, 0, n).reshape({-1, a.size(1)});
    g.b_all = all.narrow(1, n, n).reshape({-1, a.size(1)});
    g.offset = c->rank() * n;
    return g;
  };
}

// Figures of one optimiser step (means over its micro-batches) and its timing.
struct Pretrainer::StepStats {
  double loss = 0, accuracy = 0, pos_cos = 0, neg_cos = 0, temperature = 0, grad_norm = 0;
  double lr = 0;
  double data_wait_s = 0;  // time spent waiting for the loader
  int64_t images = 0;
  bool skipped = false;  // non-finite, skipped (on_nonfinite: skip)
  bool stop = false;     // a stop was requested on some rank: every rank stops after this step
};

Pretrainer::Pretrainer(io::Config config, PretrainOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  io::validate(config_);
  rank_ = options_.launch.rank;
  world_size_ = options_.launch.world_size;
  derived_ = io::derive(config_, world_size_);
  config_yaml_ = io::to_yaml_with_derived(config_, derived_);
  const auto& t = config_.train;
  const std::string out = t.output_dir;

  // --- output folder: never silently mix two runs. Every rank reads it (the folder must be on
  // a file system all nodes share, as for any resumable multi-node run); only rank 0 writes.
  if (is_writer()) io::make_dirs(out);
  const std::string config_path = out + "/config.yaml";
  const std::string previous = latest_checkpoint(out);
  std::string resume_from;
  if (options_.resume == "auto") {
    resume_from = previous;
  } else if (!options_.resume.empty()) {
    resume_from = options_.resume;
  }
  if (options_.resume.empty()) {
    // Rank 0 alone decides: the others could read the config.yaml it has just written.
    if (is_writer() && io::path_exists(config_path) && !options_.overwrite) {
      std::string why;
      try {
        const auto existing = io::parse_config(io::read_text_file(config_path), {}, config_path);
        why = io::config_difference(existing, config_);
      } catch (const std::exception& e) {
        why = std::string("its config cannot be read (") + e.what() + ")";
      }
      if (!why.empty() || !previous.empty()) {
        throw std::runtime_error(
            "output folder '" + out + "' already holds " +
            (why.empty() ? "a run with checkpoints (" + previous + ")"
                         : "a different run (" + why + ")") +
            ": pass --resume auto to continue it, --overwrite to start again there, or choose "
            "another train.output_dir");
      }
    }
    if (options_.overwrite && is_writer()) {
      // The old run's checkpoints would outrank the new run's in pruning and checkpoint-last.
      remove_checkpoints(out);
      std::remove((out + "/metrics.jsonl").c_str());
    }
  }

  // --- logging
  console_ = options_.console ? options_.console
                              : std::make_shared<ConsoleSink>(
                                    stdout, is_writer() && want_status_line(config_.log.progress));
  logger_ = rank_logger(console_, out + "/train.log", config_, rank_);
  if (is_writer()) io::write_text_atomic(config_path, config_yaml_);

  // --- device, precision, threads
  device_ = resolve_device(t.device, options_.launch);
  bf16_ = use_bf16(config_, device_);
  tf32_ = set_tf32(config_, device_);
  set_process_threads(config_, options_.launch);

  // --- model (initialised from the seed: the same config gives the same start)
  const auto& m = config_.model;
  model_ = build_ocl_model(config_, derived_);
  model_->to(device_);
  model_->train();

  // --- the other processes: rendezvous now, before the slow data set up, so that a missing
  // rank is reported early.
  comm_ = connect_ranks(config_, options_.launch, device_, *logger_);
  if (comm_ && config_.loss.negatives == "global") gather_ = global_negatives(*comm_);

  // --- optimiser
  const auto& o = config_.optim;
  groups_ = optim::weight_decay_groups(*model_, o.weight_decay);
  for (const auto& g : groups_)
    trainable_.insert(trainable_.end(), g.params.begin(), g.params.end());
  optimizer_ = optim::make_adamw(groups_, {derived_.lr, o.beta1, o.beta2, o.eps});
  fused_adamw_ = optim::resolve_fused_adamw(o.fused, device_);
  schedule_ = {derived_.lr, o.min_lr, o.warmup_epochs, static_cast<double>(t.epochs)};

  // --- data (run_data_config: a read-only data set keeps its file-list cache in the run's folder)
  data_config_ = run_data_config(config_.data, out);
  train_set_ =
      data::make_dataset(data_config_, static_cast<int>(m.img_size), /*train=*/true, t.seed);
  const auto lo = training_loader_options(config_, t.batch_size, o.accum_iter, options_.launch,
                                          device_, logger_);
  loader_ = std::make_unique<data::Loader>(
      train_set_, data::make_transform(data_config_, static_cast<int>(m.img_size), true), lo);
  steps_per_epoch_ = loader_->steps_per_epoch() / o.accum_iter;
  if (steps_per_epoch_ < 1) {
    throw std::runtime_error("the training set (" + std::to_string(train_set_->size()) +
                             " images) does not fill one " + "optimiser step of train.batch_size " +
                             std::to_string(t.batch_size) + " × optim.accum_iter " +
                             std::to_string(o.accum_iter) + ": lower them or use more data");
  }

  // --- resume
  state_.seed = t.seed;
  int64_t keep_metrics_through = -1;
  if (!resume_from.empty()) {
    Checkpoint c = load_checkpoint(resume_from);
    io::Config saved;
    bool saved_readable = false;
    try {
      saved = io::parse_config(c.config_yaml, {}, c.path + "/config.yaml");
      saved_readable = true;
      const std::string diff = io::config_difference(saved, config_);
      if (!diff.empty())
        logger_->warn("resuming with a config that differs from the checkpoint's: {}", diff);
    } catch (const std::exception& e) {
      logger_->warn("the checkpoint's config cannot be read ({}); using the given config",
                    e.what());
    }
    io::load_state_dict(*model_->encoder, c.encoder);
    io::TensorMap model_rest;
    for (const auto& [name, tensor] : c.trainer) {
      if (name.rfind("model.", 0) == 0) model_rest[name.substr(6)] = tensor;
    }
    io::LoadOptions rest_options;
    rest_options.ignore_missing = {"encoder."};
    io::load_state_dict(*model_, model_rest, rest_options);
    load_adamw_state(*optimizer_, groups_, c.trainer);
    state_ = c.state;
    StepLayout saved_layout{state_.world_size, t.batch_size, o.accum_iter};
    if (saved_readable) {
      saved_layout.batch_size = saved.train.batch_size;
      saved_layout.accum_iter = saved.optim.accum_iter;
    }
    state_.step_in_epoch =
        resume_step_in_epoch(state_.epoch, state_.step_in_epoch, saved_layout,
                             {world_size_, t.batch_size, o.accum_iter}, derived_.lr, *logger_);
    if (state_.seed != t.seed) {
      logger_->warn(
          "train.seed is {} but the checkpoint was trained with seed {}: continuing with {}",
          t.seed, state_.seed, state_.seed);
    }
    if (state_.step_in_epoch >= steps_per_epoch_) {  // the epoch got shorter in the new config
      state_.epoch += 1;
      state_.step_in_epoch = 0;
    }
    last_checkpoint_ = c.path;
    keep_metrics_through = state_.global_step;
    logger_->info("resumed from {}: epoch {}, step {} of the epoch, global step {}", c.path,
                  state_.epoch, state_.step_in_epoch, state_.global_step);
  } else if (options_.resume == "auto") {
    logger_->info("--resume auto: no checkpoint in {}, starting fresh", out);
  }
  state_.world_size = world_size_;
  // A fresh run starts a new metrics file; a resumed one keeps the records up to its step.
  if (is_writer()) {
    if (resume_from.empty()) std::remove((out + "/metrics.jsonl").c_str());
    metrics_ = std::make_unique<MetricsLog>(out + "/metrics.jsonl", keep_metrics_through);
  }

  if (comm_) {
    // Every rank must continue from the same point: they read the same folder, but a node
    // whose view of it differs (not a shared file system) would silently diverge.
    auto where =
        torch::tensor({state_.epoch, state_.step_in_epoch, state_.global_step}, torch::kInt64);
    auto all = comm_->all_gather(where, dist::Group::kLoss, "resume position").view({-1, 3});
    for (int64_t r = 1; r < world_size_; ++r) {
      if (!torch::equal(all[r], all[0])) {
        std::ostringstream msg;
        msg << "ranks disagree on where to resume: rank 0 is at (epoch, step, global step) "
            << all[0] << " and rank " << r << " at " << all[r]
            << "; every rank must see the same output folder (a shared file system) and the "
               "same --resume argument";
        throw std::runtime_error(msg.str());
      }
    }
    // Parameters are broadcast from rank 0 (the same initialisation or checkpoint everywhere,
    // made certain); gradients become views into the all-reduce buckets.
    grad_sync_ = make_grad_sync(*comm_, trainable_, config_, *logger_);
  }

  int64_t trainable_count = 0, frozen_count = 0;
  for (const auto& p : model_->parameters())
    (p.requires_grad() ? trainable_count : frozen_count) += p.numel();
  logger_->info("ocl_pretrain: LibTorch {}, device {}, {}{}, {} threads", compat::torch_version(),
                device_.str(), bf16_ ? "bf16 autocast" : "fp32",
                device_.is_cuda() ? (tf32_ ? " (TF32 on for fp32 matmuls)" : " (TF32 off)") : "",
                torch::get_num_threads());
  logger_->info(
      "model: {} {}x{}/{} D{} depth {} heads {}; {:.2f} M trainable, {:.2f} M frozen parameters",
      m.arch, m.img_size, m.img_size, derived_.patch_size, derived_.embed_dim, derived_.depth,
      derived_.num_heads, trainable_count / 1e6, frozen_count / 1e6);
  const bool global = world_size_ > 1 && config_.loss.negatives == "global";
  logger_->info(
      "OCL: mask ratio {} → {} + {} of {} patches per image, κ {}, T {} ({}), negatives: {} per "
      "positive ({})",
      config_.mask.ratio, derived_.tokens_per_group, derived_.tokens_per_group,
      derived_.num_patches, config_.loss.kappa, config_.loss.temperature,
      config_.loss.learnable_temperature ? "learnable" : "fixed",
      (global ? world_size_ : 1) * t.batch_size - 1,
      world_size_ == 1
          ? "one process"
          : (global ? "global: gathered from all " + std::to_string(world_size_) + " processes"
                    : "local: this process's batch only"));
  logger_->info(
      "data: {}; {} steps per epoch of batch {} × accum {} × {} processes = effective batch {}",
      train_set_->describe(), steps_per_epoch_, t.batch_size, o.accum_iter, world_size_,
      derived_.effective_batch);
  logger_->info(
      "optim: AdamW β ({}, {}), wd {}, lr {:.3g} (blr {:.3g} × {}/256{}), warmup {} epochs, min lr "
      "{:.3g}",
      o.beta1, o.beta2, o.weight_decay, derived_.lr, o.blr, derived_.effective_batch,
      o.lr > 0 ? "; overridden by optim.lr" : "", o.warmup_epochs, o.min_lr);
  logger_->info("optim: AdamW step {} (optim.fused: {}, LibTorch {}, {})",
                fused_adamw_ ? "fused (at::_fused_adamw_, one kernel per group)"
                             : "per parameter (torch::optim::AdamW)",
                o.fused, compat::torch_version(), device_.str());
  logger_->info("output: {}", out);
}

Pretrainer::~Pretrainer() {
  if (console_) console_->clear_status();
}

bool Pretrainer::train_step(StepStats& st) {
  const int64_t accum = config_.optim.accum_iter;
  const double epoch_position = static_cast<double>(state_.epoch) +
                                static_cast<double>(state_.step_in_epoch) / steps_per_epoch_;
  st.lr = schedule_.at(epoch_position);
  optim::set_learning_rate(*optimizer_, groups_, st.lr);
  compat::zero_grad(trainable_);

  torch::Tensor loss_sum, acc_sum, pos_sum, neg_sum, temperature;
  for (int64_t micro = 0; micro < accum; ++micro) {
    const auto wait_start = Clock::now();
    auto batch = loader_->next();
    st.data_wait_s += seconds_since(wait_start);
    if (!batch) throw std::logic_error("the loader ended before the epoch's last step");
    auto images = data::normalize_images(batch->images, device_);
    const int64_t b = images.size(0);
    auto noise = step_mask_noise(state_.seed, state_.global_step, micro, b, derived_.num_patches,
                                 rank_, world_size_)
                     .to(device_);
    // Drop path draws from the global generator: seed it per micro-step (and rank) for exact
    // resumes.
    torch::manual_seed(data::sample_seed(state_.seed ^ kDropPathStream, state_.global_step,
                                         micro * world_size_ + rank_));
    // Accumulating micro-batches communicate nothing; the last one all-reduces the sums
    // (DDP's no_sync), during its backward unless dist.overlap is off.
    if (grad_sync_) grad_sync_->set_sync(micro == accum - 1 && config_.dist.overlap);
    ssl::OCLOutput out;
    {
      compat::AutocastGuard autocast(device_.type(), bf16_);
      out = model_->forward(images, noise, gather_);
    }
    (out.loss / static_cast<double>(accum)).backward();
    const auto& f = out.figures;
    auto l = out.loss.detach();
    loss_sum = micro == 0 ? l : loss_sum + l;
    acc_sum = micro == 0 ? f.accuracy : acc_sum + f.accuracy;
    pos_sum = micro == 0 ? f.pos_cos : pos_sum + f.pos_cos;
    neg_sum = micro == 0 ? f.neg_cos : neg_sum + f.neg_cos;
    temperature = f.temperature;
    st.images += b * world_size_;  // the whole step's images, for img/s
  }
  if (grad_sync_) {
    grad_sync_->set_sync(true);  // without overlap: finish() starts every bucket now
    grad_sync_->finish();        // gradients are now the mean over ranks
  }
  // One host sync per step: the loss (and with it the rest) must be checked before the update.
  auto norm = optim::grad_norm(trainable_);
  if (config_.optim.clip_grad > 0) optim::clip_grads(trainable_, norm, config_.optim.clip_grad);
  const bool stop_here = options_.stop_requested != nullptr && options_.stop_requested->load() != 0;
  auto per_rank = torch::stack(
      {loss_sum.to(torch::kFloat64), acc_sum.to(torch::kFloat64), pos_sum.to(torch::kFloat64),
       neg_sum.to(torch::kFloat64),
       torch::full({}, stop_here ? 1.0 : 0.0, loss_sum.options().dtype(torch::kFloat64))});
  // The figures are means over ranks, and a stop requested on any rank stops every rank after
  // this same step (signals reach the ranks of a job at slightly different moments).
  if (comm_) comm_->all_reduce_sum(per_rank, dist::Group::kLoss, "step figures");
  auto figures =
      torch::cat(
          {per_rank, torch::stack({temperature.to(torch::kFloat64), norm.to(torch::kFloat64)})})
          .cpu();
  const double* v = figures.data_ptr<double>();
  const double ranks = static_cast<double>(world_size_);
  st.loss = v[0] / accum / ranks;
  st.accuracy = v[1] / accum / ranks;
  st.pos_cos = v[2] / accum / ranks;
  st.neg_cos = v[3] / accum / ranks;
  st.stop = v[4] > 0;
  st.temperature = v[5];
  st.grad_norm = v[6];

  if (!std::isfinite(st.loss) || !std::isfinite(st.grad_norm)) {
    std::ostringstream what;
    what << "non-finite " << (std::isfinite(st.loss) ? "gradient" : "loss") << " at epoch "
         << state_.epoch << ", step " << state_.step_in_epoch << " of " << steps_per_epoch_
         << " (global step " << state_.global_step << "): loss " << st.loss << ", grad norm "
         << st.grad_norm << ", accuracy " << st.accuracy << ", lr " << st.lr << ", temperature "
         << st.temperature
         << "; last good checkpoint: " << (last_checkpoint_.empty() ? "none" : last_checkpoint_);
    if (config_.train.on_nonfinite == "skip" &&
        state_.nonfinite_skips < config_.train.max_nonfinite_skips) {
      state_.nonfinite_skips += 1;
      logger_->warn("{}: step skipped ({} of at most {} skips)", what.str(), state_.nonfinite_skips,
                    config_.train.max_nonfinite_skips);
      compat::zero_grad(trainable_);
      st.skipped = true;
    } else {
      throw std::runtime_error(what.str() + (config_.train.on_nonfinite == "skip"
                                                 ? " (train.max_nonfinite_skips reached)"
                                                 : " (train.on_nonfinite: stop)"));
    }
  }
  if (!st.skipped) {
    if (options_.before_optimizer_step)
      options_.before_optimizer_step(state_.global_step, trainable_);
    optim::adamw_step(*optimizer_, fused_adamw_);
  }
  if (comm_ && config_.dist.verify_every > 0 &&
      (state_.global_step + 1) % config_.dist.verify_every == 0) {
    verify_replicas();
  }
  state_.global_step += 1;
  state_.step_in_epoch += 1;
  return !st.skipped;
}

// A checksum of each parameter's bytes, all-gathered: replicas that drifted apart (a
// non-deterministic kernel, a rank with a different config) are caught, not averaged over.
void Pretrainer::verify_replicas() {
  const auto named = model_->named_parameters();
  std::vector<int64_t> sums;
  for (const auto& item : named) {
    auto bytes = item.value().detach().to(torch::kCPU).contiguous();
    const auto* p = static_cast<const uint8_t*>(bytes.data_ptr());
    const size_t n = static_cast<size_t>(bytes.numel()) * bytes.element_size();
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, 8 bytes at a time
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 0x100000001b3ULL;
    }
    for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
    sums.push_back(static_cast<int64_t>(h));
  }
  auto local = torch::tensor(sums, torch::kInt64).to(device_);
  auto all = comm_->all_gather(local, dist::Group::kLoss, "parameter checksums")
                 .view({world_size_, -1})
                 .cpu();
  for (int64_t r = 1; r < world_size_; ++r) {
    for (size_t k = 0; k < named.size(); ++k) {
      if (all[r][static_cast<int64_t>(k)].item<int64_t>() !=
          all[0][static_cast<int64_t>(k)].item<int64_t>()) {
        throw std::runtime_error("the ranks' parameters diverged after global step " +
                                 std::to_string(state_.global_step + 1) + ": '" + named[k].key() +
                                 "' on rank " + std::to_string(r) +
                                 " differs from rank 0's (dist.verify_every " +
                                 std::to_string(config_.dist.verify_every) +
                                 "); check that every rank runs the same config and binary");
      }
    }
  }
  verified_step_ = state_.global_step + 1;
}

std::string Pretrainer::write_checkpoint() {
  if (!is_writer()) return "";  // rank 0 writes for all: the ranks' weights are identical
  io::TensorMap encoder;
  for (const auto& [name, tensor] : io::state_dict(*model_->encoder)) {
    encoder[name] = tensor.to(torch::kCPU, torch::kFloat32);
  }
  io::TensorMap trainer = adamw_state(*optimizer_, groups_);
  for (const auto& [name, tensor] : io::state_dict(*model_)) {
    if (name.rfind("encoder.", 0) != 0) trainer["model." + name] = tensor.to(torch::kCPU);
  }
  last_checkpoint_ = save_checkpoint(config_.train.output_dir, state_, encoder, trainer,
                                     config_yaml_, config_.train.keep_last);
  logger_->info("checkpoint written: {}", last_checkpoint_);
  return last_checkpoint_;
}

double Pretrainer::run_knn_monitor() {
  const auto& e = config_.eval;
  const int img = static_cast<int>(config_.model.img_size);
  // Built on first use and kept: the same images every time, so the curve is comparable.
  if (!knn_bank_) {
    knn_bank_ = data::make_dataset(data_config_, img, /*train=*/true, config_.train.seed);
    knn_held_out_ = data::make_dataset(data_config_, img, /*train=*/false, config_.train.seed);
    knn_transform_ = data::make_transform(data_config_, img, /*train=*/false);
  }
  const auto& bank = knn_bank_;
  const auto& held_out = knn_held_out_;
  const auto& transform = knn_transform_;
  const auto t0 = Clock::now();
  // Every rank extracts and classifies its share; the figures are the whole sets'.
  auto train_f =
      extract_features(model_->encoder, *bank, *transform, device_, config_.train.batch_size,
                       e.knn_train_size, config_.data.workers, bf16_, comm_.get());
  auto val_f =
      extract_features(model_->encoder, *held_out, *transform, device_, config_.train.batch_size,
                       e.knn_val_size, config_.data.workers, bf16_, comm_.get());
  KnnOptions ko;
  ko.ks = {e.knn_k};
  ko.temperature = e.knn_t;
  ko.device = device_;
  auto r = knn_evaluate(train_f, val_f, bank->num_classes(), ko, comm_.get()).front();
  logger_->info(
      "kNN monitor (k {}, T {}, {} train / {} held-out images): top-1 {:.2f} %, top-5 {:.2f} % "
      "({:.1f} s)",
      r.k, e.knn_t, train_f.labels.size(0), val_f.labels.size(0), r.top1, r.top5,
      seconds_since(t0));
  if (metrics_)
    metrics_->write("knn", {{"epoch", static_cast<double>(state_.epoch)},
                            {"global_step", static_cast<double>(state_.global_step)},
                            {"knn_top1", r.top1},
                            {"knn_top5", r.top5},
                            {"knn_k", static_cast<double>(r.k)}});
  return r.top1;
}

PretrainResult Pretrainer::run() {
  PretrainResult result;
  const auto& t = config_.train;
  const int64_t total_steps = t.epochs * steps_per_epoch_;
  if (state_.epoch >= t.epochs) {
    logger_->info("nothing to do: all {} epochs are done (checkpoint {})", t.epochs,
                  last_checkpoint_);
    result.state = state_;
    result.last_checkpoint = last_checkpoint_;
    return result;
  }
  auto stop_after_steps = [&] {
    return options_.stop_after_steps > 0 && state_.global_step >= options_.stop_after_steps;
  };
  // The kNN figure of the encoder at initialisation: the baseline the curve must rise above.
  if (config_.eval.knn_every > 0 && state_.global_step == 0) result.knn_top1 = run_knn_monitor();
  const auto run_start = Clock::now();
  const int64_t run_start_step = state_.global_step;

  while (state_.epoch < t.epochs) {
    loader_->start_epoch(state_.epoch, state_.step_in_epoch * config_.optim.accum_iter);
    const auto epoch_start = Clock::now();
    double epoch_loss = 0, epoch_acc = 0;
    int64_t epoch_steps = 0;
    // Log-interval accumulators.
    double win_loss = 0, win_acc = 0, win_wait = 0;
    int64_t win_steps = 0, win_images = 0;
    auto win_start = Clock::now();

    while (state_.step_in_epoch < steps_per_epoch_) {
      StepStats st;
      const bool applied = train_step(st);
      result.step_losses.push_back(st.loss);
      if (applied) {
        epoch_loss += st.loss;
        epoch_acc += st.accuracy;
        epoch_steps += 1;
        win_loss += st.loss;
        win_acc += st.accuracy;
        win_steps += 1;
      }
      win_wait += st.data_wait_s;
      win_images += st.images;

      const double elapsed = seconds_since(run_start);
      const int64_t done_here = state_.global_step - run_start_step;
      const double eta = elapsed / std::max<int64_t>(done_here, 1) *
                         static_cast<double>(total_steps - state_.global_step);
      const bool last_of_epoch = state_.step_in_epoch == steps_per_epoch_;
      if (state_.global_step % config_.log.every == 0 || last_of_epoch) {
        const double win_time = seconds_since(win_start);
        const double img_s = win_images / std::max(win_time, 1e-9);
        const double wait_share = win_wait / std::max(win_time, 1e-9);
        const double mean_loss = win_steps ? win_loss / win_steps : NAN;
        const double mean_acc = win_steps ? win_acc / win_steps : NAN;
        logger_->info(
            "epoch {}/{} step {}/{}  loss {:.4f}  acc {:.3f}  lr {:.3e}  T {:.4f}  grad {:.3f}  "
            "{:.0f} img/s  data {:.0f}%  ETA {}",
            state_.epoch + 1, t.epochs, state_.step_in_epoch, steps_per_epoch_, mean_loss, mean_acc,
            st.lr, st.temperature, st.grad_norm, img_s, 100 * wait_share, format_duration(eta));
        if (metrics_)
          metrics_->write(
              "step", {{"epoch", static_cast<double>(state_.epoch) +
                                     static_cast<double>(state_.step_in_epoch) / steps_per_epoch_},
                       {"global_step", static_cast<double>(state_.global_step)},
                       {"loss", mean_loss},
                       {"accuracy", mean_acc},
                       {"pos_cos", st.pos_cos},
                       {"neg_cos", st.neg_cos},
                       {"lr", st.lr},
                       {"temperature", st.temperature},
                       {"grad_norm", st.grad_norm},
                       {"img_per_s", img_s},
                       {"data_wait", wait_share},
                       {"elapsed_s", elapsed}});
        win_loss = win_acc = win_wait = 0;
        win_steps = win_images = 0;
        win_start = Clock::now();
      }
      if (console_->has_status_line()) {
        const double share = static_cast<double>(state_.step_in_epoch) / steps_per_epoch_;
        const int width = 20;
        const int filled = static_cast<int>(share * width);
        char line[256];
        std::snprintf(
            line, sizeof(line), "[%s%s] epoch %lld/%lld step %lld/%lld  loss %.4f  lr %.2e  ETA %s",
            std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
            static_cast<long long>(state_.epoch + 1), static_cast<long long>(t.epochs),
            static_cast<long long>(state_.step_in_epoch), static_cast<long long>(steps_per_epoch_),
            st.loss, st.lr, format_duration(eta).c_str());
        console_->set_status(line);
      }
      if ((st.stop || stop_after_steps()) && !(last_of_epoch && state_.epoch + 1 == t.epochs)) {
        if (last_of_epoch) {
          state_.epoch += 1;
          state_.step_in_epoch = 0;
        }
        console_->clear_status();
        logger_->warn("stop requested: writing a checkpoint at global step {}", state_.global_step);
        result.last_checkpoint = write_checkpoint();
        result.interrupted = true;
        result.state = state_;
        logger_->warn("stopped at epoch {}, step {}; continue with --resume auto (or --resume {})",
                      state_.epoch, state_.step_in_epoch, result.last_checkpoint);
        return result;
      }
    }

    // --- end of epoch
    state_.epoch += 1;
    state_.step_in_epoch = 0;
    const double epoch_time = seconds_since(epoch_start);
    console_->clear_status();
    logger_->info("epoch {}/{} done in {}: mean loss {:.4f}, mean accuracy {:.3f}{}", state_.epoch,
                  t.epochs, format_duration(epoch_time),
                  epoch_steps ? epoch_loss / epoch_steps : NAN,
                  epoch_steps ? epoch_acc / epoch_steps : NAN,
                  loader_->bad_samples()
                      ? ", unreadable images so far: " + std::to_string(loader_->bad_samples())
                      : std::string());
    if (metrics_)
      metrics_->write("epoch", {{"epoch", static_cast<double>(state_.epoch)},
                                {"global_step", static_cast<double>(state_.global_step)},
                                {"loss", epoch_steps ? epoch_loss / epoch_steps : NAN},
                                {"accuracy", epoch_steps ? epoch_acc / epoch_steps : NAN},
                                {"lr", schedule_.at(static_cast<double>(state_.epoch))},
                                {"epoch_time_s", epoch_time},
                                {"bad_samples", static_cast<double>(loader_->bad_samples())},
                                {"nonfinite_skips", static_cast<double>(state_.nonfinite_skips)}});
    if (config_.eval.knn_every > 0 &&
        (state_.epoch % config_.eval.knn_every == 0 || state_.epoch == t.epochs)) {
      result.knn_top1 = run_knn_monitor();
    }
    const bool save_now = state_.epoch % t.save_every == 0 || state_.epoch == t.epochs;
    if (save_now) result.last_checkpoint = write_checkpoint();
    // A stop that arrived during the kNN monitor or the checkpoint write.
    const bool signalled =
        options_.stop_requested != nullptr && options_.stop_requested->load() != 0;
    if ((any_rank_stopping(comm_.get(), signalled, device_) || stop_after_steps()) &&
        state_.epoch < t.epochs) {
      if (!save_now) result.last_checkpoint = write_checkpoint();
      result.interrupted = true;
      result.state = state_;
      logger_->warn("stopped after epoch {}; continue with --resume auto", state_.epoch);
      return result;
    }
  }
  if (comm_) {
    comm_->barrier("end of training");
    logger_->info(
        "communication: {} gradient bucket all-reduces ({} buckets per step, {} of the last "
        "step's started during backward){}",
        grad_sync_->buckets_launched(), grad_sync_->num_buckets(),
        grad_sync_->buckets_launched_in_backward(),
        verified_step_ > 0 ? "; parameters identical on all " + std::to_string(world_size_) +
                                 " ranks at step " + std::to_string(verified_step_)
                           : std::string());
  }
  result.state = state_;
  result.last_checkpoint = last_checkpoint_;
  logger_->info(
      "done: {} epochs, {} steps in {}; encoder weights (timm names): {}/encoder.safetensors",
      t.epochs, state_.global_step, format_duration(seconds_since(run_start)), last_checkpoint_);
  return result;
}

}  // namespace ocl::engine
