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

// The run every test here makes: `exe` on the quickstart config with `args`, then a test's own
// `extra` (last, so that its --set win); its output in dir/name.log. Returns the exit code.
int run_app(const char* exe, const std::string& dir, const std::string& name,
            std::vector<std::string> args, const std::vector<std::string>& extra = {},
            double timeout_s = 300) {
  args.insert(args.begin(), {"--config", std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml"});
  args.insert(args.end(), extra.begin(), extra.end());
  const pid_t pid =
      ocl_test::spawn(exe, args, {}, dir + "/" + name + ".log", ocl_test::kLaunchVars);
  return ocl_test::wait_for(pid, timeout_s);
}

// What the run `name` in `dir` printed.
std::string log_of(const std::string& dir, const std::string& name) {
  return read_file(dir + "/" + name + ".log");
}

// ocl_knn on 37 training and 13 validation images (a random encoder by default).
int run_knn(const std::string& dir, const std::string& name, const std::vector<std::string>& extra,
            const std::string& weights = "none") {
  return run_app(OCL_KNN_EXE, dir, name,
                 {"--weights", weights, "--train-size", "37", "--val-size", "13", "--k", "5", "--k",
                  "20", "--set", "data.workers=1", "--set", "train.batch_size=8", "--save-features",
                  dir + "/" + name + ".safetensors"},
                 extra);
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
  ASSERT_EQ(run_knn(dir, "one", {}), 0) << log_of(dir, "one");
  ASSERT_EQ(run_knn(dir, "two", {"--nproc-per-node", "2"}), 0) << log_of(dir, "two");
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
  const auto lines_one = knn_lines(log_of(dir, "one"));
  const auto lines_two = knn_lines(log_of(dir, "two"));
  ASSERT_EQ(lines_one.size(), 2u) << log_of(dir, "one");
  EXPECT_EQ(lines_one, lines_two) << log_of(dir, "two");
  EXPECT_NE(log_of(dir, "one").find("encoder weights: none"), std::string::npos);
}

TEST(OclKnn, MissingWeightsFileIsNamed) {
  const auto dir = make_dir("knn_missing");
  EXPECT_EQ(run_knn(dir, "bad", {}, dir + "/nope.safetensors"), 1);
  EXPECT_NE(log_of(dir, "bad").find(dir + "/nope.safetensors"), std::string::npos)
      << log_of(dir, "bad");
}

// --save-features into a folder that does not exist: refused before any extraction, naming the
// folder (it used to fail only after every feature had been extracted, and print no figure).
TEST(OclKnn, SaveFeaturesIntoAMissingFolderIsRefusedFirst) {
  const auto dir = make_dir("knn_dest");
  EXPECT_EQ(
      run_app(OCL_KNN_EXE, dir, "knn",
              {"--weights", "none", "--train-size", "37", "--val-size", "13", "--set",
               "data.workers=1", "--save-features", dir + "/no/such/folder/features.safetensors"},
              {}, 120),
      1);
  const std::string log = log_of(dir, "knn");
  EXPECT_NE(
      log.find("there is no folder '" + dir + "/no/such/folder' (make it first); nothing was done"),
      std::string::npos)
      << log;
  EXPECT_EQ(log.find("features:"), std::string::npos) << log;
}

// model.input_norm end to end: a pre-training run records it in its encoder.safetensors, an
// evaluation configured alike loads the weights, one configured without it is refused naming
// the key (its features would be silently wrong).
TEST(InputNorm, PretrainingRecordsItAndEvaluationChecksIt) {
  const auto dir = make_dir("input_norm");
  ASSERT_EQ(run_app(OCL_PRETRAIN_EXE, dir, "pretrain",
                    {"--set", "model.input_norm=patch", "--set", "data.synthetic_train_size=64",
                     "--set", "data.synthetic_val_size=16", "--set", "data.workers=1", "--set",
                     "train.batch_size=16", "--set", "train.epochs=1", "--set", "eval.knn_every=0",
                     "--set", "train.output_dir=" + dir + "/pre"}),
            0)
      << log_of(dir, "pretrain");
  const auto file = ocl::io::read_safetensors(dir + "/pre/checkpoint-last/encoder.safetensors");
  EXPECT_EQ(file.metadata.at("ocl.input_norm"), "patch");
  EXPECT_EQ(file.metadata.at("ocl.input_norm_eps"), "0.25");
  EXPECT_EQ(file.metadata.at("format"), "pt");

  const std::string weights = dir + "/pre/checkpoint-last";
  EXPECT_EQ(run_knn(dir, "same", {"--set", "model.input_norm=patch"}, weights), 0)
      << log_of(dir, "same");
  EXPECT_EQ(run_knn(dir, "plain", {}, weights), 1) << log_of(dir, "plain");
  EXPECT_NE(log_of(dir, "plain")
                .find("were trained with model.input_norm: patch, but the model is configured "
                      "with model.input_norm: none"),
            std::string::npos)
      << log_of(dir, "plain");
}

// A tiny run of ocl_linprobe or ocl_finetune (`section`, its config section) from a random
// encoder: 64 training images, 13 validation images, batch 16 (4 steps per epoch), 2 epochs of
// which 1 warm-up, and `settings`; the output in `out`.
std::vector<std::string> tiny_training(const std::string& section, const std::string& out,
                                       const std::vector<std::string>& settings) {
  std::vector<std::string> args = {"--weights", "none"};
  for (const std::string& kv : std::vector<std::string>{
           "data.workers=1", "data.synthetic_train_size=64", "data.synthetic_val_size=13",
           section + ".batch_size=16", section + ".epochs=2", section + ".warmup_epochs=1",
           "log.every=1", section + ".output_dir=" + out}) {
    args.insert(args.end(), {"--set", kv});
  }
  for (const std::string& kv : settings) args.insert(args.end(), {"--set", kv});
  return args;
}

// ocl_linprobe at tiny sizes, MAE's protocol unless `extra` sets cached features; the output in
// dir/out.
int run_linprobe(const std::string& dir, const std::string& name, const std::string& out,
                 const std::vector<std::string>& extra) {
  return run_app(OCL_LINPROBE_EXE, dir, name,
                 tiny_training("linprobe", dir + "/" + out, {"linprobe.cached_features=false"}),
                 extra);
}

std::string first_match(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? m.str() : "";
}

TEST(OclLinprobe, TrainsWritesMetricsAndResumes) {
  const auto dir = make_dir("linprobe");
  ASSERT_EQ(run_linprobe(dir, "first", "out", {}), 0) << log_of(dir, "first");
  const auto log = log_of(dir, "first");
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
  ASSERT_EQ(run_linprobe(dir, "again", "out", {"--resume", "auto"}), 0) << log_of(dir, "again");
  EXPECT_NE(log_of(dir, "again").find("nothing to do"), std::string::npos) << log_of(dir, "again");
  EXPECT_EQ(log_of(dir, "again").find("best top-1"), std::string::npos) << log_of(dir, "again");
  EXPECT_EQ(run_linprobe(dir, "refused", "out", {}), 1);
  EXPECT_NE(log_of(dir, "refused").find("--resume auto"), std::string::npos)
      << log_of(dir, "refused");

  // One epoch, then --resume auto with two: the second epoch continues from the checkpoint.
  ASSERT_EQ(run_linprobe(dir, "short", "cont", {"--set", "linprobe.epochs=1"}), 0)
      << log_of(dir, "short");
  ASSERT_EQ(run_linprobe(dir, "cont", "cont", {"--resume", "auto"}), 0) << log_of(dir, "cont");
  const auto cont = log_of(dir, "cont");
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
        << log_of(dir, out);
    EXPECT_EQ(ocl::test::count_of(read_file(dir + "/" + out + "/metrics.jsonl"),
                                  "\"type\":\"linprobe_step\""),
              2)
        << cached;
    EXPECT_NE(log_of(dir, out).find("2 epochs of 1 steps"), std::string::npos) << log_of(dir, out);
  }
}

// The same head evaluated by one and two processes on 13 validation images: every image counts
// exactly once, so the figures agree to the digit; and a two-process probe trains end to end.
TEST(OclLinprobe, TwoProcessesEvaluateLikeOne) {
  const auto dir = make_dir("linprobe2");
  ASSERT_EQ(run_linprobe(dir, "train", "out", {"--set", "linprobe.epochs=1"}), 0)
      << log_of(dir, "train");
  const std::string ckpt = dir + "/out/checkpoint-last";
  const std::string line = "linear probe \\(eval\\): top-1 [0-9.]+ %, top-5 [0-9.]+ %";
  ASSERT_EQ(run_linprobe(dir, "eval1", "out", {"--eval", "--resume", ckpt}), 0)
      << log_of(dir, "eval1");
  ASSERT_EQ(
      run_linprobe(dir, "eval2", "out", {"--eval", "--resume", ckpt, "--nproc-per-node", "2"}), 0)
      << log_of(dir, "eval2");
  const auto one = first_match(log_of(dir, "eval1"), line);
  const auto two = first_match(log_of(dir, "eval2"), line);
  ASSERT_NE(one, "") << log_of(dir, "eval1");
  EXPECT_EQ(one, two) << log_of(dir, "eval2");
  EXPECT_NE(log_of(dir, "eval2").find("on 13 images"), std::string::npos) << log_of(dir, "eval2");

  // Two processes of batch 8 take the steps of one process of batch 16, with the gradient
  // all-reduce as dist.* says: buckets of at most 1 KB put the head's fc.bias (40 bytes) and
  // fc.weight (5 KB) in two buckets (the default 1 MiB first bucket holds both), after backward.
  ASSERT_EQ(run_linprobe(dir, "dist", "dist",
                         {"--set", "linprobe.batch_size=8", "--set", "dist.bucket_mb=0.001",
                          "--set", "dist.first_bucket_mb=0.001", "--set", "dist.overlap=false",
                          "--nproc-per-node", "2"}),
            0)
      << log_of(dir, "dist");
  const auto metrics = read_file(dir + "/dist/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"linprobe_epoch\""), 2) << metrics;
  const auto dist_log = log_of(dir, "dist");
  EXPECT_NE(dist_log.find("effective 16"), std::string::npos) << dist_log;
  EXPECT_NE(dist_log.find("gradient all-reduce: 2 buckets"), std::string::npos) << dist_log;
  EXPECT_NE(dist_log.find("after backward (dist.overlap off)"), std::string::npos) << dist_log;

  // The cached-features path over two processes: each takes every other row of each step.
  ASSERT_EQ(run_linprobe(dir, "cached", "cached",
                         {"--set", "linprobe.batch_size=8", "--set",
                          "linprobe.cached_features=true", "--nproc-per-node", "2"}),
            0)
      << log_of(dir, "cached");
  const auto cached = log_of(dir, "cached");
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
  auto print = [&](const char* exe, const std::string& name, const std::vector<std::string>& args) {
    EXPECT_EQ(run_app(exe, dir, name,
                      {"--print-config", "--set", "data.synthetic_train_size=64", "--set",
                       "train.output_dir=" + dir + "/never"},
                      args, 120),
              0)
        << log_of(dir, name);
    return log_of(dir, name);
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

// ocl_finetune at tiny sizes, the whole recipe on (RandAugment, random erasing, mixup / cutmix,
// drop path, EMA); the output in dir/out.
int run_finetune(const std::string& dir, const std::string& name, const std::string& out,
                 const std::vector<std::string>& extra) {
  return run_app(OCL_FINETUNE_EXE, dir, name,
                 tiny_training("finetune", dir + "/" + out,
                               {"train.threads=1", "finetune.drop_path=0.1",
                                "finetune.model_ema=true", "finetune.model_ema_decay=0.9"}),
                 extra);
}

ocl::io::TensorMap last_weights(const std::string& out) {
  return ocl::io::read_safetensors(out + "/checkpoint-last/encoder.safetensors").tensors;
}

// Trains, logs, writes the best model in timm names; a run stopped mid-epoch and resumed ends
// with the very weights of the run that was never stopped (every draw is a function of the seed
// and the step); finished runs are not redone and their folders are not overwritten.
TEST(OclFinetune, TrainsAndAStoppedRunResumesToTheSameWeights) {
  const auto dir = make_dir("finetune");
  ASSERT_EQ(run_finetune(dir, "whole", "whole", {}), 0) << log_of(dir, "whole");
  const auto log = log_of(dir, "whole");
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
      << log_of(dir, "stopped");
  EXPECT_NE(log_of(dir, "stopped").find("stopped cleanly"), std::string::npos)
      << log_of(dir, "stopped");
  ASSERT_EQ(run_finetune(dir, "resumed", "cont", {"--resume", "auto"}), 0)
      << log_of(dir, "resumed");
  const auto resumed = log_of(dir, "resumed");
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
  ASSERT_EQ(run_finetune(dir, "again", "whole", {"--resume", "auto"}), 0) << log_of(dir, "again");
  EXPECT_NE(log_of(dir, "again").find("nothing to do"), std::string::npos);
  EXPECT_EQ(run_finetune(dir, "refused", "whole", {}), 1);
  EXPECT_NE(log_of(dir, "refused").find("--resume auto"), std::string::npos)
      << log_of(dir, "refused");
  // --eval needs a model to evaluate.
  EXPECT_EQ(run_finetune(dir, "noresume", "fresh", {"--eval"}), 1);
  EXPECT_NE(log_of(dir, "noresume").find("--resume"), std::string::npos) << log_of(dir, "noresume");
  // Without --weights and nothing to resume it refuses, rather than fine-tune a random encoder.
  EXPECT_EQ(
      run_app(OCL_FINETUNE_EXE, dir, "noweights",
              {"--resume", "auto", "--set", "finetune.output_dir=" + dir + "/empty"}, {}, 120),
      1);
  EXPECT_NE(log_of(dir, "noweights").find("no encoder weights: give --weights"), std::string::npos)
      << log_of(dir, "noweights");
}

// The fine-tuned model evaluated by one and two processes on 13 validation images: every image
// counts exactly once, so the figures agree to the digit; two processes of batch 8 train with
// the steps of one process of batch 16.
TEST(OclFinetune, TwoProcessesEvaluateLikeOneAndTrain) {
  const auto dir = make_dir("finetune2");
  ASSERT_EQ(run_finetune(dir, "train", "out", {"--set", "finetune.epochs=1"}), 0)
      << log_of(dir, "train");
  const std::string line = "fine-tuning \\(eval\\): top-1 [0-9.]+ %, top-5 [0-9.]+ %";
  ASSERT_EQ(run_finetune(dir, "eval1", "out", {"--eval", "--resume", "auto"}), 0)
      << log_of(dir, "eval1");
  // --eval-only, the flag's earlier name, still works and says it is deprecated.
  ASSERT_EQ(run_finetune(dir, "eval2", "out",
                         {"--eval-only", "--resume", "auto", "--nproc-per-node", "2"}),
            0)
      << log_of(dir, "eval2");
  EXPECT_NE(log_of(dir, "eval2").find("--eval-only is deprecated: use --eval"), std::string::npos)
      << log_of(dir, "eval2");
  const auto one = first_match(log_of(dir, "eval1"), line);
  const auto two = first_match(log_of(dir, "eval2"), line);
  ASSERT_NE(one, "") << log_of(dir, "eval1");
  EXPECT_EQ(one, two) << log_of(dir, "eval2");
  EXPECT_NE(log_of(dir, "eval2").find("(13 images)"), std::string::npos) << log_of(dir, "eval2");

  ASSERT_EQ(run_finetune(dir, "dist", "dist",
                         {"--set", "finetune.batch_size=8", "--nproc-per-node", "2"}),
            0)
      << log_of(dir, "dist");
  const auto metrics = read_file(dir + "/dist/metrics.jsonl");
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"finetune_epoch\""), 2) << metrics;
  EXPECT_NE(log_of(dir, "dist").find("effective batch 16"), std::string::npos)
      << log_of(dir, "dist");
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
  const std::vector<std::string> data = {"--set", "data.synthetic_train_size=2048",
                                         "--set", "data.synthetic_val_size=1024",
                                         "--set", "data.workers=1"};
  auto run = [&](const char* exe, const std::string& name, const std::vector<std::string>& args) {
    return run_app(exe, dir, name, args, data, 900);
  };
  ASSERT_EQ(run(OCL_PRETRAIN_EXE, "pretrain",
                {"--set", "train.epochs=8", "--set", "train.batch_size=64", "--set",
                 "eval.knn_every=0", "--set", "train.output_dir=" + dir + "/pre"}),
            0)
      << log_of(dir, "pretrain");
  const std::string trained = dir + "/pre/checkpoint-last";

  const std::string knn_line = "kNN k 20, T [0-9.]+: top-1 ";
  const std::string probe_line = "linear probe: best top-1 [0-9.]+ % \\(epoch \\d+\\), last top-1 ";
  double knn[2], probe[2];
  const std::string weights[2] = {trained, "none"};
  for (int i = 0; i < 2; ++i) {
    const std::string tag = i == 0 ? "trained" : "random";
    ASSERT_EQ(run(OCL_KNN_EXE, "knn_" + tag, {"--weights", weights[i]}), 0)
        << log_of(dir, "knn_" + tag);
    knn[i] = figure_after(log_of(dir, "knn_" + tag), knn_line);
    ASSERT_EQ(run(OCL_LINPROBE_EXE, "probe_" + tag,
                  {"--weights", weights[i], "--set", "linprobe.cached_features=true", "--set",
                   "linprobe.output_dir=" + dir + "/probe_" + tag}),
              0)
        << log_of(dir, "probe_" + tag);
    probe[i] = figure_after(log_of(dir, "probe_" + tag), probe_line);
    ASSERT_GT(knn[i], 0) << log_of(dir, "knn_" + tag);
    ASSERT_GT(probe[i], 0) << log_of(dir, "probe_" + tag);
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
