// The Vision Transformer encoder (timm's `VisionTransformer` layout and names) with the two
// forwards OCL needs: on a subset of patch tokens (pre-training) and on whole images with a
// classification head (evaluation). `named_parameters()` + `named_buffers()` is a timm state dict.
#pragma once

#include <cstdint>
#include <string>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "ocl/nn/block.h"
#include "ocl/nn/patch_embed.h"

namespace ocl::nn {

/// How the classification forward pools tokens: the CLS output after `norm` (timm "token"), or
/// the mean of the patch tokens followed by `fc_norm` (timm "avg", MAE fine-tuning).
enum class GlobalPool { Token, Avg };

struct VisionTransformerOptions {
  VisionTransformerOptions(int64_t img_size, int64_t patch_size, int64_t embed_dim, int64_t depth,
                           int64_t num_heads)
      : img_size_(img_size),
        patch_size_(patch_size),
        embed_dim_(embed_dim),
        depth_(depth),
        num_heads_(num_heads) {}
  TORCH_ARG(int64_t, img_size);
  TORCH_ARG(int64_t, patch_size);
  TORCH_ARG(int64_t, embed_dim);
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(int64_t, num_heads);
  TORCH_ARG(int64_t, in_chans) = 3;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, qkv_bias) = true;
  /// Stochastic depth rate of the last block; block i gets rate·i/(depth−1) (timm).
  TORCH_ARG(double, drop_path_rate) = 0.0;
  /// LayerScale initial value, 0 = off.
  TORCH_ARG(double, layer_scale_init) = 0.0;
  /// Classes of the linear `head`; 0 = no head (the forward returns pooled features).
  TORCH_ARG(int64_t, num_classes) = 0;
  TORCH_ARG(GlobalPool, global_pool) = GlobalPool::Token;
  /// Keep the patch embedding fixed (paper §2.1; fine-tuning turns this off).
  TORCH_ARG(bool, freeze_patch_embed) = true;
  /// Register `pos_embed` as a trainable parameter instead of a fixed buffer.
  TORCH_ARG(bool, trainable_pos_embed) = false;
  /// The patch embedding's input standardisation (PatchEmbedOptions::input_norm), and its eps.
  TORCH_ARG(InputNorm, input_norm) = InputNorm::None;
  TORCH_ARG(double, input_norm_eps) = 0.25;
  /// The blocks through ocl::ops' fused operations (the same function; see Block::forward_fused).
  TORCH_ARG(bool, fused) = false;
  /// The residual stream between the blocks in float32 under autocast, as timm's blocks keep it
  /// (the fp32 position embedding added to the bf16 patch embedding); by default it keeps the
  /// patch embedding's dtype (bf16 under bf16 autocast: half the bytes each residual add and
  /// LayerNorm moves). Without autocast both are the same.
  TORCH_ARG(bool, float32_residual) = false;
};

VisionTransformerOptions vit_tiny_patch16(int64_t img_size = 224);   // D 192,  depth 12, 3 heads
VisionTransformerOptions vit_small_patch16(int64_t img_size = 224);  // D 384,  depth 12, 6 heads
VisionTransformerOptions vit_base_patch16(int64_t img_size = 224);   // D 768,  depth 12, 12 heads
VisionTransformerOptions vit_large_patch16(int64_t img_size = 224);  // D 1024, depth 24, 16 heads
VisionTransformerOptions vit_huge_patch14(int64_t img_size = 224);   // D 1280, depth 32, 16 heads
/// Preset by name (io::vit_preset_names); throws naming the known ones.
VisionTransformerOptions vit_preset(const std::string& name, int64_t img_size = 224);

/// Submodules and tensors (timm names): patch_embed.proj, cls_token [1,1,D] (parameter),
/// pos_embed [1,1+N,D] (buffer, or parameter with trainable_pos_embed), blocks.{i}, then
/// norm (GlobalPool::Token) or fc_norm (GlobalPool::Avg), and head when num_classes > 0.
class VisionTransformerImpl : public torch::nn::Cloneable<VisionTransformerImpl> {
 public:
  explicit VisionTransformerImpl(const VisionTransformerOptions& options);
  void reset() override;
  /// MAE's initialisation: Xavier-uniform Linear weights, zero biases, cls_token ~ N(0, 0.02²).
  void reset_parameters();
  /// Recomputes the sin-cos table into `pos_embed` from float64 (after converting to float64).
  void reset_pos_embed();

  /// images [B, C, H, W] → patch tokens with their positions added [B, N, D].
  torch::Tensor embed_patches(const torch::Tensor& images);
  /// Picks tokens [B, N, D] at indices ids [B, K] (int64, values in [0, N)) → [B, K, D].
  static torch::Tensor gather_tokens(const torch::Tensor& tokens, const torch::Tensor& ids);
  /// Prepends CLS, runs the blocks and `norm`: tokens [B, K, D] (positions added) → [B, 1+K, D].
  torch::Tensor encode_tokens(const torch::Tensor& tokens);
  /// encode_tokens(gather_tokens(tokens, ids)): the encoder on a subset of patches.
  torch::Tensor forward_subset(const torch::Tensor& tokens, const torch::Tensor& ids);
  /// All tokens of whole images: [B, C, H, W] → [B, 1+N, D].
  torch::Tensor forward_features(const torch::Tensor& images);
  /// Pools forward_features' output [B, 1+N, D] → [B, D] (CLS, or patch mean + fc_norm).
  torch::Tensor pool(const torch::Tensor& features);
  /// images → head logits [B, num_classes], or pooled features [B, D] without a head.
  torch::Tensor forward(const torch::Tensor& images);

  int64_t num_patches() const { return patch_embed->num_patches(); }
  /// encode_tokens' blocks and norm through ocl::ops (options.fused): x [B, 1+K, D].
  torch::Tensor encode_fused(const torch::Tensor& x);
  int64_t grid_size() const { return patch_embed->grid_size(); }
  void pretty_print(std::ostream& stream) const override;

  VisionTransformerOptions options;
  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token;
  torch::Tensor pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};     // GlobalPool::Token
  torch::nn::LayerNorm fc_norm{nullptr};  // GlobalPool::Avg
  torch::nn::Linear head{nullptr};        // num_classes > 0
};
TORCH_MODULE(VisionTransformer);

}  // namespace ocl::nn
