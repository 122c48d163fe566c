// Multi-process pre-training on the CPU with Gloo over the loopback: the ocl_pretrain app
// started as 1 or 2 ranks with torchrun's variables (and through its own --nproc-per-node
// launcher), checked against one process and against gradients computed here without any
// communication.
//
// The gradient of a run's first optimiser step is read back from its checkpoint: AdamW's first
// moment after one step is exactly (1 − β1)·g.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "integration/process_util.h"
#include "integration/synthetic_shards.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/data/factory.h>
#include <ocl/data/loader.h>
#include <ocl/distributed/launch.h>
#include <ocl/engine/pretrain.h>
#include <ocl/io/checkpoint.h>
#include <ocl/io/config.h>
#include <ocl/io/safetensors.h>

namespace {

using Clock = std::chrono::steady_clock;

using ocl::test::read_file;

// A 16×16 ViT of one block on 128 synthetic images, written as a config file.
std::string write_tiny_config(const std::string& dir) {
  const std::string path = dir + "/tiny.yaml";
  std::ofstream(path)
      << R"(model: {arch: custom, img_size: 16, patch_size: 4, embed_dim: 32, depth: 1, num_heads: 2}
mask: {ratio: 0.25}
data: {dataset: synthetic, synthetic_train_size: 128, synthetic_val_size: 64, workers: 1}
optim: {lr: 1.0e-3, warmup_epochs: 0}
train: {epochs: 1, batch_size: 16, device: cpu, precision: fp32, threads: 1, seed: 5, save_every: 1}
dist: {timeout_s: 60}
log: {every: 1, progress: lines}
)";
  return path;
}

// ocl_pretrain (or `exe`) as rank `rank` of `world` (torchrun's variables; world 0: none of them
// set), output in `log`.
pid_t spawn_rank(int rank, int world, int port, const std::vector<std::string>& args,
                 const std::string& log, const std::map<std::string, std::string>& env = {},
                 const std::string& exe = OCL_PRETRAIN_EXE) {
  const std::vector<std::string> launch_vars = {
      "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
  std::map<std::string, std::string> set;
  if (world > 0) {
    set = {{"RANK", std::to_string(rank)},        {"LOCAL_RANK", std::to_string(rank)},
           {"WORLD_SIZE", std::to_string(world)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
           {"MASTER_ADDR", "127.0.0.1"},          {"MASTER_PORT", std::to_string(port)}};
  }
  for (const auto& [key, value] : env) set[key] = value;
  return ocl_test::spawn(exe, args, set, log, launch_vars);
}

using ocl_test::wait_for;

// Runs `world` ranks (0 = a plain single process) to completion; returns their exit codes.
std::vector<int> run_ranks(int world, const std::vector<std::string>& args, const std::string& dir,
                           const std::vector<std::vector<std::string>>& per_rank_args = {},
                           const std::map<std::string, std::string>& env = {},
                           const std::string& exe = OCL_PRETRAIN_EXE) {
  const int port = ocl::distributed::free_tcp_port();
  std::vector<pid_t> pids;
  const int n = std::max(world, 1);
  for (int r = 0; r < n; ++r) {
    auto a = args;
    if (r < static_cast<int>(per_rank_args.size()))
      a.insert(a.end(), per_rank_args[r].begin(), per_rank_args[r].end());
    pids.push_back(
        spawn_rank(r, world, port, a, dir + "/rank" + std::to_string(r) + ".log", env, exe));
  }
  std::vector<int> codes;
  for (pid_t pid : pids) codes.push_back(wait_for(pid, 300));
  return codes;
}

std::string make_dir(const std::string& name) {
  return ocl::test::make_temp_dir("ocl_dist_" + name + "_");
}

ocl::io::TensorMap trainer_state(const std::string& run_dir) {
  return ocl::io::read_safetensors(ocl::io::latest_checkpoint(run_dir) + "/trainer.safetensors")
      .tensors;
}

ocl::io::TensorMap encoder_state(const std::string& run_dir) {
  return ocl::io::read_safetensors(ocl::io::latest_checkpoint(run_dir) + "/encoder.safetensors")
      .tensors;
}

// The first step's gradient of every trainable parameter, from AdamW's first moment.
std::map<std::string, torch::Tensor> first_step_gradients(const ocl::io::TensorMap& trainer,
                                                          double beta1) {
  std::map<std::string, torch::Tensor> g;
  const std::string suffix = ".exp_avg";
  for (const auto& [key, value] : trainer) {
    if (key.rfind("optim.", 0) == 0 && key.size() > suffix.size() &&
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
      g[key.substr(6, key.size() - 6 - suffix.size())] = value.to(torch::kFloat64) / (1 - beta1);
    }
  }
  return g;
}

// Float32 sums in another order: equal to ~1e-6 of the tensor's scale.
void expect_close(const std::map<std::string, torch::Tensor>& a,
                  const std::map<std::string, torch::Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_GT(a.size(), 3u) << what;
  for (const auto& [name, x] : a) {
    ASSERT_TRUE(b.count(name)) << what << ": " << name;
    const auto& y = b.at(name);
    const double scale = std::max(x.abs().max().item<double>(), 1e-12);
    const double diff = (x - y.to(x.dtype())).abs().max().item<double>();
    EXPECT_LT(diff, 2e-5 * scale) << what << ": " << name << " differs by " << diff << " (scale "
                                  << scale << ")";
  }
}

std::map<std::string, torch::Tensor> as_map(const ocl::io::TensorMap& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : m) out[k] = v.to(torch::kFloat64);
  return out;
}

std::vector<std::string> run_args(const std::string& config, const std::string& out,
                                  std::vector<std::string> sets = {}) {
  std::vector<std::string> a{"--config", config, "--set", "train.output_dir=" + out};
  for (const auto& s : sets) {
    a.push_back("--set");
    a.push_back(s);
  }
  return a;
}

// Losses of the "step" records of a metrics.jsonl, in order.
std::vector<double> step_losses(const std::string& metrics_path) {
  std::vector<double> out;
  std::ifstream in(metrics_path);
  std::string line;
  const std::regex loss("\"loss\":\\s*([-0-9.eE+]+)");
  while (std::getline(in, line)) {
    if (line.find("\"type\":\"step\"") == std::string::npos &&
        line.find("\"type\": \"step\"") == std::string::npos)
      continue;
    std::smatch m;
    if (std::regex_search(line, m, loss)) out.push_back(std::stod(m[1]));
  }
  return out;
}

// 2 processes × batch B with global negatives take the same step as 1 process × batch 2B on
// the same images and masks: this checks the gradient all-reduce and the gather's backward.
TEST(Distributed, TwoRanksGlobalNegativesEqualOneProcessWithTwiceTheBatch) {
  const auto dir = make_dir("global");
  const auto config = write_tiny_config(dir);
  const auto two = run_ranks(
      2, run_args(config, dir + "/two", {"train.batch_size=16", "train.steps_per_epoch=1"}), dir);
  ASSERT_EQ(two, (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");
  const auto one = run_ranks(
      0, run_args(config, dir + "/one", {"train.batch_size=32", "train.steps_per_epoch=1"}), dir);
  ASSERT_EQ(one, (std::vector<int>{0})) << read_file(dir + "/rank0.log");

  expect_close(first_step_gradients(trainer_state(dir + "/two"), 0.9),
               first_step_gradients(trainer_state(dir + "/one"), 0.9), "gradients");
  // The same with every bucket all-reduced after backward (dist.overlap: false).
  const auto after =
      run_ranks(2,
                run_args(config, dir + "/after",
                         {"train.batch_size=16", "train.steps_per_epoch=1", "dist.overlap=false"}),
                dir);
  ASSERT_EQ(after, (std::vector<int>{0, 0})) << read_file(dir + "/rank0.log");
  expect_close(first_step_gradients(trainer_state(dir + "/after"), 0.9),
               first_step_gradients(trainer_state(dir + "/one"), 0.9), "gradients, no overlap");
  // The parameters after the step. AdamW's first update is lr·g/(|g| + ε): elements whose
  // gradient is rounding noise (the key bias, whose exact gradient is 0) move by ±lr at random,
  // so they are left out; elsewhere the update is the same to float precision.
  const auto grads = first_step_gradients(trainer_state(dir + "/one"), 0.9);
  const auto after_two = as_map(encoder_state(dir + "/two"));
  const auto after_one = as_map(encoder_state(dir + "/one"));
  ASSERT_EQ(after_two.size(), after_one.size());
  for (const auto& [name, x] : after_one) {
    auto diff = (x - after_two.at(name)).abs();
    const auto g = grads.find("encoder." + name);
    if (g != grads.end()) diff = diff * (g->second.abs() > 1e-6).to(diff.dtype());
    EXPECT_LT(diff.max().item<double>(), 1e-6) << "parameter " << name << " after the step";
  }
  // Only rank 0 wrote: one run header in train.log, one metrics record for the step.
  EXPECT_EQ(ocl::test::count_of(read_file(dir + "/two/train.log"), "ocl_pretrain: LibTorch"), 1);
  EXPECT_EQ(step_losses(dir + "/two/metrics.jsonl").size(), 1u);
  EXPECT_NE(read_file(dir + "/two/train.log").find("negatives: 31 per positive (global"),
            std::string::npos);
}

// Local negatives: each rank's loss sees its own batch only, so the step's gradient is the mean
// of the two ranks' separate batch-B gradients, computed here without communication.
TEST(Distributed, TwoRanksLocalNegativesAverageTheShardsGradients) {
  const auto dir = make_dir("local");
  const auto config = write_tiny_config(dir);
  const auto codes = run_ranks(
      2, run_args(config, dir + "/two", {"loss.negatives=local", "train.steps_per_epoch=1"}), dir);
  ASSERT_EQ(codes, (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");

  const auto c = ocl::io::load_config(config, {"loss.negatives=local"});
  const auto derived = ocl::io::derive(c, 2);
  const int img = static_cast<int>(c.model.img_size);
  auto dataset = ocl::data::make_dataset(c.data, img, /*train=*/true, c.train.seed);
  auto transform = ocl::data::make_transform(c.data, img, /*train=*/true);
  std::map<std::string, torch::Tensor> mean;
  for (int rank = 0; rank < 2; ++rank) {
    auto model = ocl::engine::build_ocl_model(c, derived);
    model->train();
    ocl::data::LoaderOptions lo;
    lo.batch_size = c.train.batch_size;
    lo.workers = 1;
    lo.seed = c.train.seed;
    lo.rank = rank;
    lo.world_size = 2;
    ocl::data::Loader loader(dataset, transform, lo);
    loader.start_epoch(0);
    auto batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    auto images = ocl::data::normalize_images(batch->images, torch::kCPU);
    auto noise = ocl::engine::step_mask_noise(c.train.seed, 0, 0, images.size(0),
                                              derived.num_patches, rank, 2);
    model->forward(images, noise).loss.backward();
    for (const auto& p : model->named_parameters()) {
      if (!p.value().requires_grad()) continue;
      auto g = p.value().grad().to(torch::kFloat64) / 2;
      mean[p.key()] = mean.count(p.key()) ? mean[p.key()] + g : g;
    }
  }
  expect_close(first_step_gradients(trainer_state(dir + "/two"), c.optim.beta1), mean,
               "gradients vs the mean of the shards' gradients");
}

// Accumulating 2 micro-batches per rank communicates once per step (no_sync on the first) and
// gives the step of one process accumulating 2 micro-batches of twice the size; the replicas
// stay bit-identical over several steps (dist.verify_every compares checksums every step).
TEST(Distributed, AccumulationCommunicatesOncePerStepAndReplicasStayIdentical) {
  const auto dir = make_dir("accum");
  const auto config = write_tiny_config(dir);
  const auto two = run_ranks(2,
                             run_args(config, dir + "/two",
                                      {"train.batch_size=8", "optim.accum_iter=2",
                                       "dist.verify_every=1", "train.steps_per_epoch=1"}),
                             dir);
  ASSERT_EQ(two, (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");
  const auto one =
      run_ranks(0,
                run_args(config, dir + "/one",
                         {"train.batch_size=16", "optim.accum_iter=2", "train.steps_per_epoch=1"}),
                dir);
  ASSERT_EQ(one, (std::vector<int>{0}));
  expect_close(first_step_gradients(trainer_state(dir + "/two"), 0.9),
               first_step_gradients(trainer_state(dir + "/one"), 0.9), "accumulated gradients");

  // Three more steps (a second run resuming the first), checked for identical replicas.
  const auto more =
      run_ranks(2,
                run_args(config, dir + "/two",
                         {"train.batch_size=8", "optim.accum_iter=2", "dist.verify_every=1",
                          "train.steps_per_epoch=1", "train.epochs=4"}),
                dir, {{"--resume", "auto"}, {"--resume", "auto"}});
  ASSERT_EQ(more, (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");
  const std::string log = read_file(dir + "/rank0.log");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m,
                                std::regex("communication: (\\d+) gradient bucket all-reduces "
                                           "\\((\\d+) buckets per step")))
      << log;
  // 3 steps in this run: one all-reduce per bucket per step, none for the no_sync micro-steps.
  EXPECT_EQ(std::stoi(m[1]), 3 * std::stoi(m[2]));
  EXPECT_NE(log.find("parameters identical on all 2 ranks at step 4"), std::string::npos) << log;
}

// train.cuda_graph's staged step with two ranks (uncaptured, as train.cuda_graph: staged runs it
// on CPUs; the capture of NCCL's collectives is a gpu test): micro-batches staged into buffers
// of their own, the all-reduces and the global negatives' gather inside the staged work, and
// drop path drawn on from the step's first micro-batch, as a deferred run draws it. Three steps
// of two micro-batches give the deferred run's losses and weights, replicas identical.
TEST(Distributed, TheStagedStepOfTwoRanksTakesTheDeferredRunsSteps) {
  if (!ocl::compat::fused_adamw_supported(torch::kCPU)) {
    GTEST_SKIP() << "LibTorch " << ocl::compat::torch_version()
                 << " has no fused AdamW on the CPU, which train.host_sync: deferred needs; CI's "
                    "CUDA stage (LibTorch 2.6) runs this test";
  }
  const auto dir = make_dir("staged");
  const auto config = write_tiny_config(dir);
  const std::vector<std::string> sets = {"train.batch_size=8",      "optim.accum_iter=2",
                                         "train.steps_per_epoch=3", "model.drop_path=0.2",
                                         "optim.fused=on",          "train.host_sync=deferred",
                                         "dist.verify_every=1",     "log.every=1"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), sets.begin(), sets.end());
    return extra;
  };
  const auto deferred = run_ranks(2, run_args(config, dir + "/deferred", with({})), dir);
  ASSERT_EQ(deferred, (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");
  const auto staged =
      run_ranks(2, run_args(config, dir + "/staged", with({"train.cuda_graph=staged"})), dir);
  ASSERT_EQ(staged, (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");
  const auto a = step_losses(dir + "/deferred/metrics.jsonl"),
             b = step_losses(dir + "/staged/metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), a.size());
  // The first step's loss to the bit (the same inputs, masks, drop-path draws and weights); after
  // it the staged AdamW's learning rate as a tensor rounds the bias correction otherwise than
  // the scalar one (FusedAdamW.TheCapturableStepEqualsTheFusedOne...), by float32's epsilon.
  EXPECT_EQ(a[0], b[0]);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * std::abs(a[i])) << i;
  const auto wa = as_map(encoder_state(dir + "/deferred")),
             wb = as_map(encoder_state(dir + "/staged"));
  ASSERT_EQ(wa.size(), wb.size());
  for (auto [name, x] : wa) {
    auto y = wb.at(name);
    // The key bias's exact gradient is 0 (softmax ignores a constant per query): its computed
    // gradient is rounding noise, which AdamW turns into steps of ±lr; the rest is compared.
    if (name.find("attn.qkv.bias") != std::string::npos) {
      const int64_t d = x.size(0) / 3;
      x = torch::cat({x.narrow(0, 0, d), x.narrow(0, 2 * d, d)});
      y = torch::cat({y.narrow(0, 0, d), y.narrow(0, 2 * d, d)});
    }
    EXPECT_TRUE(torch::allclose(x, y, 1e-5, 1e-6))
        << name << " differs by " << (x - y).abs().max().item<double>();
  }
  const std::string log = read_file(dir + "/rank0.log");
  EXPECT_NE(log.find("parameters identical on all 2 ranks at step 3"), std::string::npos) << log;
}

// The replica check catches replicas that drift apart without a config difference (a
// non-deterministic kernel, a faulty GPU): here rank 1's first trainable parameter is nudged
// before its first update (ocl_test_diverging_rank, through the loop's before_optimizer_step).
TEST(Distributed, ReplicaCheckStopsRanksThatDiverged) {
  const auto dir = make_dir("diverge");
  const auto config = write_tiny_config(dir);
  auto args = run_args(config, dir + "/run", {"dist.verify_every=1", "train.steps_per_epoch=2"});
  args.insert(args.end(), {"--diverge-rank", "1"});
  const auto codes = run_ranks(2, args, dir, {}, {}, OCL_DIVERGING_RANK_EXE);
  EXPECT_EQ(codes, (std::vector<int>{1, 1}));
  const std::string log = read_file(dir + "/rank0.log");
  EXPECT_NE(log.find("parameters diverged after global step 1"), std::string::npos) << log;
  EXPECT_NE(log.find("on rank 1 differs from rank 0"), std::string::npos) << log;
}

// Ranks started with different configs stop at the rendezvous, every one naming the rank and
// the first key that differs, before any collective whose size depends on the config (another
// model.depth used to abort inside Gloo with a core dump; another optim.lr trained on, diverged).
TEST(Distributed, RanksWithDifferentConfigsStopNamingTheKey) {
  const auto dir = make_dir("disagree");
  const auto config = write_tiny_config(dir);
  for (const std::string kv : {"model.depth=2", "optim.lr=2.0e-3"}) {
    const auto codes = run_ranks(2, run_args(config, dir + "/run", {"train.steps_per_epoch=2"}),
                                 dir, {{}, {"--set", kv}});
    EXPECT_EQ(codes, (std::vector<int>{1, 1})) << kv;
    const std::string key = kv.substr(0, kv.find('='));
    for (const char* log_name : {"/rank0.log", "/rank1.log"}) {
      const std::string log = read_file(dir + log_name);
      EXPECT_NE(log.find("the config of rank 1 differs from rank 0's (rank 1 at " + key + ")"),
                std::string::npos)
          << log;
    }
    EXPECT_NE(read_file(dir + "/rank1.log").find("here (rank 1) " + key + " is"), std::string::npos)
        << read_file(dir + "/rank1.log");
  }
}

// Two processes started with the same RANK: the one that claims it second stops at once naming
// the duplicate, and the other two train to the end. For rank 0, the second cannot host the
// store on the port the first holds, and says so.
TEST(Distributed, DuplicateRankIsNamedAndTheOthersTrain) {
  for (const int duplicate : {1, 0}) {
    SCOPED_TRACE("duplicate rank " + std::to_string(duplicate));
    const auto dir = make_dir("duplicate" + std::to_string(duplicate));
    const auto config = write_tiny_config(dir);
    const int port = ocl::distributed::free_tcp_port();
    // Long enough (30 epochs of 4 steps) for a slow-starting duplicate to reach the store
    // before the pair that trains is done with it.
    const auto args = run_args(config, dir + "/run", {"train.epochs=30", "train.save_every=30"});
    std::vector<pid_t> pids;
    std::vector<std::string> logs;
    // Rank 0 first (it hosts the store), then rank 1 twice: one claims rank 1 first. Or rank 0
    // twice (the duplicate in a folder of its own, which the run lock would otherwise refuse
    // first), then rank 1: the first holds the port.
    const std::vector<int> order =
        duplicate == 1 ? std::vector<int>{0, 1, 1} : std::vector<int>{0, 0, 1};
    for (size_t i = 0; i < order.size(); ++i) {
      auto a = args;
      if (duplicate == 0 && i == 1) {
        a.push_back("--set");
        a.push_back("train.output_dir=" + dir + "/other");
      }
      logs.push_back(dir + "/process" + std::to_string(i) + ".log");
      pids.push_back(spawn_rank(order[i], 2, port, a, logs.back()));
      if (i == 0) std::this_thread::sleep_for(std::chrono::seconds(3));
    }
    std::vector<int> codes;
    for (pid_t pid : pids) codes.push_back(wait_for(pid, 300));
    int refused = -1;
    for (size_t i = 0; i < codes.size(); ++i) {
      if (codes[i] != 0) {
        EXPECT_EQ(refused, -1) << "more than one process failed";
        refused = static_cast<int>(i);
      }
    }
    ASSERT_GE(refused, 0) << "no process was refused";
    EXPECT_EQ(codes[static_cast<size_t>(refused)], 1);
    const std::string log = read_file(logs[static_cast<size_t>(refused)]);
    EXPECT_NE(log.find(duplicate == 1 ? "another process was started as rank 1 of 2"
                                      : "is already in use on this machine"),
              std::string::npos)
        << log;
  }
}

// Two processes started as rank 0 of one launch on one folder (and no rank 1): the second names
// the duplicated RANK instead of only a folder in use, and calls the rendezvous off, so the first
// stops at once instead of waiting out dist.timeout_s.
TEST(Distributed, TwoRankZeroProcessesOnOneFolderBothStopAtOnce) {
  const auto dir = make_dir("two_rank0");
  const auto config = write_tiny_config(dir);
  const auto args = run_args(config, dir + "/run", {"dist.timeout_s=120"});
  const int port = ocl::distributed::free_tcp_port();
  const auto start = Clock::now();
  const pid_t first = spawn_rank(0, 2, port, args, dir + "/first.log");
  // The first holds the folder and waits for rank 1 at the rendezvous.
  while (read_file(dir + "/first.log").find("waiting for all 2 processes") == std::string::npos) {
    ASSERT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 60)
        << read_file(dir + "/first.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const pid_t second = spawn_rank(0, 2, port, args, dir + "/second.log");
  const auto second_at = Clock::now();
  EXPECT_EQ(wait_for(second, 60), 1);
  EXPECT_EQ(wait_for(first, 60), 1);
  const double took = std::chrono::duration<double>(Clock::now() - second_at).count();
  EXPECT_LT(took, 20) << "the first rank 0 waited for its timeout";
  const std::string second_log = read_file(dir + "/second.log");
  const std::string first_log = read_file(dir + "/first.log");
  EXPECT_NE(second_log.find("RANK=0 was given to two processes of one launch"), std::string::npos)
      << second_log;
  EXPECT_NE(first_log.find("the rendezvous was called off: RANK=0 was given to two processes"),
            std::string::npos)
      << first_log;
}

// A MASTER_ADDR that does not resolve is named at once, not after the whole timeout.
TEST(Distributed, UnresolvableMasterAddressIsNamedAtOnce) {
  const auto dir = make_dir("noaddr");
  const auto config = write_tiny_config(dir);
  const auto start = Clock::now();
  const pid_t pid = spawn_rank(1, 2, ocl::distributed::free_tcp_port(),
                               run_args(config, dir + "/run", {"dist.timeout_s=120"}),
                               dir + "/rank1.log", {{"MASTER_ADDR", "no.such.host.invalid"}});
  EXPECT_EQ(wait_for(pid, 150), 1);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 60);
  const auto log = read_file(dir + "/rank1.log");
  EXPECT_NE(log.find("MASTER_ADDR 'no.such.host.invalid' does not resolve"), std::string::npos)
      << log;
}

// A rank that dies mid-run makes the other exit non-zero promptly, naming the failure; a rank
// that hangs (stopped) does so once dist.timeout_s has passed. When rank 0 dies, the store it
// hosted goes with it, and rank 1 says so.
void expect_peer_failure_reported(int victim, bool hang) {
  const auto dir = make_dir(hang ? "hang" : "kill");
  const auto config = write_tiny_config(dir);
  const double timeout_s = hang ? 4 : 60;
  const auto args = run_args(config, dir + "/run",
                             {"train.epochs=1000", "dist.timeout_s=" + std::to_string(timeout_s)});
  const int port = ocl::distributed::free_tcp_port();
  const pid_t pids[2] = {spawn_rank(0, 2, port, args, dir + "/rank0.log"),
                         spawn_rank(1, 2, port, args, dir + "/rank1.log")};
  // Let it train a few epochs first (4 steps each).
  const auto start = Clock::now();
  while (read_file(dir + "/rank0.log").find("epoch 3/") == std::string::npos) {
    ASSERT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 120)
        << read_file(dir + "/rank0.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const int survivor = 1 - victim;
  ::kill(pids[victim], hang ? SIGSTOP : SIGKILL);
  const auto failed_at = Clock::now();
  const int code = wait_for(pids[survivor], timeout_s + 30);
  const double took = std::chrono::duration<double>(Clock::now() - failed_at).count();
  ::kill(pids[victim], SIGKILL);
  ::waitpid(pids[victim], nullptr, 0);
  const std::string log = read_file(dir + "/rank" + std::to_string(survivor) + ".log");
  EXPECT_NE(code, 0) << log;
  EXPECT_NE(code, -1) << "rank " << survivor << " did not exit within dist.timeout_s + 30 s";
  EXPECT_LT(took, timeout_s + 20) << log;
  EXPECT_NE(log.find("rank " + std::to_string(survivor) + " of 2: collective #"), std::string::npos)
      << log;
  EXPECT_NE(log.find(victim == 0 ? "rank 0 has probably died" : "rank 1 has stopped"),
            std::string::npos)
      << log;
  // What was written is intact: the newest checkpoint (one per epoch) loads.
  const std::string last = ocl::io::latest_checkpoint(dir + "/run");
  ASSERT_NE(last, "");
  EXPECT_GE(ocl::io::load_checkpoint(last).state.epoch, 1);
}

TEST(Distributed, KilledRankMakesTheOtherExitNamingIt) { expect_peer_failure_reported(1, false); }

TEST(Distributed, KilledRankZeroTakesTheStoreAndIsNamed) { expect_peer_failure_reported(0, false); }

TEST(Distributed, HungRankMakesTheOtherExitWithinTheTimeout) {
  expect_peer_failure_reported(1, true);
}

// A checkpoint written by 2 processes resumes in 1: the epoch continues after the images the
// 2 processes had seen, and the run completes.
TEST(Distributed, TwoProcessCheckpointResumesInOneProcess) {
  const auto dir = make_dir("resume");
  const auto config = write_tiny_config(dir);
  // 128 images: 4 steps of 2 × 16 per epoch; stop after 3.
  const auto first = run_ranks(2, run_args(config, dir + "/run", {"train.epochs=2"}), dir,
                               {{"--stop-after-steps", "3"}, {"--stop-after-steps", "3"}});
  ASSERT_EQ(first, (std::vector<int>{0, 0})) << read_file(dir + "/rank0.log");
  auto c = ocl::io::load_checkpoint(ocl::io::latest_checkpoint(dir + "/run"));
  EXPECT_EQ(c.state.world_size, 2);
  EXPECT_EQ(c.state.step_in_epoch, 3);

  auto resume = run_args(config, dir + "/run", {"train.epochs=2"});
  resume.insert(resume.end(), {"--resume", "auto"});
  const auto second = run_ranks(0, resume, dir);
  const std::string log = read_file(dir + "/rank0.log");
  ASSERT_EQ(second, (std::vector<int>{0})) << log;
  // 3 steps × 2 ranks × 16 = 96 images = step 6 of 8 for one process of batch 16.
  EXPECT_NE(log.find("written by 2 processes and this run has 1: epoch 0 continues at step 6"),
            std::string::npos)
      << log;
  c = ocl::io::load_checkpoint(ocl::io::latest_checkpoint(dir + "/run"));
  EXPECT_EQ(c.state.world_size, 1);
  EXPECT_EQ(c.state.epoch, 2);
  EXPECT_EQ(c.state.global_step, 3 + 2 + 8);
}

// The built-in launcher trains the quickstart config as two ranks and gives the loss curve of
// the same two ranks started by hand with torchrun's variables.
TEST(Distributed, LauncherMatchesTorchrunStyleVariables) {
  const auto dir = make_dir("launcher");
  const std::string quickstart = std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml";
  const std::vector<std::string> sets = {"train.epochs=1",      "train.steps_per_epoch=3",
                                         "eval.knn_every=0",    "log.every=1",
                                         "train.batch_size=32", "data.workers=1"};
  auto launched = run_args(quickstart, dir + "/launched", sets);
  launched.insert(launched.begin(), {"--nproc-per-node", "2"});
  const auto a = run_ranks(0, launched, dir);
  const std::string launcher_log = read_file(dir + "/rank0.log");
  ASSERT_EQ(a, (std::vector<int>{0})) << launcher_log;
  EXPECT_NE(launcher_log.find("[rank 0] "), std::string::npos) << launcher_log;
  const auto b = run_ranks(2, run_args(quickstart, dir + "/by_hand", sets), dir);
  ASSERT_EQ(b, (std::vector<int>{0, 0})) << read_file(dir + "/rank0.log");

  const auto la = step_losses(dir + "/launched/metrics.jsonl");
  const auto lb = step_losses(dir + "/by_hand/metrics.jsonl");
  ASSERT_EQ(la.size(), 3u);
  ASSERT_EQ(lb.size(), 3u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_DOUBLE_EQ(la[i], lb[i]) << "step " << i;
  EXPECT_LT(la.back(), la.front());
}

// The kNN monitor is shared by the ranks (each extracts every W-th image, odd set sizes here):
// before the first step the weights are the same as in one process, and so are the figures.
TEST(Distributed, KnnMonitorShardedGivesTheOneProcessFigures) {
  const auto dir = make_dir("knn");
  const auto config = write_tiny_config(dir);
  const std::vector<std::string> sets = {"train.steps_per_epoch=1", "eval.knn_every=1",
                                         "eval.knn_train_size=37", "eval.knn_val_size=13"};
  auto two_sets = sets, one_sets = sets;
  two_sets.push_back("train.batch_size=16");
  one_sets.push_back("train.batch_size=32");
  ASSERT_EQ(run_ranks(2, run_args(config, dir + "/two", two_sets), dir), (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");
  ASSERT_EQ(run_ranks(0, run_args(config, dir + "/one", one_sets), dir), (std::vector<int>{0}))
      << read_file(dir + "/rank0.log");
  auto first_knn = [](const std::string& metrics) {
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line))
      if (line.find("\"knn\"") != std::string::npos) return line;
    return std::string();
  };
  const auto two = first_knn(dir + "/two/metrics.jsonl");
  ASSERT_FALSE(two.empty());
  EXPECT_EQ(two, first_knn(dir + "/one/metrics.jsonl"));
}

// Two ranks on streamed shards (pipe:cat): the epoch's 128 samples as 4 steps of 2 × 16, and the
// kNN monitor's bank copied by both ranks into one shard cache at once; 3 shards for 2 ranks ×
// 2 workers are refused by both, naming the numbers.
TEST(Distributed, TwoRanksStreamShardsAndFillOneShardCache) {
  const auto dir = make_dir("stream");
  ocl_test::write_synthetic_shards(dir, 4);
  const auto config = write_tiny_config(dir);
  const std::vector<std::string> sets = {"data.dataset=webdataset",
                                         "data.path=pipe:cat " + dir + "/train-{0..3}.tar",
                                         "data.val_path=" + dir + "/val-{0..3}.tar",
                                         "data.samples_per_epoch=128",
                                         "data.shuffle_buffer=8",
                                         "eval.knn_every=1",
                                         "eval.knn_train_size=40",
                                         "eval.knn_val_size=16",
                                         "data.cache_dir=" + dir + "/cache"};
  ASSERT_EQ(run_ranks(2, run_args(config, dir + "/two", sets), dir), (std::vector<int>{0, 0}))
      << read_file(dir + "/rank0.log") << read_file(dir + "/rank1.log");
  const auto log = read_file(dir + "/two/train.log");
  EXPECT_NE(log.find("webdataset streamed: 128 samples per epoch (from data.samples_per_epoch)"),
            std::string::npos)
      << log;
  EXPECT_EQ(step_losses(dir + "/two/metrics.jsonl").size(), 4u);
  EXPECT_NE(read_file(dir + "/two/metrics.jsonl").find("\"knn\""), std::string::npos);
  // The bank's 40 samples are the first two shards' (32 each): two whole copies, no part left.
  std::vector<std::string> cached;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/cache/ocl-streamed-shards"))
    if (e.path().extension() == ".tar") cached.push_back(e.path().filename().string());
  EXPECT_EQ(cached.size(), 2u);
  for (const auto& e : std::filesystem::directory_iterator(dir + "/cache/ocl-streamed-shards"))
    EXPECT_EQ(e.path().string().find(".part"), std::string::npos) << e.path();

  auto refused = sets;
  refused[1] = "data.path=pipe:cat " + dir + "/train-{0..2}.tar";
  refused.push_back("data.workers=2");
  EXPECT_EQ(run_ranks(2, run_args(config, dir + "/refused", refused), dir),
            (std::vector<int>{1, 1}));
  for (const char* rank : {"/rank0.log", "/rank1.log"})
    EXPECT_NE(read_file(dir + rank).find("3 shards for 2 ranks x 2 data.workers = 4 streams"),
              std::string::npos)
        << read_file(dir + rank);
}

// SIGTERM to the built-in launcher reaches every worker once: they agree on the step to stop
// after, rank 0 writes the checkpoint, all exit 0, and --resume auto continues from it.
TEST(Distributed, LauncherForwardsSigtermAndTheRunResumes) {
  const auto dir = make_dir("sigterm");
  const auto config = write_tiny_config(dir);
  auto args = run_args(config, dir + "/run", {"train.epochs=1000"});
  args.insert(args.begin(), {"--nproc-per-node", "2"});
  const pid_t launcher = spawn_rank(0, 0, 0, args, dir + "/launcher.log");
  const auto start = Clock::now();
  while (read_file(dir + "/launcher.log").find("epoch 2/") == std::string::npos) {
    ASSERT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 120)
        << read_file(dir + "/launcher.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(launcher, SIGTERM);
  const int code = wait_for(launcher, 60);
  const std::string log = read_file(dir + "/launcher.log");
  ASSERT_EQ(code, 0) << log;
  EXPECT_NE(log.find("[rank 0] ocl_pretrain: stopped cleanly; checkpoint"), std::string::npos)
      << log;
  // The run's last line comes from rank 0 alone, as in every training app.
  EXPECT_EQ(log.find("[rank 1] ocl_pretrain: stopped cleanly"), std::string::npos) << log;
  const auto stopped = ocl::io::load_checkpoint(ocl::io::latest_checkpoint(dir + "/run"));
  EXPECT_GT(stopped.state.global_step, 4);

  // Continue for two more epochs with both ranks.
  auto resume =
      run_args(config, dir + "/run", {"train.epochs=" + std::to_string(stopped.state.epoch + 2)});
  resume.insert(resume.end(), {"--resume", "auto"});
  const auto codes = run_ranks(2, resume, dir);
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << read_file(dir + "/rank0.log");
  const auto done = ocl::io::load_checkpoint(ocl::io::latest_checkpoint(dir + "/run"));
  EXPECT_EQ(done.state.epoch, stopped.state.epoch + 2);
  EXPECT_GT(done.state.global_step, stopped.state.global_step);
}

}  // namespace
