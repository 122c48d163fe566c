// Shared app plumbing (see app_common.h).
#include "app_common.h"

#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <c10/util/Exception.h>

#include <ocl/io/config.h>
#include <ocl/io/files.h>

namespace ocl::apps {
namespace {

std::atomic<int> g_stop{0};
std::atomic<int64_t> g_first_signal_ns{0};
// A group kill (GNU timeout, Ctrl-C reaching a launcher and its workers, scancel) can deliver one
// request twice within a moment: only a signal sent again after this long means "exit now".
constexpr int64_t kRepeatWindowNs = 1'000'000'000;
// The handler may only use async-signal-safe calls, so its messages are composed up front.
char g_first_message[256];
char g_second_message[256];

int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

extern "C" void on_stop_signal(int signo) {
  const int64_t now = monotonic_ns();
  int64_t unset = 0;
  g_first_signal_ns.compare_exchange_strong(unset, now);
  if (g_stop.exchange(signo) != 0) {
    if (now - g_first_signal_ns.load() < kRepeatWindowNs) return;  // the same request
    (void)!::write(STDERR_FILENO, g_second_message, std::strlen(g_second_message));
    ::_exit(128 + signo);
  }
  (void)!::write(STDERR_FILENO, g_first_message, std::strlen(g_first_message));
}

// A check that the whole value parses (`parse`, as std::stoll) and passes `ok`, described `rule`.
template <class Parse, class Ok>
CLI::Validator number_check(const std::string& rule, Parse parse, Ok ok) {
  return CLI::Validator(
      [rule, parse, ok](std::string& value) -> std::string {
        try {
          size_t used = 0;
          const auto v = parse(value, &used);
          if (used == value.size() && ok(v)) return "";
        } catch (const std::exception&) {
        }
        return "expected " + rule + ", got '" + value + "'";
      },
      rule);
}

// Keeps the memory a step frees for the next instead of returning it to the kernel, which
// zero-fills the pages again (about 3 % of a CPU step of ViT-S/16), unless the user tuned malloc.
void keep_freed_memory_for_reuse() {
  for (const char* tuned : {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}) {
    if (std::getenv(tuned) != nullptr) return;
  }
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace

std::optional<int> run_local_workers_if_asked(int nproc_per_node,
                                              const distributed::LaunchInfo& launch, int argc,
                                              char** argv) {
  if (nproc_per_node <= 0) return std::nullopt;
  if (launch.distributed()) {
    throw std::runtime_error("--nproc-per-node " + std::to_string(nproc_per_node) +
                             " inside a launch that already has " + launch.describe() +
                             ": use one launcher, not two");
  }
  distributed::LocalLaunchOptions options;
  options.nproc = nproc_per_node;
  options.argv = distributed::worker_command(argc, argv);
  return distributed::run_local_workers(options);
}

const std::atomic<int>* install_stop_handlers(const char* program) {
  std::snprintf(g_first_message, sizeof(g_first_message),
                "\n%s: signal received, finishing the step and writing a checkpoint "
                "(send it again, a second or more later, to exit at once)\n",
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

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help exits 0
  }
}

CLI::Validator at_least(int64_t lowest) {
  return number_check(
      "a whole number >= " + std::to_string(lowest),
      [](const std::string& s, size_t* used) { return std::stoll(s, used); },
      [lowest](long long v) { return v >= lowest; });
}

CLI::Validator positive() {
  return number_check(
      "a number > 0", [](const std::string& s, size_t* used) { return std::stod(s, used); },
      [](double v) { return v > 0 && std::isfinite(v); });
}

int run_reporting_errors(const char* program, const std::function<int()>& body) {
  keep_freed_memory_for_reuse();
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

void check_output_folder(const std::string& option, const std::string& file) {
  const auto slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : file.substr(0, slash);
  const bool there = io::is_dir(dir);
  if (!there || ::access(dir.c_str(), W_OK) != 0) {
    throw std::invalid_argument(
        option + " " + file +
        (there ? ": cannot write into '" + dir + "' (" + std::strerror(errno) + ")"
               : ": there is no folder '" + dir + "' (make it first)") +
        "; nothing was done");
  }
}

}  // namespace ocl::apps
