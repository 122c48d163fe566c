// End-to-end pre-training runs at tiny sizes (seconds each): exact resume mid-epoch, gradient
// accumulation, unreadable images, non-finite losses, output-folder safety, and the app itself
// under SIGTERM and with a bad config value.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "integration/synthetic_shards.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <ocl/data/factory.h>
#include <ocl/data/loader.h>
#include <ocl/data/png.h>
#include <ocl/data/synthetic.h>
#include <ocl/engine/pretrain.h>
#include <ocl/io/files.h>
#include <ocl/io/state_dict.h>

namespace {

std::string make_temp_dir() { return ocl::test::make_temp_dir("ocl_pretrain_"); }

using ocl::test::read_file;

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// A 16×16 ViT of one block on 128 synthetic images: 4 steps of 32 per epoch.
ocl::io::Config tiny_config(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> overrides = {"model.arch=custom",
                                        "model.img_size=16",
                                        "model.patch_size=4",
                                        "model.embed_dim=32",
                                        "model.depth=1",
                                        "model.num_heads=2",
                                        "mask.ratio=0.25",
                                        "data.dataset=synthetic",
                                        "data.synthetic_train_size=128",
                                        "data.synthetic_val_size=64",
                                        "data.workers=2",
                                        "train.batch_size=32",
                                        "train.epochs=2",
                                        "train.device=cpu",
                                        "train.precision=fp32",
                                        "train.save_every=1",
                                        "train.seed=3",
                                        "optim.lr=1e-3",
                                        "optim.warmup_epochs=1",
                                        "log.every=1",
                                        "log.progress=lines",
                                        "train.output_dir=" + out};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return ocl::io::parse_config("", overrides);
}

ocl::engine::PretrainOptions quiet_options() {
  ocl::engine::PretrainOptions o;
  o.console = std::make_shared<ocl::io::ConsoleSink>(stderr, false);
  return o;
}

// llm.c's resume test for OCL: k steps, checkpoint, stop; resume and finish. The per-step
// losses and the final weights equal an uninterrupted run's exactly (CPU, fp32, one process).
void expect_resume_reproduces_the_uninterrupted_run(const std::vector<std::string>& extra) {
  const auto dir_a = make_temp_dir(), dir_b = make_temp_dir();
  ocl::engine::Pretrainer a(tiny_config(dir_a, extra), quiet_options());
  const auto full = a.run();
  ASSERT_EQ(full.step_losses.size(), 8u);
  EXPECT_FALSE(full.interrupted);

  auto stop_options = quiet_options();
  stop_options.stop_after_steps = 3;  // mid-epoch 0
  std::vector<double> resumed;
  {
    ocl::engine::Pretrainer b(tiny_config(dir_b, extra), stop_options);
    const auto first = b.run();
    EXPECT_TRUE(first.interrupted);
    EXPECT_EQ(first.last_checkpoint, dir_b + "/checkpoint-0000-000003");
    resumed = first.step_losses;
  }
  auto resume_options = quiet_options();
  resume_options.resume = "auto";
  ocl::engine::Pretrainer c(tiny_config(dir_b, extra), resume_options);
  EXPECT_EQ(c.state().global_step, 3);
  const auto rest = c.run();
  resumed.insert(resumed.end(), rest.step_losses.begin(), rest.step_losses.end());
  ASSERT_EQ(resumed.size(), full.step_losses.size());
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i], full.step_losses[i]) << "step " << i;
  }
  const auto wa = ocl::io::state_dict(*a.model());
  for (const auto& [name, t] : ocl::io::state_dict(*c.model())) {
    EXPECT_TRUE(torch::equal(t, wa.at(name))) << name;
  }
  // The metrics file of the resumed run holds each step once.
  std::ifstream metrics(dir_b + "/metrics.jsonl");
  std::string line;
  int step_records = 0;
  while (std::getline(metrics, line))
    step_records += line.find("\"type\":\"step\"") != std::string::npos;
  EXPECT_EQ(step_records, 8);
  // Checkpoints at each epoch end (save_every 1), the encoder in timm names.
  const auto last = ocl::io::load_checkpoint(dir_b + "/checkpoint-last");
  EXPECT_EQ(last.path, dir_b + "/checkpoint-0002");
  EXPECT_TRUE(last.model.count("blocks.1.attn.qkv.weight"));
  EXPECT_TRUE(last.model.count("pos_embed"));
  EXPECT_TRUE(exists(dir_b + "/config.yaml"));
  EXPECT_TRUE(exists(dir_b + "/train.log"));
}

TEST(Pretrain, ResumeMidEpochReproducesTheUninterruptedRun) {
  // Drop path exercises the per-step seeding of the global generator too.
  expect_resume_reproduces_the_uninterrupted_run({"model.drop_path=0.2", "model.depth=2"});
}

// Independent group views with BYOL's augmentation: the second copy's draws are a function of
// (seed, epoch, sample) like the first's, so a resume reproduces them too.
TEST(Pretrain, ResumeWithIndependentGroupViewsReproducesTheUninterruptedRun) {
  expect_resume_reproduces_the_uninterrupted_run({"model.depth=2", "mask.group_views=independent",
                                                  "data.photometric=byol",
                                                  "data.synthetic_colours=random"});
}

// The nuisance recipe's draws (configs/quickstart_robust.yaml's options and blur) on a set with
// every synthetic nuisance: each group's lighting ramp, blur and noise are functions of (seed,
// epoch, sample, view), so a resume reproduces them too.
TEST(Pretrain, ResumeWithPerGroupNoiseBlurAndLightReproducesTheUninterruptedRun) {
  expect_resume_reproduces_the_uninterrupted_run(
      {"model.depth=2", "model.input_norm=patch", "mask.group_views=independent",
       "data.illumination=64", "data.noise=24", "data.blur=1", "data.synthetic_colours=random",
       "data.synthetic_noise=20", "data.synthetic_gradient=60", "data.synthetic_strokes=2"});
}

// The shortcut alarm compares with the kNN figure eval.shortcut_window runs back: a run resumed
// after some monitor runs measures from the same figures as the uninterrupted one (the history
// is in the checkpoint, not rebuilt from the resumed part).
TEST(Pretrain, ResumeKeepsTheShortcutAlarmsKnnHistory) {
  const std::vector<std::string> extra = {"model.depth=2",           "eval.knn_every=1",
                                          "eval.knn_train_size=128", "eval.knn_val_size=64",
                                          "eval.shortcut_window=1",  "optim.lr=1e-2"};
  auto figures = [](const std::string& dir) {  // epoch → the record's knn_start and knn_before
    std::ifstream in(dir + "/metrics.jsonl");
    std::map<int, std::pair<double, double>> out;
    for (std::string line; std::getline(in, line);) {
      if (line.find("\"type\":\"shortcut\"") == std::string::npos) continue;
      const auto j = nlohmann::json::parse(line);
      out[j.at("epoch").get<int>()] = {j.at("knn_start").get<double>(),
                                       j.at("knn_before").get<double>()};
    }
    return out;
  };
  const auto dir_a = make_temp_dir(), dir_b = make_temp_dir();
  ocl::engine::Pretrainer(tiny_config(dir_a, extra), quiet_options()).run();
  auto stop = quiet_options();
  stop.stop_after_steps = 6;  // in the second epoch, after the first epoch's monitor
  ocl::engine::Pretrainer(tiny_config(dir_b, extra), stop).run();
  auto resume = quiet_options();
  resume.resume = "auto";
  ocl::engine::Pretrainer(tiny_config(dir_b, extra), resume).run();
  const auto a = figures(dir_a), b = figures(dir_b);
  ASSERT_EQ(a.size(), 2u);  // epochs 1 and 2
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b.at(2), a.at(2));
  // Epoch 2 measures from epoch 1's figure, which differs from the start's.
  EXPECT_NE(a.at(2).second, a.at(2).first);
}

// The same resume on WebDataset shards: the sampler's order, the workers' reads and the resume
// position are the data set's whatever its format, and the shards' boundaries change none of them.
TEST(Pretrain, ResumeOnWebDatasetShardsReproducesTheUninterruptedRun) {
  const auto dir = make_temp_dir();
  ocl_test::write_synthetic_shards(dir);
  expect_resume_reproduces_the_uninterrupted_run({"model.depth=2", "data.dataset=webdataset",
                                                  "data.path=" + dir + "/train-{0..2}.tar",
                                                  "data.val_path=" + dir + "/val-{0..2}.tar"});
}

// The same on streamed shards (data/streaming.h): through a pipe: command, and read as local
// streams with data.read stream; the epoch's length from data.samples_per_epoch. A resumed run
// streams the shards again and skips what the stopped run had taken.
TEST(Pretrain, ResumeOnStreamedShardsReproducesTheUninterruptedRun) {
  const auto dir = make_temp_dir();
  ocl_test::write_synthetic_shards(dir);
  for (const std::string prefix : {"pipe:cat ", ""}) {
    SCOPED_TRACE(prefix);
    expect_resume_reproduces_the_uninterrupted_run(
        {"model.depth=2", "data.dataset=webdataset", "data.read=stream",
         "data.path=" + prefix + dir + "/train-{0..2}.tar", "data.samples_per_epoch=128",
         "data.shuffle_buffer=16", "data.val_path=" + dir + "/val-{0..2}.tar"});
  }
  // Without data.samples_per_epoch the sizes.json beside the shards gives the epoch, and the log
  // says which; a resume with another data.workers is warned about.
  std::ofstream(dir + "/sizes.json")
      << R"({"train-0.tar": 42, "train-1.tar": 43, "train-2.tar": 43})";
  const auto out = make_temp_dir();
  auto streamed = [&](const std::string& workers) {
    return tiny_config(out, {"model.depth=2", "data.dataset=webdataset", "data.read=stream",
                             "data.path=" + dir + "/train-{0..2}.tar", "data.workers=" + workers,
                             "data.val_path=" + dir + "/val-{0..2}.tar"});
  };
  auto stop_options = quiet_options();
  stop_options.stop_after_steps = 1;
  EXPECT_TRUE(ocl::engine::Pretrainer(streamed("2"), stop_options).run().interrupted);
  const auto log = read_file(out + "/train.log");
  EXPECT_NE(
      log.find("data: webdataset streamed: 128 samples per epoch (from " + dir + "/sizes.json)"),
      std::string::npos)
      << log;
  auto resume_options = quiet_options();
  resume_options.resume = "auto";
  resume_options.stop_after_steps = 1;
  ocl::engine::Pretrainer(streamed("1"), resume_options).run();
  const auto resumed = read_file(out + "/train.log").substr(log.size());
  EXPECT_NE(resumed.find("resuming streamed data with data.workers 1 where the checkpoint's run "
                         "had 2"),
            std::string::npos)
      << resumed;
}

// The views change the step: the same run with shared views trains differently, and with no
// augmentation independent views are the shared step exactly (the copies are the same pixels).
TEST(Pretrain, IndependentViewsChangeTheStepOnlyWithAugmentation) {
  auto losses = [](std::vector<std::string> extra) {
    auto o = quiet_options();
    o.stop_after_steps = 2;
    ocl::engine::Pretrainer p(tiny_config(make_temp_dir(), std::move(extra)), o);
    return p.run().step_losses;
  };
  const auto shared = losses({"data.photometric=byol"});
  const auto independent = losses({"data.photometric=byol", "mask.group_views=independent"});
  ASSERT_EQ(shared.size(), 2u);
  ASSERT_EQ(independent.size(), 2u);
  EXPECT_NE(shared[0], independent[0]);
  const auto plain = losses({});
  EXPECT_EQ(losses({"mask.group_views=independent"}), plain);
  EXPECT_NE(shared[0], plain[0]);  // the augmentation itself changes the step
  // The illumination gradient alone is an augmentation too: the copies differ.
  EXPECT_NE(losses({"mask.group_views=independent", "data.illumination=64"})[0], plain[0]);
}

// The shortcut alarm on a run built to shortcut: the hard-colour synthetic set, where each image's
// colours identify it, at a high learning rate. The contrastive accuracy climbs (0.5-0.6 of a
// batch of 32) while the kNN monitor stays at chance; the same run on the palette set, where
// only shape tells images apart, stays near 0.2-0.3 and raises nothing. Thresholds are scaled
// to the tiny model (the defaults, 0.9 and 2 points, are for real runs).
TEST(Pretrain, ShortcutAlarmFiresWhenColourSolvesTheTaskAndNotOtherwise) {
  auto run = [](const std::string& colours, const std::string& dir) {
    ocl::engine::Pretrainer p(
        tiny_config(dir, {"data.synthetic_colours=" + colours, "train.epochs=12", "optim.lr=1e-2",
                          "optim.warmup_epochs=0", "eval.knn_every=4", "eval.knn_train_size=128",
                          "eval.knn_val_size=64", "eval.shortcut_accuracy=0.45",
                          "eval.shortcut_knn_gain=5", "train.save_every=12"}),
        quiet_options());
    return p.run();
  };
  auto records = [](const std::string& dir) {
    std::ifstream in(dir + "/metrics.jsonl");
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);)
      if (line.find("\"type\":\"shortcut\"") != std::string::npos) out.push_back(line);
    return out;
  };
  const auto hard_dir = make_temp_dir();
  const auto hard = run("random", hard_dir);
  EXPECT_GE(hard.shortcut_alarms, 2);
  const auto hard_records = records(hard_dir);
  EXPECT_EQ(hard_records.size(), 3u);  // epochs 4, 8, 12
  int fired = 0;
  for (const auto& r : hard_records) fired += r.find("\"alarm\":1") != std::string::npos;
  EXPECT_EQ(fired, hard.shortcut_alarms);
  const std::string log = read_file(hard_dir + "/train.log");
  EXPECT_NE(log.find("shortcut alarm: contrastive accuracy"), std::string::npos);
  EXPECT_NE(log.find("Remove the cue: model.input_norm=patch"), std::string::npos);
  EXPECT_NE(log.find("data.photometric=simclr"), std::string::npos);

  const auto easy_dir = make_temp_dir();
  const auto easy = run("palette", easy_dir);
  EXPECT_EQ(easy.shortcut_alarms, 0);
  const auto easy_records = records(easy_dir);
  EXPECT_EQ(easy_records.size(), 3u);  // recorded, not raised
  for (const auto& r : easy_records) EXPECT_NE(r.find("\"alarm\":0"), std::string::npos) << r;
  EXPECT_EQ(read_file(easy_dir + "/train.log").find("shortcut alarm"), std::string::npos);
}

// With accum_iter 2 the gradient applied at a step is the mean of the gradients of its two
// micro-batches computed separately (each micro-batch keeps its own negatives).
TEST(Pretrain, AccumulatedGradientIsTheMeanOfMicroBatchGradients) {
  const auto dir = make_temp_dir();
  const auto config = tiny_config(dir, {"optim.accum_iter=2", "train.batch_size=16"});
  std::map<std::string, torch::Tensor> applied;
  std::vector<std::string> names;
  auto hook_options = quiet_options();
  hook_options.stop_after_steps = 1;
  hook_options.before_optimizer_step = [&](int64_t step, const std::vector<torch::Tensor>& params) {
    ASSERT_EQ(step, 0);
    ASSERT_EQ(params.size(), names.size());
    for (size_t i = 0; i < params.size(); ++i) applied[names[i]] = params[i].grad().clone();
  };
  ocl::engine::Pretrainer hooked(config, hook_options);
  // The model before any step, to recompute the micro-batch gradients by hand.
  auto reference = std::dynamic_pointer_cast<ocl::ssl::OCLImpl>(hooked.model()->clone());
  ASSERT_TRUE(reference);
  // The trainer hands parameters over in its groups' order: decayed, then undecayed.
  for (const auto& g :
       ocl::optim::weight_decay_groups(*hooked.model(), config.optim.weight_decay)) {
    names.insert(names.end(), g.names.begin(), g.names.end());
  }
  hooked.run();
  ASSERT_EQ(applied.size(), names.size());

  // The same two micro-batches and masks, one at a time.
  auto dataset = ocl::data::make_dataset(config.data, 16, true, config.train.seed);
  auto transform = ocl::data::make_transform(config.data, 16, true);
  ocl::data::LoaderOptions lo;
  lo.batch_size = 16;
  lo.workers = 1;
  lo.seed = config.train.seed;
  ocl::data::Loader loader(dataset, transform, lo);
  loader.start_epoch(0);
  std::map<std::string, torch::Tensor> mean;
  for (int64_t micro = 0; micro < 2; ++micro) {
    auto batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    for (auto& p : reference->parameters()) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    auto images = ocl::data::normalize_images(batch->images, torch::kCPU);
    auto noise = ocl::engine::step_mask_noise(config.train.seed, 0, micro, 16, 16);
    reference->forward(images, noise).loss.backward();
    for (const auto& p : reference->named_parameters()) {
      if (!p.value().requires_grad()) continue;
      auto g = p.value().grad() / 2;
      mean[p.key()] = micro == 0 ? g.clone() : mean[p.key()] + g;
    }
  }
  for (const auto& [name, g] : applied) {
    const double scale = std::max(mean[name].abs().max().item<double>(), 1e-12);
    EXPECT_LE((g - mean[name]).abs().max().item<double>() / scale, 1e-5) << name;
  }
}

// Writes a PNG of random pixels.
void write_png(const std::string& path, int seed) {
  ocl::data::Image image;
  image.height = image.width = 24;
  image.pixels.resize(24 * 24 * 3);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (auto& p : image.pixels) p = static_cast<uint8_t>(seed % 7 + rng() % (256 - seed % 7));
  const auto bytes = ocl::data::encode_png(image);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

TEST(Pretrain, UnreadableImagesAreSkippedAndCountedThenStopTheRunPastTheLimit) {
  const auto root = make_temp_dir();
  for (const char* split : {"/train", "/val"}) {
    ::mkdir((root + split).c_str(), 0777);
    for (int c = 0; c < 2; ++c) {
      const std::string cls = root + split + "/class" + std::to_string(c);
      ::mkdir(cls.c_str(), 0777);
      for (int i = 0; i < 10; ++i) write_png(cls + "/img" + std::to_string(i) + ".png", i + 10 * c);
    }
  }
  std::ofstream(root + "/train/class0/empty.jpg").close();
  std::ofstream(root + "/train/class1/garbage.jpg") << "not a jpeg at all";
  std::ofstream(root + "/train/class1/notes.txt") << "ignored: not an image";

  const auto out = make_temp_dir();
  auto config =
      tiny_config(out, {"data.dataset=imagefolder", "data.path=" + root, "train.batch_size=11",
                        "train.epochs=1", "data.max_bad_fraction=0.2"});
  ocl::engine::Pretrainer trainer(config, quiet_options());
  const auto result = trainer.run();
  EXPECT_FALSE(result.interrupted);
  const auto log = read_file(out + "/train.log");
  EXPECT_NE(log.find("empty.jpg"), std::string::npos) << log;
  EXPECT_NE(log.find("garbage.jpg"), std::string::npos) << log;
  const auto metrics = read_file(out + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"bad_samples\":2"), std::string::npos) << metrics;

  // Batches of 11 visit all 22 files each epoch; 2 unreadable ones are past a 5 % limit
  // (1.1 files): a clear error, not a crash.
  const auto out2 = make_temp_dir();
  auto strict =
      tiny_config(out2, {"data.dataset=imagefolder", "data.path=" + root, "train.batch_size=11",
                         "train.epochs=1", "data.max_bad_fraction=0.05"});
  ocl::engine::Pretrainer strict_trainer(strict, quiet_options());
  try {
    strict_trainer.run();
    FAIL() << "expected the run to stop";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("max_bad_fraction"), std::string::npos) << e.what();
  }
}

TEST(Pretrain, NonFiniteLossStopsNamingTheStepOrIsSkippedABoundedNumberOfTimes) {
  // An absurd learning rate drives the weights to inf within a few steps.
  const auto out = make_temp_dir();
  ocl::engine::Pretrainer trainer(tiny_config(out, {"optim.lr=1e30", "optim.warmup_epochs=0"}),
                                  quiet_options());
  try {
    trainer.run();
    FAIL() << "expected a non-finite stop";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("non-finite"), std::string::npos) << what;
    EXPECT_NE(what.find("global step"), std::string::npos) << what;
    EXPECT_NE(what.find("last good checkpoint"), std::string::npos) << what;
  }
  const auto out2 = make_temp_dir();
  ocl::engine::Pretrainer skipping(
      tiny_config(out2, {"optim.lr=1e30", "optim.warmup_epochs=0", "train.on_nonfinite=skip",
                         "train.max_nonfinite_skips=2"}),
      quiet_options());
  try {
    skipping.run();
    FAIL() << "expected a stop once the skips are used up";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("max_nonfinite_skips"), std::string::npos) << e.what();
  }
  EXPECT_EQ(skipping.state().nonfinite_skips, 2);
}

TEST(Pretrain, OutputFolderOfAnotherRunIsRefusedUnlessResumingOrOverwriting) {
  const auto out = make_temp_dir();
  {
    auto options = quiet_options();
    options.stop_after_steps = 1;
    ocl::engine::Pretrainer(tiny_config(out), options).run();
  }
  try {
    ocl::engine::Pretrainer(tiny_config(out, {"mask.ratio=0.5"}), quiet_options());
    FAIL() << "expected a refusal";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("mask.ratio"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(exists(out + "/checkpoint-0000-000001"))
      << "a refused start must not delete anything";
  auto overwrite = quiet_options();
  overwrite.overwrite = true;
  ocl::engine::Pretrainer fresh(tiny_config(out, {"mask.ratio=0.5"}), overwrite);
  EXPECT_EQ(fresh.state().global_step, 0);
  EXPECT_FALSE(exists(out + "/checkpoint-0000-000001"));
}

#ifdef OCL_PRETRAIN_EXE
using ocl::test::run_exe;

int run_app(const std::string& args, std::string* output) {
  return run_exe(OCL_PRETRAIN_EXE, args, output);
}

std::string tiny_args(const std::string& out) {
  std::string args = "--config " OCL_SOURCE_DIR "/configs/quickstart.yaml";
  for (const char* kv :
       {"model.img_size=16", "model.patch_size=4", "model.embed_dim=32", "model.depth=1",
        "model.num_heads=2", "data.synthetic_train_size=2048", "data.synthetic_val_size=64",
        "train.batch_size=16", "train.epochs=4", "eval.knn_every=0", "log.progress=lines"}) {
    args += std::string(" --set ") + kv;
  }
  return args + " --set train.output_dir=" + out;
}

TEST(PretrainApp, BadConfigValueNamesTheKeyPath) {
  std::string output;
  EXPECT_EQ(run_app(tiny_args(make_temp_dir()) + " --set mask.ratio=1.5", &output), 1);
  EXPECT_NE(output.find("mask.ratio"), std::string::npos) << output;
  output.clear();
  EXPECT_EQ(run_app(tiny_args(make_temp_dir()) + " --set optim.blrr=1", &output), 1);
  EXPECT_NE(output.find("optim.blrr"), std::string::npos) << output;
}

// A bad command line exits 2 with CLI11's message, ranges stated as users write them.
TEST(PretrainApp, BadCommandLineExitsTwo) {
  std::string output;
  EXPECT_EQ(run_app("--bogus", &output), 2) << output;
  output.clear();
  EXPECT_EQ(run_app("--set train.epochs=1", &output), 2) << output;  // no --config
  EXPECT_NE(output.find("--config is required"), std::string::npos) << output;
  output.clear();
  EXPECT_EQ(run_app(tiny_args(make_temp_dir()) + " --nproc-per-node 0", &output), 2) << output;
  EXPECT_NE(output.find("expected a whole number >= 1, got '0'"), std::string::npos) << output;
  output.clear();
  EXPECT_EQ(run_app(tiny_args(make_temp_dir()) + " --stop-after-steps -1", &output), 2) << output;
  output.clear();
  EXPECT_EQ(run_app("--help", &output), 0) << output;
}

TEST(PretrainApp, PrintConfigShowsTheResolvedConfigAndDerivedValues) {
  const auto out = make_temp_dir() + "/never-created";
  std::string output;
  EXPECT_EQ(run_app(tiny_args(out) + " --set optim.accum_iter=2 --print-config", &output), 0)
      << output;
  EXPECT_NE(output.find("accum_iter: 2"), std::string::npos) << output;
  EXPECT_NE(output.find("effective_batch: 32"), std::string::npos) << output;  // 16 × 2
  EXPECT_NE(output.find("tokens_per_group: 5"), std::string::npos) << output;  // 16 · 0.7 / 2
  EXPECT_NE(output.find("steps_per_epoch: 64"), std::string::npos) << output;  // 2048 / 32
  EXPECT_FALSE(exists(out)) << "--print-config must not create the output folder";
}

// Asked for CUDA where there is none, the apps stop at once saying why, in every build: a CPU
// LibTorch, or a CUDA LibTorch on a machine without a GPU (CI's CUDA build), where ocl_bench is
// compiled with its CUDA statistics (OCL_BENCH_CUDA) and must still not reach them.
TEST(PretrainApp, CudaWithoutAGpuIsRefusedNamingWhy) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  const std::string cuda = " --set train.device=cuda";
  std::string output;
  EXPECT_EQ(run_app(tiny_args(make_temp_dir()) + cuda, &output), 1) << output;
  EXPECT_NE(output.find("train.device is 'cuda' but CUDA is not available"), std::string::npos)
      << output;
#ifdef OCL_BENCH_EXE
  for (const char* extra : {"", " --max-batch"}) {
    output.clear();
    EXPECT_EQ(
        run_exe(OCL_BENCH_EXE,
                "--config " OCL_SOURCE_DIR "/configs/quickstart.yaml --steps 1" + cuda + extra,
                &output),
        1)
        << output;
    EXPECT_NE(output.find("train.device is 'cuda' but CUDA is not available"), std::string::npos)
        << output;
  }
#endif
}

#ifdef OCL_BENCH_EXE
// ocl_bench --grad-sync times the training loop's own step three ways on two ranks (no
// all-reduce, all-reduce during backward, after it) and prints one line of medians on rank 0.
TEST(BenchApp, GradSyncTimesTheLoopsStepOnTwoRanks) {
  std::string output;
  ASSERT_EQ(run_exe(OCL_BENCH_EXE,
                    "--grad-sync --nproc-per-node 2 --steps 2 --warmup 1 --config " OCL_SOURCE_DIR
                    "/configs/quickstart.yaml --set train.batch_size=8 --set train.threads=1",
                    &output),
            0)
      << output;
  EXPECT_NE(output.find("grad_sync world=2 backend=gloo"), std::string::npos) << output;
  const std::regex line(
      "step_local_ms=[0-9.]+ step_overlapped_ms=[0-9.]+ "
      "step_allreduce_after_backward_ms=[0-9.]+ allreduce_ms=[-0-9.]+ ");
  EXPECT_TRUE(std::regex_search(output, line)) << output;
  // Rank 0 alone prints the figures.
  EXPECT_EQ(output.find("[rank 1] step_local_ms"), std::string::npos) << output;
}

// --micro times the step's pieces at the config's shapes: every linear's three products, the
// explicit attention (and each SDPA backend that LibTorch lets a program choose, or its reason
// not to run), and both paths of each fused operation; no step.
TEST(BenchApp, MicroTimesTheBlocksPieces) {
  std::string output;
  ASSERT_EQ(run_exe(OCL_BENCH_EXE,
                    "--micro --config " OCL_SOURCE_DIR
                    "/configs/quickstart.yaml --set train.batch_size=4 --set train.threads=1",
                    &output),
            0)
      << output;
  for (const char* layer : {"qkv", "proj", "fc1", "fc2"}) {
    for (const char* pass : {"fwd", "dgrad", "wgrad"}) {
      const std::regex gemm(std::string("gemm=") + layer + "[.]" + pass +
                            " M=[0-9]+ N=[0-9]+ K=[0-9]+ ms=[0-9.]+ tflops=[0-9.]+");
      EXPECT_TRUE(std::regex_search(output, gemm)) << layer << "." << pass << "\n" << output;
    }
  }
  EXPECT_TRUE(
      std::regex_search(output, std::regex("attention=explicit shape=8x[0-9]+x[0-9]+x[0-9]+ "
                                           "fwd_bwd_ms=[0-9.]+")))
      << output;
  for (const char* path : {"composite", "kernel"}) {
    EXPECT_TRUE(std::regex_search(
        output, std::regex(std::string("op=residual_layer_norm path=") + path +
                           " rows=[0-9]+ D=[0-9]+ fwd_bwd_ms=[0-9.]+ gb_per_s=[0-9.]+")))
        << path << "\n"
        << output;
    EXPECT_NE(output.find(std::string("op=linear_gelu path=") + path), std::string::npos) << output;
  }
  EXPECT_EQ(output.find("step_ms="), std::string::npos) << output;
}

// --print-config prints what the step benchmark trains: the config on synthetic data, with the
// derived values and its steps per epoch, and runs nothing.
TEST(BenchApp, PrintConfigShowsTheStepsConfig) {
  std::string output;
  ASSERT_EQ(run_exe(OCL_BENCH_EXE,
                    "--print-config --config " OCL_SOURCE_DIR
                    "/configs/quickstart.yaml --set train.batch_size=16 --set "
                    "data.synthetic_train_size=256",
                    &output),
            0)
      << output;
  EXPECT_NE(output.find("effective_batch: 16"), std::string::npos) << output;
  EXPECT_NE(output.find("#   steps_per_epoch: 16"), std::string::npos) << output;  // 256 / 16
  EXPECT_EQ(output.find("step_ms="), std::string::npos) << output;
}
#endif

// The TensorBoard event files of a run stopped mid-epoch and resumed, read by an independent
// reader (tests/integration/read_tfevents.py: python3-protobuf with TensorBoard's field numbers,
// both CRCs of every record, TensorBoard's purge on SessionLog START): one curve per figure, equal
// to metrics.jsonl's records (float32 in the event file), and the config as text.
TEST(PretrainApp, TensorBoardFilesReadAsOneCurveEqualToMetricsJsonl) {
  const auto out = make_temp_dir();
  const std::string args =
      tiny_args(out) + " --set log.every=1 --set train.epochs=2 --set train.steps_per_epoch=4";
  std::string output;
  ASSERT_EQ(run_app(args + " --stop-after-steps 5", &output), 0) << output;
  // Stopped after step 5 of 8 (mid-epoch 2), with its checkpoint there; the resumed run writes
  // steps 6 to 8 in a second file that starts with SessionLog START at step 6.
  ASSERT_EQ(run_app(args + " --resume auto", &output), 0) << output;
  std::string json;
  ASSERT_EQ(run_exe("/usr/bin/python3", OCL_SOURCE_DIR "/tests/integration/read_tfevents.py " + out,
                    &json),
            0)
      << json;
  const auto read = nlohmann::json::parse(json);
  EXPECT_EQ(read["files"], 2) << json;
  EXPECT_EQ(read["file_version"], "brain.Event:2") << json;
  EXPECT_EQ(read["session_starts"], nlohmann::json::array({6})) << json;
  ASSERT_TRUE(read["texts"].contains("config")) << json;
  EXPECT_NE(read["texts"]["config"][0][1].get<std::string>().find("train:"), std::string::npos);
  // metrics.jsonl's step records, in order: (global_step, loss, lr).
  std::vector<std::array<double, 3>> records;
  std::ifstream in(out + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["type"] == "step") records.push_back({j["global_step"], j["loss"], j["lr"]});
  }
  ASSERT_EQ(records.size(), 8u) << "2 epochs of 4 steps";
  for (const auto& [tag, column] :
       {std::pair<const char*, int>{"train/loss", 1}, {"train/lr", 2}}) {
    const auto& curve = read["scalars"][tag];
    ASSERT_EQ(curve.size(), records.size()) << tag << ": " << json;
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(curve[i][0].get<double>(), records[i][0]) << tag << " point " << i;
      const double want = records[i][column];
      EXPECT_NEAR(curve[i][1].get<double>(), want, 1e-6 * std::abs(want) + 1e-12)
          << tag << " point " << i;
    }
  }
  EXPECT_TRUE(read["scalars"].contains("epoch/loss")) << json;
  // log.tensorboard: false writes none.
  const auto off = make_temp_dir();
  ASSERT_EQ(run_app(tiny_args(off) + " --set train.epochs=1 --set log.tensorboard=false", &output),
            0)
      << output;
  for (const auto& name : ocl::io::list_dir(off))
    EXPECT_EQ(name.rfind("events.out.tfevents.", 0), std::string::npos) << name;
}

// scripts/plot_metrics.py over two runs that differ in one config key: one PNG with both, its
// legend naming each run and that key's value; one run alone keeps its own metrics.png.
TEST(PlotMetrics, TwoRunsAreOverlaidWithTheKeyTheyDifferIn) {
  std::string output;
  if (run_exe("/usr/bin/python3", "-c 'import matplotlib, yaml'", &output) != 0)
    GTEST_SKIP() << "/usr/bin/python3 has no matplotlib or PyYAML (python3-matplotlib and "
                    "python3-yaml: scripts/install-deps.sh installs them on the host; the Debian "
                    "13 roots leave them out)";
  const auto root = make_temp_dir();
  for (const auto& [run, ratio] : {std::pair<const char*, const char*>{"a", "0.3"}, {"b", "0.5"}}) {
    ASSERT_EQ(run_app(tiny_args(root + "/" + run) +
                          " --set train.epochs=2 --set train.steps_per_epoch=3 --set log.every=1"
                          " --set eval.knn_every=1 --set mask.ratio=" +
                          ratio,
                      &output),
              0)
        << output;
  }
  const std::string png_signature = "\x89PNG\r\n\x1a\n";
  const std::string script = OCL_SOURCE_DIR "/scripts/plot_metrics.py ";
  output.clear();
  ASSERT_EQ(run_exe("/usr/bin/python3", script + root + "/a " + root + "/b", &output), 0) << output;
  EXPECT_NE(output.find("(2 runs; differing keys: mask.ratio)"), std::string::npos) << output;
  EXPECT_NE(output.find("  a: mask.ratio=0.3\n"), std::string::npos) << output;
  EXPECT_NE(output.find("  b: mask.ratio=0.5\n"), std::string::npos) << output;
  EXPECT_EQ(read_file(root + "/metrics-comparison.png").substr(0, 8), png_signature);

  output.clear();
  ASSERT_EQ(run_exe("/usr/bin/python3", script + root + "/a", &output), 0) << output;
  EXPECT_EQ(read_file(root + "/a/metrics.png").substr(0, 8), png_signature);
  EXPECT_FALSE(exists(root + "/a/metrics-comparison.png"));

  // The careless cases: -o a folder writes metrics.png inside it, -o a name without an extension
  // says the .png name it wrote; a missing output folder is named; a run without config.yaml is
  // said so in the legend instead of making every key differ; lines of non-UTF-8 bytes, records
  // that are no object and wrongly typed values are skipped, not a traceback.
  output.clear();
  ASSERT_EQ(run_exe("/usr/bin/python3", script + root + "/a -o " + root, &output), 0) << output;
  EXPECT_NE(output.find("wrote " + root + "/metrics.png"), std::string::npos) << output;
  EXPECT_EQ(read_file(root + "/metrics.png").substr(0, 8), png_signature);
  output.clear();
  ASSERT_EQ(run_exe("/usr/bin/python3", script + root + "/a -o " + root + "/plain", &output), 0)
      << output;
  EXPECT_NE(output.find("wrote " + root + "/plain.png"), std::string::npos) << output;
  output.clear();
  EXPECT_EQ(
      run_exe("/usr/bin/python3", script + root + "/a -o " + root + "/no/such/p.png", &output), 1)
      << output;
  EXPECT_NE(output.find("cannot write " + root + "/no/such/p.png"), std::string::npos) << output;
  EXPECT_EQ(output.find("Traceback"), std::string::npos) << output;
  std::remove((root + "/b/config.yaml").c_str());
  {
    std::ofstream damage(root + "/b/metrics.jsonl", std::ios::app);
    damage
        << "\xff\xfe not text\n[1, 2]\n{\"type\": \"step\", \"epoch\": \"x\", \"loss\": \"y\"}\n";
  }
  output.clear();
  ASSERT_EQ(run_exe("/usr/bin/python3", script + root + "/a " + root + "/b", &output), 0) << output;
  EXPECT_NE(output.find("differing keys: none"), std::string::npos) << output;
  EXPECT_NE(output.find("  b: no config.yaml"), std::string::npos) << output;
  EXPECT_NE(output.find("skipping a damaged line"), std::string::npos) << output;
  EXPECT_NE(output.find("skipping a line that is no record"), std::string::npos) << output;
  EXPECT_EQ(output.find("Traceback"), std::string::npos) << output;
}

TEST(PretrainApp, SigtermMidRunLeavesALoadableCheckpointAndResumeFinishes) {
  const auto out = make_temp_dir();
  const std::string cmd = std::string(OCL_PRETRAIN_EXE) + " " + tiny_args(out);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::freopen("/dev/null", "w", stdout);
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait for the first logged step, then pre-empt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (read_file(out + "/metrics.jsonl").find("\"type\":\"step\"") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the run never logged a step";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto latest = ocl::io::latest_checkpoint(out);
  ASSERT_FALSE(latest.empty());
  const auto c = ocl::io::load_checkpoint(latest);
  EXPECT_GT(c.state.global_step, 0);
  EXPECT_LT(c.state.epoch, 4) << "the run should have been stopped early";
  std::string output;
  EXPECT_EQ(run_app(tiny_args(out) + " --resume auto", &output), 0) << output;
  EXPECT_NE(output.find("resumed from"), std::string::npos) << output;
  EXPECT_EQ(ocl::io::load_checkpoint(out + "/checkpoint-last").state.epoch, 4);
}
#endif

}  // namespace
