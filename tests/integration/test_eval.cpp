// The evaluation apps end to end on the synthetic data: ocl_knn, ocl_linprobe and ocl_finetune in
// one process and sharded over two (Gloo on the loopback), on set sizes that the number of
// processes does not divide.
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "integration/process_util.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/distributed/launch.h>
#include <ocl/io/safetensors.h>

namespace {

using ocl::test::read_file;

std::string make_dir(const std::string& name) {
  return ocl::test::make_temp_dir("ocl_eval_" + name + "_");
}

// Points of top-1 by which the pre-trained encoder must beat the random one end to end.
constexpr double kMargin = 4.0;

// ocl_knn on the quickstart config (a random encoder by default); returns the exit code.
int run_knn(const std::string& dir, const std::string& name, const std::vector<std::string>& extra,
            const std::string& weights = "none") {
  std::vector<std::string> args = {"--config",
                                   std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml",
                                   "--weights",
                                   weights,
                                   "--train-size",
                                   "37",
                                   "--val-size",
                                   "13",
                                   "--k",
                                   "5",
                                   "--k",
                                   "20",
                                   "--set",
                                   "data.workers=1",
                                   "--set",
                                   "train.batch_size=8",
                                   "--save-features",
                                   dir + "/" + name + ".safetensors"};
  args.insert(args.end(), extra.begin(), extra.end());
  const pid_t pid =
      ocl_test::spawn(OCL_KNN_EXE, args, {}, dir + "/" + name + ".log", ocl_test::kLaunchVars);
  return ocl_test::wait_for(pid, 300);
}

std::vector<std::string> knn_lines(const std::string& log) {
  std::vector<std::string> out;
  const std::regex line("kNN k \\d+, T [0-9.]+: top-1 [0-9.]+ %, top-5 [0-9.]+ %");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it)
    out.push_back(it->str());
  return out;
}

// 37 and 13 images over 2 processes: every image's features exactly once, in order, and the
// same figures as one process.
TEST(OclKnn, TwoProcessesShardOddSetsExactlyOnce) {
  const auto dir = make_dir("knn");
  ASSERT_EQ(run_knn(dir, "one", {}), 0) << read_file(dir + "/one.log");
  ASSERT_EQ(run_knn(dir, "two", {"--nproc-per-node", "2"}), 0) << read_file(dir + "/two.log");
  const auto one = ocl::io::read_safetensors(dir + "/one.safetensors").tensors;
  const auto two = ocl::io::read_safetensors(dir + "/two.safetensors").tensors;
  ASSERT_EQ(one.at("train_features").size(0), 37);
  ASSERT_EQ(one.at("val_features").size(0), 13);
  for (const auto& name : {"train_features", "val_features"}) {
    ASSERT_EQ(one.at(name).sizes(), two.at(name).sizes()) << name;
    // The same images in other batches: equal to float rounding.
    EXPECT_LT((one.at(name) - two.at(name)).abs().max().item<double>(), 1e-5) << name;
  }
  for (const auto& name : {"train_labels", "val_labels"}) {
    EXPECT_TRUE(torch::equal(one.at(name), two.at(name))) << name;
  }
  const auto lines_one = knn_lines(read_file(dir + "/one.log"));
  const auto lines_two = knn_lines(read_file(dir + "/two.log"));
  ASSERT_EQ(lines_one.size(), 2u) << read_file(dir + "/one.log");
  EXPECT_EQ(lines_one, lines_two) << read_file(dir + "/two.log");
  EXPECT_NE(read_file(dir + "/one.log").find("encoder weights: none"), std::string::npos);
}

TEST(OclKnn, MissingWeightsFileIsNamed) {
  const auto dir = make_dir("knn_missing");
  EXPECT_EQ(run_knn(dir, "bad", {}, dir + "/nope.safetensors"), 1);
  EXPECT_NE(read_file(dir + "/bad.log").find(dir + "/nope.safetensors"), std::string::npos)
      << read_file(dir + "/bad.log");
}

// --save-features into a folder that does not exist: refused before any extraction, naming the
// folder (it used to fail only after every feature had been extracted, and print no figure).
TEST(OclKnn, SaveFeaturesIntoAMissingFolderIsRefusedFirst) {
  const auto dir = make_dir("knn_dest");
  const std::vector<std::string> args = {
      "--config",        std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml",
      "--weights",       "none",
      "--train-size",    "37",
      "--val-size",      "13",
      "--set",           "data.workers=1",
      "--save-features", dir + "/no/such/folder/features.safetensors"};
  const pid_t pid = ocl_test::spawn(OCL_KNN_EXE, args, {}, dir + "/knn.log", ocl_test::kLaunchVars);
  EXPECT_EQ(ocl_test::wait_for(pid, 120), 1);
  const std::string log = read_file(dir + "/knn.log");
  EXPECT_NE(log.find("there is no folder '" + dir +
                     "/no/such/folder' (make it first); nothing "
                     "was extracted"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("features:"), std::string::npos) << log;
}

// model.input_norm end to end: a pre-training run records it in its encoder.safetensors, an
// evaluation configured alike loads the weights, one configured without it is refused naming
// the key (its features would be silently wrong).
TEST(InputNorm, PretrainingRecordsItAndEvaluationChecksIt) {
  const auto dir = make_dir("input_norm");
  const std::vector<std::string> args = {
      "--config", std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml",
      "--set",    "model.input_norm=patch",
      "--set",    "data.synthetic_train_size=64",
      "--set",    "data.synthetic_val_size=16",
      "--set",    "data.workers=1",
      "--set",    "train.batch_size=16",
      "--set",    "train.epochs=1",
      "--set",    "eval.knn_every=0",
      "--set",    "train.output_dir=" + dir + "/pre"};
  const pid_t pid =
      ocl_test::spawn(OCL_PRETRAIN_EXE, args, {}, dir + "/pretrain.log", ocl_test::kLaunchVars);
  ASSERT_EQ(ocl_test::wait_for(pid, 300), 0) << read_file(dir + "/pretrain.log");
  const auto file = ocl::io::read_safetensors(dir + "/pre/checkpoint-last/encoder.safetensors");
  EXPECT_EQ(file.metadata.at("ocl.input_norm"), "patch");
  EXPECT_EQ(file.metadata.at("ocl.input_norm_eps"), "0.25");
  EXPECT_EQ(file.metadata.at("format"), "pt");

  const std::string weights = dir + "/pre/checkpoint-last";
  EXPECT_EQ(run_knn(dir, "same", {"--set", "model.input_norm=patch"}, weights), 0)
      << read_file(dir + "/same.log");
  EXPECT_EQ(run_knn(dir, "plain", {}, weights), 1) << read_file(dir + "/plain.log");
  EXPECT_NE(read_file(dir + "/plain.log")
                .find("were trained with model.input_norm: patch, but the model is configured "
                      "with model.input_norm: none"),
            std::string::npos)
      << read_file(dir + "/plain.log");
}

// ocl_linprobe on the quickstart config at tiny sizes (64 training images, 13 validation images,
// batch 16: 4 steps per epoch), MAE's protocol unless `extra` sets cached features; the output
// in dir/out. Returns the exit code.
int run_linprobe(const std::string& dir, const std::string& name, const std::string& out,
                 const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      "--config",  std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml",
      "--weights", "none",
      "--set",     "data.workers=1",
      "--set",     "data.synthetic_train_size=64",
      "--set",     "data.synthetic_val_size=13",
      "--set",     "linprobe.batch_size=16",
      "--set",     "linprobe.epochs=2",
      "--set",     "linprobe.warmup_epochs=1",
      "--set",     "log.every=1",
      "--set",     "linprobe.cached_features=false",
      "--set",     "linprobe.output_dir=" + dir + "/" + out};
  args.insert(args.end(), extra.begin(), extra.end());
  const pid_t pid =
      ocl_test::spawn(OCL_LINPROBE_EXE, args, {}, dir + "/" + name + ".log", ocl_test::kLaunchVars);
  return ocl_test::wait_for(pid, 300);
}

std::string first_match(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? m.str() : "";
}

TEST(OclLinprobe, TrainsWritesMetricsAndResumes) {
  const auto dir = make_dir("linprobe");
  ASSERT_EQ(run_linprobe(dir, "first", "out", {}), 0) << read_file(dir + "/first.log");
  const auto log = read_file(dir + "/first.log");
  EXPECT_NE(log.find("encoder weights: none"), std::string::npos) << log;
  EXPECT_NE(first_match(log,
                        "linear probe: best top-1 [0-9.]+ % \\(epoch [12]\\), last top-1 "
                        "[0-9.]+ %, top-5 [0-9.]+ %"),
            "")
      << log;
  const auto metrics = read_file(dir + "/out/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"linprobe_epoch\""), 2) << metrics;
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"linprobe_step\""), 8) << metrics;
  EXPECT_NE(metrics.find("\"best_top1\""), std::string::npos) << metrics;
  EXPECT_NE(read_file(dir + "/out/train.log").find("val top-1"), std::string::npos);

  // Finished: --resume auto has nothing to do, and says so without a "best top-1" line of a
  // run it did not train; without it the folder is refused.
  ASSERT_EQ(run_linprobe(dir, "again", "out", {"--resume", "auto"}), 0)
      << read_file(dir + "/again.log");
  EXPECT_NE(read_file(dir + "/again.log").find("nothing to do"), std::string::npos)
      << read_file(dir + "/again.log");
  EXPECT_EQ(read_file(dir + "/again.log").find("best top-1"), std::string::npos)
      << read_file(dir + "/again.log");
  EXPECT_EQ(run_linprobe(dir, "refused", "out", {}), 1);
  EXPECT_NE(read_file(dir + "/refused.log").find("--resume auto"), std::string::npos)
      << read_file(dir + "/refused.log");

  // One epoch, then --resume auto with two: the second epoch continues from the checkpoint.
  ASSERT_EQ(run_linprobe(dir, "short", "cont", {"--set", "linprobe.epochs=1"}), 0)
      << read_file(dir + "/short.log");
  ASSERT_EQ(run_linprobe(dir, "cont", "cont", {"--resume", "auto"}), 0)
      << read_file(dir + "/cont.log");
  const auto cont = read_file(dir + "/cont.log");
  EXPECT_NE(cont.find("resumed from"), std::string::npos) << cont;
  EXPECT_NE(cont.find("epoch 2/2 done"), std::string::npos) << cont;
  EXPECT_EQ(cont.find("epoch 1/2 done"), std::string::npos) << cont;
  EXPECT_EQ(
      ocl::test::count_of(read_file(dir + "/cont/metrics.jsonl"), "\"type\":\"linprobe_epoch\""),
      2);

  // train.steps_per_epoch caps the probe's epochs as it caps the other engines' (4 steps of
  // batch 16 without it), on both paths: the image loader and the cached features.
  for (const char* cached : {"false", "true"}) {
    const std::string out = std::string("capped_") + cached;
    ASSERT_EQ(run_linprobe(dir, out, out,
                           {"--set", "train.steps_per_epoch=1", "--set",
                            std::string("linprobe.cached_features=") + cached}),
              0)
        << read_file(dir + "/" + out + ".log");
    EXPECT_EQ(ocl::test::count_of(read_file(dir + "/" + out + "/metrics.jsonl"),
                                  "\"type\":\"linprobe_step\""),
              2)
        << cached;
    EXPECT_NE(read_file(dir + "/" + out + ".log").find("2 epochs of 1 steps"), std::string::npos)
        << read_file(dir + "/" + out + ".log");
  }
}

// The same head evaluated by one and two processes on 13 validation images: every image counts
// exactly once, so the figures agree to the digit; and a two-process probe trains end to end.
TEST(OclLinprobe, TwoProcessesEvaluateLikeOne) {
  const auto dir = make_dir("linprobe2");
  ASSERT_EQ(run_linprobe(dir, "train", "out", {"--set", "linprobe.epochs=1"}), 0)
      << read_file(dir + "/train.log");
  const std::string ckpt = dir + "/out/checkpoint-last";
  const std::string line = "linear probe \\(eval\\): top-1 [0-9.]+ %, top-5 [0-9.]+ %";
  ASSERT_EQ(run_linprobe(dir, "eval1", "out", {"--eval", "--resume", ckpt}), 0)
      << read_file(dir + "/eval1.log");
  ASSERT_EQ(
      run_linprobe(dir, "eval2", "out", {"--eval", "--resume", ckpt, "--nproc-per-node", "2"}), 0)
      << read_file(dir + "/eval2.log");
  const auto one = first_match(read_file(dir + "/eval1.log"), line);
  const auto two = first_match(read_file(dir + "/eval2.log"), line);
  ASSERT_NE(one, "") << read_file(dir + "/eval1.log");
  EXPECT_EQ(one, two) << read_file(dir + "/eval2.log");
  EXPECT_NE(read_file(dir + "/eval2.log").find("on 13 images"), std::string::npos)
      << read_file(dir + "/eval2.log");

  // Two processes of batch 8 take the steps of one process of batch 16, with the gradient
  // all-reduce as dist.* says: buckets of at most 1 KB put the head's fc.bias (40 bytes) and
  // fc.weight (5 KB) in two buckets (the default 1 MiB first bucket holds both), after backward.
  ASSERT_EQ(run_linprobe(dir, "dist", "dist",
                         {"--set", "linprobe.batch_size=8", "--set", "dist.bucket_mb=0.001",
                          "--set", "dist.first_bucket_mb=0.001", "--set", "dist.overlap=false",
                          "--nproc-per-node", "2"}),
            0)
      << read_file(dir + "/dist.log");
  const auto metrics = read_file(dir + "/dist/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"linprobe_epoch\""), 2) << metrics;
  const auto dist_log = read_file(dir + "/dist.log");
  EXPECT_NE(dist_log.find("effective 16"), std::string::npos) << dist_log;
  EXPECT_NE(dist_log.find("gradient all-reduce: 2 buckets"), std::string::npos) << dist_log;
  EXPECT_NE(dist_log.find("after backward (dist.overlap off)"), std::string::npos) << dist_log;

  // The cached-features path over two processes: each takes every other row of each step.
  ASSERT_EQ(run_linprobe(dir, "cached", "cached",
                         {"--set", "linprobe.batch_size=8", "--set",
                          "linprobe.cached_features=true", "--nproc-per-node", "2"}),
            0)
      << read_file(dir + "/cached.log");
  const auto cached = read_file(dir + "/cached.log");
  EXPECT_NE(cached.find("64 training images extracted"), std::string::npos) << cached;
  EXPECT_NE(cached.find("cached features (no augmentation)"), std::string::npos) << cached;
  EXPECT_EQ(
      ocl::test::count_of(read_file(dir + "/cached/metrics.jsonl"), "\"type\":\"linprobe_epoch\""),
      2);
}

// --print-config in every evaluation app: the resolved config and its derived values; for the
// training ones their section's effective batch, lr and steps per epoch as the loader cuts them.
// Nothing is created or trained.
TEST(EvaluationApps, PrintConfigShowsEachSectionsDerivedValues) {
  const auto dir = make_dir("print");
  const std::string config = std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml";
  auto print = [&](const char* exe, const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(),
                {"--config", config, "--print-config", "--set", "data.synthetic_train_size=64",
                 "--set", "train.output_dir=" + dir + "/never"});
    const pid_t pid =
        ocl_test::spawn(exe, args, {}, dir + "/" + name + ".log", ocl_test::kLaunchVars);
    EXPECT_EQ(ocl_test::wait_for(pid, 120), 0) << read_file(dir + "/" + name + ".log");
    return read_file(dir + "/" + name + ".log");
  };
  const auto finetune = print(OCL_FINETUNE_EXE, "finetune",
                              {"--set", "finetune.batch_size=8", "--set", "finetune.accum_iter=2"});
  EXPECT_NE(finetune.find("# fine-tuning:"), std::string::npos) << finetune;
  EXPECT_NE(finetune.find("effective_batch: 16  # finetune.batch_size"), std::string::npos)
      << finetune;
  EXPECT_NE(finetune.find("#   steps_per_epoch: 4"), std::string::npos) << finetune;  // 64 / 16
  const auto probe =
      print(OCL_LINPROBE_EXE, "linprobe", {"--weights", "none", "--set", "linprobe.batch_size=32"});
  EXPECT_NE(probe.find("# linear probe:"), std::string::npos) << probe;
  EXPECT_NE(probe.find("effective_batch: 32  # linprobe.batch_size"), std::string::npos) << probe;
  EXPECT_NE(probe.find("#   steps_per_epoch: 2"), std::string::npos) << probe;  // 64 / 32
  const auto knn = print(OCL_KNN_EXE, "knn", {"--weights", "none"});
  EXPECT_NE(knn.find("model:"), std::string::npos) << knn;
  EXPECT_NE(knn.find("# derived:"), std::string::npos) << knn;
  EXPECT_EQ(knn.find("#   steps_per_epoch"), std::string::npos) << knn;  // it trains nothing
  EXPECT_EQ(knn.find("kNN k"), std::string::npos) << knn;
  EXPECT_FALSE(std::ifstream(dir + "/never").good());
}

// ocl_finetune on the quickstart config at tiny sizes (64 training images, 13 validation images,
// batch 16: 4 steps per epoch, 2 epochs), the whole recipe on (RandAugment, random erasing,
// mixup / cutmix, drop path, EMA); the output in dir/out. Returns the exit code.
int run_finetune(const std::string& dir, const std::string& name, const std::string& out,
                 const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      "--config",  std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml",
      "--weights", "none",
      "--set",     "data.workers=1",
      "--set",     "data.synthetic_train_size=64",
      "--set",     "data.synthetic_val_size=13",
      "--set",     "train.threads=1",
      "--set",     "finetune.batch_size=16",
      "--set",     "finetune.epochs=2",
      "--set",     "finetune.warmup_epochs=1",
      "--set",     "finetune.drop_path=0.1",
      "--set",     "finetune.model_ema=true",
      "--set",     "finetune.model_ema_decay=0.9",
      "--set",     "log.every=1",
      "--set",     "finetune.output_dir=" + dir + "/" + out};
  args.insert(args.end(), extra.begin(), extra.end());
  const pid_t pid =
      ocl_test::spawn(OCL_FINETUNE_EXE, args, {}, dir + "/" + name + ".log", ocl_test::kLaunchVars);
  return ocl_test::wait_for(pid, 300);
}

ocl::io::TensorMap last_weights(const std::string& out) {
  return ocl::io::read_safetensors(out + "/checkpoint-last/encoder.safetensors").tensors;
}

// Trains, logs, writes the best model in timm names; a run stopped mid-epoch and resumed ends
// with the very weights of the run that was never stopped (every draw is a function of the seed
// and the step); finished runs are not redone and their folders are not overwritten.
TEST(OclFinetune, TrainsAndAStoppedRunResumesToTheSameWeights) {
  const auto dir = make_dir("finetune");
  ASSERT_EQ(run_finetune(dir, "whole", "whole", {}), 0) << read_file(dir + "/whole.log");
  const auto log = read_file(dir + "/whole.log");
  EXPECT_NE(log.find("encoder weights: none"), std::string::npos) << log;
  EXPECT_NE(log.find("RandAugment(n=2, m=9, mstd=0.5, mmax=10, inc=1, p=0.5"), std::string::npos)
      << log;
  EXPECT_NE(first_match(log,
                        "fine-tuning: best top-1 [0-9.]+ % \\(epoch [12]\\), last top-1 "
                        "[0-9.]+ %, top-5 [0-9.]+ %"),
            "")
      << log;
  const auto metrics = read_file(dir + "/whole/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"finetune_epoch\""), 2) << metrics;
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"finetune_step\""), 8) << metrics;
  EXPECT_EQ(ocl::test::count_of(metrics, "\"ema_top1\""), 2) << metrics;
  const auto best = ocl::io::read_safetensors(dir + "/whole/model-best.safetensors").tensors;
  EXPECT_EQ(best.at("head.weight").size(0), 10);
  EXPECT_EQ(best.count("fc_norm.weight"), 1u);
  EXPECT_EQ(best.at("patch_embed.proj.weight").dim(), 4);

  // Stopped after 3 of the 8 steps (mid-epoch), then resumed.
  ASSERT_EQ(run_finetune(dir, "stopped", "cont", {"--stop-after-steps", "3"}), 0)
      << read_file(dir + "/stopped.log");
  EXPECT_NE(read_file(dir + "/stopped.log").find("stopped cleanly"), std::string::npos)
      << read_file(dir + "/stopped.log");
  ASSERT_EQ(run_finetune(dir, "resumed", "cont", {"--resume", "auto"}), 0)
      << read_file(dir + "/resumed.log");
  const auto resumed = read_file(dir + "/resumed.log");
  EXPECT_NE(resumed.find("resumed from"), std::string::npos) << resumed;
  EXPECT_EQ(
      ocl::test::count_of(read_file(dir + "/cont/metrics.jsonl"), "\"type\":\"finetune_epoch\""),
      2);
  const auto a = last_weights(dir + "/whole");
  const auto b = last_weights(dir + "/cont");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }

  // Finished: --resume auto has nothing to do; without it the folder is refused.
  ASSERT_EQ(run_finetune(dir, "again", "whole", {"--resume", "auto"}), 0)
      << read_file(dir + "/again.log");
  EXPECT_NE(read_file(dir + "/again.log").find("nothing to do"), std::string::npos);
  EXPECT_EQ(run_finetune(dir, "refused", "whole", {}), 1);
  EXPECT_NE(read_file(dir + "/refused.log").find("--resume auto"), std::string::npos)
      << read_file(dir + "/refused.log");
  // --eval needs a model to evaluate.
  EXPECT_EQ(run_finetune(dir, "noresume", "fresh", {"--eval"}), 1);
  EXPECT_NE(read_file(dir + "/noresume.log").find("--resume"), std::string::npos)
      << read_file(dir + "/noresume.log");
  // Without --weights and nothing to resume it refuses, rather than fine-tune a random encoder.
  const pid_t pid =
      ocl_test::spawn(OCL_FINETUNE_EXE,
                      {"--config", std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml",
                       "--resume", "auto", "--set", "finetune.output_dir=" + dir + "/empty"},
                      {}, dir + "/noweights.log", ocl_test::kLaunchVars);
  EXPECT_EQ(ocl_test::wait_for(pid, 120), 1);
  EXPECT_NE(read_file(dir + "/noweights.log").find("no encoder weights: give --weights"),
            std::string::npos)
      << read_file(dir + "/noweights.log");
}

// The fine-tuned model evaluated by one and two processes on 13 validation images: every image
// counts exactly once, so the figures agree to the digit; two processes of batch 8 train with
// the steps of one process of batch 16.
TEST(OclFinetune, TwoProcessesEvaluateLikeOneAndTrain) {
  const auto dir = make_dir("finetune2");
  ASSERT_EQ(run_finetune(dir, "train", "out", {"--set", "finetune.epochs=1"}), 0)
      << read_file(dir + "/train.log");
  const std::string line = "fine-tuning \\(eval\\): top-1 [0-9.]+ %, top-5 [0-9.]+ %";
  ASSERT_EQ(run_finetune(dir, "eval1", "out", {"--eval", "--resume", "auto"}), 0)
      << read_file(dir + "/eval1.log");
  // --eval-only, the flag's earlier name, still works and says it is deprecated.
  ASSERT_EQ(run_finetune(dir, "eval2", "out",
                         {"--eval-only", "--resume", "auto", "--nproc-per-node", "2"}),
            0)
      << read_file(dir + "/eval2.log");
  EXPECT_NE(read_file(dir + "/eval2.log").find("--eval-only is deprecated: use --eval"),
            std::string::npos)
      << read_file(dir + "/eval2.log");
  const auto one = first_match(read_file(dir + "/eval1.log"), line);
  const auto two = first_match(read_file(dir + "/eval2.log"), line);
  ASSERT_NE(one, "") << read_file(dir + "/eval1.log");
  EXPECT_EQ(one, two) << read_file(dir + "/eval2.log");
  EXPECT_NE(read_file(dir + "/eval2.log").find("(13 images)"), std::string::npos)
      << read_file(dir + "/eval2.log");

  ASSERT_EQ(run_finetune(dir, "dist", "dist",
                         {"--set", "finetune.batch_size=8", "--nproc-per-node", "2"}),
            0)
      << read_file(dir + "/dist.log");
  const auto metrics = read_file(dir + "/dist/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"finetune_epoch\""), 2) << metrics;
  EXPECT_NE(read_file(dir + "/dist.log").find("effective batch 16"), std::string::npos)
      << read_file(dir + "/dist.log");
}

// The number in `text` after the first match of `prefix` (a regex), or -1.
double figure_after(const std::string& text, const std::string& prefix) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(prefix + "([0-9.]+)"))) return -1;
  return std::stod(m[1].str());
}

// The end-to-end check, on the quickstart config at half its data: pre-training on 2,048
// images for 8 epochs at batch 64 (256 steps, about 1.5 minutes on 2 cores), then kNN and the
// linear probe (cached features) of the result and of the random encoder of the same config.
// Pre-training must win both by a clear margin (measured: kNN 38.7 % against 31.1 %, probe
// 33.8 % against 27.6 %); the figures are printed and recorded in the test's XML.
TEST(EndToEnd, PretrainedEncoderBeatsTheRandomOneOnKnnAndLinearProbe) {
  const auto dir = make_dir("e2e");
  const std::string config = std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml";
  const std::vector<std::string> data = {"--set", "data.synthetic_train_size=2048",
                                         "--set", "data.synthetic_val_size=1024",
                                         "--set", "data.workers=1"};
  auto run = [&](const char* exe, const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config});
    args.insert(args.end(), data.begin(), data.end());
    const pid_t pid =
        ocl_test::spawn(exe, args, {}, dir + "/" + name + ".log", ocl_test::kLaunchVars);
    return ocl_test::wait_for(pid, 900);
  };
  ASSERT_EQ(run(OCL_PRETRAIN_EXE, "pretrain",
                {"--set", "train.epochs=8", "--set", "train.batch_size=64", "--set",
                 "eval.knn_every=0", "--set", "train.output_dir=" + dir + "/pre"}),
            0)
      << read_file(dir + "/pretrain.log");
  const std::string trained = dir + "/pre/checkpoint-last";

  const std::string knn_line = "kNN k 20, T [0-9.]+: top-1 ";
  const std::string probe_line = "linear probe: best top-1 [0-9.]+ % \\(epoch \\d+\\), last top-1 ";
  double knn[2], probe[2];
  const std::string weights[2] = {trained, "none"};
  for (int i = 0; i < 2; ++i) {
    const std::string tag = i == 0 ? "trained" : "random";
    ASSERT_EQ(run(OCL_KNN_EXE, "knn_" + tag, {"--weights", weights[i]}), 0)
        << read_file(dir + "/knn_" + tag + ".log");
    knn[i] = figure_after(read_file(dir + "/knn_" + tag + ".log"), knn_line);
    ASSERT_EQ(run(OCL_LINPROBE_EXE, "probe_" + tag,
                  {"--weights", weights[i], "--set", "linprobe.cached_features=true", "--set",
                   "linprobe.output_dir=" + dir + "/probe_" + tag}),
              0)
        << read_file(dir + "/probe_" + tag + ".log");
    probe[i] = figure_after(read_file(dir + "/probe_" + tag + ".log"), probe_line);
    ASSERT_GT(knn[i], 0) << read_file(dir + "/knn_" + tag + ".log");
    ASSERT_GT(probe[i], 0) << read_file(dir + "/probe_" + tag + ".log");
  }
  std::printf(
      "end to end: kNN top-1 %.2f %% (pre-trained) vs %.2f %% (random); linear probe "
      "top-1 %.2f %% vs %.2f %%\n",
      knn[0], knn[1], probe[0], probe[1]);
  RecordProperty("knn_top1_pretrained", std::to_string(knn[0]));
  RecordProperty("knn_top1_random", std::to_string(knn[1]));
  RecordProperty("probe_top1_pretrained", std::to_string(probe[0]));
  RecordProperty("probe_top1_random", std::to_string(probe[1]));
  EXPECT_GT(knn[0], knn[1] + kMargin);
  EXPECT_GT(probe[0], probe[1] + kMargin);
}

}  // namespace
