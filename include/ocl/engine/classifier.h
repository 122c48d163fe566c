// What the classifier engines (engine/finetune.h, engine/linprobe.h) share: the accuracy of one
// evaluation, the validation record kept across epochs and checkpoints, a run's result.
#pragma once

#include <cstdint>
#include <string>

#include "ocl/engine/loop.h"
#include "ocl/engine/run.h"
#include "ocl/io/safetensors.h"

namespace ocl::engine {

/// One evaluation of a classifier on a validation set, all ranks together.
struct ClassifierAccuracy {
  double top1 = 0, top5 = 0;  // percent (top-k with k = min(5, classes))
  double loss = 0;            // mean cross-entropy against the hard labels
  int64_t images = 0;
};

/// A classifier run's validation figures over its epochs; kept in checkpoints as "<prefix>.*".
struct ValidationRecord {
  double best_top1 = -1, last_top1 = -1, last_top5 = -1;
  int64_t best_epoch = 0;
  /// Records epoch `epoch`'s figures; returns whether it is the best so far.
  bool add(int64_t epoch, const ClassifierAccuracy& accuracy);
  void save(io::TensorMap& trainer, const std::string& prefix) const;
  void load(const io::TensorMap& trainer, const std::string& prefix);  // absent keys: unchanged
};

struct ClassifierRunResult : ValidationRecord {
  bool interrupted = false;    // stopped by a signal or --stop-after-steps before the end
  bool nothing_to_do = false;  // resumed from a finished run
  std::string checkpoint;      // the last checkpoint written or resumed, "" if none
};

/// The result of a run that only evaluated (--eval): `accuracy` as the record's last figures.
ClassifierRunResult evaluated_classifier(const RunContext& run, ValidationRecord record,
                                         const ClassifierAccuracy& accuracy);
/// Trains with `loop` and returns the result; a run that trained to the end logs a summary.
ClassifierRunResult train_classifier(RunContext& run, TrainingLoop& loop,
                                     const ValidationRecord& record);

}  // namespace ocl::engine
