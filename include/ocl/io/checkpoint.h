// Training checkpoints: one folder each, holding the model in timm names (encoder.safetensors;
// head.safetensors for the linear probe), the rest of the training state (trainer.safetensors,
// state.json) and the resolved config. Written to a temporary folder, synced and renamed, so a
// crash never harms an earlier checkpoint; `checkpoint-last` (a symbolic link) names the newest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/io/safetensors.h"

namespace ocl::io {

/// Where a run stands. The randomness of step s is a function of (seed, s) and the data order
/// of (seed, epoch), so these counters are the whole RNG state.
struct TrainingState {
  int64_t epoch = 0;          // the epoch in progress (== epochs completed when step_in_epoch == 0)
  int64_t step_in_epoch = 0;  // optimiser steps of `epoch` already taken
  int64_t global_step = 0;    // optimiser steps taken in the run
  int64_t nonfinite_skips = 0;
  int64_t world_size = 1;
  uint64_t seed = 0;
};

/// What a checkpoint folder holds, read back.
struct Checkpoint {
  std::string path;
  TrainingState state;
  TensorMap model;          // the model file's tensors (timm names)
  TensorMap trainer;        // optimiser state ("optim.<param>.*") and the engine's own tensors
  std::string config_yaml;  // the run's resolved config
};

/// The model file of pre-training and fine-tuning checkpoints.
inline constexpr const char* kEncoderFile = "encoder.safetensors";

/// "checkpoint-0004" after 4 whole epochs; "checkpoint-0004-000120" 120 steps into epoch 4.
std::string checkpoint_name(const TrainingState& state);

/// Writes checkpoint folder `output_dir`/checkpoint_name(state), `model` as `model_file` (with
/// `model_metadata` in its header), points `checkpoint-last` at it, then prunes to the newest
/// `keep_last` (never the new one) and removes killed writers' leftovers. Returns its path; an I/O
/// error throws naming the path and leaves what was there before untouched.
std::string save_checkpoint(const std::string& output_dir, const TrainingState& state,
                            const TensorMap& model, const TensorMap& trainer,
                            const std::string& config_yaml, int64_t keep_last,
                            const std::string& model_file = kEncoderFile,
                            const Metadata& model_metadata = {});

/// Parses the text of a checkpoint's state.json; `source` names it in messages. Throws
/// c10::Error for another format_version or a counter missing or not a whole number in range.
TrainingState parse_training_state(const std::string& text, const std::string& source);

/// Reads a checkpoint folder (or the one a `checkpoint-last` link names), its model from
/// `model_file`. Throws naming the file when a part is missing, damaged or not finite.
Checkpoint load_checkpoint(const std::string& path, const std::string& model_file = kEncoderFile);

/// Checks `path` against the size and CRC-32 a state.json beside it records, if any; throws.
void verify_checkpoint_file(const std::string& path);

/// The kind of run that wrote checkpoint folder `path`, from its files and the encoder's header:
/// "linear probe" (head.safetensors only), "fine-tuning" (an encoder with head.weight),
/// "pre-training" (an encoder without), or "".
std::string checkpoint_kind(const std::string& path);

/// The newest checkpoint in `checkpoint`'s folder older than it that loads whole with
/// `model_file`: where to resume when `checkpoint` is damaged; "" when there is none.
std::string older_readable_checkpoint(const std::string& checkpoint,
                                      const std::string& model_file = kEncoderFile);

/// Deletes every checkpoint folder under `output_dir` and the checkpoint-last link.
void remove_checkpoints(const std::string& output_dir);

/// The folder `output_dir/checkpoint-last` points to, or "" when there is none.
std::string latest_checkpoint(const std::string& output_dir);

}  // namespace ocl::io
