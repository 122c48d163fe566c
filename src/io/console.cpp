// Console sink with an in-place status line, and the run logger (see include/ocl/io/console.h).
#include "ocl/io/console.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include <spdlog/sinks/basic_file_sink.h>

namespace ocl::io {

ConsoleSink::ConsoleSink(std::FILE* out, bool status_line) : out_(out), status_line_(status_line) {
  set_pattern_(std::string("%Y-%m-%d %H:%M:%S %^%l%$ %v"));
}

void ConsoleSink::erase_locked() {
  if (drawn_) {
    std::fputs("\r\033[K", out_);  // carriage return, erase to end of line
    drawn_ = false;
  }
}

void ConsoleSink::draw_locked() {
  if (!status_line_ || status_.empty()) return;
  std::fputs(status_.c_str(), out_);
  drawn_ = true;
  std::fflush(out_);
}

void ConsoleSink::set_status(const std::string& text) {
  if (!status_line_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  erase_locked();
  status_ = text;
  draw_locked();
}

void ConsoleSink::clear_status() {
  std::lock_guard<std::mutex> lock(mutex_);
  erase_locked();
  status_.clear();
  std::fflush(out_);
}

void ConsoleSink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t formatted;
  formatter_->format(msg, formatted);
  erase_locked();
  std::fwrite(formatted.data(), 1, formatted.size(), out_);
  draw_locked();
  std::fflush(out_);
}

void ConsoleSink::flush_() { std::fflush(out_); }

bool want_status_line(const std::string& mode) {
  if (mode == "bar") return true;
  if (mode == "lines") return false;
  return ::isatty(::fileno(stdout)) != 0;
}

std::shared_ptr<spdlog::logger> make_run_logger(const std::shared_ptr<ConsoleSink>& console,
                                                const std::string& log_file,
                                                const std::string& level) {
  std::vector<spdlog::sink_ptr> sinks{console};
  if (!log_file.empty()) {
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file, /*truncate=*/false);
    file->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");
    sinks.push_back(file);
  }
  auto logger = std::make_shared<spdlog::logger>("ocl", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  return logger;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", s / 3600, s % 3600 / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof(buf), "%llds", s);
  return buf;
}

}  // namespace ocl::io
