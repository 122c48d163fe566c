// Console output of a run: a spdlog sink that keeps a one-line status (step, loss, speed, ETA)
// at the bottom of a terminal and scrolls log lines above it; plain lines, no status, when the
// output is not a terminal (a SLURM log file). And the run's logger: console + train.log.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

namespace ocl::io {

class ConsoleSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  /// `status_line`: redraw a status line in place (only sensible on a terminal).
  ConsoleSink(std::FILE* out, bool status_line);
  /// Replaces the status line (no-op without one).
  void set_status(const std::string& text);
  /// Removes the status line from the screen (before the program prints something else).
  void clear_status();
  bool has_status_line() const { return status_line_; }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

 private:
  void erase_locked();
  void draw_locked();
  std::FILE* out_;
  bool status_line_;
  std::string status_;
  bool drawn_ = false;
};

/// "auto": a status line when stdout is a terminal; "bar": always; "lines": never.
bool want_status_line(const std::string& progress_mode);

/// A duration for humans: "42s", "3m07s", "5h12m"; "?" when negative or not finite.
std::string format_duration(double seconds);

/// A logger named "ocl" writing to `console` and, when `log_file` is not empty, appending to
/// that file (without colours or the status line). `level`: trace|debug|info|warn|error.
std::shared_ptr<spdlog::logger> make_run_logger(const std::shared_ptr<ConsoleSink>& console,
                                                const std::string& log_file,
                                                const std::string& level);

}  // namespace ocl::io
