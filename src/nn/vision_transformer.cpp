// VisionTransformer and its presets (see include/ocl/nn/vision_transformer.h).
#include "ocl/nn/vision_transformer.h"

#include <string>

#include <torch/nn/init.h>

#include "ocl/compat.h"
#include "ocl/io/spec.h"
#include "ocl/nn/pos_embed.h"

namespace ocl::nn {

VisionTransformerOptions vit_preset(const std::string& name, int64_t img_size) {
  const io::VitSizes* s = io::find_vit_preset(name);
  if (s == nullptr) {
    std::string known;
    for (const auto& n : io::vit_preset_names()) known += (known.empty() ? "" : ", ") + n;
    TORCH_CHECK(false, "unknown ViT preset '", name, "'; known presets: ", known);
  }
  return VisionTransformerOptions(img_size, s->patch_size, s->embed_dim, s->depth, s->num_heads);
}

#define OCL_VIT_PRESET(name) \
  VisionTransformerOptions name(int64_t img_size) { return vit_preset(#name, img_size); }
OCL_VIT_PRESET(vit_tiny_patch16)
OCL_VIT_PRESET(vit_small_patch16)
OCL_VIT_PRESET(vit_base_patch16)
OCL_VIT_PRESET(vit_large_patch16)
OCL_VIT_PRESET(vit_huge_patch14)
#undef OCL_VIT_PRESET

VisionTransformerImpl::VisionTransformerImpl(const VisionTransformerOptions& options_)
    : options(options_) {
  reset();
}

void VisionTransformerImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.depth() > 0, "ViT depth must be positive, got ", o.depth());
  TORCH_CHECK(o.embed_dim() % 4 == 0, "ViT width must be divisible by 4 (sin-cos positions), got ",
              o.embed_dim());
  TORCH_CHECK(o.num_classes() >= 0, "number of classes must be >= 0, got ", o.num_classes());
  TORCH_CHECK(o.drop_path_rate() >= 0.0 && o.drop_path_rate() < 1.0,
              "drop path rate must be in [0, 1), got ", o.drop_path_rate());
  const int64_t D = o.embed_dim();

  patch_embed =
      register_module("patch_embed", PatchEmbed(PatchEmbedOptions(o.img_size(), o.patch_size(), D)
                                                    .in_chans(o.in_chans())
                                                    .frozen(o.freeze_patch_embed())
                                                    .input_norm(o.input_norm())
                                                    .input_norm_eps(o.input_norm_eps())));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, D}));
  auto table = sincos_pos_embed_2d(D, grid_size(), grid_size(), /*cls_row=*/true).unsqueeze(0);
  pos_embed = o.trainable_pos_embed() ? register_parameter("pos_embed", table)
                                      : register_buffer("pos_embed", table);

  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth(); ++i) {
    const double rate = o.depth() > 1 ? o.drop_path_rate() * i / (o.depth() - 1) : 0.0;
    blocks->push_back(Block(BlockOptions(D, o.num_heads())
                                .mlp_ratio(o.mlp_ratio())
                                .qkv_bias(o.qkv_bias())
                                .drop_path(rate)
                                .layer_scale_init(o.layer_scale_init())));
  }
  auto ln = [&] {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(kLayerNormEps));
  };
  if (o.global_pool() == GlobalPool::Token) {
    norm = register_module("norm", ln());
  } else {
    fc_norm = register_module("fc_norm", ln());
  }
  if (o.num_classes() > 0) head = register_module("head", torch::nn::Linear(D, o.num_classes()));
  reset_parameters();
}

void VisionTransformerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      if (linear->bias.defined()) torch::nn::init::zeros_(linear->bias);
    } else if (auto* layer_norm = module->as<torch::nn::LayerNorm>()) {
      torch::nn::init::ones_(layer_norm->weight);
      torch::nn::init::zeros_(layer_norm->bias);
    }
  }
  patch_embed->reset_parameters();
  torch::nn::init::normal_(cls_token, 0.0, 0.02);
  reset_pos_embed();
}

void VisionTransformerImpl::reset_pos_embed() {
  torch::NoGradGuard no_grad;
  pos_embed.copy_(
      sincos_pos_embed_2d(options.embed_dim(), grid_size(), grid_size(), true, torch::kFloat64)
          .unsqueeze(0));
}

torch::Tensor VisionTransformerImpl::embed_patches(const torch::Tensor& images) {
  auto tokens = patch_embed(images);  // [B, N, D]
  // The residual stream's dtype from here on: the embedding's, or float32 as timm's.
  if (options.float32_residual())
    tokens = tokens.to(at::promote_types(tokens.scalar_type(), pos_embed.scalar_type()));
  return tokens + pos_embed.narrow(1, 1, num_patches()).to(tokens.dtype());
}

torch::Tensor VisionTransformerImpl::gather_tokens(const torch::Tensor& tokens,
                                                   const torch::Tensor& ids) {
  TORCH_CHECK(tokens.dim() == 3, "tokens must be [B, N, D], got ", tokens.sizes());
  TORCH_CHECK(ids.dim() == 2 && ids.size(0) == tokens.size(0) && ids.scalar_type() == torch::kLong,
              "token indices must be int64 [B, K] with B = ", tokens.size(0), ", got ",
              ids.scalar_type(), " ", ids.sizes());
  return torch::gather(tokens, 1, ids.unsqueeze(-1).expand({-1, -1, tokens.size(2)}));
}

torch::Tensor VisionTransformerImpl::encode_tokens(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 3 && tokens.size(2) == options.embed_dim(),
              "encoder expects tokens [B, K, ", options.embed_dim(), "], got ", tokens.sizes());
  auto cls = (cls_token + pos_embed.narrow(1, 0, 1)).to(tokens.dtype());   // [1, 1, D]
  auto x = torch::cat({cls.expand({tokens.size(0), -1, -1}), tokens}, 1);  // [B, 1+K, D]
  if (options.fused() && !blocks->is_empty()) return encode_fused(x);
  for (const auto& block : *blocks) x = block->as<Block>()->forward(x);
  return norm ? compat::layer_norm(x, norm->weight, norm->bias, kLayerNormEps) : x;
}

// Each LayerNorm fused with the residual add before it: the first block's norm1 alone, then
// (norm2 inside each block) and (the next block's norm1, or the final norm) after it. The
// final norm's output keeps its weight's dtype, as compat::layer_norm's does.
torch::Tensor VisionTransformerImpl::encode_fused(const torch::Tensor& x) {
  const auto first = blocks->ptr<BlockImpl>(0);
  const auto path = ops::fused_path(true, x);
  auto stream =
      ops::residual_layer_norm(x, torch::Tensor(), first->norm1->weight, first->norm1->bias,
                               kLayerNormEps, ops::compute_dtype(x), path);
  const auto depth = blocks->size();
  for (size_t i = 0; i < depth; ++i) {
    const bool last = i + 1 == depth;
    const auto& next = last ? norm : blocks->ptr<BlockImpl>(i + 1)->norm1;
    const auto next_dtype = last && norm ? norm->weight.scalar_type() : ops::compute_dtype(x);
    stream = blocks->ptr<BlockImpl>(i)->forward_fused(stream, next, next_dtype);
  }
  return norm ? stream.normed : stream.residual;
}

torch::Tensor VisionTransformerImpl::forward_subset(const torch::Tensor& tokens,
                                                    const torch::Tensor& ids) {
  return encode_tokens(gather_tokens(tokens, ids));
}

torch::Tensor VisionTransformerImpl::forward_features(const torch::Tensor& images) {
  return encode_tokens(embed_patches(images));
}

torch::Tensor VisionTransformerImpl::pool(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 3, "pool expects features [B, 1+N, D], got ", features.sizes());
  if (options.global_pool() == GlobalPool::Token) return features.select(1, 0);
  auto mean = features.narrow(1, 1, features.size(1) - 1).mean(1);
  return compat::layer_norm(mean, fc_norm->weight, fc_norm->bias, kLayerNormEps);
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& images) {
  auto pooled = pool(forward_features(images));
  return head ? head(pooled) : pooled;
}

void VisionTransformerImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "ocl::nn::VisionTransformer(img_size=" << o.img_size()
         << ", patch_size=" << o.patch_size() << ", embed_dim=" << o.embed_dim()
         << ", depth=" << o.depth() << ", num_heads=" << o.num_heads()
         << ", num_classes=" << o.num_classes()
         << ", global_pool=" << (o.global_pool() == GlobalPool::Token ? "token" : "avg");
  if (o.input_norm() != InputNorm::None)
    stream << ", input_norm=" << input_norm_name(o.input_norm());
  stream << ")";
}

}  // namespace ocl::nn
