// Checkpoint folders: round trip, the checkpoint-last link, pruning to keep_last, clear errors
// for damaged parts, and a writer killed mid-write never harming the previous checkpoint.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "test_util.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <ocl/io/checkpoint.h>
#include <ocl/io/files.h>
#include <ocl/io/safetensors.h>

namespace {

namespace io = ocl::io;

std::string ckpt_temp_dir() { return ocl::test::make_temp_dir("ocl_ckpt_"); }

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

ocl::io::TrainingState state_at(int64_t epoch, int64_t step, int64_t global) {
  ocl::io::TrainingState s;
  s.epoch = epoch;
  s.step_in_epoch = step;
  s.global_step = global;
  s.seed = 7;
  return s;
}

ocl::io::TensorMap encoder_of(float value, int64_t n = 16) {
  return {{"cls_token", torch::full({1, 1, n}, value)}, {"norm.weight", torch::full({n}, value)}};
}

TEST(Checkpoint, Names) {
  EXPECT_EQ(ocl::io::checkpoint_name(state_at(4, 0, 40)), "checkpoint-0004");
  EXPECT_EQ(ocl::io::checkpoint_name(state_at(4, 120, 520)), "checkpoint-0004-000120");
}

// A run folder copied without its link (cp -a then rm, rsync without -l) or with the link turned
// into a folder (cp -rL): resume still finds the newest complete checkpoint, the next save puts
// the link back, and pruning never deletes a checkpoint newer than the one it just wrote.
TEST(Checkpoint, TheNewestIsFoundWithoutTheLinkAndNewerOnesAreNeverPruned) {
  const auto dir = ckpt_temp_dir();
  for (int64_t e : {1, 2})
    io::save_checkpoint(dir, state_at(e, 0, 10 * e), encoder_of(1.f), {}, "", 5);
  ASSERT_EQ(::unlink((dir + "/checkpoint-last").c_str()), 0);
  EXPECT_EQ(io::latest_checkpoint(dir), dir + "/checkpoint-0002");
  ::mkdir((dir + "/checkpoint-0003").c_str(), 0777);  // incomplete: no state.json
  EXPECT_EQ(io::latest_checkpoint(dir), dir + "/checkpoint-0002");
  ::rmdir((dir + "/checkpoint-0003").c_str());
  ASSERT_EQ(::mkdir((dir + "/checkpoint-last").c_str(), 0777), 0);  // cp -rL made it a folder
  std::ofstream(dir + "/checkpoint-last/state.json") << "{}";
  EXPECT_EQ(io::latest_checkpoint(dir), dir + "/checkpoint-0002");
  io::save_checkpoint(dir, state_at(3, 0, 30), encoder_of(1.f), {}, "", 5);
  EXPECT_EQ(io::latest_checkpoint(dir), dir + "/checkpoint-0003");
  struct stat st {};
  ASSERT_EQ(::lstat((dir + "/checkpoint-last").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  // An older position written with keep_last 1 (a run restarted by mistake) prunes only what is
  // older than itself.
  io::save_checkpoint(dir, state_at(1, 5, 15), encoder_of(1.f), {}, "", 1);
  EXPECT_FALSE(exists(dir + "/checkpoint-0001"));
  EXPECT_TRUE(exists(dir + "/checkpoint-0001-000005"));
  EXPECT_TRUE(exists(dir + "/checkpoint-0002"));
  EXPECT_TRUE(exists(dir + "/checkpoint-0003"));
}

TEST(Checkpoint, RoundTripAndLastLink) {
  const auto dir = ckpt_temp_dir();
  EXPECT_EQ(ocl::io::latest_checkpoint(dir), "");
  ocl::io::TensorMap trainer{{"model.logit_scale", torch::tensor(2.5)},
                             {"optim.x.step", torch::tensor(int64_t{3})}};
  const auto path = ocl::io::save_checkpoint(dir, state_at(2, 5, 25), encoder_of(1.5f), trainer,
                                             "train:\n  epochs: 3\n", 2);
  EXPECT_EQ(path, dir + "/checkpoint-0002-000005");
  EXPECT_EQ(ocl::io::latest_checkpoint(dir), path);
  const auto c = ocl::io::load_checkpoint(dir + "/checkpoint-last");
  EXPECT_EQ(c.state.epoch, 2);
  EXPECT_EQ(c.state.step_in_epoch, 5);
  EXPECT_EQ(c.state.global_step, 25);
  EXPECT_EQ(c.state.seed, 7u);
  EXPECT_EQ(c.config_yaml, "train:\n  epochs: 3\n");
  EXPECT_TRUE(torch::equal(c.model.at("cls_token"), torch::full({1, 1, 16}, 1.5f)));
  EXPECT_EQ(c.trainer.at("optim.x.step").item<int64_t>(), 3);
}

TEST(Checkpoint, KeepsOnlyTheNewestAndLeftoversAreCleaned) {
  const auto dir = ckpt_temp_dir();
  ::mkdir((dir + "/checkpoint-0001.tmp-99999").c_str(), 0777);  // a killed writer's leftover
  for (int64_t e = 1; e <= 4; ++e) {
    ocl::io::save_checkpoint(dir, state_at(e, 0, 10 * e), encoder_of(static_cast<float>(e)), {}, "",
                             2);
  }
  EXPECT_FALSE(exists(dir + "/checkpoint-0001"));
  EXPECT_FALSE(exists(dir + "/checkpoint-0002"));
  EXPECT_TRUE(exists(dir + "/checkpoint-0003/encoder.safetensors"));
  EXPECT_TRUE(exists(dir + "/checkpoint-0004/encoder.safetensors"));
  EXPECT_FALSE(exists(dir + "/checkpoint-0001.tmp-99999"));
  EXPECT_EQ(ocl::io::latest_checkpoint(dir), dir + "/checkpoint-0004");
  // A mid-epoch checkpoint orders after its epoch's start.
  ocl::io::save_checkpoint(dir, state_at(4, 3, 43), encoder_of(5.f), {}, "", 2);
  EXPECT_FALSE(exists(dir + "/checkpoint-0003"));
  EXPECT_TRUE(exists(dir + "/checkpoint-0004"));
  ocl::io::remove_checkpoints(dir);
  EXPECT_FALSE(exists(dir + "/checkpoint-0004"));
  EXPECT_EQ(ocl::io::latest_checkpoint(dir), "");
}

TEST(Checkpoint, DamagedPartsGiveClearErrors) {
  const auto dir = ckpt_temp_dir();
  const auto path = ocl::io::save_checkpoint(dir, state_at(1, 0, 10), encoder_of(1.f), {}, "", 1);
  auto expect_error = [&](const std::string& needle) {
    try {
      ocl::io::load_checkpoint(path);
      ADD_FAILURE() << "expected an error naming " << needle;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // Truncated weights.
  const std::string enc = path + "/encoder.safetensors";
  struct stat st {};
  ASSERT_EQ(::stat(enc.c_str(), &st), 0);
  ASSERT_EQ(::truncate(enc.c_str(), st.st_size - 10), 0);
  expect_error("encoder.safetensors");
  ocl::io::save_checkpoint(dir, state_at(1, 0, 10), encoder_of(1.f), {}, "", 1);
  // Damaged state.
  { std::ofstream(path + "/state.json") << "{\"format_version\": 1, \"epoch\": "; }
  expect_error("state.json");
  // Missing folder.
  try {
    ocl::io::load_checkpoint(dir + "/checkpoint-0099");
    ADD_FAILURE() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint-0099"), std::string::npos);
  }
}

// One NaN in AdamW's moments (written by hand into a checkpoint) is refused on load naming the
// tensor; a model or moments that are not finite are never written as a checkpoint, and the
// older checkpoints stay (keep_last prunes nothing).
TEST(Checkpoint, NonFiniteWeightsOrOptimiserStateAreNeitherLoadedNorWritten) {
  const auto dir = ckpt_temp_dir();
  ocl::io::TensorMap trainer = {{"optim.norm.weight.exp_avg", torch::zeros({16})},
                                {"finetune.last_top5", torch::full({}, NAN, torch::kFloat64)}};
  const auto good =
      ocl::io::save_checkpoint(dir, state_at(1, 0, 10), encoder_of(1.f), trainer, "", 1);
  EXPECT_NO_THROW(ocl::io::load_checkpoint(good));  // a NaN figure is not a weight

  auto nan_state = trainer;
  nan_state["optim.norm.weight.exp_avg"] = torch::zeros({16}).index_put_({3}, NAN);
  OCL_EXPECT_THROW_WITH(
      ocl::io::save_checkpoint(dir, state_at(2, 0, 20), encoder_of(1.f), nan_state, "", 1),
      "not writing " + dir +
          "/checkpoint-0002 (the checkpoints before it are "
          "kept): tensor 'optim.norm.weight.exp_avg' holds NaN or infinity");
  OCL_EXPECT_THROW_WITH(
      ocl::io::save_checkpoint(dir, state_at(2, 0, 20), encoder_of(INFINITY), trainer, "", 1),
      "tensor 'cls_token' holds NaN or infinity");
  EXPECT_FALSE(exists(dir + "/checkpoint-0002"));
  EXPECT_EQ(ocl::io::latest_checkpoint(dir), good);

  // As an earlier version's checkpoint (no checksums in state.json) would hold it.
  ocl::io::write_safetensors(good + "/trainer.safetensors", nan_state);
  auto state = nlohmann::json::parse(ocl::test::read_file(good + "/state.json"));
  state.erase("files");
  std::ofstream(good + "/state.json") << state.dump();
  OCL_EXPECT_THROW_WITH(ocl::io::load_checkpoint(good),
                        "trainer.safetensors' (the run had diverged when it was written, or the "
                        "file is damaged): tensor 'optim.norm.weight.exp_avg' holds NaN");
}

// A bit flipped on disk that leaves every value finite: state.json's CRC-32 of the file names it
// (it used to resume silently).
TEST(Checkpoint, AFlippedBitIsCaughtByTheRecordedChecksum) {
  const auto dir = ckpt_temp_dir();
  const auto path = ocl::io::save_checkpoint(dir, state_at(1, 0, 10), encoder_of(1.f), {}, "", 1);
  EXPECT_NO_THROW(ocl::io::load_checkpoint(path));
  const std::string enc = path + "/encoder.safetensors";
  std::string bytes = ocl::test::read_file(enc);
  bytes[bytes.size() - 3] ^= 0x01;  // a mantissa bit of the last weight: 1.0 becomes 1.00003
  std::ofstream(enc, std::ios::binary) << bytes;
  ASSERT_TRUE(
      ocl::io::read_safetensors(enc).tensors.at("norm.weight").isfinite().all().item<bool>());
  OCL_EXPECT_THROW_WITH(ocl::io::load_checkpoint(path),
                        "encoder.safetensors' does not match the CRC-32 state.json recorded");
}

// state.json holds whole numbers in range, or the checkpoint is refused by name: nlohmann's
// get<> alone would truncate 1.5, wrap a negative seed and leave 1e300 undefined.
TEST(Checkpoint, StateJsonValuesAreCheckedOneByOne) {
  const std::string good =
      R"({"format_version": 1, "epoch": 3, "step_in_epoch": 7, "global_step": 307,
          "nonfinite_skips": 2, "world_size": 4, "seed": 18446744073709551615})";
  const auto state = ocl::io::parse_training_state(good, "run/state.json");
  EXPECT_EQ(state.epoch, 3);
  EXPECT_EQ(state.step_in_epoch, 7);
  EXPECT_EQ(state.global_step, 307);
  EXPECT_EQ(state.nonfinite_skips, 2);
  EXPECT_EQ(state.world_size, 4);
  EXPECT_EQ(state.seed, UINT64_MAX);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"format_version": 1, "epoch": 1.5, "step_in_epoch": 0, "global_step": 0,
           "nonfinite_skips": 0, "world_size": 1, "seed": 0})",
       "\"epoch\" is 1.5"},
      {R"({"format_version": 1, "epoch": 1e300, "step_in_epoch": 0, "global_step": 0,
           "nonfinite_skips": 0, "world_size": 1, "seed": 0})",
       "\"epoch\" is 1e+300"},
      {R"({"format_version": 1, "epoch": 0, "step_in_epoch": -1, "global_step": 0,
           "nonfinite_skips": 0, "world_size": 1, "seed": 0})",
       "\"step_in_epoch\" is -1"},
      {R"({"format_version": 1, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
           "nonfinite_skips": 0, "world_size": 0, "seed": 0})",
       "\"world_size\" is 0"},
      {R"({"format_version": 1, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
           "nonfinite_skips": 0, "world_size": 1, "seed": -1})",
       "\"seed\" is -1"},
      {R"({"format_version": 1, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
           "nonfinite_skips": 0, "world_size": 1})",
       "\"seed\" is missing"},
      {R"({"format_version": 1, "epoch": 0, "step_in_epoch": 0, "global_step": 18446744073709551615,
           "nonfinite_skips": 0, "world_size": 1, "seed": 0})",
       "\"global_step\" is 18446744073709551615"},
      {R"({"format_version": 2})", "format_version 2"},
      {R"({"format_version": 1.0})", "format_version 1.0"},
      {R"([1, 2])", "not a JSON object"},
      {R"({"format_version": 1, "epoch": )", "is damaged"},
  };
  for (const auto& [text, needle] : bad) {
    try {
      ocl::io::parse_training_state(text, "run/state.json");
      ADD_FAILURE() << "accepted " << text;
    } catch (const c10::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      EXPECT_NE(what.find("run/state.json"), std::string::npos) << what;
    }
  }
}

// A child writes checkpoints of ~8 MB in a loop and is killed with SIGKILL at various moments:
// checkpoint-last must always name a complete, loadable checkpoint the child finished.
TEST(Checkpoint, KillDuringWriteLeavesThePreviousIntact) {
  const auto dir = ckpt_temp_dir();
  ocl::io::save_checkpoint(dir, state_at(0, 1, 1), encoder_of(1.f, 1 << 21), {}, "first", 2);
  for (int delay_ms : {5, 20, 45, 80}) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      for (int64_t s = 2;; ++s) {
        ocl::io::save_checkpoint(dir, state_at(0, s, s), encoder_of(static_cast<float>(s), 1 << 21),
                                 {}, "step " + std::to_string(s), 2);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const auto latest = ocl::io::latest_checkpoint(dir);
    ASSERT_FALSE(latest.empty());
    const auto c = ocl::io::load_checkpoint(latest);
    const auto s = c.state.global_step;
    EXPECT_TRUE(torch::equal(c.model.at("norm.weight"),
                             torch::full({1 << 21}, s == 1 ? 1.f : static_cast<float>(s))))
        << latest;
  }
}

}  // namespace

// Every file ocl replaces goes through write_file_atomic, whose rename would turn whatever holds
// the name into a regular file (ocl_knn --save-features /dev/null, as root, replaced the device):
// a pipe, a folder, a symbolic link and (as root) a character device are refused, naming what
// they are, and left as they were.
TEST(WriteFileAtomic, RefusesWhatIsNotARegularFile) {
  const auto dir = ocl::test::make_temp_dir("ocl_not_regular_");
  const std::string fifo = dir + "/pipe", folder = dir + "/folder", link = dir + "/link",
                    device = dir + "/null";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(::mkdir(folder.c_str(), 0700), 0);
  ocl::io::write_file_atomic(dir + "/target", "old");
  ASSERT_EQ(::symlink("target", link.c_str()), 0);
  std::vector<std::pair<std::string, std::string>> cases = {
      {fifo, "a pipe"}, {folder, "a folder"}, {link, "a symbolic link"}};
  if (::geteuid() == 0 && ::mknod(device.c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0)
    cases.emplace_back(device, "a character device");
  for (const auto& [path, kind] : cases) {
    struct stat before {};
    ASSERT_EQ(::lstat(path.c_str(), &before), 0);
    OCL_EXPECT_THROW_WITH(ocl::io::write_file_atomic(path, "new"),
                          "cannot write '" + path + "': it exists and is " + kind);
    struct stat after {};
    ASSERT_EQ(::lstat(path.c_str(), &after), 0) << path;
    EXPECT_EQ(after.st_mode & S_IFMT, before.st_mode & S_IFMT) << path;
  }
  EXPECT_EQ(ocl::test::read_file(dir + "/target"), "old");
  // A regular file and a new name are written as before.
  ocl::io::write_file_atomic(dir + "/target", "new");
  ocl::io::write_file_atomic(dir + "/fresh", "new");
  EXPECT_EQ(ocl::test::read_file(dir + "/target"), "new");
  EXPECT_EQ(ocl::test::read_file(dir + "/fresh"), "new");
}
