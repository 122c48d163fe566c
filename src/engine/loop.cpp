// The training loop of every engine (see include/ocl/engine/loop.h).
#include "ocl/engine/loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "loop_step.h"
#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/distributed/agreement.h"
#include "ocl/distributed/process.h"
#include "ocl/optim/adamw_step.h"
#include "ocl/optim/param_groups.h"

namespace ocl::engine {
namespace {

void before_update(const RunContext& run, int64_t global_step,
                   const std::vector<torch::Tensor>& params) {
  if (const auto& hook = run.options().before_optimizer_step) hook(global_step, params);
}

// The trainer-file key of a mid-epoch checkpoint's epoch sums: loss, steps, images, data wait,
// then the engine's figures.
constexpr const char* kEpochSumsKey = "loop.epoch_sums";

// The communicator's stream-ordered waits for a scope: a deferred step's device work.
class StreamOrderedWaits {
 public:
  explicit StreamOrderedWaits(distributed::Communicator& comm)
      : comm_(comm), before_(comm.set_stream_ordered_waits(true)) {}
  ~StreamOrderedWaits() { comm_.set_stream_ordered_waits(before_); }
  StreamOrderedWaits(const StreamOrderedWaits&) = delete;
  StreamOrderedWaits& operator=(const StreamOrderedWaits&) = delete;

 private:
  distributed::Communicator& comm_;
  bool before_;
};

int64_t samples_of(const data::Loader& l) { return l.dataset().size(); }
int64_t samples_of(const data::StreamingLoader& l) { return l.samples_per_epoch(); }

// A data::Loader's batches, or a streamed training set's (data/streaming.h).
template <typename L>
class LoaderSource : public BatchSource {
 public:
  explicit LoaderSource(std::unique_ptr<L> loader) : loader_(std::move(loader)) {}
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
  int64_t size() const override { return samples_of(*loader_); }

 private:
  std::unique_ptr<L> loader_;
};

}  // namespace

std::unique_ptr<BatchSource> streaming_source(std::unique_ptr<data::StreamingLoader> loader) {
  return std::make_unique<LoaderSource<data::StreamingLoader>>(std::move(loader));
}

void TrainingEngine::stage(const data::Batch&, const StepContext&) {
  throw std::logic_error("TrainingEngine::stage: this engine has no staged step");
}
MicroStep TrainingEngine::forward_staged(int64_t) {
  throw std::logic_error("TrainingEngine::forward_staged: this engine has no staged step");
}
void TrainingEngine::update_staged(const torch::Tensor&) {
  throw std::logic_error("TrainingEngine::update_staged: this engine has no staged step");
}

LoopSettings run_loop_settings(const io::Config& config) {
  LoopSettings s;
  s.max_steps_per_epoch = config.train.steps_per_epoch;
  s.log_every = config.log.every;
  s.skip_nonfinite = config.train.on_nonfinite == "skip";
  s.max_nonfinite_skips = config.train.max_nonfinite_skips;
  s.grad_sync.bucket_mb = config.dist.bucket_mb;
  s.grad_sync.first_bucket_mb = config.dist.first_bucket_mb;
  s.overlap = config.dist.overlap;
  s.verify_every = config.dist.verify_every;
  s.deferred_figures = config.train.host_sync == "deferred";
  s.cuda_graph = config.train.cuda_graph != "off";
  s.capture_graph = config.train.cuda_graph == "on";
  return s;
}

std::unique_ptr<BatchSource> loader_source(std::unique_ptr<data::Loader> loader) {
  return std::make_unique<LoaderSource<data::Loader>>(std::move(loader));
}

double TrainingLoop::epoch_figure(const std::string& name) const {
  for (size_t i = 0; i < figures_.size(); ++i) {
    if (figures_[i].name == name) return epoch_sums_->figure(i);
  }
  throw std::invalid_argument("TrainingLoop::epoch_figure: the engine has no figure '" + name +
                              "'");
}

// train.cuda_graph: the captured step, and what it reads and writes that lives across replays.
struct TrainingLoop::Graph {
  compat::CudaGraph graph;
  int64_t warm_ups = 0, replays = 0;
  torch::Tensor stop;     // [1] float64: a stop asked on this rank, written before each replay
  torch::Tensor figures;  // the figures of the last step run, as reduce_step lays them out
};

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
  if (settings_.max_steps_per_epoch > 0)
    steps_per_epoch_ = std::min(steps_per_epoch_, settings_.max_steps_per_epoch);
  // A mid-epoch checkpoint's epoch sums: the epoch's means cover the steps before the stop too.
  if (run_.resumed() && run_.resumed()->state.step_in_epoch > 0) {
    const auto it = run_.resumed()->trainer.find(kEpochSumsKey);
    if (it != run_.resumed()->trainer.end() &&
        it->second.numel() == 4 + static_cast<int64_t>(figures_.size()))
      resumed_epoch_sums_ = it->second.to(torch::kFloat64).contiguous();
  }
  deferred_ = settings_.deferred_figures && engine_.can_skip_on_device();
  if (settings_.cuda_graph) {
    const std::string& s = settings_.section;
    const auto refuse = [this](const std::string& why) {
      throw io::ConfigError(std::string("train.cuda_graph: ") +
                            (settings_.capture_graph ? "on " : "staged ") + why);
    };
    if (!engine_.can_stage()) refuse("captures the pre-training step only, not " + s + "'s");
    if (!deferred_) refuse("needs train.host_sync: deferred and the fused AdamW (optim.fused)");
    if (settings_.capture_graph &&
        (!run_.process().device.is_cuda() || !compat::can_capture_graphs()))
      refuse("needs a CUDA device and a CUDA build of LibTorch, not " +
             run_.process().device.str() + " with LibTorch " + compat::torch_version() +
             " (train.cuda_graph: staged runs the same step uncaptured)");
    const auto* comm = run_.process().comm.get();
    if (settings_.capture_graph && comm && comm->backend() != "nccl")
      refuse("captures NCCL's collectives, not dist.backend " + comm->backend() + "'s");
    if (run_.options().before_optimizer_step) refuse("runs no host hook inside the step");
    graph_ = std::make_unique<Graph>();
  }
  if (steps_per_epoch_ < 1) {
    const std::string& s = settings_.section;
    throw std::runtime_error(fmt::format(
        "the training set ({} images) does not fill one optimiser step of {}.batch_size {} × "
        "{}.accum_iter {} × {} processes: lower them or use more data",
        source_->size(), s, settings_.batch_size, s == "train" ? "optim" : s, settings_.accum_iter,
        run_.process().launch.world_size));
  }
}

TrainingLoop::~TrainingLoop() = default;

void TrainingLoop::connect_gradients() {
  if (run_.process().comm.get() && !grad_sync_) {
    grad_sync_ =
        distributed::make_grad_sync(*run_.process().comm.get(), engine_.trainable(),
                                    settings_.grad_sync, settings_.overlap, *run_.process().log);
  }
}

LoopResult TrainingLoop::run() {
  LoopResult result;
  result.last_checkpoint = run_.last_checkpoint();
  if (run_.state().epoch >= settings_.epochs) {
    run_.process().log->info("nothing to do: all {} epochs are done (checkpoint {})",
                             settings_.epochs, run_.last_checkpoint());
    return result;
  }
  run_.begin_records();
  connect_gradients();
  run_start_ = Clock::now();
  first_step_ = run_.state().global_step;
  steps_this_run_ = 0;
  if (settings_.deferred_figures && !deferred_)
    run_.process().log->info(
        "train.host_sync: deferred needs the fused AdamW (optim.fused): each step's "
        "figures are read before its update");
  while (run_.state().epoch < settings_.epochs) {
    begin_epoch();
    while (run_.state().step_in_epoch < steps_per_epoch_) {
      Step step = train_step();
      // Deferred: the step before is read now that this one is queued (a stop it asked for is
      // taken after this one); a step stays unread only when another follows in the epoch.
      bool stop_now = false;
      if (pending_) {
        resolve(*pending_);
        record_step(*pending_);
        result.step_losses.push_back(pending_->loss);
        stop_now = pending_->stop;
        pending_.reset();
      }
      if (deferred_ && !stop_now && run_.state().step_in_epoch < steps_per_epoch_ &&
          !step_limit_reached()) {
        pending_ = std::make_unique<Step>(std::move(step));
        continue;
      }
      if (deferred_) resolve(step);
      step.stop = step.stop || stop_now;
      result.step_losses.push_back(step.loss);
      if (after_step(step, result)) return result;
    }
    if (end_epoch(result)) return result;
  }
  finish();
  result.last_checkpoint = run_.last_checkpoint();
  return result;
}

// The epoch's data order from its start (or, resumed mid-epoch, from its next step) and its sums.
void TrainingLoop::begin_epoch() {
  source_->start_epoch(run_.state().epoch, run_.state().step_in_epoch * settings_.accum_iter);
  *epoch_sums_ = Window();
  if (resumed_epoch_sums_.defined() && run_.state().step_in_epoch > 0) {
    const double* v = resumed_epoch_sums_.data_ptr<double>();
    epoch_sums_->loss = v[0];
    epoch_sums_->steps = static_cast<int64_t>(v[1]);
    epoch_sums_->images = static_cast<int64_t>(v[2]);
    epoch_sums_->data_wait_s = v[3];
    epoch_sums_->figures.assign(v + 4, v + 4 + figures_.size());
  }
  resumed_epoch_sums_ = torch::Tensor();
  *window_ = Window();
  stop_ = false;
}

// Records the step and takes a stop asked during it, unless it ended the epoch (end_epoch does).
bool TrainingLoop::after_step(const Step& step, LoopResult& result) {
  const auto& state = run_.state();
  record_step(step);
  stop_ = step.stop || step_limit_reached();
  if (!stop_ || state.step_in_epoch == steps_per_epoch_) return false;
  run_.console().clear_status();
  run_.process().log->warn("stop requested: writing a checkpoint at global step {}",
                           state.global_step);
  result.last_checkpoint = write_checkpoint();
  result.interrupted = true;
  run_.process().log->warn(
      "stopped at epoch {}, step {}; continue with --resume auto{}", state.epoch,
      state.step_in_epoch,
      result.last_checkpoint.empty() ? "" : " (or --resume " + result.last_checkpoint + ")");
  return true;
}

void TrainingLoop::record_step(const Step& step) {
  window_->add(step);
  epoch_sums_->add(step);
  const double eta = eta_seconds();
  if (step.global_step % settings_.log_every == 0 || step.step_in_epoch == steps_per_epoch_)
    log_window(step, eta);
  show_status(step, eta);
}

// The epoch's evaluation, log, record and checkpoint, then the stop decision of all ranks.
bool TrainingLoop::end_epoch(LoopResult& result) {
  auto& state = run_.state();
  state.epoch += 1;
  state.step_in_epoch = 0;
  run_.console().clear_status();
  const double epoch_time = seconds_since(epoch_sums_->start);
  log_epoch(epoch_time, engine_.end_of_epoch(state));
  const bool saved = state.epoch % settings_.save_every == 0 || state.epoch == settings_.epochs;
  if (saved) result.last_checkpoint = write_checkpoint();
  // A stop asked at the epoch's last step, or during its evaluation or checkpoint.
  stop_ = distributed::any_rank_stopping(run_.process().comm.get(), run_.signalled() || stop_,
                                         run_.process().device) ||
          step_limit_reached();
  if (!stop_ || state.epoch >= settings_.epochs) return false;
  if (!saved) result.last_checkpoint = write_checkpoint();
  result.interrupted = true;
  run_.process().log->warn("stopped after epoch {}; continue with --resume auto", state.epoch);
  return true;
}

void TrainingLoop::finish() {
  if (!run_.process().comm.get()) return;
  run_.process().comm.get()->barrier("end of training");
  run_.process().log->info(
      "communication: {} gradient bucket all-reduces ({} buckets per step, {} of the last "
      "step's started during backward){}",
      // A captured step's launches were counted once, at its capture: its replays ran them.
      grad_sync_->buckets_launched() +
          (graph_ && graph_->replays > 0 ? (graph_->replays - 1) * grad_sync_->num_buckets() : 0),
      grad_sync_->num_buckets(), grad_sync_->buckets_launched_in_backward(),
      verified_step_ > 0 ? fmt::format("; parameters identical on all {} ranks at step {}",
                                       run_.process().launch.world_size, verified_step_)
                         : std::string());
}

double TrainingLoop::eta_seconds() const {
  const int64_t done = std::max<int64_t>(run_.state().global_step - first_step_, 1);
  const int64_t left = settings_.epochs * steps_per_epoch_ - run_.state().global_step;
  return seconds_since(run_start_) / static_cast<double>(done) * static_cast<double>(left);
}

bool TrainingLoop::step_limit_reached() const {
  const int64_t limit = run_.options().stop_after_steps;
  return limit > 0 && steps_this_run_ >= limit;
}

double TrainingLoop::step() {
  connect_gradients();
  Step st = train_step();
  if (!deferred_) return st.loss;
  // Deferred: the loss of the step before, read while this one runs (NaN for the first).
  double loss = NAN;
  if (pending_) {
    resolve(*pending_);
    loss = pending_->loss;
  }
  pending_ = std::make_unique<Step>(std::move(st));
  return loss;
}

TrainingLoop::Step TrainingLoop::train_step() {
  auto& state = run_.state();
  const auto& params = engine_.trainable();
  Step st;
  st.lr = settings_.schedule.at(static_cast<double>(state.epoch) +
                                static_cast<double>(state.step_in_epoch) / steps_per_epoch_);
  engine_.set_lr(st.lr);
  // Deferred: nothing in the step waits on the host, an NCCL all-reduce included; a collective
  // that never finishes shows when the step's figures are read (resolve).
  auto* comm = run_.process().comm.get();
  std::optional<StreamOrderedWaits> stream_ordered;
  if (comm && deferred_) stream_ordered.emplace(*comm);
  torch::Tensor figures;
  if (graph_) {
    figures = staged_step(st);  // its update is done (or skipped) on the device
  } else {
    // Gradients that are views into the all-reduce buckets are zeroed in place, others dropped.
    if (grad_sync_)
      compat::zero_grad(params);
    else
      compat::clear_grad(params);
    StepContext at = step_context();
    const torch::Tensor sums = accumulate([&](int64_t micro) {
      at.micro = micro;
      return engine_.forward(next_batch(st), at);
    });
    figures = reduce_step(sums, torch::full({1}, run_.signalled() ? 1.0 : 0.0, sums.options()));
  }
  st.epoch = state.epoch;
  st.step_in_epoch = state.step_in_epoch + 1;
  st.global_step = state.global_step + 1;
  if (graph_) {
    send_figures(st, figures);
  } else if (deferred_) {
    // The same figures decide on the device: every rank skips the same steps.
    const auto found_inf =
        torch::logical_not(torch::isfinite(figures[0]) & torch::isfinite(figures[-1]))
            .to(torch::kFloat32);
    before_update(run_, state.global_step, params);
    engine_.update_or_skip(optim::DeviceSkip{found_inf, uncounted_});
    uncounted_ = found_inf;
    send_figures(st, figures);
  } else {
    read_figures(st, figures.cpu());
    if (std::isfinite(st.loss) && std::isfinite(st.grad_norm)) {
      before_update(run_, state.global_step, params);
      engine_.update();
    } else {
      skip_or_stop_nonfinite(st);
      compat::zero_grad(params);
      st.skipped = true;
    }
  }
  stream_ordered.reset();
  if (comm && settings_.verify_every > 0 && (state.global_step + 1) % settings_.verify_every == 0)
    verify_replicas();
  state.global_step += 1;
  state.step_in_epoch += 1;
  steps_this_run_ += 1;
  return st;
}

// One step through the engine's staged path: the micro-batches staged outside the graph, then
// the device work (zeroed gradients, forwards and backwards, the all-reduces, norm and clip,
// figures, the gated update) run as warm-up, captured, or replayed.
torch::Tensor TrainingLoop::staged_step(Step& st) {
  const auto& state = run_.state();
  StepContext at = step_context();
  for (at.micro = 0; at.micro < settings_.accum_iter; ++at.micro) engine_.stage(next_batch(st), at);
  Graph& g = *graph_;
  const auto device = run_.process().device;
  if (!g.stop.defined()) g.stop = torch::zeros({1}, torch::dtype(torch::kFloat64).device(device));
  g.stop.fill_(run_.signalled() ? 1.0 : 0.0);
  const auto work = [this, &g] {
    // In place: the captured backward adds into the same tensors (the all-reduce buckets' too).
    compat::zero_grad(engine_.trainable());
    const auto sums = accumulate([this](int64_t micro) { return engine_.forward_staged(micro); });
    g.figures = reduce_step(sums, g.stop);
    engine_.update_staged(
        torch::logical_not(torch::isfinite(g.figures[0]) & torch::isfinite(g.figures[-1]))
            .to(torch::kFloat32));
  };
  if (!settings_.capture_graph) {
    work();
  } else if (g.warm_ups < kGraphWarmUp) {
    g.graph.warm_up(work);
    ++g.warm_ups;
  } else {
    if (!g.graph.captured()) {
      g.graph.capture(work);
      run_.process().log->info(
          "train.cuda_graph: the step captured at global step {}, after {} "
          "uncaptured steps; replayed from now on",
          state.global_step + 1, g.warm_ups);
    }
    g.graph.replay();
    ++g.replays;
  }
  return g.figures;
}

data::Batch TrainingLoop::next_batch(Step& st) {
  const auto wait_start = Clock::now();
  data::Batch batch = source_->next();
  st.data_wait_s += seconds_since(wait_start);
  st.images += batch.images.size(0) * run_.process().launch.world_size;
  return batch;
}

// Deferred: the figures copied to the host behind the step's work, read when the next is queued.
void TrainingLoop::send_figures(Step& st, const torch::Tensor& figures) {
  const bool pinned = figures.is_cuda();
  st.figures_in_flight = torch::empty(
      figures.sizes(), torch::TensorOptions().dtype(figures.scalar_type()).pinned_memory(pinned));
  st.figures_in_flight.copy_(figures, /*non_blocking=*/pinned);
  st.figures_copied = std::make_shared<compat::StreamMark>(figures.device());
}

// The step about to run, its first micro-batch.
StepContext TrainingLoop::step_context() const {
  const auto& s = run_.state();
  return {s.seed,
          s.epoch,
          s.step_in_epoch,
          s.global_step,
          0,
          run_.process().launch.rank,
          run_.process().launch.world_size};
}

// A deferred step's figures, once copied; where not finite its update was skipped on the device,
// and the non-finite policy now counts or stops as it would have before the update.
void TrainingLoop::resolve(Step& st) {
  if (auto* comm = run_.process().comm.get())
    comm->await_device(*st.figures_copied,
                       fmt::format("the collectives of global step {}", st.global_step));
  else
    st.figures_copied->wait();
  read_figures(st, st.figures_in_flight);
  st.figures_in_flight = torch::Tensor();
  // Nothing queued after it: the next update has no skip of this step's still to discount.
  if (st.global_step == run_.state().global_step) uncounted_ = torch::Tensor();
  if (std::isfinite(st.loss) && std::isfinite(st.grad_norm)) return;
  skip_or_stop_nonfinite(st);
  engine_.forget_skipped_update();
  st.skipped = true;
}

// Returns [loss, figures...] summed over the step's micro-batches; only the last all-reduces
// gradients during its backward, when the all-reduce overlaps (DDP's no_sync).
torch::Tensor TrainingLoop::accumulate(const std::function<MicroStep(int64_t micro)>& forward) {
  const int64_t accum = settings_.accum_iter;
  const bool overlapped = grad_sync_mode_ == GradSyncMode::kOverlapped ||
                          (grad_sync_mode_ == GradSyncMode::kConfigured && settings_.overlap);
  torch::Tensor sums;
  for (int64_t micro = 0; micro < accum; ++micro) {
    if (grad_sync_) grad_sync_->set_sync(micro == accum - 1 && overlapped);
    MicroStep step = forward(micro);
    (step.loss / static_cast<double>(accum)).backward();
    std::vector<torch::Tensor> parts = {step.loss.detach().to(torch::kFloat64).reshape({})};
    for (const auto& f : step.figures) parts.push_back(f.detach().to(torch::kFloat64).reshape({}));
    auto values = torch::stack(parts);
    sums = micro == 0 ? values : sums + values;
  }
  return sums;
}

// The gradients averaged over ranks and clipped, and one all-reduce of the figures: summed over
// ranks, and a stop asked on any rank (`stop`, [1]) stops every rank after the same step.
// Returns [loss sum, figure sums..., stop, gradient norm].
torch::Tensor TrainingLoop::reduce_step(const torch::Tensor& sums, const torch::Tensor& stop) {
  const auto& params = engine_.trainable();
  if (grad_sync_ && grad_sync_mode_ != GradSyncMode::kLocal) {
    grad_sync_->set_sync(true);  // without overlap: finish() starts every bucket now
    grad_sync_->finish();        // gradients are now the mean over ranks
  }
  auto norm = optim::grad_norm(params);
  if (settings_.clip_grad > 0) optim::clip_grads(params, norm, settings_.clip_grad);
  auto per_rank = torch::cat({sums, stop});
  if (run_.process().comm.get())
    run_.process().comm.get()->all_reduce_sum(per_rank, distributed::Group::kLoss, "step figures");
  return torch::cat({per_rank, norm.to(torch::kFloat64).reshape({1})});
}

void TrainingLoop::read_figures(Step& st, const torch::Tensor& host_figures) {
  const auto v = host_figures.contiguous();
  const double* p = v.data_ptr<double>();
  const double mean =
      1.0 / static_cast<double>(settings_.accum_iter * run_.process().launch.world_size);
  const size_t n = figures_.size();
  st.loss = p[0] * mean;
  for (size_t i = 0; i < n; ++i) st.figures.push_back(p[1 + i] * mean);
  st.stop = p[1 + n] > 0;
  st.grad_norm = p[2 + n];
}

// train.on_nonfinite: stop throws naming the step; skip counts it, up to max_nonfinite_skips.
void TrainingLoop::skip_or_stop_nonfinite(const Step& st) {
  auto& state = run_.state();
  std::string what = fmt::format(
      "non-finite {} at epoch {}, step {} of {} (global step {}): loss {}, grad norm {}",
      std::isfinite(st.loss) ? "gradient" : "loss", st.epoch, st.step_in_epoch - 1,
      steps_per_epoch_, st.global_step - 1, st.loss, st.grad_norm);
  for (size_t i = 0; i < figures_.size(); ++i)
    what += fmt::format(", {} {}", figures_[i].name, st.figures[i]);
  what += fmt::format(", lr {}; {}last good checkpoint: {}", st.lr,
                      settings_.nonfinite_hint.empty() ? "" : settings_.nonfinite_hint + "; ",
                      run_.last_checkpoint().empty() ? "none" : run_.last_checkpoint());
  if (!settings_.skip_nonfinite || state.nonfinite_skips >= settings_.max_nonfinite_skips) {
    throw std::runtime_error(what + (settings_.skip_nonfinite
                                         ? " (train.max_nonfinite_skips reached)"
                                         : " (train.on_nonfinite: stop)"));
  }
  state.nonfinite_skips += 1;
  run_.process().log->warn("{}: step skipped ({} of at most {} skips)", what, state.nonfinite_skips,
                           settings_.max_nonfinite_skips);
}

// A checksum of each parameter, all-gathered: replicas that drifted apart are caught.
void TrainingLoop::verify_replicas() {
  const auto named = engine_.trained_module().named_parameters();
  std::vector<torch::Tensor> tensors;
  for (const auto& item : named) tensors.push_back(item.value());
  const int64_t step = run_.state().global_step + 1;
  if (const auto bad = distributed::first_replica_difference(*run_.process().comm.get(),
                                                             run_.process().device, tensors)) {
    throw std::runtime_error(fmt::format(
        "the ranks' parameters diverged after global step {}: '{}' on rank {} differs from "
        "rank 0's (dist.verify_every {}); check that every rank runs the same config and binary",
        step, named[static_cast<size_t>(bad->second)].key(), bad->first, settings_.verify_every));
  }
  verified_step_ = step;
}

// Rank 0 writes for all (the ranks' weights are identical).
std::string TrainingLoop::write_checkpoint() {
  if (!run_.writes()) return "";
  CheckpointTensors tensors = engine_.checkpoint_tensors();
  if (run_.state().step_in_epoch > 0) {
    const Window& e = *epoch_sums_;
    std::vector<double> sums = {e.loss, static_cast<double>(e.steps), static_cast<double>(e.images),
                                e.data_wait_s};
    sums.resize(4 + figures_.size());
    for (size_t i = 0; i < e.figures.size(); ++i) sums[4 + i] = e.figures[i];
    tensors.trainer[kEpochSumsKey] = torch::tensor(sums, torch::kFloat64);
  }
  return run_.write_checkpoint(tensors.model, tensors.trainer, tensors.model_metadata,
                               settings_.keep_last);
}

}  // namespace ocl::engine
