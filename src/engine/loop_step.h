// The loop's per-step figures and their sums over a log window or an epoch: shared by the loop
// (src/engine/loop.cpp) and its reports (src/engine/loop_report.cpp); not a public header.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ocl/compat.h"
#include "ocl/engine/loop.h"

namespace ocl::engine {

using Clock = std::chrono::steady_clock;

// The figures of one optimiser step: means over its micro-batches and the ranks.
struct TrainingLoop::Step {
  double loss = 0, grad_norm = 0, lr = 0;
  std::vector<double> figures;
  double data_wait_s = 0;  // this rank's wait for the loader
  int64_t images = 0;      // the whole step's, all ranks
  bool skipped = false;    // non-finite, skipped (train.on_nonfinite: skip)
  bool stop = false;       // a stop was asked on some rank: every rank stops after this step
  int64_t epoch = 0, step_in_epoch = 0, global_step = 0;  // where the run stood after it
  // train.host_sync: deferred: the figures on their way to the host, read by resolve().
  torch::Tensor figures_in_flight;
  std::shared_ptr<compat::StreamMark> figures_copied;
};

// Sums over the steps of a log window or an epoch (skipped steps count for time and images).
struct TrainingLoop::Window {
  double loss = 0, data_wait_s = 0, lr = 0;
  std::vector<double> figures;
  int64_t steps = 0, images = 0;
  Clock::time_point start = Clock::now();
  void add(const Step& s) {
    if (!s.skipped) {
      loss += s.loss;
      figures.resize(s.figures.size());
      for (size_t i = 0; i < s.figures.size(); ++i) figures[i] += s.figures[i];
      steps += 1;
    }
    data_wait_s += s.data_wait_s;
    images += s.images;
    lr = s.lr;
  }
  double mean(double sum) const { return steps > 0 ? sum / static_cast<double>(steps) : NAN; }
  double figure(size_t i) const { return i < figures.size() ? mean(figures[i]) : NAN; }
};

}  // namespace ocl::engine
