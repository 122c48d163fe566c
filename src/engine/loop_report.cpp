// What the training loop reports (see include/ocl/engine/loop.h): log lines, records, status.
#include <algorithm>
#include <string>

#include "loop_step.h"
#include <fmt/format.h>

namespace ocl::engine {

void TrainingLoop::log_window(const Step& st, double eta) {
  const Window& w = *window_;
  const double seconds = std::max(seconds_since(w.start), 1e-9);
  const double img_s = static_cast<double>(w.images) / seconds;
  const double wait_share = w.data_wait_s / seconds;
  std::string shown;
  for (size_t i = 0; i < figures_.size(); ++i) {
    if (!figures_[i].label.empty())
      shown += fmt::format("  {} {:.{}f}", figures_[i].label, w.figure(i), figures_[i].decimals);
  }
  run_.process().log->info(
      "epoch {}/{} step {}/{}  loss {:.4f}{}  lr {:.3e}  grad {:.3f}  {:.0f} img/s  data {:.0f}%  "
      "ETA {}",
      st.epoch + 1, settings_.epochs, st.step_in_epoch, steps_per_epoch_, w.mean(w.loss), shown,
      st.lr, st.grad_norm, img_s, 100 * wait_share, io::format_duration(eta));
  if (run_.writes()) {
    io::MetricFields fields{{"epoch", static_cast<double>(st.epoch) +
                                          static_cast<double>(st.step_in_epoch) / steps_per_epoch_},
                            {"global_step", static_cast<double>(st.global_step)},
                            {"loss", w.mean(w.loss)}};
    for (size_t i = 0; i < figures_.size(); ++i) fields.emplace_back(figures_[i].name, w.figure(i));
    fields.insert(fields.end(), {{"lr", st.lr},
                                 {"grad_norm", st.grad_norm},
                                 {"img_per_s", img_s},
                                 {"data_wait", wait_share},
                                 {"elapsed_s", seconds_since(run_start_)}});
    run_.record(settings_.records.empty() ? "step" : settings_.records + "_step", fields);
  }
  *window_ = Window();
}

void TrainingLoop::show_status(const Step& st, double eta) {
  if (!run_.console().has_status_line()) return;
  const int width = 20;
  const int filled = static_cast<int>(width * st.step_in_epoch / steps_per_epoch_);
  run_.console().set_status(fmt::format(
      "[{}{}] epoch {}/{} step {}/{}  loss {:.4f}  lr {:.2e}  ETA {}", std::string(filled, '#'),
      std::string(width - filled, '.'), st.epoch + 1, settings_.epochs, st.step_in_epoch,
      steps_per_epoch_, st.loss, st.lr, io::format_duration(eta)));
}

void TrainingLoop::log_epoch(double epoch_time, const EpochReport& report) {
  const auto& state = run_.state();
  const Window& e = *epoch_sums_;
  std::string figures;
  io::MetricFields fields{{"epoch", static_cast<double>(state.epoch)},
                          {"global_step", static_cast<double>(state.global_step)},
                          {"loss", e.mean(e.loss)}};
  for (size_t i = 0; i < figures_.size(); ++i) {
    fields.emplace_back(figures_[i].name, e.figure(i));
    if (!figures_[i].label.empty())
      figures += fmt::format(", {} {:.{}f}", figures_[i].name, e.figure(i), figures_[i].decimals);
  }
  const int64_t bad = source_->bad_samples();
  run_.process().log->info("epoch {}/{} done in {}: mean loss {:.4f}{}{}{}", state.epoch,
                           settings_.epochs, io::format_duration(epoch_time), e.mean(e.loss),
                           figures, report.text,
                           bad > 0 ? fmt::format(", unreadable images so far: {}", bad) : "");
  if (!run_.writes()) return;
  fields.insert(fields.end(), {{"lr", e.lr},
                               {"epoch_time_s", epoch_time},
                               {"bad_samples", static_cast<double>(bad)},
                               {"nonfinite_skips", static_cast<double>(state.nonfinite_skips)}});
  fields.insert(fields.end(), report.fields.begin(), report.fields.end());
  run_.record(settings_.records.empty() ? "epoch" : settings_.records + "_epoch", fields);
}

}  // namespace ocl::engine
