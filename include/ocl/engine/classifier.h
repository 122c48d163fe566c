// What the two classifier engines (fine-tuning, engine/finetune.h; the linear probe,
// engine/linprobe.h) share on top of the training loop: the accuracy of one evaluation, the
// validation record kept across epochs and checkpoints, and the result a classifier run returns.
#pragma once

#include <cstdint>
#include <string>

#include "ocl/engine/loop.h"
#include "ocl/engine/run.h"
#include "ocl/io/safetensors.h"

namespace ocl::engine {

/// One evaluation of a classifier on a validation set: every image counted once, all ranks
/// together.
struct ClassifierAccuracy {
  double top1 = 0, top5 = 0;  // percent (top-k with k = min(5, classes))
  double loss = 0;            // mean cross-entropy against the hard labels
  int64_t images = 0;
};

/// The validation figures of a classifier run over its epochs, resumed ones included; kept in
/// its checkpoints as "<prefix>.best_top1" and the like.
struct ValidationRecord {
  double best_top1 = -1, last_top1 = -1, last_top5 = -1;
  int64_t best_epoch = 0;
  /// Records epoch `epoch`'s figures; returns whether it is the best so far.
  bool add(int64_t epoch, const ClassifierAccuracy& accuracy);
  void save(io::TensorMap& trainer, const std::string& prefix) const;
  void load(const io::TensorMap& trainer, const std::string& prefix);  // absent keys: unchanged
};

/// What a classifier run returns: its validation record and where it ended.
struct ClassifierRunResult : ValidationRecord {
  bool interrupted = false;    // stopped by a signal or --stop-after-steps before the end
  bool nothing_to_do = false;  // resumed from a finished run
  std::string checkpoint;      // the last checkpoint written or resumed, "" if none
};

/// The result of a run that only evaluated (--eval): `accuracy` as the record's last figures.
ClassifierRunResult evaluated_classifier(const RunContext& run, ValidationRecord record,
                                         const ClassifierAccuracy& accuracy);
/// Trains a classifier run with `loop` and returns its result; a run that trained to the end
/// logs its last line (the epochs, the time, the best and last top-1).
ClassifierRunResult train_classifier(RunContext& run, TrainingLoop& loop,
                                     const ValidationRecord& record);

}  // namespace ocl::engine
