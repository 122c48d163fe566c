// Loading pre-trained encoder weights (`--weights` of the evaluation apps) into a ViT with MAE's
// rules: safetensors in timm names, a checkpoint's encoder.safetensors or a PyTorch checkpoint
// converted by scripts/convert_checkpoint.py.
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
  /// Resample a `pos_embed` of another grid (MAE's interpolate_pos_embed), else throw.
  bool resample_pos_embed = true;
};

/// What load_encoder_weights did (the strict load's io::LoadReport; tolerated keys listed here).
struct EncoderLoadReport : io::LoadReport {
  bool loaded = false;                    // false for the path "none" (initialisation kept)
  std::string path;                       // the safetensors file read
  std::string source;                     // the file's "source" metadata (convert_checkpoint.py)
  int64_t tensors_loaded = 0;             // tensors copied into the model
  std::vector<std::string> dropped;       // file keys not loaded on purpose: head.*, norm.* (avg)
  std::vector<std::string> left_at_init;  // model keys not in the file: head.*, fc_norm.* (avg)
  std::string pos_embed_resampled;        // "14x14 -> 16x16", or "" when the grids matched

  /// "encoder weights: 150 tensors from ckpt/encoder.safetensors", and a second line when
  /// something was dropped, left at its initialisation or resampled.
  std::string describe() const;
};

/// Loads the encoder weights at `path` (a safetensors file, a checkpoint folder, or "none":
/// nothing read) into `encoder`. The file's `head.*` is dropped; with average pooling its `norm.*`
/// too, `fc_norm.*` staying at initialisation. Anything else missing, unexpected or mis-shaped, or
/// another input normalisation ("ocl.input_norm", absent = "none"), throws c10::Error naming what
/// differs, the model unchanged.
EncoderLoadReport load_encoder_weights(nn::VisionTransformer& encoder, const std::string& path,
                                       const EncoderLoadOptions& options = {});

/// What a weights file of an encoder with `options` records beside its tensors:
/// {"ocl.input_norm": "none" | "patch"} and, with "patch", "ocl.input_norm_eps".
io::Metadata encoder_metadata(const VisionTransformerOptions& options);

/// The encoder a config's model section describes (presets resolved in `derived`).
nn::VisionTransformerOptions encoder_options(const io::Config& config,
                                             const io::DerivedConfig& derived);

}  // namespace ocl::nn
