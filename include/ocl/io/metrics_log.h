// metrics.jsonl: one JSON object per line, one line per log step and per epoch, the file
// scripts/plot_metrics.py draws. Each line is appended whole with one write, so a killed run
// keeps every record it wrote; a write that fails (a full disk) is cut back and throws.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace ocl::io {

using MetricFields = std::vector<std::pair<std::string, double>>;

class MetricsLog {
 public:
  /// Opens `path` for appending. With keep_through_step ≥ 0 (a resumed run), first drops the
  /// records whose "global_step" is beyond it: the resumed run writes those steps again.
  explicit MetricsLog(const std::string& path, int64_t keep_through_step = -1);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  /// {"type": type, field: value, ...}, integers without a fraction, non-finite values as null.
  /// Throws naming the file and the reason when it cannot be written whole (nothing is then).
  void write(const std::string& type, const MetricFields& fields);

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace ocl::io
