// Reading the launch from torchrun's, SLURM's or Open MPI's variables, strictly: a malformed value
// stops the run here, naming the variable, instead of as a hang at the rendezvous.
#include "ocl/distributed/launch.h"

#include <stdlib.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace ocl::distributed {
namespace {

std::string quoted(const std::string& name, const std::string& value) {
  return name + "='" + value + "'";
}

// The whole string must be a base-10 integer: "4 ", "4x" or "" are mistakes, not 4 or 0.
int64_t parse_int(const std::string& name, const std::string& value) {
  int64_t v = 0;
  const char* first = value.data();
  const char* last = first + value.size();
  const auto [end, ec] = std::from_chars(first, last, v);
  if (value.empty() || ec != std::errc() || end != last) {
    throw std::invalid_argument(quoted(name, value) + " is not an integer");
  }
  return v;
}

std::optional<int64_t> optional_int(const EnvLookup& env, const std::string& name) {
  if (auto v = env(name)) return parse_int(name, *v);
  return std::nullopt;
}

int64_t required_int(const EnvLookup& env, const std::string& name, const std::string& why) {
  auto v = env(name);
  if (!v) throw std::invalid_argument(name + " is not set (" + why + ")");
  return parse_int(name, *v);
}

int parse_port(const std::string& name, const std::string& value) {
  const int64_t port = parse_int(name, value);
  if (port < 1 || port > 65535) {
    throw std::invalid_argument(name + "=" + value + " is not a port in [1, 65535]");
  }
  return static_cast<int>(port);
}

std::string master_addr_from(const std::string& value) {
  if (value.empty()) throw std::invalid_argument("MASTER_ADDR is set but empty");
  return value;
}

// The range checks shared by every source; `names`: the variables the fields came from.
struct Names {
  std::string rank, world_size, local_rank, local_world_size;
};

void check(const LaunchInfo& l, const Names& n) {
  const auto is = [](const std::string& name, int64_t v) { return name + "=" + std::to_string(v); };
  const auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
  };
  const std::string world = is(n.world_size, l.world_size);
  const std::string local_world = is(n.local_world_size, l.local_world_size);
  require(l.world_size >= 1, world + " must be at least 1");
  require(l.rank >= 0 && l.rank < l.world_size,
          is(n.rank, l.rank) + " is outside [0, " + world + ")");
  require(l.local_world_size >= 1 && l.local_world_size <= l.world_size,
          local_world + " is outside [1, " + world + "]");
  require(l.local_rank >= 0 && l.local_rank < l.local_world_size,
          is(n.local_rank, l.local_rank) + " is outside [0, " + local_world + ")");
}

LaunchInfo from_torchrun(const EnvLookup& env, const std::string& world_size) {
  LaunchInfo l;
  l.source = "torchrun";
  l.world_size = parse_int("WORLD_SIZE", world_size);
  l.rank = required_int(env, "RANK", "WORLD_SIZE is set, so RANK must be too");
  l.local_rank = optional_int(env, "LOCAL_RANK").value_or(0);
  l.local_world_size = optional_int(env, "LOCAL_WORLD_SIZE").value_or(l.world_size);
  if (auto v = env("MASTER_ADDR")) l.master_addr = master_addr_from(*v);
  if (auto v = env("MASTER_PORT")) l.master_port = parse_port("MASTER_PORT", *v);
  check(l, {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"});
  return l;
}

// SLURM's compressed task counts, one per node in node order: "4(x2),3" → {4, 4, 3}.
std::vector<int64_t> expand_tasks_per_node(const std::string& name, const std::string& value) {
  std::vector<int64_t> counts;
  const auto malformed = [&] {
    return std::invalid_argument(quoted(name, value) +
                                 " is not a SLURM task count list such as '4(x2),3'");
  };
  if (value.empty() || value.back() == ',') throw malformed();  // an empty last entry
  std::istringstream entries(value);
  for (std::string entry; std::getline(entries, entry, ',');) {
    const size_t paren = entry.find('(');
    int64_t count = 0, repeat = 1;
    try {
      if (paren == std::string::npos) {
        count = parse_int(name, entry);
      } else {
        // "N(xM)": N tasks on each of M nodes.
        if (entry.size() < paren + 4 || entry[paren + 1] != 'x' || entry.back() != ')') {
          throw malformed();
        }
        count = parse_int(name, entry.substr(0, paren));
        repeat = parse_int(name, entry.substr(paren + 2, entry.size() - paren - 3));
      }
    } catch (const std::invalid_argument&) {
      throw malformed();
    }
    if (count < 1 || repeat < 1) throw malformed();
    counts.insert(counts.end(), static_cast<size_t>(repeat), count);
  }
  return counts;
}

LaunchInfo from_slurm(const EnvLookup& env) {
  LaunchInfo l;
  l.source = "slurm";
  const std::string in_step = "SLURM_STEP_ID is set: inside an srun step";
  l.rank = required_int(env, "SLURM_PROCID", in_step);
  Names names{"SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"};
  if (auto v = env("SLURM_STEP_NUM_TASKS")) {
    l.world_size = parse_int(names.world_size, *v);
  } else {
    names.world_size = "SLURM_NTASKS";
    l.world_size = required_int(env, "SLURM_NTASKS", in_step + ", and SLURM_STEP_NUM_TASKS isn't");
  }
  l.local_rank = required_int(env, "SLURM_LOCALID", in_step);

  auto tasks = env(names.local_world_size);
  if (!tasks) tasks = env(names.local_world_size = "SLURM_TASKS_PER_NODE");
  if (!tasks) {
    throw std::invalid_argument(
        "neither SLURM_STEP_TASKS_PER_NODE nor SLURM_TASKS_PER_NODE is set (" + in_step + ")");
  }
  const std::vector<int64_t> counts = expand_tasks_per_node(names.local_world_size, *tasks);
  // Without SLURM_NODEID every node is taken to run as many tasks as the first (the common
  // uniform case); with it, heterogeneous lists such as "4,2" pick this node's entry.
  int64_t node = 0;
  if (auto v = optional_int(env, "SLURM_NODEID")) {
    node = *v;
    if (node < 0 || node >= static_cast<int64_t>(counts.size())) {
      throw std::invalid_argument("SLURM_NODEID=" + std::to_string(node) + " is outside the " +
                                  std::to_string(counts.size()) + " nodes of " +
                                  quoted(names.local_world_size, *tasks));
    }
  }
  l.local_world_size = counts[static_cast<size_t>(node)];

  if (auto v = env("MASTER_ADDR")) {
    l.master_addr = master_addr_from(*v);
  } else {
    std::string list_name = "SLURM_STEP_NODELIST";
    auto list = env(list_name);
    if (!list) list = env(list_name = "SLURM_JOB_NODELIST");
    if (list) {
      try {
        l.master_addr = first_slurm_host(*list);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(quoted(list_name, *list) + ": " + e.what());
      }
    } else if (l.local_world_size < l.world_size) {
      // 127.0.0.1 is only right when every rank is on this node.
      throw std::invalid_argument(
          "neither MASTER_ADDR nor SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set, and the "
          "step spans several nodes");
    }
  }
  if (auto v = env("MASTER_PORT")) {
    l.master_port = parse_port("MASTER_PORT", *v);
  } else if (auto job = optional_int(env, "SLURM_JOB_ID")) {
    // Two jobs sharing a node get different ports (unless their ids are 1000 apart).
    l.master_port = 29500 + static_cast<int>(((*job % 1000) + 1000) % 1000);
  }
  check(l, names);
  return l;
}

LaunchInfo from_mpi(const EnvLookup& env, const std::string& world_size) {
  LaunchInfo l;
  l.source = "mpi";
  const std::string why = "OMPI_COMM_WORLD_SIZE is set: launched by Open MPI";
  l.world_size = parse_int("OMPI_COMM_WORLD_SIZE", world_size);
  l.rank = required_int(env, "OMPI_COMM_WORLD_RANK", why);
  l.local_rank = required_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", why);
  l.local_world_size = required_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", why);
  // Open MPI says nothing about where rank 0 is, so the rendezvous has to be passed along.
  const std::string hint =
      "launched by Open MPI: pass the rendezvous with mpirun -x MASTER_ADDR=<host of rank 0> "
      "-x MASTER_PORT=<port>";
  auto addr = env("MASTER_ADDR");
  if (!addr) throw std::invalid_argument("MASTER_ADDR is not set (" + hint + ")");
  auto port = env("MASTER_PORT");
  if (!port) throw std::invalid_argument("MASTER_PORT is not set (" + hint + ")");
  l.master_addr = master_addr_from(*addr);
  l.master_port = parse_port("MASTER_PORT", *port);
  check(l, {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE"});
  return l;
}

}  // namespace

std::string LaunchInfo::describe() const {
  const std::string s = "rank " + std::to_string(rank) + " of " + std::to_string(world_size) +
                        " (local " + std::to_string(local_rank) + " of " +
                        std::to_string(local_world_size) + "), rendezvous " + master_addr + ":" +
                        std::to_string(master_port);
  if (source == "torchrun") return s + ", from torchrun variables";
  if (source == "slurm") return s + ", from SLURM variables";
  if (source == "mpi") return s + ", from Open MPI variables";
  if (source == "single") return s + ", single process (no launcher variables set)";
  return s + ", from " + source;
}

LaunchInfo launch_from_env(const EnvLookup& env) {
  if (auto ws = env("WORLD_SIZE")) return from_torchrun(env, *ws);
  // SLURM_STEP_ID numbers srun steps; the batch script's, extern and interactive steps' ids are
  // near 2^32 (0xfffffffa–0xfffffffe), and their variables describe the allocation, not a task.
  if (auto step = env("SLURM_STEP_ID")) {
    char* end = nullptr;
    const unsigned long long id = std::strtoull(step->c_str(), &end, 10);
    const bool numbered = !step->empty() && end != nullptr && *end == '\0';
    if (!numbered || id < 0xfffffff0ULL) return from_slurm(env);
  }
  if (auto ws = env("OMPI_COMM_WORLD_SIZE")) return from_mpi(env, *ws);
  // Otherwise a single process (an sbatch script outside srun included: it runs once).
  return LaunchInfo{};
}

LaunchInfo launch_from_environment() {
  return launch_from_env([](const std::string& name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name.c_str())) return std::string(v);
    return std::nullopt;
  });
}

std::string first_slurm_host(const std::string& nodelist) {
  const auto malformed = [&](const std::string& why) {
    return std::invalid_argument("malformed SLURM node list '" + nodelist + "': " + why);
  };
  if (nodelist.empty()) throw malformed("empty");
  const auto digits = [](const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  };
  // Hosts are separated by commas outside brackets; the whole list is checked, the first host
  // expanded with the first number of each bracket group ("01-04,07") as written (zero-padded).
  std::string first;
  bool in_first = true;
  size_t host_start = 0;
  for (size_t i = 0; i <= nodelist.size(); ++i) {
    if (i == nodelist.size() || nodelist[i] == ',') {
      if (i == host_start) throw malformed("empty host name");
      in_first = false;
      host_start = i + 1;
      continue;
    }
    const char c = nodelist[i];
    if (c == ']') throw malformed("']' without '['");
    if (std::isspace(static_cast<unsigned char>(c))) throw malformed("contains a space");
    if (c != '[') {
      if (in_first) first += c;
      continue;
    }
    const size_t close = nodelist.find(']', i + 1);
    if (close == std::string::npos) throw malformed("'[' without ']'");
    const std::string body = nodelist.substr(i + 1, close - i - 1);
    if (body.find('[') != std::string::npos) throw malformed("nested '['");
    if (body.empty()) throw malformed("empty brackets");
    if (body.back() == ',') throw malformed("bad range ''");
    std::istringstream items(body);
    bool take = in_first;  // the first number of the first host
    for (std::string item; std::getline(items, item, ',');) {
      const size_t dash = item.find('-');
      const std::string lo = item.substr(0, dash);
      const std::string hi = dash == std::string::npos ? lo : item.substr(dash + 1);
      if (!digits(lo) || !digits(hi)) throw malformed("bad range '" + item + "'");
      if (take) first += lo;
      take = false;
    }
    i = close;
  }
  return first;
}

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "free_tcp_port: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // the kernel picks a free ephemeral port
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "free_tcp_port: bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace ocl::distributed
