// The built-in single-node launcher: fork/exec N workers with torchrun's variables, forward their
// output line by line with a rank prefix, forward SIGINT/SIGTERM, and take every worker down
// when one fails, so that a crash never leaves the others hanging in a collective.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "ocl/distributed/launch.h"

extern char** environ;

namespace ocl::distributed {
namespace {

using Clock = std::chrono::steady_clock;

// Longer lines go out in pieces, each prefixed: a worker printing no newline cannot bloat us.
constexpr size_t kMaxLine = 64 * 1024;

// Global, as signal handlers are: the poll loop's wake-up pipe (write end); a one-launcher guard.
std::atomic<int> g_wake_fd{-1};
std::atomic<bool> g_running{false};
static_assert(std::atomic<int>::is_always_lock_free, "used from a signal handler");

extern "C" void on_forwarded_signal(int sig) {
  const int saved = errno;
  const int fd = g_wake_fd.load();
  const unsigned char byte = static_cast<unsigned char>(sig);
  if (fd >= 0) (void)!::write(fd, &byte, 1);  // a full pipe already holds a wake-up
  errno = saved;
}

void write_all(int fd, const std::string& s) {
  const char* p = s.data();
  size_t n = s.size();
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, 100);
    } else {
      return;  // EPIPE and the like: our own output is gone, keep supervising the workers
    }
  }
}

// Pipe ends kept away from 0, 1 and 2, which the child's dup2 onto 1 and 2 would otherwise
// clobber when this process was started with a standard stream closed.
int high_fd(int fd) {
  if (fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int err = errno;
  ::close(fd);
  if (moved < 0) throw std::system_error(err, std::generic_category(), "fcntl(F_DUPFD_CLOEXEC)");
  return moved;
}

// A close-on-exec pipe {read end, write end}: without O_CLOEXEC each worker would inherit the
// pipes of the workers started before it and keep them open, so that their EOF never came.
std::pair<int, int> make_pipe(bool nonblocking_read) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  int r = -1, w = -1;
  try {
    r = high_fd(fds[0]);
    fds[0] = -1;
    w = high_fd(fds[1]);
  } catch (...) {
    if (fds[0] >= 0) ::close(fds[0]);
    if (r >= 0) ::close(r);
    throw;
  }
  if (nonblocking_read) ::fcntl(r, F_SETFL, ::fcntl(r, F_GETFL) | O_NONBLOCK);
  return {r, w};
}

// One worker's stdout or stderr, as the parent reads it.
struct Stream {
  int fd = -1;  // read end, non-blocking; -1 once closed
  int out_fd = 1;
  std::string prefix;
  std::string pending;  // bytes after the last newline

  // Writes out every complete line (and pieces of an overlong one) from `pending`.
  void emit(bool flush_all) {
    std::string out;
    size_t start = 0;
    while (true) {
      const size_t nl = pending.find('\n', start);
      const size_t avail = (nl == std::string::npos ? pending.size() : nl) - start;
      if (nl == std::string::npos && avail < kMaxLine && !(flush_all && avail > 0)) break;
      const size_t take = std::min(avail, kMaxLine);
      out += prefix;
      out.append(pending, start, take);
      out += '\n';
      start += take + (take == avail && nl != std::string::npos ? 1 : 0);
      if (start >= pending.size()) break;
    }
    pending.erase(0, start);
    if (!out.empty()) write_all(out_fd, out);
  }

  // Reads what is there now; at EOF flushes a partial last line and closes.
  void drain() {
    char buf[16384];
    while (fd >= 0) {
      const ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n > 0) {
        pending.append(buf, static_cast<size_t>(n));
        emit(false);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        return;
      } else {
        close_now();
      }
    }
  }

  void close_now() {
    emit(true);
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

struct Worker {
  pid_t pid = -1;
  bool alive = false;
  Stream out, err;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  const int sig = WTERMSIG(status);
  const char* name = ::strsignal(sig);
  return "was killed by signal " + std::to_string(sig) + " (" + (name ? name : "unknown") + ")";
}

// Forwards SIGINT and SIGTERM, ignores SIGPIPE (a closed stdout must not kill us), restores all.
class SignalScope {
 public:
  SignalScope() {
    if (g_running.exchange(true)) {
      throw std::logic_error("run_local_workers: another launcher is running in this process");
    }
    try {
      auto [r, w] = make_pipe(true);
      wake_r_ = r;
      wake_w_ = w;
    } catch (...) {
      g_running = false;
      throw;
    }
    ::fcntl(wake_w_, F_SETFL, ::fcntl(wake_w_, F_GETFL) | O_NONBLOCK);
    g_wake_fd = wake_w_;
    struct sigaction sa {};
    sa.sa_handler = on_forwarded_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_[0]);
    ::sigaction(SIGTERM, &sa, &old_[1]);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    ::sigaction(SIGPIPE, &sa, &old_[2]);
  }
  ~SignalScope() {
    restore_in_child();
    g_wake_fd = -1;
    ::close(wake_r_);
    ::close(wake_w_);
    g_running = false;
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

  int wake_fd() const { return wake_r_; }

  // The dispositions the launcher found; in the child between fork and exec too: a handler
  // becomes SIG_DFL at exec anyway, but SIG_IGN must not leak into the workers.
  void restore_in_child() const {
    const int signals[] = {SIGINT, SIGTERM, SIGPIPE};  // as in old_
    for (int i = 0; i < 3; ++i) ::sigaction(signals[i], &old_[i], nullptr);
  }

 private:
  int wake_r_ = -1, wake_w_ = -1;
  struct sigaction old_[3]{};  // SIGINT, SIGTERM, SIGPIPE
};

// All the child needs, built before fork: between fork and exec only async-signal-safe calls.
struct ChildPlan {
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  std::vector<char*> argv;
  std::string exec_failed;  // "ocl: cannot execute '...': "
  bool search_path = false;
};

ChildPlan plan_child(const LocalLaunchOptions& o, int rank, int port,
                     std::vector<std::string>& argv_storage) {
  ChildPlan p;
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"RANK", std::to_string(rank)},          {"LOCAL_RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(o.nproc)}, {"LOCAL_WORLD_SIZE", std::to_string(o.nproc)},
      {"MASTER_ADDR", o.master_addr},          {"MASTER_PORT", std::to_string(port)},
  };
  for (char** e = environ; e && *e; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    const bool ours =
        std::any_of(vars.begin(), vars.end(), [&](const auto& kv) { return kv.first == name; });
    if (!ours) p.env_storage.push_back(entry);
  }
  for (const auto& [name, value] : vars) p.env_storage.push_back(name + "=" + value);
  for (auto& s : p.env_storage) p.envp.push_back(s.data());
  p.envp.push_back(nullptr);
  for (auto& s : argv_storage) p.argv.push_back(s.data());
  p.argv.push_back(nullptr);
  p.search_path = argv_storage[0].find('/') == std::string::npos;
  p.exec_failed = "ocl: cannot execute '" + argv_storage[0] + "': ";
  return p;
}

// strerror is not async-signal-safe (it may translate), so the texts are looked up before fork.
std::vector<std::string> errno_texts() {
  std::vector<std::string> t(256);
  for (int e = 0; e < 256; ++e) t[static_cast<size_t>(e)] = std::strerror(e);
  return t;
}

[[noreturn]] void exec_child(const ChildPlan& p, int out_w, int err_w, const SignalScope& signals,
                             const sigset_t& old_mask, const std::vector<std::string>& texts) {
  signals.restore_in_child();
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  // A process group of its own: Ctrl-C in a terminal then reaches the launcher alone, which
  // forwards it once (a worker that saw it twice would exit without its checkpoint). And if the
  // launcher itself dies, the worker is told with SIGTERM instead of training on as an orphan.
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  // dup2 clears close-on-exec on the new descriptor; every other pipe end closes at exec.
  if (::dup2(out_w, STDOUT_FILENO) < 0 || ::dup2(err_w, STDERR_FILENO) < 0) ::_exit(127);
  if (p.search_path) {
    environ = const_cast<char**>(p.envp.data());
    ::execvp(p.argv[0], p.argv.data());
  } else {
    ::execve(p.argv[0], p.argv.data(), p.envp.data());
  }
  const int err = errno;
  const std::string& text =
      err >= 0 && err < static_cast<int>(texts.size()) ? texts[static_cast<size_t>(err)] : texts[0];
  (void)!::write(STDERR_FILENO, p.exec_failed.data(), p.exec_failed.size());
  (void)!::write(STDERR_FILENO, text.data(), text.size());
  (void)!::write(STDERR_FILENO, "\n", 1);
  ::_exit(127);
}

void check_launch_options(const LocalLaunchOptions& o) {
  if (o.nproc < 1) {
    throw std::invalid_argument("run_local_workers: nproc must be at least 1, got " +
                                std::to_string(o.nproc));
  }
  if (o.argv.empty() || o.argv[0].empty()) {
    throw std::invalid_argument("run_local_workers: argv is empty (argv[0] is the program)");
  }
  if (!(o.grace_s >= 0) || !std::isfinite(o.grace_s)) {
    throw std::invalid_argument("run_local_workers: grace_s must be finite and >= 0, got " +
                                std::to_string(o.grace_s));
  }
  if (o.master_addr.empty()) throw std::invalid_argument("run_local_workers: master_addr is empty");
  if (o.master_port < 0 || o.master_port > 65535) {
    throw std::invalid_argument("run_local_workers: master_port " + std::to_string(o.master_port) +
                                " is outside [0, 65535]");
  }
}

// The workers of one launch, from their start to the last one's end.
class WorkerGroup {
 public:
  explicit WorkerGroup(const LocalLaunchOptions& o)
      : o_(o),
        port_(o.master_port != 0 ? o.master_port : free_tcp_port()),
        texts_(errno_texts()),
        argv_storage_(o.argv),
        workers_(static_cast<size_t>(o.nproc)) {}

  // Starts every rank; a rank that cannot be started stops the ones already running.
  void start_all() {
    for (int rank = 0; rank < o_.nproc; ++rank) {
      if (!start(rank)) break;
    }
    if (!start_error_.empty()) {
      failed_rank_ = -1;
      failed_code_ = 1;
      stop_others(start_error_);
    }
  }

  // Reap, escalate, wait on the pipes and the self-pipe (100 ms at most, which bounds how late a
  // reap or the SIGKILL can be), forward output and signals; until no worker is left.
  void supervise() {
    while (live_count() > 0) {
      reap();
      if (live_count() == 0) break;
      if (stopping_ && !killed_ && Clock::now() >= kill_at_) {
        signal_live(SIGKILL);
        killed_ = true;
      }
      forward_output_and_signals();
    }
  }

  // Every worker has ended. A grandchild may still hold a pipe open; take what is buffered now
  // and stop there rather than wait for it. Returns the launch's exit code.
  int finish() {
    for (auto& w : workers_) {
      w.out.drain();
      w.err.drain();
      w.out.close_now();
      w.err.close_now();
    }
    if (!start_error_.empty()) throw std::runtime_error("ocl: " + start_error_);
    return failed_rank_ >= 0 ? failed_code_ : 0;
  }

 private:
  bool start(int rank) {
    Worker& w = workers_[static_cast<size_t>(rank)];
    const std::string prefix = "[rank " + std::to_string(rank) + "] ";
    const ChildPlan plan = plan_child(o_, rank, port_, argv_storage_);
    std::pair<int, int> out{-1, -1}, err{-1, -1};
    try {
      out = make_pipe(true);
      err = make_pipe(true);
    } catch (const std::system_error& e) {
      if (out.first >= 0) {
        ::close(out.first);
        ::close(out.second);
      }
      start_error_ = "could not start rank " + std::to_string(rank) + ": " + e.what();
      return false;
    }
    w.out = Stream{out.first, STDOUT_FILENO, prefix, {}};
    w.err = Stream{err.first, STDERR_FILENO, prefix, {}};
    // Blocked across fork: no signal may run our handler in the child before it restores them.
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    const pid_t pid = ::fork();
    if (pid == 0) exec_child(plan, out.second, err.second, signals_, old_mask, texts_);
    const int fork_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    // Only the child may hold the write ends, or EOF would never come.
    ::close(out.second);
    ::close(err.second);
    if (pid < 0) {
      w.out.close_now();
      w.err.close_now();
      start_error_ =
          "could not start rank " + std::to_string(rank) + ": fork: " + std::strerror(fork_errno);
      return false;
    }
    w.pid = pid;
    w.alive = true;
    return true;
  }

  // The workers that ended since the last look; the first failure stops the others.
  void reap() {
    for (int rank = 0; rank < o_.nproc; ++rank) {
      Worker& w = workers_[static_cast<size_t>(rank)];
      if (!w.alive) continue;
      int status = 0;
      const pid_t r = ::waitpid(w.pid, &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      w.alive = false;
      if (r < 0) continue;  // ECHILD: reaped elsewhere (SIGCHLD ignored); no status to judge
      // Its last words before the verdict.
      w.out.drain();
      w.err.drain();
      const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed && !stopping_) {
        failed_rank_ = rank;
        failed_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        stop_others("rank " + std::to_string(rank) + " " + describe_status(status));
      }
    }
  }

  void forward_output_and_signals() {
    std::vector<pollfd> fds;
    std::vector<Stream*> streams;
    fds.push_back({signals_.wake_fd(), POLLIN, 0});
    for (auto& w : workers_) {
      for (Stream* s : {&w.out, &w.err}) {
        if (s->fd < 0) continue;
        fds.push_back({s->fd, POLLIN, 0});
        streams.push_back(s);
      }
    }
    int timeout_ms = 100;
    if (stopping_ && !killed_) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(kill_at_ - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left, 0, 100));
    }
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return;
      throw std::system_error(errno, std::generic_category(), "run_local_workers: poll");
    }
    // Forwarded: the workers have process groups of their own, so this is how Ctrl-C reaches them.
    if (fds[0].revents != 0) {
      unsigned char sigs[64];
      ssize_t got;
      while ((got = ::read(fds[0].fd, sigs, sizeof(sigs))) > 0) {
        for (ssize_t i = 0; i < got; ++i) signal_live(sigs[i]);
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) streams[i - 1]->drain();
    }
  }

  int64_t live_count() const {
    return std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) { return w.alive; });
  }
  void signal_live(int sig) {
    for (auto& w : workers_) {
      if (w.alive) ::kill(w.pid, sig);
    }
  }
  void stop_others(const std::string& what) {
    const auto others = live_count();
    std::string line = "ocl: " + what;
    if (others > 0) {
      line +=
          "; stopping the other " + std::to_string(others) + (others == 1 ? " worker" : " workers");
    }
    write_all(STDERR_FILENO, line + "\n");
    stopping_ = true;
    signal_live(SIGTERM);
    kill_at_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(o_.grace_s));
  }

  const LocalLaunchOptions& o_;
  const int port_;
  const std::vector<std::string> texts_;
  std::vector<std::string> argv_storage_;
  SignalScope signals_;
  std::vector<Worker> workers_;
  // The first failure's rank and code; start_error_: a worker could not start (thrown at the end).
  int failed_rank_ = -1, failed_code_ = 0;
  std::string start_error_;
  bool stopping_ = false, killed_ = false;
  Clock::time_point kill_at_{};
};

}  // namespace

std::vector<std::string> worker_command(int argc, const char* const* argv) {
  std::vector<std::string> out{"/proc/self/exe"};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--nproc-per-node") {
      ++i;  // and its value
    } else if (arg.rfind("--nproc-per-node=", 0) != 0) {
      out.push_back(arg);
    }
  }
  return out;
}

int run_local_workers(const LocalLaunchOptions& o) {
  check_launch_options(o);
  // Whatever this process printed before must come out before the workers' lines.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  WorkerGroup group(o);
  group.start_all();
  group.supervise();
  return group.finish();
}

}  // namespace ocl::distributed
