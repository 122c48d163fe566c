// Loading pre-trained encoder weights (`--weights PATH` of the evaluation apps) into a ViT, with
// MAE's main_finetune / main_linprobe rules: the file's classifier is dropped, a mean-pooling
// model keeps its fc_norm at initialisation, and positions are resampled to the model's grid.
//
//   auto vit = ocl::nn::VisionTransformer(ocl::nn::vit_base_patch16().num_classes(1000)
//                                             .global_pool(ocl::nn::GlobalPool::Avg));
//   auto report = ocl::nn::load_encoder_weights(vit, "runs/b16/checkpoint-last");
//   logger->info(report.describe());   // one or two lines: what was loaded, dropped, resampled
//
// The file is safetensors in timm names: an `encoder.safetensors` of a pre-training checkpoint
// folder, or a PyTorch checkpoint (MAE, MoCo v3, DINO, timm) converted by
// scripts/convert_checkpoint.py.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/io/config.h"
#include "ocl/io/safetensors.h"
#include "ocl/io/state_dict.h"
#include "ocl/nn/vision_transformer.h"

namespace ocl::nn {

/// Metadata keys of a weights file that say how its encoder reads pixels (encoder_metadata).
inline constexpr const char* kInputNormKey = "ocl.input_norm";
inline constexpr const char* kInputNormEpsKey = "ocl.input_norm_eps";

struct EncoderLoadOptions {
  /// When the file's position grid differs from the model's (a 224² checkpoint into a 160²
  /// model), resample `pos_embed` bicubically (MAE's interpolate_pos_embed); false makes such a
  /// file an error instead.
  bool resample_pos_embed = true;
};

/// What load_encoder_weights did. The io::LoadReport part is the strict load's report, so its
/// lists are empty after any load that returns (the tolerated keys are listed here instead).
struct EncoderLoadReport : io::LoadReport {
  bool loaded = false;                    // false for the path "none" (initialisation kept)
  std::string path;                       // the safetensors file read
  std::string source;                     // the file's "source" metadata (convert_checkpoint.py)
  int64_t tensors_loaded = 0;             // tensors copied into the model
  std::vector<std::string> dropped;       // file keys not loaded on purpose: head.*, norm.* (avg)
  std::vector<std::string> left_at_init;  // model keys not in the file: head.*, fc_norm.* (avg)
  std::string pos_embed_resampled;        // "14x14 -> 16x16", or "" when the grids matched

  /// For the apps' log, one line, plus a second one when something was dropped, left at its
  /// initialisation or resampled, e.g.
  ///   "encoder weights: 150 tensors from ckpt/encoder.safetensors (converted from mae.pth)"
  ///   "  dropped head.* (2), norm.* (2); left at init fc_norm.* (2), head.* (2); pos_embed
  ///    resampled bicubically 14x14 -> 10x10"
  /// or "encoder weights: none (random initialisation kept)".
  std::string describe() const;
};

/// Loads the encoder weights at `path` into `encoder` in place, converting dtype and device to
/// the model's (float32 / float64 / bf16 files all load). `path` is a safetensors file, a
/// checkpoint folder (its `encoder.safetensors` is read; a `checkpoint-last` link works), or the
/// literal "none" (nothing is read, the initialisation is kept, an empty report with
/// loaded = false is returned).
///
/// Rules (MAE's main_finetune / main_linprobe):
///   - the file's `head.*` is always dropped: the evaluation trains a new head;
///   - when the model pools by average (it has fc_norm, no norm), the file's `norm.*` is dropped
///     and the model's `fc_norm.*` stays at its initialisation;
///   - the model's `head.*` may be missing from the file;
///   - `pos_embed` [1, 1 + g², D] of another grid g is resampled to the model's (CLS row kept);
///   - anything else missing or unexpected, or any other shape mismatch, throws c10::Error
///     naming the file, the keys and (when they differ) the file's and the model's ViT sizes;
///     the model is then unchanged.
///   - the file's "ocl.input_norm" (absent: "none") and, with "patch", "ocl.input_norm_eps" must
///     equal the model's options (VisionTransformerOptions::input_norm): otherwise throws naming
///     both values and the config key to set, before anything is loaded;
/// Also throws naming the path when it does not exist, a folder lacks encoder.safetensors, or
/// the file is not valid safetensors.
EncoderLoadReport load_encoder_weights(nn::VisionTransformer& encoder, const std::string& path,
                                       const EncoderLoadOptions& options = {});

/// What a weights file of an encoder with `options` records beside its tensors, for the loader
/// above and for Python users: {"ocl.input_norm": "none" | "patch"} and, with "patch",
/// "ocl.input_norm_eps" (shortest round-trip decimal). Checkpoints and model-best files get it.
io::Metadata encoder_metadata(const VisionTransformerOptions& options);

/// The encoder sizes a config describes (model section, presets resolved in `derived`), with
/// its drop path, patch-embedding freezing and input standardisation; evaluation apps add a head
/// and pooling.
nn::VisionTransformerOptions encoder_options(const io::Config& config,
                                             const io::DerivedConfig& derived);

}  // namespace ocl::nn
