// Starting the apps as child processes in integration tests: their output goes to a log file,
// their environment is ours with some variables replaced.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>

extern char** environ;

namespace ocl_test {

/// The launch variables a test's own environment may carry (under torchrun or SLURM), dropped
/// from a spawned app's so that it starts as one process unless the test sets them.
inline const std::vector<std::string> kLaunchVars = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};

/// Starts `exe args...` with our environment, minus the variables in `drop`, plus `set`;
/// stdout and stderr go to `log`. The environment and arguments are built before fork, so the
/// child only calls async-signal-safe functions before exec.
inline pid_t spawn(const std::string& exe, const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& set, const std::string& log,
                   const std::vector<std::string>& drop = {}) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    bool skip = set.count(key) > 0;
    for (const auto& d : drop) skip = skip || key == d;
    if (!skip) env.push_back(kv);
  }
  for (const auto& [k, v] : set) env.push_back(k + "=" + v);
  std::vector<std::string> argv_s{exe};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::freopen(log.c_str(), "w", stdout);
    if (out == nullptr) ::_exit(126);
    ::dup2(STDOUT_FILENO, STDERR_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

/// Waits for `pid` at most `timeout_s`; returns its exit code (128 + signal), or −1 on timeout
/// (the process is then killed).
inline int wait_for(pid_t pid, double timeout_s) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
         timeout_s) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

}  // namespace ocl_test
