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

/// The shortcut alarm: an epoch's mean contrastive `accuracy` at or above
/// eval.shortcut_accuracy while the kNN monitor has gained less than eval.shortcut_knn_gain
/// points, since its first run or over its last eval.shortcut_window runs. `knn_history` is the
/// monitor's top-1 (%) in order, from initialisation to the one just measured. Returns the
/// warning naming the options that remove the cue, or "" (no alarm, the alarm off, or no
/// figures yet: fewer than two kNN figures, a negative one, or a NaN accuracy).
std::string shortcut_warning(const io::EvalConfig& eval, double accuracy,
                             const std::vector<double>& knn_history);
/// The kNN figure `window` monitor runs before the last of `knn_history` (the first when there
/// are fewer), what the alarm measures the recent gain from; −1 for an empty history.
double knn_figure_back(const std::vector<double>& knn_history, int64_t window);

/// Warns when mask.group_views and the colour draws (data.photometric, illumination, noise,
/// blur) disagree: one draw seen by both groups is a cue of its own; independent views without a
/// draw read the same pixels. Logs what each group's view draws otherwise.
void advise_on_views(const io::Config& config, spdlog::logger& log);

}  // namespace ocl::engine
