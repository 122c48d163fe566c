// What the shared run skeleton gives every engine, checked once over the three apps
// (ocl_pretrain, ocl_finetune, ocl_linprobe) at tiny sizes: --stop-after-steps counts the steps
// of this run and the resumed run ends with the weights of the run never stopped; SIGTERM
// writes a checkpoint and exits 0; a checkpoint of two processes resumes in one at the step
// that covers the images already seen.
#include <signal.h>

#include <chrono>
#include <map>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "integration/process_util.h"
#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/io/checkpoint.h>
#include <ocl/io/files.h>
#include <ocl/io/safetensors.h>

namespace {

using ocl::test::read_file;

struct EngineCase {
  std::string name;        // the test's suffix
  std::string exe;         // the app
  std::string section;     // the config section of its recipe: train, finetune, linprobe
  std::string model_file;  // its checkpoints' model file
  std::string records;     // its metrics.jsonl record prefix ("" for pre-training)
  std::vector<std::string> extra;
};

// Test names and messages show the engine, not the struct's bytes.
void PrintTo(const EngineCase& e, std::ostream* os) { *os << e.name; }

std::vector<EngineCase> engines() {
  std::vector<EngineCase> out;
#if defined(OCL_PRETRAIN_EXE) && defined(OCL_FINETUNE_EXE) && defined(OCL_LINPROBE_EXE)
  out.push_back({"pretrain",
                 OCL_PRETRAIN_EXE,
                 "train",
                 "encoder.safetensors",
                 "",
                 {"--set", "eval.knn_every=0"}});
  out.push_back({"finetune",
                 OCL_FINETUNE_EXE,
                 "finetune",
                 "encoder.safetensors",
                 "finetune_",
                 {"--weights", "none", "--set", "finetune.warmup_epochs=1"}});
  out.push_back({"linprobe",
                 OCL_LINPROBE_EXE,
                 "linprobe",
                 "head.safetensors",
                 "linprobe_",
                 {"--weights", "none", "--set", "linprobe.warmup_epochs=1"}});
#endif
  return out;
}

// The app's command line at tiny sizes: 2 epochs of `train_images` / (batch · processes) steps,
// its output in `folder`.
std::vector<std::string> tiny_args(const EngineCase& e, const std::string& folder,
                                   int64_t train_images, int64_t batch) {
  const std::string output_key =
      e.section == "train" ? "train.output_dir" : e.section + ".output_dir";
  std::vector<std::string> args = {"--config",
                                   std::string(OCL_SOURCE_DIR) + "/configs/quickstart.yaml"};
  for (const std::string& kv : std::vector<std::string>{
           "model.img_size=16", "model.patch_size=4", "model.embed_dim=32", "model.depth=1",
           "model.num_heads=2", "data.workers=1", "train.threads=1", "log.every=1",
           "log.progress=lines", "data.synthetic_val_size=13",
           "data.synthetic_train_size=" + std::to_string(train_images),
           e.section + ".batch_size=" + std::to_string(batch), e.section + ".epochs=2",
           output_key + "=" + folder}) {
    args.insert(args.end(), {"--set", kv});
  }
  args.insert(args.end(), e.extra.begin(), e.extra.end());
  return args;
}

class EveryEngine : public ::testing::TestWithParam<EngineCase> {
 protected:
  void SetUp() override { dir_ = ocl::test::make_temp_dir("ocl_engines_" + GetParam().name + "_"); }

  std::string out(const std::string& name) const { return dir_ + "/" + name; }

  // The app at tiny sizes (tiny_args), its output in out(folder); starts it, returns its pid.
  pid_t start(const std::string& log, const std::string& folder, int64_t train_images,
              int64_t batch, const std::vector<std::string>& extra) const {
    auto args = tiny_args(GetParam(), out(folder), train_images, batch);
    args.insert(args.end(), extra.begin(), extra.end());
    return ocl_test::spawn(GetParam().exe, args, {}, out(log + ".log"), ocl_test::kLaunchVars);
  }
  int run(const std::string& log, const std::string& folder, const std::vector<std::string>& extra,
          int64_t batch = 8) const {
    return ocl_test::wait_for(start(log, folder, 32, batch, extra), 300);
  }
  ocl::io::TensorMap final_model(const std::string& folder) const {
    return ocl::io::read_safetensors(out(folder) + "/checkpoint-last/" + GetParam().model_file)
        .tensors;
  }

  std::string dir_;
};

// 32 images at batch 8: 4 steps an epoch, 8 in all. Stopped after 3 steps, then after 3 more
// (steps of each run, not global steps), then finished: the weights of the run never stopped.
TEST_P(EveryEngine, StopAfterStepsCountsThisRunsStepsAndResumesExactly) {
  ASSERT_EQ(run("whole", "whole", {}), 0) << read_file(out("whole.log"));
  ASSERT_EQ(run("first", "parts", {"--stop-after-steps", "3"}), 0) << read_file(out("first.log"));
  EXPECT_NE(read_file(out("first.log")).find("stopped cleanly"), std::string::npos)
      << read_file(out("first.log"));
  EXPECT_EQ(ocl::io::latest_checkpoint(out("parts")), out("parts") + "/checkpoint-0000-000003");
  ASSERT_EQ(run("second", "parts", {"--resume", "auto", "--stop-after-steps", "3"}), 0)
      << read_file(out("second.log"));
  EXPECT_EQ(ocl::io::latest_checkpoint(out("parts")), out("parts") + "/checkpoint-0001-000002");
  ASSERT_EQ(run("third", "parts", {"--resume", "auto"}), 0) << read_file(out("third.log"));
  EXPECT_NE(read_file(out("third.log")).find("resumed from"), std::string::npos);

  const auto whole = final_model("whole"), parts = final_model("parts");
  ASSERT_EQ(whole.size(), parts.size());
  for (const auto& [name, tensor] : whole)
    EXPECT_TRUE(torch::equal(tensor, parts.at(name))) << name;
  const auto metrics = read_file(out("parts") + "/metrics.jsonl");
  const std::string records = GetParam().records;
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"" + records + "step\""), 8) << metrics;
  EXPECT_EQ(ocl::test::count_of(metrics, "\"type\":\"" + records + "epoch\""), 2) << metrics;
}

// --resume with --overwrite: refused on the command line (exit 2) naming both, before anything
// is written, instead of one of them being ignored.
TEST_P(EveryEngine, ResumeWithOverwriteIsRefusedNamingBoth) {
  EXPECT_EQ(run("both", "both", {"--resume", "auto", "--overwrite"}), 2)
      << read_file(out("both.log"));
  const std::string log = read_file(out("both.log"));
  EXPECT_NE(log.find("--resume excludes --overwrite"), std::string::npos) << log;
  EXPECT_FALSE(ocl::io::path_exists(out("both")));
}

// SIGTERM mid-epoch: the step in progress finishes, a checkpoint is written, the exit code is 0.
TEST_P(EveryEngine, SigtermWritesACheckpointAndExitsZero) {
  const pid_t pid = start("run", "run", 4096, 8, {});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  const std::string step = "\"type\":\"" + GetParam().records + "step\"";
  while (read_file(out("run") + "/metrics.jsonl").find(step) == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << read_file(out("run.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Twice at once, as a group kill (GNU timeout, scancel) delivers it: one request, not "exit now".
  ::kill(pid, SIGTERM);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(ocl_test::wait_for(pid, 120), 0) << read_file(out("run.log"));
  EXPECT_NE(read_file(out("run.log")).find("stopped cleanly"), std::string::npos)
      << read_file(out("run.log"));
  const auto c =
      ocl::io::load_checkpoint(ocl::io::latest_checkpoint(out("run")), GetParam().model_file);
  EXPECT_EQ(c.state.epoch, 0);
  EXPECT_GT(c.state.step_in_epoch, 0);
}

// Two processes of batch 4 take 3 steps (24 images); one process of batch 4 continues the epoch
// at step 6, the first step whose images were not all seen, and finishes.
TEST_P(EveryEngine, ACheckpointOfTwoProcessesResumesInOneByImagesSeen) {
  ASSERT_EQ(run("two", "run", {"--nproc-per-node", "2", "--stop-after-steps", "3"}, 4), 0)
      << read_file(out("two.log"));
  ASSERT_EQ(run("one", "run", {"--resume", "auto"}, 4), 0) << read_file(out("one.log"));
  const auto log = read_file(out("one.log"));
  EXPECT_NE(log.find("written by 2 processes and this run has 1: epoch 0 continues at step 6"),
            std::string::npos)
      << log;
  EXPECT_EQ(
      ocl::io::load_checkpoint(out("run") + "/checkpoint-last", GetParam().model_file).state.epoch,
      2);
}

// Each app given another app's checkpoint to resume: one line naming the checkpoint's kind and
// the app that resumes it, exit 1, and no output folder made (it used to end in a dump of keys
// after creating the folder, its lock, config and log).
TEST(Engines, AnotherAppsCheckpointIsRefusedNamingItsKind) {
  const auto dir = ocl::test::make_temp_dir("ocl_engines_kind_");
  const std::map<std::string, std::string> kinds = {
      {"pretrain", "pre-training"}, {"finetune", "fine-tuning"}, {"linprobe", "linear probe"}};
  const auto all = engines();
  auto command = [](const EngineCase& e, const std::string& folder) {
    return tiny_args(e, folder, 32, 8);
  };
  for (const auto& from : all) {
    auto args = command(from, dir + "/" + from.name);
    args.insert(args.end(), {"--stop-after-steps", "1"});
    ASSERT_EQ(ocl_test::wait_for(ocl_test::spawn(from.exe, args, {}, dir + "/" + from.name + ".log",
                                                 ocl_test::kLaunchVars),
                                 120),
              0)
        << read_file(dir + "/" + from.name + ".log");
  }
  for (const auto& from : all) {
    for (const auto& to : all) {
      if (from.name == to.name) continue;
      const std::string folder = dir + "/" + from.name + "_into_" + to.name;
      auto args = command(to, folder);
      args.insert(args.end(), {"--resume", dir + "/" + from.name + "/checkpoint-last"});
      const std::string log = folder + ".log";
      EXPECT_EQ(
          ocl_test::wait_for(ocl_test::spawn(to.exe, args, {}, log, ocl_test::kLaunchVars), 120), 1)
          << read_file(log);
      const std::string text = read_file(log);
      EXPECT_NE(text.find("is a " + kinds.at(from.name) + " checkpoint and ocl_" + to.name +
                          " resumes " + kinds.at(to.name) + " checkpoints"),
                std::string::npos)
          << text;
      EXPECT_NE(text.find("nothing was written"), std::string::npos) << text;
      EXPECT_FALSE(ocl::io::path_exists(folder)) << from.name << " into " << to.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Apps, EveryEngine, ::testing::ValuesIn(engines()),
                         [](const auto& info) { return info.param.name; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(EveryEngine);

}  // namespace
