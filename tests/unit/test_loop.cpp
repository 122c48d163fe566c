// The shared training loop (engine::TrainingLoop on an engine::RunContext) against a toy engine:
// a linear regression on 24 fixed rows. What every engine inherits is checked here once: a stop
// after N steps of this run and its exact resume, a stop at an epoch's last step, the log and
// epoch records, the non-finite policy, and a training set too small for one step.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <torch/torch.h>

#include <ocl/engine/loop.h>
#include <ocl/engine/pretrain.h>
#include <ocl/engine/run.h>
#include <ocl/io/files.h>
#include <ocl/io/state_dict.h>

namespace {

using namespace ocl::engine;
using ocl::io::ConsoleSink;
using ocl::io::MetricsLog;
using ocl::io::TrainingState;

// 24 rows of 4 features with targets y = x · w*; each epoch's order drawn from the epoch.
class ToyRows : public BatchSource {
 public:
  explicit ToyRows(int64_t batch) : batch_(batch) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    x_ = torch::randn({24, 4}, gen);
    y_ = x_.matmul(torch::tensor({1.0f, -2.0f, 0.5f, 3.0f})).unsqueeze(1);
  }
  int64_t batches_per_epoch() const override { return 24 / batch_; }
  void start_epoch(int64_t epoch, int64_t first) override {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + epoch);
    order_ = torch::randperm(24, gen);
    next_ = first;
  }
  ocl::data::Batch next() override {
    const auto rows = order_.narrow(0, next_++ * batch_, batch_);
    ocl::data::Batch b;
    b.images = x_.index_select(0, rows);
    b.labels = y_.index_select(0, rows);
    return b;
  }
  int64_t size() const override { return 24; }

 private:
  int64_t batch_, next_ = 0;
  torch::Tensor x_, y_, order_;
};

class ToyEngine : public TrainingEngine {
 public:
  explicit ToyEngine(int64_t nan_at_step = -1) : nan_at_step_(nan_at_step) {
    torch::manual_seed(1);
    model_ = torch::nn::Linear(4, 1);
    params_ = model_->parameters();
  }
  torch::nn::Module& trained_module() override { return *model_; }
  const std::vector<torch::Tensor>& trainable() override { return params_; }
  std::vector<Figure> figures() const override { return {{"mean_output", "out", 3}}; }
  void set_lr(double lr) override { lr_ = lr; }
  MicroStep forward(const ocl::data::Batch& batch, const StepContext& at) override {
    auto out = model_->forward(batch.images);
    auto loss = torch::mse_loss(out, batch.labels);
    if (at.global_step == nan_at_step_) loss = loss * std::numeric_limits<float>::quiet_NaN();
    return {loss, {out.mean()}};
  }
  void update() override {
    torch::NoGradGuard no_grad;
    for (auto& p : params_) p.sub_(p.grad() * lr_);
    updates += 1;
  }
  // train.host_sync: deferred: the update gated by a device tensor, as the fused AdamW's is.
  bool can_skip_on_device() const override { return true; }
  void update_or_skip(const ocl::optim::DeviceSkip& skip) override {
    torch::NoGradGuard no_grad;
    const auto skipped = skip.found_inf > 0;
    for (auto& p : params_) p.copy_(torch::where(skipped, p, p - p.grad() * lr_));
    device_updates += 1 - skip.found_inf;
  }
  void forget_skipped_update() override { forgotten += 1; }
  // train.cuda_graph's staged step: each micro-batch and the step's NaN factor in buffers that
  // keep their addresses, read by a forward that takes nothing else.
  bool can_stage() const override { return true; }
  void stage(const ocl::data::Batch& batch, const StepContext& at) override {
    if (staged_.size() <= static_cast<size_t>(at.micro)) staged_.resize(at.micro + 1);
    auto& [x, y] = staged_[at.micro];
    if (!x.defined()) x = torch::empty_like(batch.images), y = torch::empty_like(batch.labels);
    x.copy_(batch.images), y.copy_(batch.labels);
    nan_.fill_(at.global_step == nan_at_step_ ? std::numeric_limits<float>::quiet_NaN() : 1.0f);
  }
  MicroStep forward_staged(int64_t micro) override {
    const auto& [x, y] = staged_.at(micro);
    auto out = model_->forward(x);
    return {torch::mse_loss(out, y) * nan_, {out.mean()}};
  }
  void update_staged(const torch::Tensor& found_inf) override {
    update_or_skip({found_inf, {}});
    staged_updates += 1;
  }
  int64_t staged_updates = 0;
  int64_t applied() const { return updates + static_cast<int64_t>(device_updates.item<float>()); }
  EpochReport end_of_epoch(const TrainingState& state) override {
    epochs_ended.push_back(state.epoch);
    return {", toy figure 7", {{"toy_metric", 7.0 + static_cast<double>(state.epoch)}}};
  }
  CheckpointTensors checkpoint_tensors() override {
    return {ocl::io::state_dict(*model_), {{"toy.updates", torch::tensor(updates)}}};
  }
  torch::nn::Linear model_{nullptr};
  std::vector<int64_t> epochs_ended;
  int64_t updates = 0, forgotten = 0;
  torch::Tensor device_updates = torch::zeros({});

 private:
  std::vector<std::pair<torch::Tensor, torch::Tensor>> staged_;  // per micro-batch: x, y
  torch::Tensor nan_ = torch::ones({});
  int64_t nan_at_step_;
  double lr_ = 0;
  std::vector<torch::Tensor> params_;
};

struct ToyRun {
  ocl::io::Config config;
  std::unique_ptr<RunContext> run;
  ToyEngine engine;
  std::unique_ptr<TrainingLoop> loop;

  ToyRun(const std::string& dir, RunOptions options, std::vector<std::string> sets = {},
         int64_t batch = 4, int64_t nan_at_step = -1, int64_t accum = 1)
      : engine(nan_at_step) {
    sets.insert(sets.begin(), {"train.output_dir=" + dir, "train.device=cpu", "train.threads=1",
                               "log.progress=lines", "log.every=1"});
    config = ocl::io::parse_config("", sets);
    options.console = std::make_shared<ConsoleSink>(stderr, false);
    run = std::make_unique<RunContext>(config, options,
                                       RunSpec{.app = "toy",
                                               .output_dir = dir,
                                               .output_key = "train.output_dir",
                                               .config_yaml = ocl::io::to_yaml(config)});
    LoopSettings settings = ocl::engine::run_loop_settings(config);
    settings.epochs = 3;
    settings.batch_size = batch;
    settings.save_every = 1;
    settings.keep_last = 9;
    settings.schedule = {0.05, 0.0, 0.5, 3.0};
    settings.section = "toy";
    settings.accum_iter = accum;
    loop = std::make_unique<TrainingLoop>(*run, engine, std::make_unique<ToyRows>(batch), settings);
    if (run->resumed()) ocl::io::load_state_dict(*engine.model_, run->resumed()->model);
    run->resume_position(
        [](const ocl::io::Config&) {
          return StepLayout{1, 4, 1};
        },
        {1, batch, accum}, loop->steps_per_epoch(), 0.05);
  }
};

// The "loss" and "mean_output" fields of every epoch record, in order.
std::vector<std::string> epoch_means(const std::string& metrics) {
  std::vector<std::string> out;
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("\"type\":\"epoch\"") == std::string::npos) continue;
    const auto from = line.find("\"loss\"");
    out.push_back(line.substr(from, line.find(",\"lr\"") - from));
  }
  return out;
}

class LoopByHostSync : public testing::TestWithParam<std::string> {
 protected:
  std::vector<std::string> sets() const { return {"train.host_sync=" + GetParam()}; }
};
INSTANTIATE_TEST_SUITE_P(TrainingLoop, LoopByHostSync, testing::Values("step", "deferred"));

// Either way of reading the figures: deferred reads each step's while the next one runs, and a
// stop or an epoch's end reads the last step at once.
TEST_P(LoopByHostSync, StopAfterStepsOfThisRunAndResumeReproduceTheUninterruptedRun) {
  const auto whole_dir = ocl::test::make_temp_dir("ocl_loop_whole_");
  ToyRun whole(whole_dir, {}, sets());
  const auto all = whole.loop->run();
  ASSERT_EQ(all.step_losses.size(), 18u);  // 3 epochs of 6 steps
  EXPECT_FALSE(all.interrupted);
  EXPECT_EQ(whole.engine.epochs_ended, (std::vector<int64_t>{1, 2, 3}));

  const auto dir = ocl::test::make_temp_dir("ocl_loop_parts_");
  std::vector<double> losses;
  RunOptions stop;
  stop.stop_after_steps = 4;
  {
    ToyRun first(dir, stop, sets());
    const auto r = first.loop->run();
    EXPECT_TRUE(r.interrupted);
    EXPECT_EQ(r.last_checkpoint, dir + "/checkpoint-0000-000004");
    EXPECT_EQ(first.run->state().global_step, 4);
    losses = r.step_losses;
  }
  stop.resume = "auto";  // 4 more steps of this run: global step 8, epoch 1 step 2
  {
    ToyRun second(dir, stop, sets());
    EXPECT_EQ(second.run->state().global_step, 4);
    const auto r = second.loop->run();
    EXPECT_EQ(r.last_checkpoint, dir + "/checkpoint-0001-000002");
    losses.insert(losses.end(), r.step_losses.begin(), r.step_losses.end());
  }
  RunOptions rest;
  rest.resume = "auto";
  {
    ToyRun third(dir, rest, sets());
    const auto r = third.loop->run();
    EXPECT_FALSE(r.interrupted);
    losses.insert(losses.end(), r.step_losses.begin(), r.step_losses.end());
    EXPECT_TRUE(torch::equal(third.engine.model_->weight, whole.engine.model_->weight));
  }
  ASSERT_EQ(losses.size(), all.step_losses.size());
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_EQ(losses[i], all.step_losses[i]) << i;
  // Each step's and epoch's record once, whatever the interruptions, and the epochs' means over
  // all of their steps (the sums before a stop travel in the checkpoint).
  const auto metrics = ocl::test::read_file(dir + "/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"step\""), 18) << metrics;
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"epoch\""), 3) << metrics;
  EXPECT_EQ(epoch_means(metrics), epoch_means(ocl::test::read_file(whole_dir + "/metrics.jsonl")));
  // A finished run has nothing to do.
  ToyRun again(dir, rest, sets());
  EXPECT_TRUE(again.loop->run().step_losses.empty());
  EXPECT_NE(ocl::test::read_file(dir + "/train.log").find("nothing to do"), std::string::npos);
}

// A stop that lands on an epoch's last step first ends the epoch (evaluation, record), then
// writes the epoch's checkpoint.
TEST(TrainingLoop, StopAtAnEpochsLastStepEndsTheEpochFirst) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_edge_");
  RunOptions stop;
  stop.stop_after_steps = 6;
  ToyRun run(dir, stop);
  const auto r = run.loop->run();
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(run.engine.epochs_ended, (std::vector<int64_t>{1}));
  EXPECT_EQ(r.last_checkpoint, dir + "/checkpoint-0001");
  EXPECT_EQ(run.run->state().epoch, 1);
  EXPECT_EQ(run.run->state().step_in_epoch, 0);
  const auto metrics = ocl::test::read_file(dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"toy_metric\":8"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"mean_output\""), std::string::npos) << metrics;
  const auto log = ocl::test::read_file(dir + "/train.log");
  EXPECT_NE(log.find("epoch 1/3 done"), std::string::npos) << log;
  EXPECT_NE(log.find(", toy figure 7"), std::string::npos) << log;
  EXPECT_NE(log.find("  out "), std::string::npos) << log;
}

// One run per folder: a second start while the first holds the folder is refused, naming it.
TEST(RunContext, AFolderInUseByAnotherRunIsRefused) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_lock_");
  ToyRun first(dir, {});
  OCL_EXPECT_THROW_WITH(ToyRun(dir, {}), "is in use by another run (toy pid ");
}

// A lock file that is a symbolic link is refused, and the file it points to is left as it was.
TEST(FileLock, ASymbolicLinkIsRefusedAndItsTargetUntouched) {
  const auto dir = ocl::test::make_temp_dir("ocl_lock_link_");
  std::ofstream(dir + "/precious.txt") << "precious\n";
  ASSERT_EQ(::symlink((dir + "/precious.txt").c_str(), (dir + "/.lock").c_str()), 0);
  ocl::io::FileLock lock;
  std::string holder;
  OCL_EXPECT_THROW_WITH(lock.acquire(dir + "/.lock", "toy pid 1 on host", &holder),
                        "is a symbolic link; ocl does not write through one");
  EXPECT_EQ(ocl::test::read_file(dir + "/precious.txt"), "precious\n");
}

// Another program holding the lock under an old run's note is named by the kernel's lock table,
// not by the note, and on one line; ocl's own note is believed when it names the holder's pid.
TEST(FileLock, TheHolderIsNamedByTheKernelNotByAStaleNote) {
  const auto dir = ocl::test::make_temp_dir("ocl_lock_holder_");
  const std::string path = dir + "/.lock";
  std::ofstream(path) << "ocl_pretrain pid 1 on old-host\nspliced into the message";
  const int other = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(other, 0);
  ASSERT_EQ(::flock(other, LOCK_EX), 0);
  ocl::io::FileLock lock;
  std::string holder;
  EXPECT_FALSE(lock.acquire(path, "toy pid 2 on host", &holder));
  EXPECT_EQ(holder.find('\n'), std::string::npos) << holder;
  EXPECT_EQ(holder.find("old-host"), std::string::npos) << holder;
  EXPECT_EQ(holder.rfind("held by pid " + std::to_string(::getpid()), 0), 0u) << holder;
  ::close(other);

  const std::string note = "toy pid " + std::to_string(::getpid()) + " on host";
  ocl::io::FileLock first, second;
  ASSERT_TRUE(first.acquire(path, note, &holder));
  EXPECT_FALSE(second.acquire(path, "toy pid 3 on host", &holder));
  EXPECT_EQ(holder, note);
}

// A checkpoint that cannot continue under the config (another seed, other model sizes) is
// refused with the values named, before anything in the folder is written.
TEST(RunContext, AResumeThatCannotContinueIsRefusedTouchingNothing) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_refuse_");
  RunOptions stop;
  stop.stop_after_steps = 2;
  ToyRun(dir, stop, {"train.seed=3"}).loop->run();
  const auto config_before = ocl::test::read_file(dir + "/config.yaml");
  const auto log_before = ocl::test::read_file(dir + "/train.log");
  RunOptions resume;
  resume.resume = "auto";
  OCL_EXPECT_THROW_WITH(ToyRun(dir, resume, {"train.seed=9"}),
                        "was trained with train.seed 3 and this config has 9");
  OCL_EXPECT_THROW_WITH(ToyRun(dir, resume, {"train.seed=3", "model.img_size=112"}),
                        "was trained with model.img_size 224 (the config asks for 112)");
  OCL_EXPECT_THROW_WITH(ToyRun(dir, resume, {"train.seed=3", "model.input_norm=patch"}),
                        "was trained with model.input_norm none (eps 0.25) and the config asks "
                        "for patch (eps 0.25)");
  OCL_EXPECT_THROW_WITH(ToyRun(dir, resume, {"train.seed=3", "model.input_norm=patch"}),
                        "resume with --set model.input_norm=none, or start a new run");
  EXPECT_EQ(ocl::test::read_file(dir + "/config.yaml"), config_before);
  EXPECT_EQ(ocl::test::read_file(dir + "/train.log"), log_before);
  ToyRun resumed(dir, resume, {"train.seed=3"});
  EXPECT_EQ(resumed.run->state().global_step, 2);
  // Only the eps differs: the advice is the eps, not the setting the config already has.
  const auto patch_dir = ocl::test::make_temp_dir("ocl_loop_refuse_eps_");
  ToyRun(patch_dir, stop, {"model.input_norm=patch", "model.input_norm_eps=0.25"}).loop->run();
  OCL_EXPECT_THROW_WITH(
      ToyRun(patch_dir, resume, {"model.input_norm=patch", "model.input_norm_eps=0.5"}),
      "resume with --set model.input_norm_eps=0.25, or start a new run");
}

// --overwrite that cannot remove a file of the earlier run (here an event file's name held by a
// folder that is not empty) stops naming it, instead of starting a run beside it: TensorBoard
// would show both runs' curves as one.
TEST(RunContext, AnOverwriteThatCannotRemoveAnOldFileStopsNamingIt) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_overwrite_");
  RunOptions stop;
  stop.stop_after_steps = 2;
  ToyRun(dir, stop).loop->run();
  const std::string stuck = dir + "/events.out.tfevents.1.old-host";
  ASSERT_TRUE(std::filesystem::create_directories(stuck + "/inside"));
  RunOptions overwrite;
  overwrite.overwrite = true;
  OCL_EXPECT_THROW_WITH(ToyRun(dir, overwrite),
                        "--overwrite: cannot remove '" + stuck + "' of the earlier run: ");
  std::filesystem::remove_all(stuck);
  ToyRun fresh(dir, overwrite);
  EXPECT_EQ(fresh.run->state().global_step, 0);
}

// A resume with nothing left to do writes nothing: config.yaml stays the one the checkpoints
// were trained with, and no metrics record or event file is added.
TEST(RunContext, AResumeWithNothingToDoWritesNothing) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_nothing_");
  ToyRun(dir, {}).loop->run();
  const auto config_before = ocl::test::read_file(dir + "/config.yaml");
  const auto metrics_before = ocl::test::read_file(dir + "/metrics.jsonl");
  const auto files_before = ocl::io::list_dir(dir);
  ASSERT_FALSE(config_before.empty());
  RunOptions resume;
  resume.resume = "auto";
  ToyRun again(dir, resume, {"log.every=2"});
  again.loop->run();
  EXPECT_EQ(ocl::test::read_file(dir + "/config.yaml"), config_before);
  EXPECT_EQ(ocl::test::read_file(dir + "/metrics.jsonl"), metrics_before);
  EXPECT_EQ(ocl::io::list_dir(dir), files_before);
}

// The newest checkpoint truncated: --resume auto is refused naming the damage and the older
// checkpoint beside it that reads whole, with the flag to resume from it; that one resumes.
TEST(RunContext, ADamagedCheckpointPointsToTheOlderCompleteOne) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_damaged_");
  ToyRun(dir, {}).loop->run();  // 3 epochs, a checkpoint after each
  const std::string newest = dir + "/checkpoint-0003";
  ASSERT_EQ(ocl::io::latest_checkpoint(dir), newest);
  ASSERT_EQ(::truncate((newest + "/encoder.safetensors").c_str(), 20), 0);
  RunOptions resume;
  resume.resume = "auto";
  OCL_EXPECT_THROW_WITH(ToyRun(dir, resume), "the older checkpoint " + dir +
                                                 "/checkpoint-0002 reads whole: resume from it "
                                                 "with --resume " +
                                                 dir + "/checkpoint-0002");
  resume.resume = dir + "/checkpoint-0002";
  ToyRun older(dir, resume);
  EXPECT_EQ(older.run->state().epoch, 2);
}

TEST(MetricsLog, AFullDiskStopsTheRunWithoutATornRecord) {
  MetricsLog full("/dev/full");
  OCL_EXPECT_THROW_WITH(full.write("step", {{"loss", 1.0}}), "No space left on device");
}

TEST(TrainingLoop, LogWindowsFollowLogEvery) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_log_");
  ToyRun run(dir, {}, {"log.every=4"});
  run.loop->run();
  // Global steps 4, 6 (an epoch's last), 8, 12, 16, 18.
  const auto metrics = ocl::test::read_file(dir + "/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"step\""), 6) << metrics;
  EXPECT_NE(metrics.find("\"global_step\":6,"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("\"global_step\":5,"), std::string::npos) << metrics;
}

TEST(TrainingLoop, NonFiniteStepStopsNamingItOrIsSkipped) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_nan_");
  {
    ToyRun run(dir, {}, {}, 4, /*nan_at_step=*/2);
    OCL_EXPECT_THROW_WITH(run.loop->run(),
                          "non-finite loss at epoch 0, step 2 of 6 (global step 2)");
    EXPECT_EQ(run.engine.updates, 2);
  }
  const auto dir2 = ocl::test::make_temp_dir("ocl_loop_skip_");
  ToyRun run(dir2, {}, {"train.on_nonfinite=skip", "train.max_nonfinite_skips=1"}, 4, 2);
  const auto r = run.loop->run();
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(run.run->state().nonfinite_skips, 1);
  EXPECT_EQ(run.engine.updates, 17);  // 18 steps, one skipped
  EXPECT_NE(ocl::test::read_file(dir2 + "/train.log").find("step skipped (1 of at most 1"),
            std::string::npos);
}

// Deferred: the same figures, records and weights as reading every step; a non-finite step is
// skipped on the device and named with the same message, one step later on the host.
TEST(TrainingLoop, DeferredFiguresGiveTheStepRunAndKeepTheNonFinitePolicies) {
  const auto step_dir = ocl::test::make_temp_dir("ocl_loop_step_");
  const auto deferred_dir = ocl::test::make_temp_dir("ocl_loop_deferred_");
  ToyRun by_step(step_dir, {});
  ToyRun deferred(deferred_dir, {}, {"train.host_sync=deferred"});
  const auto a = by_step.loop->run(), b = deferred.loop->run();
  EXPECT_EQ(a.step_losses, b.step_losses);
  EXPECT_TRUE(torch::equal(by_step.engine.model_->weight, deferred.engine.model_->weight));
  EXPECT_EQ(deferred.engine.updates, 0);  // every update went through update_or_skip
  EXPECT_EQ(deferred.engine.applied(), 18);
  const auto ma = ocl::test::read_file(step_dir + "/metrics.jsonl");
  const auto mb = ocl::test::read_file(deferred_dir + "/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(mb, "\"type\":\"step\""), 18) << mb;
  EXPECT_EQ(epoch_means(ma), epoch_means(mb));
  for (const char* step : {"\"global_step\":1,", "\"global_step\":6,", "\"global_step\":18,"})
    EXPECT_NE(mb.find(step), std::string::npos) << step << "\n" << mb;

  const auto dir = ocl::test::make_temp_dir("ocl_loop_deferred_nan_");
  {
    ToyRun run(dir, {}, {"train.host_sync=deferred"}, 4, /*nan_at_step=*/2);
    OCL_EXPECT_THROW_WITH(run.loop->run(),
                          "non-finite loss at epoch 0, step 2 of 6 (global step 2)");
    // Steps 0 and 1 applied, step 2 skipped on the device; step 3 was queued before the host
    // read step 2's figures (nothing is written after the stop).
    EXPECT_EQ(run.engine.applied(), 3);
  }
  const auto dir2 = ocl::test::make_temp_dir("ocl_loop_deferred_skip_");
  ToyRun run(dir2, {},
             {"train.host_sync=deferred", "train.on_nonfinite=skip", "train.max_nonfinite_skips=1"},
             4, 2);
  const auto r = run.loop->run();
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(run.run->state().nonfinite_skips, 1);
  EXPECT_EQ(run.engine.applied(), 17);  // 18 steps, one skipped on the device
  EXPECT_EQ(run.engine.forgotten, 1);
  EXPECT_NE(ocl::test::read_file(dir2 + "/train.log").find("step skipped (1 of at most 1"),
            std::string::npos);
}

// train.cuda_graph's staged step, uncaptured (train.cuda_graph: staged; the capture needs a GPU:
// gpu tests): the deferred run's losses, records and weights, with one micro-batch a step and
// with two, every update through update_staged, and the same non-finite policies; what it
// cannot capture is refused naming the key.
TEST(TrainingLoop, TheStagedStepGivesTheDeferredRun) {
  const std::vector<std::string> staged_sets = {"train.host_sync=deferred",
                                                "train.cuda_graph=staged"};
  for (const int64_t accum : {1, 2}) {
    SCOPED_TRACE("accum " + std::to_string(accum));
    const auto deferred_dir = ocl::test::make_temp_dir("ocl_loop_deferred_");
    const auto staged_dir = ocl::test::make_temp_dir("ocl_loop_staged_");
    ToyRun deferred(deferred_dir, {}, {"train.host_sync=deferred"}, 4, -1, accum);
    ToyRun staged(staged_dir, {}, staged_sets, 4, -1, accum);
    const auto a = deferred.loop->run(), b = staged.loop->run();
    ASSERT_EQ(a.step_losses.size(), static_cast<size_t>(18 / accum));
    EXPECT_EQ(a.step_losses, b.step_losses);
    EXPECT_TRUE(torch::equal(deferred.engine.model_->weight, staged.engine.model_->weight));
    EXPECT_EQ(staged.engine.staged_updates, 18 / accum);
    EXPECT_EQ(staged.engine.applied(), 18 / accum);
    EXPECT_EQ(epoch_means(ocl::test::read_file(deferred_dir + "/metrics.jsonl")),
              epoch_means(ocl::test::read_file(staged_dir + "/metrics.jsonl")));
  }
  {
    ToyRun run(ocl::test::make_temp_dir("ocl_loop_staged_nan_"), {}, staged_sets, 4, 2);
    OCL_EXPECT_THROW_WITH(run.loop->run(),
                          "non-finite loss at epoch 0, step 2 of 6 (global step 2)");
    EXPECT_EQ(run.engine.applied(), 3);
  }
  auto skip = staged_sets;
  skip.insert(skip.end(), {"train.on_nonfinite=skip", "train.max_nonfinite_skips=1"});
  ToyRun skipped(ocl::test::make_temp_dir("ocl_loop_staged_skip_"), {}, skip, 4, 2);
  EXPECT_FALSE(skipped.loop->run().interrupted);
  EXPECT_EQ(skipped.run->state().nonfinite_skips, 1);
  EXPECT_EQ(skipped.engine.applied(), 17);

  OCL_EXPECT_THROW_WITH(ToyRun(ocl::test::make_temp_dir("ocl_loop_graph_cpu_"), {},
                               {"train.host_sync=deferred", "train.cuda_graph=on"}),
                        "train.cuda_graph: on needs a CUDA device");
  OCL_EXPECT_THROW_WITH(
      ToyRun(ocl::test::make_temp_dir("ocl_loop_graph_step_"), {}, {"train.cuda_graph=staged"}),
      "train.cuda_graph: staged needs train.host_sync: deferred");
}

TEST(TrainingLoop, ATrainingSetSmallerThanOneStepIsNamed) {
  const auto dir = ocl::test::make_temp_dir("ocl_loop_small_");
  OCL_EXPECT_THROW_WITH(ToyRun(dir, {}, {}, /*batch=*/32),
                        "the training set (24 images) does not fill one optimiser step of "
                        "toy.batch_size 32 × toy.accum_iter 1 × 1 processes");
}

}  // namespace

// The shortcut alarm's rule: high contrastive accuracy while the kNN monitor is flat since the
// start, or has stalled over the last eval.shortcut_window runs, fires; anything else (learning,
// a low accuracy, no figures yet, the alarm off) does not.
TEST(ShortcutAlarm, FiresOnHighAccuracyWithAFlatOrStalledMonitorOnly) {
  using ocl::engine::shortcut_warning;
  ocl::io::EvalConfig e;
  // A run that matches by colour: accuracy 0.97, kNN 12.1 → 12.9 %.
  const std::string w = shortcut_warning(e, 0.97, {12.1, 12.9});
  EXPECT_NE(w.find("shortcut alarm: contrastive accuracy 0.970"), std::string::npos) << w;
  EXPECT_NE(w.find("moved +0.80 points since the start (12.10 -> 12.90 %"), std::string::npos) << w;
  EXPECT_NE(w.find("Remove the cue: model.input_norm=patch"), std::string::npos) << w;
  EXPECT_NE(w.find("data.illumination"), std::string::npos) << w;
  EXPECT_NE(w.find("mask.group_views=independent"), std::string::npos) << w;
  EXPECT_NE(w.find("configs/quickstart_robust.yaml"), std::string::npos) << w;
  // The quickstart's figures (accuracy 0.73, kNN 35.4 → 47.1 %): learning, no alarm.
  EXPECT_EQ(shortcut_warning(e, 0.73, {35.4, 41.0, 47.1}), "");
  // High accuracy while kNN rises: the task is easy and the encoder learns; no alarm.
  EXPECT_EQ(shortcut_warning(e, 0.99, {30.0, 36.0, 45.0}), "");
  // Flat kNN at a low accuracy: early training, no alarm.
  EXPECT_EQ(shortcut_warning(e, 0.5, {12.0, 12.0}), "");
  // kNN falling counts as flat.
  EXPECT_NE(shortcut_warning(e, 0.95, {20.0, 15.0}), "");
  // Learned, then stalled while the task got solved (issue 32's 16-epoch run: +6 points since
  // the start, then flat at accuracy 0.989): the window of 2 runs sees it, one of 5 does not.
  const std::vector<double> stalled = {12.3, 15.1, 18.2, 18.3, 18.0};
  const std::string s = shortcut_warning(e, 0.989, stalled);
  EXPECT_NE(s.find("moved -0.20 points over the last 2 monitor runs (18.20 -> 18.00 %"),
            std::string::npos)
      << s;
  EXPECT_EQ(shortcut_warning(e, 0.85, stalled), "");  // the task not solved: no alarm
  e.shortcut_window = 5;  // reaches back to the start, +5.7 points: silent
  EXPECT_EQ(shortcut_warning(e, 0.989, stalled), "");
  e.shortcut_window = 1;
  EXPECT_NE(shortcut_warning(e, 0.989, stalled), "");
  EXPECT_EQ(shortcut_warning(e, 0.989, {12.3, 15.1, 18.2, 18.3, 21.0}), "");  // still rising
  // Measured curves (scripts/nuisance_study.sh, seed 0, kNN at epochs 0, 2, 4, 6, 8 and the
  // contrastive accuracy of epoch 8): model.input_norm=patch on the lighting-gradient set learns
  // 5.5 points, then stalls while the task gets solved; it fires only through the window. The
  // paper's recipe on the clutter-stroke set keeps learning at accuracy 0.73: silent.
  e.shortcut_window = 2;
  const std::vector<double> gradient_patch = {25.87890625, 28.515625, 30.078125, 29.78515625,
                                              31.34765625};
  EXPECT_NE(shortcut_warning(e, 0.906005859375, gradient_patch).find("over the last 2 monitor"),
            std::string::npos);
  EXPECT_EQ(shortcut_warning(e, 0.88916015625, {25.87890625, 28.515625, 30.078125, 29.78515625}),
            "");  // epoch 6: accuracy 0.889, not yet solved
  EXPECT_EQ(shortcut_warning(e, 0.7275390625,
                             {30.2734375, 34.5703125, 35.9375, 37.98828125, 37.79296875}),
            "");
  // Thresholds are the config's, inclusive of the accuracy bound.
  e.shortcut_accuracy = 0.95;
  EXPECT_NE(shortcut_warning(e, 0.95, {20.0, 20.0}), "");
  EXPECT_EQ(shortcut_warning(e, 0.94, {20.0, 20.0}), "");
  e.shortcut_knn_gain = 0.5;
  EXPECT_EQ(shortcut_warning(e, 0.99, {20.0, 20.5}), "");
  // No baseline, no epoch figure, or the alarm off: silent.
  EXPECT_EQ(shortcut_warning(e, 0.99, {20.0}), "");
  EXPECT_EQ(shortcut_warning(e, 0.99, {-1, 20.0}), "");
  EXPECT_EQ(shortcut_warning(e, std::nan(""), {20.0, 20.0}), "");
  e.shortcut_alarm = false;
  EXPECT_EQ(shortcut_warning(e, 0.99, {20.0, 20.0}), "");
}
