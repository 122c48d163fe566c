// metrics.jsonl writer: whole lines appended with one write each.
#include "ocl/io/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "ocl/io/files.h"

namespace ocl::io {

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) : path_(path) {
  if (keep_through_step >= 0) {
    std::ifstream in(path);
    if (in) {
      std::string kept, line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        // A line cut short by a kill is dropped too.
        const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) continue;
        const auto step = j.find("global_step");
        if (step != j.end() && step->is_number() && step->get<double>() > keep_through_step) {
          continue;
        }
        kept += line + "\n";
      }
      in.close();
      try {
        io::write_text_atomic(path, kept);
      } catch (const std::exception& e) {
        throw std::runtime_error(std::string("metrics: ") + e.what());
      }
    }
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::runtime_error("metrics: cannot open '" + path + "': " + os_error(errno));
  }
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::write(const std::string& type, const MetricFields& fields) {
  nlohmann::ordered_json j;
  j["type"] = type;
  for (const auto& [key, value] : fields) {
    if (!std::isfinite(value)) {
      j[key] = nullptr;
    } else if (value == std::floor(value) && std::fabs(value) < 9e15) {
      j[key] = static_cast<int64_t>(value);
    } else {
      j[key] = value;
    }
  }
  const std::string why = append_whole(fd_, j.dump() + "\n");
  if (!why.empty()) {
    throw std::runtime_error("metrics: cannot write '" + path_ + "': " + why + " (the '" + type +
                             "' record was not written; earlier records are whole)");
  }
}

}  // namespace ocl::io
