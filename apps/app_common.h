// What every ocl command-line app does the same way: start local workers for --nproc-per-node,
// turn SIGTERM/SIGINT into a clean stop request, and report an exception as one line.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include <ocl/distributed/launch.h>

namespace ocl::apps {

/// With nproc_per_node > 0: runs that many copies of this command as local workers and returns
/// their exit code (throws inside another launch); else std::nullopt.
std::optional<int> run_local_workers_if_asked(int nproc_per_node,
                                              const distributed::LaunchInfo& launch, int argc,
                                              char** argv);

/// Installs SIGTERM/SIGINT handlers and returns the flag they set (the signal number): the first
/// asks for a clean stop, a second (a second or more later) exits at once with 128 + signal.
const std::atomic<int>* install_stop_handlers(const char* program);

/// Parses the command line into `app`: std::nullopt when it parsed; else prints the help (exit
/// code 0) or CLI11's message naming the problem (exit code 2, a bad command line).
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv);

/// A whole-number option's check as users write it: "a whole number >= 1" (CLI11's
/// PositiveNumber says "Value 0 not in range 0.000000 to 1.797693e+308").
CLI::Validator at_least(int64_t lowest);
/// A real-number option's check: "a number > 0".
CLI::Validator positive();

/// Runs `body` (freed memory kept for reuse: fewer page faults) and returns its exit code; an
/// exception becomes one line on stderr, "<program>: [config ]error: ...", and exit code 1.
int run_reporting_errors(const char* program, const std::function<int()>& body);

/// Throws naming `option` when the folder `file` goes into is missing or not writable.
void check_output_folder(const std::string& option, const std::string& file);

}  // namespace ocl::apps
