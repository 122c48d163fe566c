// The run every engine stands on (see include/ocl/engine/run.h).
#include "ocl/engine/run.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/distributed/agreement.h"
#include "ocl/io/files.h"

namespace ocl::engine {
namespace {

// --overwrite removes the old run's files; one it cannot remove would mix with the new run's.
void remove_for_overwrite(const std::string& path) {
  if (std::remove(path.c_str()) == 0 || errno == ENOENT) return;
  throw std::runtime_error("--overwrite: cannot remove '" + path +
                           "' of the earlier run: " + io::os_error(errno) +
                           "; remove it by hand or choose another train.output_dir");
}

void remove_event_files(const std::string& folder) {
  for (const auto& name : io::list_dir(folder)) {
    if (name.rfind("events.out.tfevents.", 0) == 0) remove_for_overwrite(folder + "/" + name);
  }
}

}  // namespace

RunContext::RunContext(const io::Config& config_in, RunOptions options_in, RunSpec spec_in)
    : config_(config_in), options_(std::move(options_in)), spec_(std::move(spec_in)) {
  writer_ = options_.launch.rank == 0 && !options_.eval_only && !options_.write_nothing;
  if (options_.resume == "auto") {
    resume_from_ = io::latest_checkpoint(spec_.output_dir);
  } else if (!options_.resume.empty()) {
    resume_from_ = options_.resume;
  }
  if (spec_.precondition) spec_.precondition(resume_from_);
  // The checkpoint is read and checked before anything is written: a refusal changes nothing.
  std::string unreadable_config;
  if (!resume_from_.empty()) {
    check_checkpoint_kind();
    try {
      resumed_ = io::load_checkpoint(resume_from_, spec_.model_file);
    } catch (const c10::Error& e) {
      refuse_damaged_checkpoint(e.what_without_backtrace());
    } catch (const std::exception& e) {
      refuse_damaged_checkpoint(e.what());
    }
    try {
      resumed_config_ =
          io::parse_config(resumed_->config_yaml, {}, resumed_->path + "/config.yaml");
    } catch (const std::exception& e) {
      unreadable_config = e.what();
    }
    check_resumable();
  }
  prepare_folder();

  console_ = options_.console ? options_.console
                              : std::make_shared<io::ConsoleSink>(
                                    stdout, writer_ && io::want_status_line(config_.log.progress));
  auto log = rank_logger(console_, writer_ ? spec_.output_dir + "/train.log" : "", config_,
                         options_.launch.rank);
  if (!unreadable_config.empty()) {
    log->warn("the checkpoint's config cannot be read ({}); using the given config",
              unreadable_config);
  } else if (resumed_config_ && *resumed_config_ != config_) {
    log->warn("resuming with a config that differs from the checkpoint's: {}",
              io::config_difference(*resumed_config_, config_));
  } else if (options_.resume == "auto" && !resumed_) {
    log->info("--resume auto: no checkpoint in {}, starting fresh", spec_.output_dir);
  }
  process_ = start_process(config_, options_.launch, std::move(log));
  if (process_.comm) check_ranks_agree();
}

RunContext::~RunContext() {
  if (console_) console_->clear_status();
}

// A checkpoint that does not read whole: the message names an older one beside it that does.
void RunContext::refuse_damaged_checkpoint(const std::string& why) const {
  const std::string older = io::older_readable_checkpoint(resume_from_, spec_.model_file);
  if (older.empty()) throw std::runtime_error(why);
  throw std::runtime_error(fmt::format(
      "--resume: {}; the older checkpoint {} reads whole: resume from it with --resume {} (the "
      "steps after it are trained again)",
      why, older, older));
}

// Another app's checkpoint is refused in one line instead of a dump of keys that do not fit.
void RunContext::check_checkpoint_kind() const {
  std::string kind;
  try {
    kind = io::checkpoint_kind(resume_from_);
  } catch (const std::exception&) {
    return;  // a damaged file: load_checkpoint reports it, with an older checkpoint to use
  }
  if (kind.empty() || kind == spec_.kind) return;
  const std::map<std::string, std::string> app = {{"pre-training", "ocl_pretrain"},
                                                  {"fine-tuning", "ocl_finetune"},
                                                  {"linear probe", "ocl_linprobe"}};
  std::string advice = "resume it with " + app.at(kind);
  // An encoder's checkpoint is what an evaluation starts from.
  if (kind != "linear probe" && spec_.kind != "pre-training")
    advice += ", or pass it to " + spec_.app + " as --weights";
  throw std::runtime_error(fmt::format(
      "--resume: {} is a {} checkpoint and {} resumes {} checkpoints: {}; nothing was written",
      resume_from_, kind, spec_.app, spec_.kind, advice));
}

// A checkpoint that cannot continue under this config is refused naming what differs: its
// model's sizes, input standardisation or seed (data order, masks and augmentation follow it).
void RunContext::check_resumable() const {
  const std::string& path = resumed_->path;
  if (resumed_->state.seed != config_.train.seed) {
    throw std::runtime_error(fmt::format(
        "--resume: the checkpoint {} was trained with train.seed {} and this config has {}; a "
        "run's data order, masks and augmentation follow one seed: resume with --set "
        "train.seed={}, or start a new run",
        path, resumed_->state.seed, config_.train.seed, resumed_->state.seed));
  }
  if (!resumed_config_) return;
  const auto was = io::derive(*resumed_config_, 1), now = io::derive(config_, 1);
  const std::vector<std::tuple<const char*, double, double>> sizes = {
      {"model.img_size", resumed_config_->model.img_size, config_.model.img_size},
      {"model.patch_size", was.patch_size, now.patch_size},
      {"model.embed_dim", was.embed_dim, now.embed_dim},
      {"model.depth", was.depth, now.depth},
      {"model.num_heads", was.num_heads, now.num_heads},
      {"model.mlp_ratio", resumed_config_->model.mlp_ratio, config_.model.mlp_ratio}};
  std::string differ;
  for (const auto& [key, a, b] : sizes) {
    if (a != b)
      differ +=
          fmt::format("{}{} {} (the config asks for {})", differ.empty() ? "" : ", ", key, a, b);
  }
  if (!differ.empty()) {
    throw std::runtime_error("--resume: the checkpoint " + path + " was trained with " + differ +
                             ": its weights do not fit this model; resume with the checkpoint's "
                             "model sizes, or start a new run");
  }
  const auto& a = resumed_config_->model;
  const auto& b = config_.model;
  if (a.input_norm != b.input_norm ||
      (b.input_norm != "none" && a.input_norm_eps != b.input_norm_eps)) {
    const std::string fix =
        a.input_norm != b.input_norm
            ? fmt::format("--set model.input_norm={}", a.input_norm) +
                  (a.input_norm != "none"
                       ? fmt::format(" --set model.input_norm_eps={}", a.input_norm_eps)
                       : "")
            : fmt::format("--set model.input_norm_eps={}", a.input_norm_eps);
    throw std::runtime_error(fmt::format(
        "--resume: the checkpoint {} was trained with model.input_norm {} (eps {}) and the config "
        "asks for {} (eps {}): the encoder's weights only fit the pixels they were trained on; "
        "resume with {}, or start a new run",
        path, a.input_norm, a.input_norm_eps, b.input_norm, b.input_norm_eps, fix));
  }
}

// Every rank must run the same build and config, compared before any collective whose size
// depends on it; logging, loader workers and threads may differ.
void RunContext::check_ranks_agree() const {
  const io::Config defaults;
  io::Config shared = config_;
  shared.log = defaults.log;
  shared.data.workers = defaults.data.workers;
  shared.data.prefetch = defaults.data.prefetch;
  shared.train.threads = defaults.train.threads;
  distributed::require_same_build_and_config(
      *process_.comm, process_.device,
      fmt::format("ocl {} built by {}, LibTorch {}", OCL_VERSION_STRING, __VERSION__,
                  compat::torch_version()),
      shared);
}

// One run per folder: an exclusive lock on <folder>/.lock for the run's lifetime (released however
// the process ends), so that a second start cannot prune the first's checkpoints under it.
void RunContext::lock_folder() {
  char host[256] = "?";
  ::gethostname(host, sizeof(host) - 1);
  const auto& l = options_.launch;
  // Who holds it, and as which rank of which launch (a second rank 0 of this launch is a mistake).
  const std::string launch_note = l.distributed()
                                      ? fmt::format(", rank {} of {} (rendezvous {}:{})", l.rank,
                                                    l.world_size, l.master_addr, l.master_port)
                                      : "";
  std::string holder;
  if (lock_.acquire(spec_.output_dir + "/.lock",
                    fmt::format("{} pid {} on {}{}", spec_.app, ::getpid(), host, launch_note),
                    &holder))
    return;
  if (!launch_note.empty() && holder.find(launch_note) != std::string::npos) {
    const std::string why = fmt::format(
        "RANK={} was given to two processes of one launch ({} and {} pid {} on {}): each process "
        "needs its own RANK",
        l.rank, holder.substr(0, holder.find(launch_note)), spec_.app, ::getpid(), host);
    distributed::abort_rendezvous(l, why);  // the first one stops at once too
    throw std::runtime_error(why);
  }
  throw std::runtime_error("output folder '" + spec_.output_dir + "' is in use by another run (" +
                           (holder.empty() ? "its .lock is held" : holder) +
                           "): wait for it to end, or choose another " + spec_.output_key);
}

// Never silently mix two runs. Rank 0 alone decides and writes.
void RunContext::prepare_folder() {
  if (!writer_) return;
  const std::string& out = spec_.output_dir;
  io::make_dirs(out);
  lock_folder();
  if (!options_.resume.empty()) return;
  const std::string config_path = out + "/config.yaml";
  const std::string previous = io::latest_checkpoint(out);
  if (!options_.overwrite && (io::path_exists(config_path) || !previous.empty())) {
    std::string why;
    if (io::path_exists(config_path)) {
      try {
        why = io::config_difference(
            io::parse_config(io::read_text_file(config_path), {}, config_path), config_);
      } catch (const std::exception& e) {
        why = std::string("its config cannot be read (") + e.what() + ")";
      }
    }
    if (!why.empty() || !previous.empty()) {
      throw std::runtime_error(
          "output folder '" + out + "' already holds " +
          (why.empty() ? "a run with checkpoints (" + previous + ")"
                       : "a different run (" + why + ")") +
          ": pass --resume auto to continue it, --overwrite to start again there, or choose "
          "another " +
          spec_.output_key);
    }
  }
  if (options_.overwrite) {
    io::remove_checkpoints(out);
    if (const auto left = io::latest_checkpoint(out); !left.empty())
      throw std::runtime_error("--overwrite: cannot remove the earlier run's checkpoint '" + left +
                               "'; remove it by hand or choose another train.output_dir");
    remove_for_overwrite(out + "/metrics.jsonl");
    remove_event_files(out);
    for (const auto& file : spec_.own_files) remove_for_overwrite(out + "/" + file);
  }
}

void RunContext::resume_position(const std::function<StepLayout(const io::Config&)>& layout_of,
                                 const StepLayout& now, int64_t steps_per_epoch, double lr) {
  int64_t keep_metrics_through = -1;
  if (resumed_) {
    state_ = resumed_->state;
    const StepLayout saved_layout =
        resumed_config_ ? layout_of(*resumed_config_)
                        : StepLayout{state_.world_size, now.batch_size, now.accum_iter};
    state_.step_in_epoch =
        resume_step_in_epoch(state_.epoch, state_.step_in_epoch,
                             {state_.world_size, saved_layout.batch_size, saved_layout.accum_iter},
                             now, lr, *process_.log);
    if (steps_per_epoch > 0 && state_.step_in_epoch >= steps_per_epoch) {
      state_.epoch += 1;  // the epoch got shorter in the new config
      state_.step_in_epoch = 0;
    }
    last_checkpoint_ = resumed_->path;
    keep_metrics_through = state_.global_step;
    process_.log->info("resumed from {}: epoch {}, step {} of the epoch, global step {}",
                       resumed_->path, state_.epoch, state_.step_in_epoch, state_.global_step);
    resumed_->model.clear();
    resumed_->trainer.clear();
  } else {
    state_.seed = config_.train.seed;
  }
  state_.world_size = options_.launch.world_size;
  keep_metrics_through_ = keep_metrics_through;
  if (!process_.comm) return;
  // Every rank must continue from the same point (a node may see another folder).
  auto where =
      torch::tensor({state_.epoch, state_.step_in_epoch, state_.global_step}, torch::kInt64)
          .to(process_.device);
  auto all = process_.comm->all_gather(where, distributed::Group::kLoss, "resume position")
                 .view({-1, 3})
                 .cpu();
  for (int64_t r = 1; r < options_.launch.world_size; ++r) {
    if (!torch::equal(all[r], all[0])) {
      std::ostringstream msg;
      msg << "ranks disagree on where to resume: rank 0 is at (epoch, step, global step) " << all[0]
          << " and rank " << r << " at " << all[r]
          << "; every rank must see the same output folder (a shared file system) and the same "
             "--resume argument";
      throw std::runtime_error(msg.str());
    }
  }
}

// A fresh run removes earlier event files; a resumed one adds its own, purging later points.
void RunContext::open_event_file() {
  if (!resumed_) remove_event_files(spec_.output_dir);
  events_ = std::make_unique<io::EventFileWriter>(spec_.output_dir);
  if (resumed_) events_->add_session_start(state_.global_step + 1);
  events_->add_text("config", "```yaml\n" + spec_.config_yaml + "```", state_.global_step);
  events_->flush();
}

void RunContext::begin_records() {
  if (!writer_ || metrics_) return;
  io::write_text_atomic(spec_.output_dir + "/config.yaml", spec_.config_yaml);
  // A fresh run starts a new metrics file; a resumed one keeps the records up to its step.
  if (!resumed_) std::remove((spec_.output_dir + "/metrics.jsonl").c_str());
  metrics_ =
      std::make_unique<io::MetricsLog>(spec_.output_dir + "/metrics.jsonl", keep_metrics_through_);
  if (config_.log.tensorboard) open_event_file();
}

void RunContext::record(const std::string& type, const io::MetricFields& fields) {
  begin_records();
  if (!metrics_) return;
  metrics_->write(type, fields);
  if (!events_) return;
  std::vector<std::pair<std::string, double>> scalars;
  double step = static_cast<double>(state_.global_step);
  for (const auto& [name, value] : fields) {
    if (name == "global_step") step = value;
    if (const auto tag = io::tensorboard_tag(type, name); !tag.empty())
      scalars.emplace_back(tag, value);
  }
  events_->add_scalars(scalars, static_cast<int64_t>(step));
  events_->flush();
}

std::string RunContext::write_checkpoint(const io::TensorMap& model, const io::TensorMap& trainer,
                                         const io::Metadata& model_metadata, int64_t keep_last) {
  if (!writer_) return "";
  last_checkpoint_ =
      io::save_checkpoint(spec_.output_dir, state_, model, trainer, spec_.config_yaml, keep_last,
                          spec_.model_file, model_metadata);
  process_.log->info("checkpoint written: {}", last_checkpoint_);
  return last_checkpoint_;
}

bool RunContext::signalled() const {
  return options_.stop_requested != nullptr && options_.stop_requested->load() != 0;
}

}  // namespace ocl::engine
