// Loading pre-trained encoder weights (`--weights PATH` of the evaluation apps) into a ViT with
// MAE's main_finetune / main_linprobe rules: the file's classifier is dropped, a mean-pooling
// model keeps its fc_norm at initialisation, and positions are resampled to the model's grid.
// The file is safetensors in timm names: a checkpoint's encoder.safetensors, or a PyTorch
// checkpoint (MAE, MoCo v3, DINO, timm) converted by scripts/convert_checkpoint.py.
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
  /// Resample a `pos_embed` of another grid bicubically (MAE's interpolate_pos_embed); false
  /// makes such a file an error.
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

  /// For the apps' log: "encoder weights: 150 tensors from ckpt/encoder.safetensors", and a
  /// second line when something was dropped, left at its initialisation or resampled
  /// ("  dropped head.* (2), norm.* (2); left at init fc_norm.* (2), head.* (2)").
  std::string describe() const;
};

/// Loads the encoder weights at `path` (a safetensors file, a checkpoint folder or its
/// checkpoint-last link, or "none": nothing read, loaded = false) into `encoder` in place,
/// converting dtype and device. The file's `head.*` is dropped (a new head is trained); with
/// average pooling its `norm.*` too, and the model's `fc_norm.*` stays at initialisation. Anything
/// else missing, unexpected or mis-shaped, or an input normalisation ("ocl.input_norm", absent =
/// "none", and its eps) other than the model's, throws c10::Error naming the file, the keys and
/// the ViT sizes or config key that differ, the model unchanged.
EncoderLoadReport load_encoder_weights(nn::VisionTransformer& encoder, const std::string& path,
                                       const EncoderLoadOptions& options = {});

/// What a weights file of an encoder with `options` records beside its tensors:
/// {"ocl.input_norm": "none" | "patch"} and, with "patch", "ocl.input_norm_eps".
io::Metadata encoder_metadata(const VisionTransformerOptions& options);

/// The encoder a config's model section describes (presets resolved in `derived`); evaluation
/// apps add a head and pooling.
nn::VisionTransformerOptions encoder_options(const io::Config& config,
                                             const io::DerivedConfig& derived);

}  // namespace ocl::nn
