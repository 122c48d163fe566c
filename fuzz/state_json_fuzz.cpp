// Fuzz target: a checkpoint's state.json (io::parse_training_state). Findings beyond the
// sanitizers': an error other than c10::Error, or an accepted state outside the documented ranges.
#include <string>

#include "fuzz_support.h"
#include "targets.h"
#include <c10/util/Exception.h>

#include "ocl/io/checkpoint.h"

namespace ocl::fuzz::state_json_target {

void init() {}

int run(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto state = ocl::io::parse_training_state(text, "fuzz/state.json");
    ocl::fuzz::require(state.epoch >= 0 && state.step_in_epoch >= 0 && state.global_step >= 0 &&
                           state.nonfinite_skips >= 0 && state.world_size >= 1,
                       "an accepted state.json holds a counter out of range");
  } catch (const c10::Error&) {
  }
  return 0;
}

}  // namespace ocl::fuzz::state_json_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::state_json_target)
