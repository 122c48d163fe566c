// The training loop of every engine (see include/ocl/engine/loop.h).
#include "ocl/engine/loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/dist/agreement.h"
#include "ocl/optim/adamw_step.h"

namespace ocl::engine {
namespace {

using Clock = std::chrono::steady_clock;

// The trainer-file key of a mid-epoch checkpoint's epoch sums: loss, steps, images, data wait,
// then the engine's figures.
constexpr const char* kEpochSumsKey = "loop.epoch_sums";

class LoaderSource : public BatchSource {
 public:
  explicit LoaderSource(std::unique_ptr<data::Loader> loader) : loader_(std::move(loader)) {}
  int64_t batches_per_epoch() const override { return loader_->steps_per_epoch(); }
  void start_epoch(int64_t epoch, int64_t first_batch) override {
    loader_->start_epoch(epoch, first_batch);
  }
  data::Batch next() override {
    auto batch = loader_->next();
    if (!batch) throw std::logic_error("the loader ended before the epoch's last step");
    return std::move(*batch);
  }
  int64_t bad_samples() const override { return loader_->bad_samples(); }
  int64_t size() const override { return loader_->dataset().size(); }

 private:
  std::unique_ptr<data::Loader> loader_;
};

}  // namespace

bool ValidationRecord::add(int64_t epoch, double top1, double top5) {
  last_top1 = top1;
  last_top5 = top5;
  if (top1 <= best_top1) return false;
  best_top1 = top1;
  best_epoch = epoch;
  return true;
}

void ValidationRecord::save(io::TensorMap& trainer, const std::string& prefix) const {
  trainer[prefix + ".best_top1"] = torch::full({}, best_top1, torch::kFloat64);
  trainer[prefix + ".best_epoch"] = torch::full({}, best_epoch, torch::kInt64);
  trainer[prefix + ".last_top1"] = torch::full({}, last_top1, torch::kFloat64);
  trainer[prefix + ".last_top5"] = torch::full({}, last_top5, torch::kFloat64);
}

void ValidationRecord::load(const io::TensorMap& trainer, const std::string& prefix) {
  auto get = [&](const char* key, auto& value) {
    const auto it = trainer.find(prefix + "." + key);
    if (it != trainer.end()) value = it->second.item<std::decay_t<decltype(value)>>();
  };
  get("best_top1", best_top1);
  get("best_epoch", best_epoch);
  get("last_top1", last_top1);
  get("last_top5", last_top5);
}

ClassifierRunResult classifier_result(const RunContext& run, const ValidationRecord& record) {
  ClassifierRunResult result;
  static_cast<ValidationRecord&>(result) = record;
  result.epochs_done = run.state.epoch;
  result.checkpoint = run.last_checkpoint;
  return result;
}

ClassifierRunResult train_classifier(RunContext& run, TrainingLoop& loop,
                                     const ValidationRecord& record) {
  const auto start = Clock::now();
  const auto trained = loop.run();
  auto result = classifier_result(run, record);
  result.interrupted = trained.interrupted;
  result.nothing_to_do = trained.step_losses.empty() && !trained.interrupted;
  if (!result.interrupted && !result.nothing_to_do) {
    run.logger->info("done: {} epochs in {}; best top-1 {:.2f} % (epoch {}), last top-1 {:.2f} %",
                     run.state.epoch, format_duration(seconds_since(start)), record.best_top1,
                     record.best_epoch, record.last_top1);
  }
  return result;
}

std::unique_ptr<BatchSource> loader_source(std::unique_ptr<data::Loader> loader) {
  return std::make_unique<LoaderSource>(std::move(loader));
}

// The figures of one optimiser step: means over its micro-batches and the ranks.
struct TrainingLoop::Step {
  double loss = 0, grad_norm = 0, lr = 0;
  std::vector<double> figures;
  double data_wait_s = 0;  // this rank's wait for the loader
  int64_t images = 0;      // the whole step's, all ranks
  bool skipped = false;    // non-finite, skipped (train.on_nonfinite: skip)
  bool stop = false;       // a stop was asked on some rank: every rank stops after this step
};

// Sums over the steps of a log window or an epoch (skipped steps count for time and images).
struct TrainingLoop::Window {
  double loss = 0, data_wait_s = 0, lr = 0;
  std::vector<double> figures;
  int64_t steps = 0, images = 0;
  Clock::time_point start = Clock::now();
  void add(const Step& s) {
    if (!s.skipped) {
      loss += s.loss;
      figures.resize(s.figures.size());
      for (size_t i = 0; i < s.figures.size(); ++i) figures[i] += s.figures[i];
      steps += 1;
    }
    data_wait_s += s.data_wait_s;
    images += s.images;
    lr = s.lr;
  }
  double mean(double sum) const { return steps > 0 ? sum / static_cast<double>(steps) : NAN; }
  double figure(size_t i) const { return i < figures.size() ? mean(figures[i]) : NAN; }
};

double TrainingLoop::epoch_figure(const std::string& name) const {
  for (size_t i = 0; i < figures_.size(); ++i) {
    if (figures_[i].name == name) return epoch_sums_->figure(i);
  }
  throw std::invalid_argument("TrainingLoop::epoch_figure: the engine has no figure '" + name +
                              "'");
}

TrainingLoop::TrainingLoop(RunContext& run, TrainingEngine& engine,
                           std::unique_ptr<BatchSource> source, LoopSettings settings)
    : run_(run),
      engine_(engine),
      source_(std::move(source)),
      settings_(std::move(settings)),
      figures_(engine.figures()),
      window_(std::make_unique<Window>()),
      epoch_sums_(std::make_unique<Window>()) {
  steps_per_epoch_ = source_->batches_per_epoch() / settings_.accum_iter;
  // A checkpoint taken mid-epoch keeps the epoch's sums so far: the epoch's means cover all of
  // its steps, those before the stop included.
  if (run_.resumed && run_.resumed->state.step_in_epoch > 0) {
    const auto it = run_.resumed->trainer.find(kEpochSumsKey);
    if (it != run_.resumed->trainer.end() &&
        it->second.numel() == 4 + static_cast<int64_t>(figures_.size()))
      resumed_epoch_sums_ = it->second.to(torch::kFloat64).contiguous();
  }
  if (steps_per_epoch_ < 1) {
    const std::string& s = settings_.section;
    throw std::runtime_error(fmt::format(
        "the training set ({} images) does not fill one optimiser step of {}.batch_size {} × "
        "{}.accum_iter {} × {} processes: lower them or use more data",
        source_->size(), s, settings_.batch_size, s == "train" ? "optim" : s, settings_.accum_iter,
        run_.world_size));
  }
}

TrainingLoop::~TrainingLoop() = default;

void TrainingLoop::connect_gradients() {
  if (run_.comm && !grad_sync_)
    grad_sync_ = make_grad_sync(*run_.comm, engine_.trainable(), run_.config, *run_.logger);
}

TrainingLoop::Step TrainingLoop::train_step() {
  auto& state = run_.state;
  const int64_t accum = settings_.accum_iter;
  const auto& params = engine_.trainable();
  Step st;
  st.lr = settings_.schedule.at(static_cast<double>(state.epoch) +
                                static_cast<double>(state.step_in_epoch) / steps_per_epoch_);
  engine_.set_lr(st.lr);
  compat::zero_grad(params);

  StepContext at{state.seed, state.epoch, state.step_in_epoch, state.global_step,
                 0,          run_.rank,   run_.world_size};
  torch::Tensor sums;  // [loss, figures...] summed over the micro-batches
  for (at.micro = 0; at.micro < accum; ++at.micro) {
    const auto wait_start = Clock::now();
    const data::Batch batch = source_->next();
    st.data_wait_s += seconds_since(wait_start);
    // Accumulating micro-batches communicate nothing; the last one all-reduces the sums (DDP's
    // no_sync), during its backward unless dist.overlap is off.
    if (grad_sync_) grad_sync_->set_sync(at.micro == accum - 1 && run_.config.dist.overlap);
    MicroStep micro = engine_.forward(batch, at);
    (micro.loss / static_cast<double>(accum)).backward();
    std::vector<torch::Tensor> parts = {micro.loss.detach().to(torch::kFloat64).reshape({})};
    for (const auto& f : micro.figures) parts.push_back(f.detach().to(torch::kFloat64).reshape({}));
    auto values = torch::stack(parts);
    sums = at.micro == 0 ? values : sums + values;
    st.images += batch.images.size(0) * run_.world_size;
  }
  if (grad_sync_) {
    grad_sync_->set_sync(true);  // without overlap: finish() starts every bucket now
    grad_sync_->finish();        // gradients are now the mean over ranks
  }
  auto norm = optim::grad_norm(params);
  if (settings_.clip_grad > 0) optim::clip_grads(params, norm, settings_.clip_grad);
  // One all-reduce and one host sync per step: the figures become means over ranks, and a stop
  // asked on any rank stops every rank after this same step (signals reach the ranks of a job
  // at slightly different moments). The loss must be checked before the update anyway.
  auto per_rank =
      torch::cat({sums, torch::full({1}, run_.signalled() ? 1.0 : 0.0, sums.options())});
  if (run_.comm) run_.comm->all_reduce_sum(per_rank, dist::Group::kLoss, "step figures");
  const auto v = torch::cat({per_rank, norm.to(torch::kFloat64).reshape({1})}).cpu();
  const double* p = v.data_ptr<double>();
  const double mean = 1.0 / static_cast<double>(accum * run_.world_size);
  const size_t n = figures_.size();
  st.loss = p[0] * mean;
  for (size_t i = 0; i < n; ++i) st.figures.push_back(p[1 + i] * mean);
  st.stop = p[1 + n] > 0;
  st.grad_norm = p[2 + n];

  if (!std::isfinite(st.loss) || !std::isfinite(st.grad_norm)) {
    std::string what = fmt::format(
        "non-finite {} at epoch {}, step {} of {} (global step {}): loss {}, grad norm {}",
        std::isfinite(st.loss) ? "gradient" : "loss", state.epoch, state.step_in_epoch,
        steps_per_epoch_, state.global_step, st.loss, st.grad_norm);
    for (size_t i = 0; i < n; ++i) what += fmt::format(", {} {}", figures_[i].name, st.figures[i]);
    what += fmt::format(", lr {}; {}last good checkpoint: {}", st.lr,
                        settings_.nonfinite_hint.empty() ? "" : settings_.nonfinite_hint + "; ",
                        run_.last_checkpoint.empty() ? "none" : run_.last_checkpoint);
    const auto& t = run_.config.train;
    if (t.on_nonfinite != "skip" || state.nonfinite_skips >= t.max_nonfinite_skips) {
      throw std::runtime_error(what + (t.on_nonfinite == "skip"
                                           ? " (train.max_nonfinite_skips reached)"
                                           : " (train.on_nonfinite: stop)"));
    }
    state.nonfinite_skips += 1;
    run_.logger->warn("{}: step skipped ({} of at most {} skips)", what, state.nonfinite_skips,
                      t.max_nonfinite_skips);
    compat::zero_grad(params);
    st.skipped = true;
  } else {
    if (run_.options.before_optimizer_step)
      run_.options.before_optimizer_step(state.global_step, params);
    engine_.update();
  }
  const int64_t verify_every = run_.config.dist.verify_every;
  if (run_.comm && verify_every > 0 && (state.global_step + 1) % verify_every == 0)
    verify_replicas();
  state.global_step += 1;
  state.step_in_epoch += 1;
  return st;
}

// A checksum of each parameter's bytes, all-gathered: replicas that drifted apart (a
// non-deterministic kernel, a rank with a different config) are caught, not averaged over.
void TrainingLoop::verify_replicas() {
  const auto named = engine_.trained_module().named_parameters();
  // Fault injection for the test of this check (replicas of one config and build do not drift
  // apart on a CPU): OCL_FAULT_DIVERGE_RANK=r nudges rank r's first parameter once.
  static const char* diverge = std::getenv("OCL_FAULT_DIVERGE_RANK");
  if (diverge != nullptr && std::atoll(diverge) == run_.rank && verified_step_ == 0 &&
      !named.is_empty()) {
    torch::NoGradGuard no_grad;
    named[0].value().add_(1e-3);
  }
  std::vector<torch::Tensor> tensors;
  for (const auto& item : named) tensors.push_back(item.value());
  const int64_t step = run_.state.global_step + 1;
  if (const auto bad = dist::first_replica_difference(*run_.comm, run_.device, tensors)) {
    throw std::runtime_error(fmt::format(
        "the ranks' parameters diverged after global step {}: '{}' on rank {} differs from "
        "rank 0's (dist.verify_every {}); check that every rank runs the same config and binary",
        step, named[static_cast<size_t>(bad->second)].key(), bad->first,
        run_.config.dist.verify_every));
  }
  verified_step_ = step;
}

void TrainingLoop::log_window(const Step& st, double eta) {
  const auto& state = run_.state;
  const Window& w = *window_;
  const double seconds = std::max(seconds_since(w.start), 1e-9);
  const double img_s = static_cast<double>(w.images) / seconds;
  const double wait_share = w.data_wait_s / seconds;
  std::string shown;
  for (size_t i = 0; i < figures_.size(); ++i) {
    if (!figures_[i].label.empty())
      shown += fmt::format("  {} {:.{}f}", figures_[i].label, w.figure(i), figures_[i].decimals);
  }
  run_.logger->info(
      "epoch {}/{} step {}/{}  loss {:.4f}{}  lr {:.3e}  grad {:.3f}  {:.0f} img/s  data {:.0f}%  "
      "ETA {}",
      state.epoch + 1, settings_.epochs, state.step_in_epoch, steps_per_epoch_, w.mean(w.loss),
      shown, st.lr, st.grad_norm, img_s, 100 * wait_share, format_duration(eta));
  if (run_.metrics) {
    MetricFields fields{{"epoch", static_cast<double>(state.epoch) +
                                      static_cast<double>(state.step_in_epoch) / steps_per_epoch_},
                        {"global_step", static_cast<double>(state.global_step)},
                        {"loss", w.mean(w.loss)}};
    for (size_t i = 0; i < figures_.size(); ++i) fields.emplace_back(figures_[i].name, w.figure(i));
    fields.insert(fields.end(), {{"lr", st.lr},
                                 {"grad_norm", st.grad_norm},
                                 {"img_per_s", img_s},
                                 {"data_wait", wait_share},
                                 {"elapsed_s", seconds_since(run_start_)}});
    run_.metrics->write(settings_.records.empty() ? "step" : settings_.records + "_step", fields);
  }
  *window_ = Window();
}

LoopResult TrainingLoop::run() {
  LoopResult result;
  auto& state = run_.state;
  auto& log = *run_.logger;
  const auto& s = settings_;
  result.last_checkpoint = run_.last_checkpoint;
  if (state.epoch >= s.epochs) {
    log.info("nothing to do: all {} epochs are done (checkpoint {})", s.epochs,
             run_.last_checkpoint);
    return result;
  }
  connect_gradients();
  run_start_ = Clock::now();
  const int64_t first_step = state.global_step, total_steps = s.epochs * steps_per_epoch_;
  int64_t steps_this_run = 0;
  auto step_limit_reached = [&] {
    return run_.options.stop_after_steps > 0 && steps_this_run >= run_.options.stop_after_steps;
  };

  while (state.epoch < s.epochs) {
    source_->start_epoch(state.epoch, state.step_in_epoch * s.accum_iter);
    *epoch_sums_ = Window();
    if (resumed_epoch_sums_.defined() && state.step_in_epoch > 0) {
      const double* v = resumed_epoch_sums_.data_ptr<double>();
      epoch_sums_->loss = v[0];
      epoch_sums_->steps = static_cast<int64_t>(v[1]);
      epoch_sums_->images = static_cast<int64_t>(v[2]);
      epoch_sums_->data_wait_s = v[3];
      epoch_sums_->figures.assign(v + 4, v + 4 + figures_.size());
    }
    resumed_epoch_sums_ = torch::Tensor();
    *window_ = Window();
    bool stop = false;
    while (state.step_in_epoch < steps_per_epoch_) {
      const Step st = train_step();
      steps_this_run += 1;
      result.step_losses.push_back(st.loss);
      window_->add(st);
      epoch_sums_->add(st);
      const double eta = seconds_since(run_start_) /
                         static_cast<double>(std::max<int64_t>(state.global_step - first_step, 1)) *
                         static_cast<double>(total_steps - state.global_step);
      if (state.global_step % run_.config.log.every == 0 ||
          state.step_in_epoch == steps_per_epoch_) {
        log_window(st, eta);
      }
      if (run_.console->has_status_line()) {
        const int width = 20;
        const int filled = static_cast<int>(width * state.step_in_epoch / steps_per_epoch_);
        run_.console->set_status(fmt::format(
            "[{}{}] epoch {}/{} step {}/{}  loss {:.4f}  lr {:.2e}  ETA {}",
            std::string(filled, '#'), std::string(width - filled, '.'), state.epoch + 1, s.epochs,
            state.step_in_epoch, steps_per_epoch_, st.loss, st.lr, format_duration(eta)));
      }
      stop = st.stop || step_limit_reached();
      // A stop at the epoch's last step is taken after the epoch's end, below.
      if (stop && state.step_in_epoch < steps_per_epoch_) {
        run_.console->clear_status();
        log.warn("stop requested: writing a checkpoint at global step {}", state.global_step);
        result.last_checkpoint = write_checkpoint();
        result.interrupted = true;
        log.warn(
            "stopped at epoch {}, step {}; continue with --resume auto{}", state.epoch,
            state.step_in_epoch,
            result.last_checkpoint.empty() ? "" : " (or --resume " + result.last_checkpoint + ")");
        return result;
      }
    }

    state.epoch += 1;
    state.step_in_epoch = 0;
    run_.console->clear_status();
    const double epoch_time = seconds_since(epoch_sums_->start);
    const EpochReport report = engine_.end_of_epoch(state);
    const Window& e = *epoch_sums_;
    std::string figures;
    MetricFields fields{{"epoch", static_cast<double>(state.epoch)},
                        {"global_step", static_cast<double>(state.global_step)},
                        {"loss", e.mean(e.loss)}};
    for (size_t i = 0; i < figures_.size(); ++i) {
      fields.emplace_back(figures_[i].name, e.figure(i));
      if (!figures_[i].label.empty())
        figures += fmt::format(", {} {:.{}f}", figures_[i].name, e.figure(i), figures_[i].decimals);
    }
    const int64_t bad = source_->bad_samples();
    log.info("epoch {}/{} done in {}: mean loss {:.4f}{}{}{}", state.epoch, s.epochs,
             format_duration(epoch_time), e.mean(e.loss), figures, report.text,
             bad > 0 ? fmt::format(", unreadable images so far: {}", bad) : "");
    if (run_.metrics) {
      fields.insert(fields.end(),
                    {{"lr", e.lr},
                     {"epoch_time_s", epoch_time},
                     {"bad_samples", static_cast<double>(bad)},
                     {"nonfinite_skips", static_cast<double>(state.nonfinite_skips)}});
      fields.insert(fields.end(), report.fields.begin(), report.fields.end());
      run_.metrics->write(s.records.empty() ? "epoch" : s.records + "_epoch", fields);
    }
    const bool saved = state.epoch % s.save_every == 0 || state.epoch == s.epochs;
    if (saved) result.last_checkpoint = write_checkpoint();
    // A stop asked at the epoch's last step, or during its evaluation or checkpoint.
    stop = any_rank_stopping(run_.comm.get(), run_.signalled() || stop, run_.device) ||
           step_limit_reached();
    if (stop && state.epoch < s.epochs) {
      if (!saved) result.last_checkpoint = write_checkpoint();
      result.interrupted = true;
      log.warn("stopped after epoch {}; continue with --resume auto", state.epoch);
      return result;
    }
  }
  if (run_.comm) {
    run_.comm->barrier("end of training");
    log.info(
        "communication: {} gradient bucket all-reduces ({} buckets per step, {} of the last "
        "step's started during backward){}",
        grad_sync_->buckets_launched(), grad_sync_->num_buckets(),
        grad_sync_->buckets_launched_in_backward(),
        verified_step_ > 0 ? fmt::format("; parameters identical on all {} ranks at step {}",
                                         run_.world_size, verified_step_)
                           : std::string());
  }
  result.last_checkpoint = run_.last_checkpoint;
  return result;
}

double TrainingLoop::step() {
  connect_gradients();
  return train_step().loss;
}

std::string TrainingLoop::write_checkpoint() {
  if (!run_.is_writer()) return "";  // rank 0 writes for all: the ranks' weights are identical
  CheckpointTensors tensors = engine_.checkpoint_tensors();
  if (run_.state.step_in_epoch > 0) {
    const Window& e = *epoch_sums_;
    std::vector<double> sums = {e.loss, static_cast<double>(e.steps), static_cast<double>(e.images),
                                e.data_wait_s};
    sums.resize(4 + figures_.size());
    for (size_t i = 0; i < e.figures.size(); ++i) sums[4 + i] = e.figures[i];
    tensors.trainer[kEpochSumsKey] = torch::tensor(sums, torch::kFloat64);
  }
  run_.last_checkpoint = save_checkpoint(
      run_.spec.output_dir, run_.state, tensors.model, tensors.trainer, run_.spec.config_yaml,
      settings_.keep_last, run_.spec.model_file, tensors.model_metadata);
  run_.logger->info("checkpoint written: {}", run_.last_checkpoint);
  return run_.last_checkpoint;
}

}  // namespace ocl::engine
