// Pre-training's warnings about what it learns: the shortcut alarm (the contrastive task solved
// by a cue both token groups share while the kNN monitor stalls) and the advice on a config
// whose colour draws add such a cue. docs/shortcuts.md says what to do about them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "ocl/io/config.h"

namespace ocl::engine {

/// The warning when an epoch's mean contrastive `accuracy` is at least eval.shortcut_accuracy
/// while the kNN monitor (`knn_history`: top-1 % from initialisation on) has gained less than
/// eval.shortcut_knn_gain points, since its first run or over the last eval.shortcut_window;
/// else "" (also with the alarm off, fewer than two figures, a negative one or a NaN accuracy).
std::string shortcut_warning(const io::EvalConfig& eval, double accuracy,
                             const std::vector<double>& knn_history);
/// The kNN figure `window` runs before the last (the first when fewer); −1 for an empty history.
double knn_figure_back(const std::vector<double>& knn_history, int64_t window);

/// Warns when mask.group_views and the colour draws (data.photometric, illumination, noise,
/// blur) disagree; logs what each group's view draws otherwise.
void advise_on_views(const io::Config& config, spdlog::logger& log);

}  // namespace ocl::engine
