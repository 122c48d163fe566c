// What every ocl command-line app does the same way: start local workers for --nproc-per-node,
// turn SIGTERM/SIGINT into a clean stop request, and report an exception as one line naming the
// program. Kept here (a small static library of apps/) so the mains stay about their own work.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include <ocl/distributed/launch.h>

namespace ocl::apps {

/// With nproc_per_node > 0: starts that many copies of this command as local workers, waits and
/// returns the exit code to end main with (throws inside another launch: torchrun, srun, mpirun).
/// With 0: std::nullopt.
std::optional<int> run_local_workers_if_asked(int nproc_per_node,
                                              const distributed::LaunchInfo& launch, int argc,
                                              char** argv);

/// Installs SIGTERM/SIGINT handlers for `program` and returns the flag they set (the signal
/// number). The first signal asks for a clean stop ("finishing the step and writing a
/// checkpoint"); a second ends the process at once with 128 + signal.
const std::atomic<int>* install_stop_handlers(const char* program);

/// Parses the command line into `app`: std::nullopt when it parsed; else prints the help (exit
/// code 0) or CLI11's message naming the problem (exit code 2, a bad command line).
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv);

/// A whole-number option's check as users write it: "a whole number >= 1" (CLI11's
/// PositiveNumber says "Value 0 not in range 0.000000 to 1.797693e+308").
CLI::Validator at_least(int64_t lowest);
/// A real-number option's check: "a number > 0".
CLI::Validator positive();

/// Keeps the memory a training step frees for the next step instead of returning it to the
/// kernel: glibc's malloc otherwise maps a step's large activations afresh every step and the
/// kernel zero-fills their pages again (about 3 % of a CPU step of ViT-S/16 went to page
/// faults). Sets M_MMAP_THRESHOLD to its maximum (32 MiB) and M_TRIM_THRESHOLD to 1 GiB, unless
/// the user tuned malloc (GLIBC_TUNABLES, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_).
void keep_freed_memory_for_reuse();

/// Runs `body` and returns its exit code; an exception becomes one line on stderr,
/// "<program>: config error: ..." or "<program>: error: ...", and exit code 1.
int run_reporting_errors(const char* program, const std::function<int()>& body);

/// Throws naming `option` when the folder `file` goes into is missing or not writable: checked
/// before minutes of work rather than after.
void check_output_folder(const std::string& option, const std::string& file);

}  // namespace ocl::apps
