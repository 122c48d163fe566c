// The launch layer: rank and rendezvous read from torchrun's, SLURM's and Open MPI's variables
// (through a fake environment), SLURM node lists, and the built-in launcher run on /bin/sh
// workers, whose output, exit codes and stopping behaviour are checked end to end.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ocl/distributed/launch.h>

namespace fs = std::filesystem;
using namespace ocl::distributed;

namespace {

using Env = std::map<std::string, std::string>;

LaunchInfo from(const Env& env) {
  return launch_from_env([&](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

// What srun sets for task 5 of 8 on the second of two nodes, 4 tasks each.
Env srun_env() {
  return {{"SLURM_STEP_ID", "0"},
          {"SLURM_PROCID", "5"},
          {"SLURM_STEP_NUM_TASKS", "8"},
          {"SLURM_NTASKS", "8"},
          {"SLURM_LOCALID", "1"},
          {"SLURM_NODEID", "1"},
          {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"},
          {"SLURM_TASKS_PER_NODE", "4(x2)"},
          {"SLURM_STEP_NODELIST", "gpu[07-08]"},
          {"SLURM_JOB_NODELIST", "gpu[07-08]"},
          {"SLURM_JOB_ID", "123456"}};
}

Env mpi_env() {
  return {{"OMPI_COMM_WORLD_RANK", "3"},       {"OMPI_COMM_WORLD_SIZE", "4"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
          {"MASTER_ADDR", "10.1.2.3"},         {"MASTER_PORT", "12345"}};
}

}  // namespace

TEST(Launch, TorchrunVariables) {
  const LaunchInfo l = from({{"RANK", "3"},
                             {"WORLD_SIZE", "8"},
                             {"LOCAL_RANK", "1"},
                             {"LOCAL_WORLD_SIZE", "2"},
                             {"MASTER_ADDR", "10.0.0.1"},
                             {"MASTER_PORT", "1234"}});
  EXPECT_EQ(l.source, "torchrun");
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.world_size, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_world_size, 2);
  EXPECT_EQ(l.master_addr, "10.0.0.1");
  EXPECT_EQ(l.master_port, 1234);
  EXPECT_TRUE(l.distributed());
  EXPECT_EQ(l.describe(),
            "rank 3 of 8 (local 1 of 2), rendezvous 10.0.0.1:1234, from torchrun variables");
}

TEST(Launch, TorchrunDefaults) {
  const LaunchInfo l = from({{"RANK", "1"}, {"WORLD_SIZE", "4"}});
  EXPECT_EQ(l.source, "torchrun");
  EXPECT_EQ(l.rank, 1);
  EXPECT_EQ(l.world_size, 4);
  EXPECT_EQ(l.local_rank, 0);
  EXPECT_EQ(l.local_world_size, 4);
  EXPECT_EQ(l.master_addr, "127.0.0.1");
  EXPECT_EQ(l.master_port, 29500);
}

TEST(Launch, NothingSetIsASingleProcess) {
  const LaunchInfo l = from({});
  EXPECT_EQ(l.source, "single");
  EXPECT_EQ(l.rank, 0);
  EXPECT_EQ(l.world_size, 1);
  EXPECT_EQ(l.local_rank, 0);
  EXPECT_EQ(l.local_world_size, 1);
  EXPECT_FALSE(l.distributed());
  EXPECT_EQ(l.describe(),
            "rank 0 of 1 (local 0 of 1), rendezvous 127.0.0.1:29500, single process (no launcher "
            "variables set)");
  // RANK alone (no WORLD_SIZE) is not a launch.
  EXPECT_EQ(from({{"RANK", "2"}}).source, "single");
}

TEST(Launch, SlurmInsideSrun) {
  const LaunchInfo l = from(srun_env());
  EXPECT_EQ(l.source, "slurm");
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.world_size, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_world_size, 4);
  EXPECT_EQ(l.master_addr, "gpu07");
  EXPECT_EQ(l.master_port, 29500 + 456);
  EXPECT_NE(l.describe().find("from SLURM variables"), std::string::npos);
}

TEST(Launch, SlurmFallsBackToJobVariables) {
  Env env = srun_env();
  env.erase("SLURM_STEP_NUM_TASKS");
  env.erase("SLURM_STEP_TASKS_PER_NODE");
  env.erase("SLURM_STEP_NODELIST");
  env["SLURM_NTASKS"] = "6";
  env["SLURM_TASKS_PER_NODE"] = "3(x2)";
  env["SLURM_JOB_NODELIST"] = "a12,b7";
  env["SLURM_PROCID"] = "4";
  const LaunchInfo l = from(env);
  EXPECT_EQ(l.world_size, 6);
  EXPECT_EQ(l.local_world_size, 3);
  EXPECT_EQ(l.master_addr, "a12");
  // Without a job id the default port.
  env.erase("SLURM_JOB_ID");
  EXPECT_EQ(from(env).master_port, 29500);
}

TEST(Launch, SlurmTasksPerNodeFormats) {
  Env env = srun_env();
  env["SLURM_STEP_NUM_TASKS"] = "11";
  env["SLURM_PROCID"] = "0";
  env["SLURM_LOCALID"] = "0";
  env["SLURM_STEP_TASKS_PER_NODE"] = "4(x2),3";
  for (const auto& [node, size] : std::map<std::string, int64_t>{{"0", 4}, {"1", 4}, {"2", 3}}) {
    env["SLURM_NODEID"] = node;
    EXPECT_EQ(from(env).local_world_size, size) << "node " << node;
  }
  env["SLURM_STEP_TASKS_PER_NODE"] = "2,4(x2)";
  env["SLURM_STEP_NUM_TASKS"] = "10";
  env["SLURM_NODEID"] = "2";
  EXPECT_EQ(from(env).local_world_size, 4);
  env["SLURM_NODEID"] = "0";
  EXPECT_EQ(from(env).local_world_size, 2);
  // Without SLURM_NODEID, the first entry.
  env.erase("SLURM_NODEID");
  EXPECT_EQ(from(env).local_world_size, 2);
  env["SLURM_STEP_TASKS_PER_NODE"] = "6";
  env["SLURM_STEP_NUM_TASKS"] = "6";
  EXPECT_EQ(from(env).local_world_size, 6);
}

TEST(Launch, SlurmMasterOverrides) {
  Env env = srun_env();
  env["MASTER_ADDR"] = "head.example";
  env["MASTER_PORT"] = "40000";
  const LaunchInfo l = from(env);
  EXPECT_EQ(l.master_addr, "head.example");
  EXPECT_EQ(l.master_port, 40000);
}

TEST(Launch, SlurmWithoutStepIsSingle) {
  // In an sbatch script, outside srun: the allocation's variables, but one process.
  Env env = srun_env();
  env.erase("SLURM_STEP_ID");
  const LaunchInfo l = from(env);
  EXPECT_EQ(l.source, "single");
  EXPECT_EQ(l.world_size, 1);
  // Some SLURM versions give the batch script a step id too: the reserved batch id.
  env["SLURM_STEP_ID"] = "4294967291";
  EXPECT_EQ(from(env).source, "single");
  env["SLURM_STEP_ID"] = "0";
  EXPECT_EQ(from(env).source, "slurm");
}

TEST(Launch, OpenMpi) {
  const LaunchInfo l = from(mpi_env());
  EXPECT_EQ(l.source, "mpi");
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.world_size, 4);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_world_size, 2);
  EXPECT_EQ(l.master_addr, "10.1.2.3");
  EXPECT_EQ(l.master_port, 12345);
  EXPECT_NE(l.describe().find("from Open MPI variables"), std::string::npos);

  Env env = mpi_env();
  env.erase("MASTER_ADDR");
  OCL_EXPECT_THROW_WITH(from(env), "MASTER_ADDR is not set");
  OCL_EXPECT_THROW_WITH(from(env), "mpirun -x");
  env = mpi_env();
  env.erase("MASTER_PORT");
  OCL_EXPECT_THROW_WITH(from(env), "MASTER_PORT is not set");
}

TEST(Launch, Precedence) {
  // torchrun's variables win over SLURM's, which win over Open MPI's.
  Env all = srun_env();
  for (const auto& [k, v] : mpi_env()) all[k] = v;
  all["RANK"] = "0";
  all["WORLD_SIZE"] = "2";
  EXPECT_EQ(from(all).source, "torchrun");
  EXPECT_EQ(from(all).world_size, 2);
  all.erase("WORLD_SIZE");
  EXPECT_EQ(from(all).source, "slurm");
  all.erase("SLURM_STEP_ID");
  EXPECT_EQ(from(all).source, "mpi");
}

TEST(Launch, MalformedValuesNameTheVariable) {
  const Env torchrun = {{"RANK", "1"}, {"WORLD_SIZE", "4"}};
  const auto with = [](Env env, const std::string& k, const std::string& v) {
    env[k] = v;
    return env;
  };
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "RANK", "x")), "RANK='x' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "RANK", "1 ")), "RANK='1 ' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "RANK", "")), "RANK='' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "WORLD_SIZE", "4x")),
                        "WORLD_SIZE='4x' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "WORLD_SIZE", "99999999999999999999")),
                        "WORLD_SIZE='99999999999999999999' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "LOCAL_RANK", "one")),
                        "LOCAL_RANK='one' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "LOCAL_WORLD_SIZE", "2.0")),
                        "LOCAL_WORLD_SIZE='2.0' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "MASTER_PORT", "http")),
                        "MASTER_PORT='http' is not an integer");
  OCL_EXPECT_THROW_WITH(from({{"WORLD_SIZE", "4"}}), "RANK is not set");

  // Out of range.
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "RANK", "4")), "RANK=4 is outside [0, WORLD_SIZE=4)");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "RANK", "-1")), "RANK=-1");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "WORLD_SIZE", "0")), "WORLD_SIZE=0");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "MASTER_PORT", "0")), "MASTER_PORT=0");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "MASTER_PORT", "65536")), "MASTER_PORT=65536");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "LOCAL_RANK", "4")), "LOCAL_RANK=4");
  OCL_EXPECT_THROW_WITH(from(with(with(torchrun, "LOCAL_WORLD_SIZE", "2"), "LOCAL_RANK", "2")),
                        "LOCAL_RANK=2 is outside [0, LOCAL_WORLD_SIZE=2)");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "LOCAL_WORLD_SIZE", "0")), "LOCAL_WORLD_SIZE=0");
  OCL_EXPECT_THROW_WITH(from(with(torchrun, "MASTER_ADDR", "")), "MASTER_ADDR");

  // SLURM.
  const Env s = srun_env();
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_PROCID", "five")),
                        "SLURM_PROCID='five' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_PROCID", "8")), "SLURM_PROCID=8");
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_STEP_NUM_TASKS", "")), "SLURM_STEP_NUM_TASKS=''");
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_LOCALID", "a")), "SLURM_LOCALID='a'");
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_LOCALID", "4")), "SLURM_LOCALID=4");
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_NODEID", "x")), "SLURM_NODEID='x'");
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_NODEID", "2")), "SLURM_NODEID=2");
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_JOB_ID", "12a")), "SLURM_JOB_ID='12a'");
  OCL_EXPECT_THROW_WITH(from(with(s, "MASTER_PORT", "-3")), "MASTER_PORT=-3");
  for (const std::string bad : {"", "4(x2", "4(2)", "(x2)", "4(x)", "4,,4", "0", "4(x0)", "a"}) {
    OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_STEP_TASKS_PER_NODE", bad)),
                          "SLURM_STEP_TASKS_PER_NODE='" + bad + "'");
  }
  OCL_EXPECT_THROW_WITH(from(with(s, "SLURM_STEP_NODELIST", "gpu[07-")),
                        "SLURM_STEP_NODELIST='gpu[07-'");
  Env missing = s;
  missing.erase("SLURM_PROCID");
  OCL_EXPECT_THROW_WITH(from(missing), "SLURM_PROCID is not set");

  // Open MPI.
  const Env m = mpi_env();
  OCL_EXPECT_THROW_WITH(from(with(m, "OMPI_COMM_WORLD_SIZE", "four")),
                        "OMPI_COMM_WORLD_SIZE='four' is not an integer");
  OCL_EXPECT_THROW_WITH(from(with(m, "OMPI_COMM_WORLD_RANK", "4")), "OMPI_COMM_WORLD_RANK=4");
  OCL_EXPECT_THROW_WITH(from(with(m, "OMPI_COMM_WORLD_LOCAL_RANK", "x")),
                        "OMPI_COMM_WORLD_LOCAL_RANK='x'");
  OCL_EXPECT_THROW_WITH(from(with(m, "OMPI_COMM_WORLD_LOCAL_SIZE", "9")),
                        "OMPI_COMM_WORLD_LOCAL_SIZE=9");
  OCL_EXPECT_THROW_WITH(from(with(m, "MASTER_PORT", "port")), "MASTER_PORT='port'");
}

TEST(Launch, FromProcessEnvironment) {
  ::setenv("WORLD_SIZE", "3", 1);
  ::setenv("RANK", "2", 1);
  const LaunchInfo l = launch_from_environment();
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
  EXPECT_EQ(l.source, "torchrun");
  EXPECT_EQ(l.rank, 2);
  EXPECT_EQ(l.world_size, 3);
}

TEST(Launch, FreeTcpPortIsBindable) {
  const int port = free_tcp_port();
  ASSERT_GE(port, 1);
  ASSERT_LE(port, 65535);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << port;
  ::close(fd);
}

TEST(SlurmNodelist, FirstHost) {
  EXPECT_EQ(first_slurm_host("node[01-04,07],gpu5"), "node01");
  EXPECT_EQ(first_slurm_host("a,b"), "a");
  EXPECT_EQ(first_slurm_host("gpu-[3,5-7]-ib"), "gpu-3-ib");
  EXPECT_EQ(first_slurm_host("single"), "single");
  EXPECT_EQ(first_slurm_host("n[7]"), "n7");
  EXPECT_EQ(first_slurm_host("rack[2-3]-n[010-020]"), "rack2-n010");
  EXPECT_EQ(first_slurm_host("x,node[1-2]"), "x");
  EXPECT_EQ(first_slurm_host("10.0.0.5"), "10.0.0.5");
}

TEST(SlurmNodelist, Malformed) {
  for (const std::string bad :
       {"", "node[", "node[01-04", "node]", "node[]", "node[a-b]", "node[1-]", "node[[1]]", ",a",
        "a,", "a,,b", "node[1,]", "a b", "a,b[", "a,b]"}) {
    OCL_EXPECT_THROW_WITH(first_slurm_host(bad), "node list '" + bad + "'");
  }
}

// --- The built-in launcher ---------------------------------------------------------------------

namespace {

struct WorkerRun {
  int code = -1;
  std::string out, err;
  double seconds = 0;
};

// Runs the launcher on `sh -c script` with our stdout and stderr captured (the launcher writes
// with write(2), which GoogleTest's capture sees: it redirects the descriptors).
WorkerRun run_sh(int nproc, const std::string& script, int port = 23456, double grace_s = 30) {
  LocalLaunchOptions o;
  o.nproc = nproc;
  o.argv = {"/bin/sh", "-c", script};
  o.master_port = port;
  o.grace_s = grace_s;
  WorkerRun r;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    r.code = run_local_workers(o);
  } catch (...) {
    r.out = testing::internal::GetCapturedStdout();
    r.err = testing::internal::GetCapturedStderr();
    throw;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.out = testing::internal::GetCapturedStdout();
  r.err = testing::internal::GetCapturedStderr();
  return r;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> v;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) v.push_back(line);
  return v;
}

// A fresh, empty folder under GoogleTest's temp dir; the test removes it.
std::string scratch_dir(const std::string& name) {
  std::string pattern = testing::TempDir() + "ocl-launch-" + name + "-XXXXXX";
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr) << pattern;
  return pattern;
}

int count(const std::vector<std::string>& v, const std::string& line) {
  return static_cast<int>(std::count(v.begin(), v.end(), line));
}

}  // namespace

TEST(LocalWorkers, SetsVariablesAndPrefixesOutput) {
  // Inherited values must be overridden, not passed through.
  ::setenv("RANK", "99", 1);
  ::setenv("MASTER_PORT", "1", 1);
  const WorkerRun r = run_sh(3,
                             "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $MASTER_PORT\"; "
                             "echo \"$LOCAL_WORLD_SIZE $MASTER_ADDR\"; "
                             "echo \"err$RANK\" >&2; printf 'tail%s' \"$RANK\"");
  ::unsetenv("RANK");
  ::unsetenv("MASTER_PORT");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = lines(r.out), err = lines(r.err);
  EXPECT_EQ(out.size(), 9u) << r.out;
  EXPECT_EQ(err.size(), 3u) << r.err;
  for (int i = 0; i < 3; ++i) {
    const std::string p = "[rank " + std::to_string(i) + "] ";
    const std::string n = std::to_string(i);
    EXPECT_EQ(count(out, p + n + " 3 " + n + " 23456"), 1) << r.out;
    EXPECT_EQ(count(out, p + "3 127.0.0.1"), 1) << r.out;
    // A last line without a newline is flushed when the pipe closes.
    EXPECT_EQ(count(out, p + "tail" + n), 1) << r.out;
    EXPECT_EQ(count(err, p + "err" + n), 1) << r.err;
    EXPECT_EQ(count(out, p + "err" + n), 0) << r.out;
  }
}

TEST(LocalWorkers, FreePortWhenZero) {
  const WorkerRun r = run_sh(2, "echo \"$MASTER_PORT\"", /*port=*/0);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = lines(r.out);
  ASSERT_EQ(out.size(), 2u) << r.out;
  std::set<std::string> ports;
  for (const auto& line : out) ports.insert(line.substr(line.find("] ") + 2));
  ASSERT_EQ(ports.size(), 1u) << r.out;  // every rank meets at the same port
  const int port = std::stoi(*ports.begin());
  EXPECT_GE(port, 1);
  EXPECT_LE(port, 65535);
}

TEST(LocalWorkers, LongLinesAndBlankLines) {
  // 150000 bytes without a newline: forwarded in prefixed pieces, nothing lost.
  const WorkerRun r = run_sh(1, "echo; head -c 150000 /dev/zero | tr '\\0' a");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = lines(r.out);
  ASSERT_GE(out.size(), 3u);
  EXPECT_EQ(out[0], "[rank 0] ");
  size_t total = 0;
  for (size_t i = 1; i < out.size(); ++i) {
    ASSERT_EQ(out[i].rfind("[rank 0] ", 0), 0u);
    total += out[i].size() - 9;
  }
  EXPECT_EQ(total, 150000u);
}

TEST(LocalWorkers, FailureStopsTheOthers) {
  const WorkerRun r = run_sh(3, "if [ \"$RANK\" = 1 ]; then exit 3; fi; exec sleep 30");
  EXPECT_EQ(r.code, 3);
  EXPECT_LT(r.seconds, 10);
  EXPECT_NE(r.err.find("ocl: rank 1 exited with code 3; stopping the other 2 workers"),
            std::string::npos)
      << r.err;
}

TEST(LocalWorkers, SigkillAfterGrace) {
  // Rank 1 ignores SIGTERM; rank 0 fails once rank 1's trap is in place (it says so with a file),
  // so the stop has to wait out the grace period and then SIGKILL it.
  const std::string ready = scratch_dir("sigkill") + "/ready";
  const std::string rank0 = "i=0; while [ ! -e '" + ready +
                            "' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exit 5";
  const std::string rank1 = "trap '' TERM; touch '" + ready + "'; exec sleep 30";
  const WorkerRun r = run_sh(2, "if [ \"$RANK\" = 0 ]; then " + rank0 + "; fi; " + rank1, 23456,
                             /*grace_s=*/1);
  fs::remove_all(fs::path(ready).parent_path());
  EXPECT_EQ(r.code, 5);
  EXPECT_GE(r.seconds, 1.0);  // it waited for the grace period
  EXPECT_LT(r.seconds, 10);
  EXPECT_NE(r.err.find("ocl: rank 0 exited with code 5; stopping the other 1 worker"),
            std::string::npos)
      << r.err;
}

TEST(LocalWorkers, KilledBySignal) {
  const WorkerRun r = run_sh(2, "if [ \"$RANK\" = 0 ]; then kill -9 $$; fi; exec sleep 30");
  EXPECT_EQ(r.code, 137);
  EXPECT_LT(r.seconds, 10);
  EXPECT_NE(r.err.find("ocl: rank 0 was killed by signal 9 (Killed)"), std::string::npos) << r.err;
}

TEST(LocalWorkers, MissingExecutable) {
  for (const std::string program : {"/nonexistent/ocl-no-such-program", "ocl-no-such-program"}) {
    LocalLaunchOptions o;
    o.nproc = 2;
    o.argv = {program, "--flag"};
    o.master_port = 23456;
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    const int code = run_local_workers(o);
    const std::string out = testing::internal::GetCapturedStdout();
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(code, 127);
    EXPECT_NE(err.find("ocl: cannot execute '" + program + "': No such file or directory"),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("exited with code 127"), std::string::npos) << err;
  }
}

TEST(LocalWorkers, SearchesPathWithoutSlash) {
  LocalLaunchOptions o;
  o.nproc = 2;
  o.argv = {"sh", "-c", "echo ok$RANK"};
  o.master_port = 23456;
  testing::internal::CaptureStdout();
  const int code = run_local_workers(o);
  const auto out = lines(testing::internal::GetCapturedStdout());
  EXPECT_EQ(code, 0);
  EXPECT_EQ(count(out, "[rank 0] ok0"), 1);
  EXPECT_EQ(count(out, "[rank 1] ok1"), 1);
}

TEST(LocalWorkers, ForwardsSigterm) {
  // The workers mark themselves started; then this process gets SIGTERM, which the launcher's
  // handler must pass on (without it, the default action would end the test binary).
  const fs::path dir = scratch_dir("sigterm");
  std::thread killer([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!(fs::exists(dir / "0") && fs::exists(dir / "1")) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Only while the launcher surely runs: its handler is in place before the first fork.
    if (fs::exists(dir / "0") && fs::exists(dir / "1")) ::kill(::getpid(), SIGTERM);
  });
  const WorkerRun r = run_sh(2, "touch '" + dir.string() + "'/$RANK; exec sleep 30");
  killer.join();
  fs::remove_all(dir);
  EXPECT_EQ(r.code, 128 + SIGTERM) << r.err;
  EXPECT_LT(r.seconds, 10);
  // The launcher's own disposition is back to what it was.
  struct sigaction now {};
  ::sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
}

TEST(LocalWorkers, RejectsBadOptions) {
  LocalLaunchOptions o;
  o.argv = {"/bin/true"};
  o.nproc = 0;
  OCL_EXPECT_THROW_WITH(run_local_workers(o), "nproc must be at least 1");
  o.nproc = 1;
  o.argv.clear();
  OCL_EXPECT_THROW_WITH(run_local_workers(o), "argv is empty");
}

TEST(LocalWorkers, ClosesItsDescriptors) {
  const auto open_fds = [] {
    return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{});
  };
  const auto before = open_fds();
  const WorkerRun r = run_sh(3, "echo hi; if [ \"$RANK\" = 2 ]; then exit 1; fi; exec sleep 30");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(open_fds(), before);
}
