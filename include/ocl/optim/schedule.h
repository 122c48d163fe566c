// MAE's learning-rate schedule (`adjust_learning_rate`): linear warmup from 0, then half-cosine
// decay to a floor, evaluated per iteration at a fractional epoch.
#pragma once

namespace ocl::optim {

struct CosineSchedule {
  double base_lr = 0.0;        // the peak, reached at the end of warmup
  double min_lr = 0.0;         // the floor at the end of training
  double warmup_epochs = 0.0;  // ≥ 0, may be fractional
  double epochs = 1.0;         // > 0 total

  /// lr at `epoch` (fractional: completed epochs + share of the current one):
  /// base·epoch/warmup during warmup, then min + (base − min)·(1 + cos(π·t))/2 with
  /// t = (epoch − warmup)/(epochs − warmup), clamped to [0, 1].
  double at(double epoch) const;
};

}  // namespace ocl::optim
