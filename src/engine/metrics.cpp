// metrics.jsonl writer (see include/ocl/engine/metrics.h).
#include "ocl/engine/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include <nlohmann/json.hpp>

#include "ocl/io/files.h"

namespace ocl::engine {

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
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) {
    throw std::runtime_error("metrics: cannot open '" + path +
                             "': " + std::generic_category().message(errno));
  }
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
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
  const std::string line = j.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace ocl::engine
