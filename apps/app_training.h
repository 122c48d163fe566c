// What the apps reading a training config share beyond app_common.h: their common flags,
// --print-config's output, and how a training run ends.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <ocl/distributed/launch.h>
#include <ocl/engine/classifier.h>
#include <ocl/engine/run_setup.h>
#include <ocl/io/config.h>

namespace ocl::apps {

/// The command line of every app that reads a training config.
struct ConfigCommand {
  std::string config_path;             // --config
  std::vector<std::string> overrides;  // --set, repeatable
  int nproc_per_node = 0;              // --nproc-per-node: start local workers
  bool print_config = false;           // --print-config
};
/// Adds --config (`config_help`), --set (with `set_example`), --nproc-per-node and --print-config.
void add_config_flags(CLI::App& app, ConfigCommand& command, const std::string& config_help,
                      const std::string& set_example);
/// Loads the config and this process's place; with --print-config prints it (print_config), with
/// --nproc-per-node runs the local workers: returns the exit code when either ends this process.
std::optional<int> load_or_delegate(const ConfigCommand& command, const std::string& section,
                                    int argc, char** argv, io::Config& config,
                                    distributed::LaunchInfo& launch);
/// Adds --weights (`note` appended to the help).
void add_weights_flag(CLI::App& app, std::string& weights, const std::string& note = "");

/// --print-config's output on stdout: the resolved config with its derived values; for an
/// evaluation section its effective batch and lr; for any `section` ("" for an app that trains
/// nothing) its steps per epoch ("unknown", with the reason, when the set cannot be read).
void print_config(const io::Config& config, int64_t world_size, const std::string& section);

/// Adds --resume and --overwrite (which exclude each other) and --stop-after-steps.
void add_run_flags(CLI::App& app, engine::RunOptions& options, const std::string& resume_help,
                   const std::string& overwrite_help);

/// Adds --eval (MAE's flag name) with --eval-only as a deprecated alias that says so when used.
void add_eval_flag(CLI::App& app, const char* program, bool& eval, const std::string& description);

/// How every training run ends, on rank 0: after a stop "<program>: stopped cleanly; checkpoint
/// <path>" on stderr; else `summary` (if any) on stdout.
void report_end_of_run(const char* program, int64_t rank, bool interrupted,
                       const std::string& checkpoint, const std::string& summary);

/// A classifier run's summary line: "<what>: best top-1 … (epoch e), last top-1 …, top-5 …"
/// after training, "<what> (eval): top-1 …, top-5 …" after --eval, "" when it had nothing to do.
std::string classifier_summary(const std::string& what, bool evaluated,
                               const engine::ClassifierRunResult& result);

}  // namespace ocl::apps
