// What the training apps (ocl_pretrain, ocl_finetune, ocl_linprobe) and the apps reading a
// training config (ocl_knn, ocl_bench) share beyond app_common.h: --print-config and its output,
// the evaluation flag, and how a run ends. One implementation, so that the apps cannot drift.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include <ocl/engine/classifier.h>
#include <ocl/io/config.h>

namespace ocl::apps {

/// Adds --print-config to `app`.
void add_print_config_flag(CLI::App& app, bool& print_config);

/// --print-config's output, on stdout: the resolved config with its derived values; for an
/// evaluation section ("finetune", "linprobe") its effective batch and lr; for a training
/// section ("train", "finetune", "linprobe") its steps per epoch on the training set as its
/// loader cuts them ("unknown", with the reason, when the set cannot be read); "" for an app
/// that trains nothing. Creates and writes nothing else.
void print_config(const io::Config& config, int64_t world_size, const std::string& section);

/// Adds --resume and --overwrite to `app`, which exclude each other: given both, the command line
/// is refused (exit 2) naming the two, instead of one being ignored.
void add_resume_flags(CLI::App& app, std::string& resume, bool& overwrite,
                      const std::string& resume_help, const std::string& overwrite_help);

/// Adds --eval (only evaluate, then exit: MAE's flag name) to `app`, with --eval-only as a
/// deprecated alias that says so on stderr when used.
void add_eval_flag(CLI::App& app, const char* program, bool& eval, const std::string& description);

/// How every training run ends: rank 0 alone reports. After a stop,
/// "<program>: stopped cleanly; checkpoint <path>" on stderr; else `summary` on stdout (nothing
/// when it is empty: a run that had nothing to do has logged so already).
void report_end_of_run(const char* program, int64_t rank, bool interrupted,
                       const std::string& checkpoint, const std::string& summary);

/// A classifier run's summary line: "<what>: best top-1 … (epoch e), last top-1 …, top-5 …"
/// after training, "<what> (eval): top-1 …, top-5 …" after --eval, "" when it had nothing to do.
std::string classifier_summary(const std::string& what, bool evaluated,
                               const engine::ClassifierRunResult& result);

}  // namespace ocl::apps
