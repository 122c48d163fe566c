// How this process was launched: rank, world size and rendezvous address read from torchrun's,
// SLURM's or Open MPI's environment variables; and the built-in single-node launcher behind
// `ocl_pretrain --nproc-per-node N`, which starts N workers of the same program itself.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ocl::distributed {

struct LaunchInfo {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;        // rank among the processes of this node (picks the GPU)
  int64_t local_world_size = 1;  // processes on this node
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single";  // single | torchrun | slurm | mpi
  bool distributed() const { return world_size > 1; }
  /// "rank 1 of 4 (local 1 of 4), rendezvous 10.0.0.1:29500, from torchrun variables".
  std::string describe() const;
};

/// Looks a variable up: its value, or nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

/// The launch described by an environment, the first match winning:
///   torchrun (and the built-in launcher): WORLD_SIZE and RANK; LOCAL_RANK, LOCAL_WORLD_SIZE,
///     MASTER_ADDR, MASTER_PORT default to 0, WORLD_SIZE, 127.0.0.1 and 29500.
///   SLURM in an `srun` step (SLURM_STEP_ID): SLURM_PROCID, SLURM_STEP_NUM_TASKS (or _NTASKS),
///     SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE (or _TASKS_PER_NODE: "4(x2)" → 4, "4,2" → this
///     node's entry); master MASTER_ADDR or the first host of SLURM_STEP_NODELIST (or _JOB_);
///     port MASTER_PORT or 29500 + SLURM_JOB_ID % 1000 (two jobs on a node do not collide).
///   Open MPI: OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}; MASTER_ADDR and MASTER_PORT
///     must be set (mpirun -x).
///   Otherwise a single process. A malformed or out-of-range value throws std::invalid_argument
///   naming the variable.
LaunchInfo launch_from_env(const EnvLookup& env);
/// launch_from_env over this process's environment (getenv).
LaunchInfo launch_from_environment();

/// The first host of a SLURM node list: "node[01-04,07],gpu5" → "node01", "a,b" → "a",
/// "gpu-[3,5-7]-ib" → "gpu-3-ib". Throws std::invalid_argument on an empty or malformed list.
std::string first_slurm_host(const std::string& nodelist);

/// A TCP port that is free on 127.0.0.1 now (bound to port 0, read back, closed).
int free_tcp_port();

/// The built-in launcher: starts `nproc` copies of `argv` on this node with torchrun's variables,
/// forwards their output with a "[rank i] " prefix and our SIGINT and SIGTERM to them, and when
/// one fails sends SIGTERM to the others, SIGKILL after `grace_s`. Returns 0 when all exited 0,
/// else the first failure's exit code (128 + signal), which it names on stderr.
struct LocalLaunchOptions {
  int nproc = 1;
  std::vector<std::string> argv;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: free_tcp_port()
  double grace_s = 30;
};
int run_local_workers(const LocalLaunchOptions& options);

/// The command line a worker of the built-in launcher runs: this program (/proc/self/exe) with
/// our arguments, less `--nproc-per-node N` (or `--nproc-per-node=N`).
std::vector<std::string> worker_command(int argc, const char* const* argv);

}  // namespace ocl::distributed
