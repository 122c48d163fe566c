// Multi-node pre-training across network namespaces on one machine (scripts/netns-cluster.sh):
// two "nodes", each with its own address on a bridge and the other's name in its hosts file,
// run ocl_pretrain as 2 nodes × 2 processes with torchrun's or SLURM's variables, the rendezvous
// crossing the bridge (MASTER_ADDR the first node by name, GLOO_SOCKET_IFNAME its interface).
// Then the faults of real clusters: a node lost, a link cut during a collective, a slow and
// lossy link, a resume on fewer nodes, a node whose data differs. Skipped, saying why, when not
// root or when namespaces cannot be made.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "integration/process_util.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <ocl/data/png.h>
#include <ocl/distributed/launch.h>
#include <ocl/io/checkpoint.h>
#include <ocl/io/files.h>
#include <ocl/io/safetensors.h>

namespace {

using Clock = std::chrono::steady_clock;
using ocl::test::read_file;
using ocl::test::run_exe;

const std::string kCluster = OCL_SOURCE_DIR "/scripts/netns-cluster.sh";
constexpr int kNodes = 2, kPerNode = 2, kWorld = kNodes * kPerNode;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A 16×16 ViT of one block on 256 synthetic images: 4 steps of 4 ranks × 16 per epoch.
std::string write_config(const std::string& dir) {
  const std::string path = dir + "/tiny.yaml";
  std::ofstream(path)
      << R"(model: {arch: custom, img_size: 16, patch_size: 4, embed_dim: 32, depth: 1, num_heads: 2}
mask: {ratio: 0.25}
data: {dataset: synthetic, synthetic_train_size: 256, synthetic_val_size: 64, workers: 1}
optim: {lr: 1.0e-3, warmup_epochs: 0}
train: {epochs: 3, batch_size: 16, device: cpu, precision: fp32, threads: 1, seed: 5, save_every: 1}
dist: {timeout_s: 30}
log: {every: 1, progress: lines}
)";
  return path;
}

ocl::io::TensorMap final_encoder(const std::string& run) {
  return ocl::io::read_safetensors(ocl::io::latest_checkpoint(run) + "/encoder.safetensors")
      .tensors;
}

// The largest difference between two runs' weights, relative to each tensor's scale.
double weight_difference(const ocl::io::TensorMap& a, const ocl::io::TensorMap& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, x] : a) {
    if (!b.count(name)) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    const auto xd = x.to(torch::kFloat64), yd = b.at(name).to(torch::kFloat64);
    const double scale = std::max(xd.abs().max().item<double>(), 1e-12);
    worst = std::max(worst, (xd - yd).abs().max().item<double>() / scale);
  }
  return worst;
}

enum class Launcher { kTorchrun, kSlurm };

class MultiNode : public testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "not root: network namespaces need root";
    static int counter = 0;
    name_ = "o" + std::to_string(::getpid() % 1000000) + "x" + std::to_string(counter++);
    std::string out;
    const int rc = run_exe("OCL_NETNS_OWNER=" + std::to_string(::getpid()) + " bash",
                           kCluster + " up " + name_ + " " + std::to_string(kNodes), &out);
    if (rc != 0) GTEST_SKIP() << "network namespaces cannot be made here: " << out;
    up_ = true;
    dir_ = ocl::test::make_temp_dir("ocl_multinode_");
    config_ = write_config(dir_);
  }

  void TearDown() override {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (up_) {
      std::string out;
      EXPECT_EQ(run_exe("bash", kCluster + " down " + name_, &out), 0) << out;
    }
  }

  // Rank `node` · 2 + `local` in node `node`, with the launcher's variables; its log is
  // <dir>/<tag>.n<node>.l<local>.log. `wrap` runs before the app inside the node (a shell
  // command that ends by exec'ing "$@").
  pid_t start_rank(int node, int local, const std::vector<std::string>& args,
                   const std::string& tag, Launcher launcher, const std::string& wrap = "") {
    const int rank = node * kPerNode + local;
    std::map<std::string, std::string> env = {{"GLOO_SOCKET_IFNAME", "eth0"}};
    if (launcher == Launcher::kTorchrun) {
      env.insert({{"RANK", std::to_string(rank)},
                  {"LOCAL_RANK", std::to_string(local)},
                  {"GROUP_RANK", std::to_string(node)},
                  {"WORLD_SIZE", std::to_string(world_)},
                  {"LOCAL_WORLD_SIZE", std::to_string(kPerNode)},
                  {"MASTER_ADDR", "node0"},
                  {"MASTER_PORT", "29500"}});
    } else {
      const int nodes = world_ / kPerNode;
      env.insert({{"SLURM_STEP_ID", "0"},
                  {"SLURM_JOB_ID", "4242"},
                  {"SLURM_PROCID", std::to_string(rank)},
                  {"SLURM_LOCALID", std::to_string(local)},
                  {"SLURM_NODEID", std::to_string(node)},
                  {"SLURM_STEP_NUM_TASKS", std::to_string(world_)},
                  {"SLURM_STEP_TASKS_PER_NODE",
                   std::to_string(kPerNode) + "(x" + std::to_string(nodes) + ")"},
                  {"SLURM_STEP_NODELIST",
                   nodes > 1 ? "node[0-" + std::to_string(nodes - 1) + "]" : "node0"}});
    }
    std::vector<std::string> argv = {"netns", "exec", name_ + "-n" + std::to_string(node)};
    if (!wrap.empty()) argv.insert(argv.end(), {"unshare", "-m", "sh", "-c", wrap, "sh"});
    argv.push_back(OCL_PRETRAIN_EXE);
    argv.insert(argv.end(), args.begin(), args.end());
    const std::vector<std::string> drop = {"RANK",
                                           "WORLD_SIZE",
                                           "LOCAL_RANK",
                                           "LOCAL_WORLD_SIZE",
                                           "MASTER_ADDR",
                                           "MASTER_PORT",
                                           "GROUP_RANK",
                                           "SLURM_STEP_ID",
                                           "SLURM_JOB_ID",
                                           "SLURM_PROCID",
                                           "SLURM_NTASKS",
                                           "SLURM_JOB_NODELIST",
                                           "OMPI_COMM_WORLD_SIZE"};
    const std::string log = log_path(tag, node, local);
    const pid_t pid = ocl_test::spawn("/usr/sbin/ip", argv, env, log, drop);
    pids_.push_back(pid);
    return pid;
  }

  std::string log_path(const std::string& tag, int node, int local) const {
    return dir_ + "/" + tag + ".n" + std::to_string(node) + ".l" + std::to_string(local) + ".log";
  }

  // Starts every rank of `nodes` nodes; returns their pids by rank.
  std::vector<pid_t> start_all(int nodes, const std::vector<std::string>& args,
                               const std::string& tag, Launcher launcher = Launcher::kTorchrun,
                               const std::map<int, std::string>& wrap = {}) {
    world_ = nodes * kPerNode;
    std::vector<pid_t> pids;
    for (int n = 0; n < nodes; ++n) {
      for (int l = 0; l < kPerNode; ++l)
        pids.push_back(start_rank(n, l, args, tag, launcher, wrap.count(n) ? wrap.at(n) : ""));
    }
    return pids;
  }

  std::vector<int> wait_all(const std::vector<pid_t>& pids, double timeout_s) {
    std::vector<int> codes;
    for (pid_t pid : pids) codes.push_back(ocl_test::wait_for(pid, timeout_s));
    return codes;
  }

  std::string logs(const std::string& tag) const {
    std::string all;
    for (int n = 0; n < world_ / kPerNode; ++n) {
      for (int l = 0; l < kPerNode; ++l)
        all += "--- " + log_path(tag, n, l) + "\n" + read_file(log_path(tag, n, l));
    }
    return all;
  }

  std::vector<std::string> args(const std::string& run, std::vector<std::string> sets = {}) {
    std::vector<std::string> a{"--config", config_, "--set", "train.output_dir=" + run};
    for (const auto& s : sets) a.insert(a.end(), {"--set", s});
    return a;
  }

  // The same run as 4 processes on one host (the loopback), the reference every cluster run is
  // compared with.
  ocl::io::TensorMap one_host_reference(const std::vector<std::string>& sets = {}) {
    const std::string run = dir_ + "/one_host";
    const int port = ocl::distributed::free_tcp_port();
    std::vector<pid_t> pids;
    for (int r = 0; r < kWorld; ++r) {
      const std::map<std::string, std::string> env = {{"RANK", std::to_string(r)},
                                                      {"LOCAL_RANK", std::to_string(r)},
                                                      {"WORLD_SIZE", std::to_string(kWorld)},
                                                      {"LOCAL_WORLD_SIZE", std::to_string(kWorld)},
                                                      {"MASTER_ADDR", "127.0.0.1"},
                                                      {"MASTER_PORT", std::to_string(port)}};
      pids.push_back(ocl_test::spawn(OCL_PRETRAIN_EXE, args(run, sets), env,
                                     dir_ + "/one_host.r" + std::to_string(r) + ".log"));
      pids_.push_back(pids.back());
    }
    const auto codes = wait_all(pids, 300);
    EXPECT_EQ(codes, std::vector<int>(kWorld, 0)) << read_file(dir_ + "/one_host.r0.log");
    return final_encoder(run);
  }

  // Waits until rank 0's log (tag, node 0, local 0) shows `text`.
  void wait_for_log(const std::string& tag, const std::string& text, double timeout_s = 120) {
    const auto start = Clock::now();
    while (read_file(log_path(tag, 0, 0)).find(text) == std::string::npos) {
      ASSERT_LT(seconds_since(start), timeout_s) << logs(tag);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  void cluster(const std::string& verb, int node, const std::string& extra = "") {
    std::string out;
    ASSERT_EQ(
        run_exe("bash",
                kCluster + " " + verb + " " + name_ + " " + std::to_string(node) + " " + extra,
                &out),
        0)
        << out;
  }

  std::string name_, dir_, config_;
  bool up_ = false;
  int world_ = kWorld;
  std::vector<pid_t> pids_;
};

// 2 nodes × 2 processes, with torchrun's variables and with SLURM's, end with the weights of 4
// processes on one host: the rendezvous and Gloo's links cross the bridge, and nothing in the
// step depends on where the ranks are.
TEST_F(MultiNode, TwoNodesOfTwoTrainAsFourProcessesOnOneHost) {
  const auto reference = one_host_reference();
  for (const auto launcher : {Launcher::kTorchrun, Launcher::kSlurm}) {
    const std::string tag = launcher == Launcher::kTorchrun ? "torchrun" : "slurm";
    const auto pids = start_all(kNodes, args(dir_ + "/" + tag), tag, launcher);
    ASSERT_EQ(wait_all(pids, 300), std::vector<int>(kWorld, 0)) << logs(tag);
    const std::string log0 = read_file(log_path(tag, 0, 0));
    // SLURM's port comes from the job id (29500 + 4242 % 1000), as srun users expect.
    const std::string rendezvous = launcher == Launcher::kTorchrun
                                       ? "rendezvous node0:29500, from torchrun variables"
                                       : "rendezvous node0:29742, from SLURM variables";
    EXPECT_NE(log0.find(rendezvous), std::string::npos) << log0;
    EXPECT_EQ(weight_difference(final_encoder(dir_ + "/" + tag), reference), 0.0) << tag;
  }
}

// A node lost mid-epoch (both its processes SIGKILLed): the survivors stop promptly, naming the
// lost ranks and the collective; the newest checkpoint is intact; --resume auto on both nodes
// finishes with the weights of a run never interrupted.
TEST_F(MultiNode, LostNodeStopsTheSurvivorsAndTheResumedRunEndsWithTheSameWeights) {
  const auto reference = one_host_reference();
  const std::string run = dir_ + "/run";
  const auto pids = start_all(kNodes, args(run), "first");
  wait_for_log("first", "epoch 2/3 step 2/4");
  ::kill(pids[2], SIGKILL);
  ::kill(pids[3], SIGKILL);
  const auto lost_at = Clock::now();
  const auto codes = wait_all({pids[0], pids[1]}, 60);
  const double took = seconds_since(lost_at);
  const std::string log = logs("first");
  EXPECT_NE(codes[0], 0) << log;
  EXPECT_NE(codes[0], -1) << "rank 0 did not stop within 60 s\n" << log;
  EXPECT_NE(codes[1], -1) << "rank 1 did not stop within 60 s\n" << log;
  EXPECT_LT(took, 45) << log;
  const std::string log0 = read_file(log_path("first", 0, 0));
  EXPECT_NE(log0.find("collective #"), std::string::npos) << log0;
  EXPECT_NE(log0.find("rank 2 has stopped"), std::string::npos) << log0;
  EXPECT_NE(log0.find("rank 3 has stopped"), std::string::npos) << log0;
  EXPECT_EQ(ocl::io::load_checkpoint(ocl::io::latest_checkpoint(run)).state.epoch, 1);

  auto resume = args(run);
  resume.insert(resume.end(), {"--resume", "auto"});
  const auto again = start_all(kNodes, resume, "resumed");
  ASSERT_EQ(wait_all(again, 300), std::vector<int>(kWorld, 0)) << logs("resumed");
  EXPECT_EQ(weight_difference(final_encoder(run), reference), 0.0);
  std::printf("[ metric ] node lost: every survivor stopped %.1f s after the SIGKILL\n", took);
}

// The link of node 1 cut during training (its packets dropped both ways: no reset, no error):
// every rank stops within dist.timeout_s, naming the peers it lost; the newest checkpoint is
// intact, and once the link is back the run resumes on both nodes and completes.
TEST_F(MultiNode, CutLinkStopsEveryRankWithinTheTimeoutAndTheRunResumes) {
  const std::string run = dir_ + "/run";
  const double timeout_s = 8;
  const auto pids =
      start_all(kNodes, args(run, {"dist.timeout_s=" + std::to_string(timeout_s)}), "first");
  wait_for_log("first", "epoch 2/3 step 2/4");
  cluster("cut", 1);
  const auto cut_at = Clock::now();
  const auto codes = wait_all(pids, timeout_s + 60);
  const double took = seconds_since(cut_at);
  const std::string log = logs("first");
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_NE(codes[r], 0) << "rank " << r << "\n" << log;
    EXPECT_NE(codes[r], -1) << "rank " << r << " did not stop\n" << log;
  }
  EXPECT_LT(took, timeout_s + 40) << log;
  const std::string node0 = read_file(log_path("first", 0, 0));
  EXPECT_NE(node0.find("rank 2 has stopped"), std::string::npos) << node0;
  const std::string node1 = read_file(log_path("first", 1, 0));
  EXPECT_NE(node1.find("cannot be reached"), std::string::npos) << node1;
  EXPECT_GE(ocl::io::load_checkpoint(ocl::io::latest_checkpoint(run)).state.epoch, 1);

  cluster("heal", 1);
  auto resume = args(run, {"dist.timeout_s=" + std::to_string(timeout_s)});
  resume.insert(resume.end(), {"--resume", "auto"});
  const auto again = start_all(kNodes, resume, "resumed");
  ASSERT_EQ(wait_all(again, 300), std::vector<int>(kWorld, 0)) << logs("resumed");
  EXPECT_EQ(ocl::io::load_checkpoint(ocl::io::latest_checkpoint(run)).state.epoch, 3);
  std::printf(
      "[ metric ] link cut: every rank stopped %.1f s after the cut (dist.timeout_s %.0f)\n", took,
      timeout_s);
}

// A slow and lossy link to node 1 (1 % of its packets dropped each way, its egress limited):
// TCP retransmits, and the run ends with the weights of the clean link.
TEST_F(MultiNode, SlowLossyLinkEndsWithTheCleanLinksWeights) {
  const auto reference = one_host_reference();
  cluster("impair", 1, "1 20mbit 20ms");
  const auto start = Clock::now();
  const auto pids = start_all(kNodes, args(dir_ + "/lossy"), "lossy");
  ASSERT_EQ(wait_all(pids, 300), std::vector<int>(kWorld, 0)) << logs("lossy");
  EXPECT_EQ(weight_difference(final_encoder(dir_ + "/lossy"), reference), 0.0);
  std::printf("[ metric ] lossy link: the run took %.1f s\n", seconds_since(start));
}

// A run stopped on 2 nodes resumes on 1 (2 processes): epoch 1 continues after the images the 4
// processes had seen, as on one host.
TEST_F(MultiNode, ResumeOnFewerNodesContinuesAtTheRightImage) {
  const std::string run = dir_ + "/run";
  auto first = args(run);
  first.insert(first.end(), {"--stop-after-steps", "6"});
  const auto pids = start_all(kNodes, first, "first");
  ASSERT_EQ(wait_all(pids, 300), std::vector<int>(kWorld, 0)) << logs("first");
  auto c = ocl::io::load_checkpoint(ocl::io::latest_checkpoint(run));
  EXPECT_EQ(c.state.world_size, 4);
  EXPECT_EQ(c.state.epoch, 1);
  EXPECT_EQ(c.state.step_in_epoch, 2);

  auto resume = args(run);
  resume.insert(resume.end(), {"--resume", "auto"});
  const auto again = start_all(1, resume, "one_node");
  ASSERT_EQ(wait_all(again, 300), std::vector<int>(kPerNode, 0)) << logs("one_node");
  // 2 steps × 4 ranks × 16 = 128 images = step 4 of 8 for 2 processes of batch 16.
  const std::string log0 = read_file(log_path("one_node", 0, 0));
  EXPECT_NE(log0.find("written by 4 processes and this run has 2: epoch 1 continues at step 4"),
            std::string::npos)
      << log0;
  c = ocl::io::load_checkpoint(ocl::io::latest_checkpoint(run));
  EXPECT_EQ(c.state.world_size, 2);
  EXPECT_EQ(c.state.epoch, 3);
  EXPECT_EQ(c.state.global_step, 6 + 4 + 8);
}

// A small image folder: <root>/train/class<c>/img<i>.png, `classes` × 4 images of 24×24.
void write_image_folder(const std::string& root, int classes) {
  for (int c = 0; c < classes; ++c) {
    const std::string folder = root + "/train/class" + std::to_string(c);
    ocl::io::make_dirs(folder);
    for (int i = 0; i < 4; ++i) {
      ocl::data::Image image;
      image.height = image.width = 24;
      image.pixels.assign(24 * 24 * 3, static_cast<uint8_t>(40 * c + 10 * i));
      const auto bytes = ocl::data::encode_png(image);
      std::ofstream(folder + "/img" + std::to_string(i) + ".png", std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
  }
}

// Node 1 sees other images under the same data path (its own disk, mounted at the same place):
// the ranks' agreement names the data set, the ranks that differ and what each sees, before
// any step.
TEST_F(MultiNode, NodeWhoseDataDiffersIsNamed) {
  const std::string data = dir_ + "/data", other = dir_ + "/other";
  write_image_folder(data, 3);
  write_image_folder(other, 2);
  const std::string wrap = "mount --bind " + other + " " + data + " && exec \"$@\"";
  const auto pids = start_all(kNodes,
                              args(dir_ + "/run", {"data.dataset=imagefolder", "data.path=" + data,
                                                   "eval.knn_every=0", "model.img_size=16"}),
                              "data", Launcher::kTorchrun, {{1, wrap}});
  const auto codes = wait_all(pids, 120);
  const std::string log = logs("data");
  for (int r = 0; r < kWorld; ++r) EXPECT_NE(codes[r], 0) << "rank " << r << "\n" << log;
  const std::string log0 = read_file(log_path("data", 0, 0));
  EXPECT_NE(log0.find("ranks see different data"), std::string::npos) << log;
  EXPECT_NE(log0.find("of ranks 2, 3 differs"), std::string::npos) << log;
  EXPECT_NE(log0.find("rank 0: 12 images of 3 classes"), std::string::npos) << log;
  EXPECT_NE(log0.find("rank 2: 8 images of 2 classes"), std::string::npos) << log;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/run/checkpoint-last"));
}

// The rank agreement across nodes: node 1's processes started with another optim.lr stop every
// rank before any step, naming the ranks and the key.
TEST_F(MultiNode, ConfigDifferingOnANodeIsNamed) {
  std::vector<pid_t> pids;
  world_ = kWorld;
  for (int n = 0; n < kNodes; ++n) {
    for (int l = 0; l < kPerNode; ++l) {
      auto a = args(dir_ + "/run", {n == 1 ? "optim.lr=2.0e-3" : "optim.lr=1.0e-3"});
      pids.push_back(start_rank(n, l, a, "config", Launcher::kTorchrun));
    }
  }
  const auto codes = wait_all(pids, 120);
  const std::string log = logs("config");
  for (int r = 0; r < kWorld; ++r) EXPECT_NE(codes[r], 0) << "rank " << r << "\n" << log;
  const std::string log0 = read_file(log_path("config", 0, 0));
  EXPECT_NE(log0.find("ranks run different configs: the config of ranks 2, 3 differs from rank "
                      "0's"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("optim.lr is 0.002, on rank 0 0.001"), std::string::npos) << log;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/run/checkpoint-last"));
}

// The run folder's lock across nodes (one file system): a run on node 1 started on the folder a
// run on node 0 is using is refused, naming the holder.
TEST_F(MultiNode, AFolderInUseOnAnotherNodeIsRefused) {
  const std::string run = dir_ + "/run";
  const auto first = start_all(1, args(run, {"train.epochs=1000"}), "holder");
  wait_for_log("holder", "epoch 1/1000 step 2/8");
  std::vector<std::string> a = args(run);
  const std::string log = dir_ + "/intruder.log";
  const pid_t intruder = ocl_test::spawn(
      "/usr/sbin/ip",
      [&] {
        std::vector<std::string> argv = {"netns", "exec", name_ + "-n1", OCL_PRETRAIN_EXE};
        argv.insert(argv.end(), a.begin(), a.end());
        return argv;
      }(),
      {}, log,
      {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"});
  pids_.push_back(intruder);
  EXPECT_EQ(ocl_test::wait_for(intruder, 60), 1);
  const std::string text = read_file(log);
  EXPECT_NE(text.find("output folder '" + run + "' is in use by another run (ocl_pretrain pid "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(", rank 0 of 2 (rendezvous node0:29500)"), std::string::npos) << text;
  for (pid_t pid : first) ::kill(pid, SIGKILL);
}

}  // namespace
