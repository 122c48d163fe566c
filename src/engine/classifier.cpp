// What the classifier engines share (see include/ocl/engine/classifier.h).
#include "ocl/engine/classifier.h"

#include <chrono>
#include <type_traits>

#include <torch/torch.h>

#include "ocl/io/console.h"

namespace ocl::engine {

bool ValidationRecord::add(int64_t epoch, const ClassifierAccuracy& accuracy) {
  last_top1 = accuracy.top1;
  last_top5 = accuracy.top5;
  if (accuracy.top1 <= best_top1) return false;
  best_top1 = accuracy.top1;
  best_epoch = epoch;
  return true;
}

void ValidationRecord::save(io::TensorMap& trainer, const std::string& prefix) const {
  trainer[prefix + ".best_top1"] = torch::full({}, best_top1, torch::kFloat64);
  trainer[prefix + ".best_epoch"] = torch::full({}, best_epoch, torch::kInt64);
  trainer[prefix + ".last_top1"] = torch::full({}, last_top1, torch::kFloat64);
  trainer[prefix + ".last_top5"] = torch::full({}, last_top5, torch::kFloat64);
}

void ValidationRecord::load(const io::TensorMap& trainer, const std::string& prefix) {
  auto get = [&](const char* key, auto& value) {
    const auto it = trainer.find(prefix + "." + key);
    if (it != trainer.end()) value = it->second.item<std::decay_t<decltype(value)>>();
  };
  get("best_top1", best_top1);
  get("best_epoch", best_epoch);
  get("last_top1", last_top1);
  get("last_top5", last_top5);
}

namespace {

ClassifierRunResult result_at(const RunContext& run, const ValidationRecord& record) {
  ClassifierRunResult result;
  static_cast<ValidationRecord&>(result) = record;
  result.checkpoint = run.last_checkpoint();
  return result;
}

}  // namespace

ClassifierRunResult evaluated_classifier(const RunContext& run, ValidationRecord record,
                                         const ClassifierAccuracy& accuracy) {
  record.last_top1 = accuracy.top1;
  record.last_top5 = accuracy.top5;
  return result_at(run, record);
}

ClassifierRunResult train_classifier(RunContext& run, TrainingLoop& loop,
                                     const ValidationRecord& record) {
  const auto start = std::chrono::steady_clock::now();
  const auto trained = loop.run();
  auto result = result_at(run, record);
  result.interrupted = trained.interrupted;
  result.nothing_to_do = trained.step_losses.empty() && !trained.interrupted;
  if (!result.interrupted && !result.nothing_to_do) {
    run.process().log->info(
        "done: {} epochs in {}; best top-1 {:.2f} % (epoch {}), last top-1 {:.2f} %",
        run.state().epoch, io::format_duration(seconds_since(start)), record.best_top1,
        record.best_epoch, record.last_top1);
  }
  return result;
}

}  // namespace ocl::engine
