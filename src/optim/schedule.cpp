// Warmup + cosine learning rate (see include/ocl/optim/schedule.h).
#include "ocl/optim/schedule.h"

#include <algorithm>
#include <cmath>

namespace ocl::optim {

double CosineSchedule::at(double epoch) const {
  if (epoch < warmup_epochs) return base_lr * epoch / warmup_epochs;
  const double span = epochs - warmup_epochs;
  const double t = span > 0 ? std::clamp((epoch - warmup_epochs) / span, 0.0, 1.0) : 1.0;
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * t));
}

}  // namespace ocl::optim
