// The shortcut alarm and the advice on a config's views (see include/ocl/engine/shortcut_alarm.h).
#include "ocl/engine/shortcut_alarm.h"

#include <algorithm>

#include <fmt/format.h>

namespace ocl::engine {
namespace {

// How many runs back the recent gain is measured over, for `n` > 0 figures.
size_t runs_back(size_t n, int64_t window) {
  return std::min(n - 1, static_cast<size_t>(std::max<int64_t>(window, 0)));
}

}  // namespace

double knn_figure_back(const std::vector<double>& knn_history, int64_t window) {
  if (knn_history.empty()) return -1;
  return knn_history[knn_history.size() - 1 - runs_back(knn_history.size(), window)];
}

std::string shortcut_warning(const io::EvalConfig& eval, double accuracy,
                             const std::vector<double>& knn_history) {
  const size_t n = knn_history.size();
  if (!eval.shortcut_alarm || n < 2 || !(accuracy >= 0) || accuracy < eval.shortcut_accuracy)
    return "";
  if (std::any_of(knn_history.begin(), knn_history.end(), [](double v) { return v < 0; }))
    return "";
  const double start = knn_history.front(), now = knn_history.back();
  // The recent gain catches a run that learned at first and then stalled on a shared cue.
  const size_t back = runs_back(n, eval.shortcut_window);
  const double before = knn_history[n - 1 - back];
  const double gain = now - start, recent = now - before;
  if (gain >= eval.shortcut_knn_gain && recent >= eval.shortcut_knn_gain) return "";
  const std::string moved =
      gain < eval.shortcut_knn_gain
          ? fmt::format("moved {:+.2f} points since the start ({:.2f} -> {:.2f} %", gain, start,
                        now)
          : fmt::format("moved {:+.2f} points over the last {} monitor runs ({:.2f} -> {:.2f} %",
                        recent, back, before, now);
  return fmt::format(
      "shortcut alarm: contrastive accuracy {:.3f} (>= eval.shortcut_accuracy {}) while kNN "
      "top-1 {}, less than eval.shortcut_knn_gain {}): the two token groups are being matched by "
      "a cue they both see, such as a per-image colour or lighting, not by content. "
      "Remove the cue: model.input_norm=patch (each patch standardised before the patch "
      "embedding, so the flat colour it shares with its image is gone; the evaluation apps then "
      "need the same setting), with mask.group_views=independent each group from its own copy "
      "of the crop: data.illumination for a lighting gradient, "
      "data.photometric=simclr for colour casts; configs/quickstart_robust.yaml has them "
      "together; see docs/shortcuts.md",
      accuracy, eval.shortcut_accuracy, moved, eval.shortcut_knn_gain);
}

void advise_on_views(const io::Config& config, spdlog::logger& log) {
  // What each copy of the crop draws.
  const auto& d = config.data;
  const bool augmented = d.photometric != "none" || d.illumination > 0 || d.noise > 0 || d.blur > 0;
  const std::string drawn = fmt::format(
      "photometric '{}'{}{}{}", d.photometric,
      d.illumination > 0 ? fmt::format(", illumination {}", d.illumination) : std::string(),
      d.noise > 0 ? fmt::format(", noise {}", d.noise) : std::string(),
      d.blur > 0 ? fmt::format(", blur {}", d.blur) : std::string());
  if (config.mask.group_views == "shared" && augmented) {
    log.warn(
        "{} with mask.group_views shared: one colour draw per image, seen by both token groups, "
        "adds a per-image colour cue instead of removing one (docs/shortcuts.md); "
        "mask.group_views=independent draws it for each group",
        drawn);
  }
  if (config.mask.group_views == "independent") {
    if (!augmented) {
      log.warn(
          "mask.group_views independent with data.photometric none: both groups would read the "
          "same pixels, so the groups share one image (set data.photometric, data.illumination, "
          "data.noise or data.blur)");
    } else {
      log.info(
          "views: each group reads its own copy of the crop, {} drawn apart (one more patch "
          "embedding per step)",
          drawn);
    }
  }
}

}  // namespace ocl::engine
