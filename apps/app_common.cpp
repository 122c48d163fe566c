// Shared app plumbing (see app_common.h).
#include "app_common.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <c10/util/Exception.h>

#include <ocl/io/config.h>

namespace ocl::apps {
namespace {

std::atomic<int> g_stop{0};
// The handler may only use async-signal-safe calls, so its messages are composed up front.
char g_first_message[256];
char g_second_message[256];

extern "C" void on_stop_signal(int signo) {
  if (g_stop.exchange(signo) != 0) {
    (void)!::write(STDERR_FILENO, g_second_message, std::strlen(g_second_message));
    ::_exit(128 + signo);
  }
  (void)!::write(STDERR_FILENO, g_first_message, std::strlen(g_first_message));
}

}  // namespace

std::optional<int> run_local_workers_if_asked(int nproc_per_node, const dist::LaunchInfo& launch,
                                              int argc, char** argv) {
  if (nproc_per_node <= 0) return std::nullopt;
  if (launch.distributed()) {
    throw std::runtime_error("--nproc-per-node " + std::to_string(nproc_per_node) +
                             " inside a launch that already has " + launch.describe() +
                             ": use one launcher, not two");
  }
  dist::LocalLaunchOptions options;
  options.nproc = nproc_per_node;
  options.argv = dist::worker_command(argc, argv);
  return dist::run_local_workers(options);
}

const std::atomic<int>* install_stop_handlers(const char* program) {
  std::snprintf(g_first_message, sizeof(g_first_message),
                "\n%s: signal received, finishing the step and writing a checkpoint "
                "(send it again to exit at once)\n",
                program);
  std::snprintf(g_second_message, sizeof(g_second_message),
                "\n%s: second signal, exiting without a checkpoint\n", program);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  return &g_stop;
}

int run_reporting_errors(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const io::ConfigError& e) {
    std::fprintf(stderr, "%s: config error: %s\n", program, e.what());
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
  }
  return 1;
}

}  // namespace ocl::apps
