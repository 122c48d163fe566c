// ocl::nn modules: timm names and sizes, initialisation, freezing, the subset forward, pooling,
// stochastic depth and clear errors on bad shapes.
#include <map>
#include <set>
#include <string>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/nn/pos_embed.h>
#include <ocl/nn/vision_transformer.h>

using namespace ocl::nn;

namespace {
std::set<std::string> keys(const VisionTransformer& vit) {
  std::set<std::string> out;
  for (const auto& p : vit->named_parameters()) out.insert(p.key());
  for (const auto& b : vit->named_buffers()) out.insert(b.key());
  return out;
}
int64_t numel(const VisionTransformer& vit) {
  int64_t n = 0;
  for (const auto& p : vit->parameters()) n += p.numel();
  for (const auto& b : vit->buffers()) n += b.numel();
  return n;
}
// How many nodes of each kind the autograd graph behind `root` holds.
std::map<std::string, int> graph_nodes(const std::shared_ptr<torch::autograd::Node>& root) {
  std::map<std::string, int> count;
  std::set<const torch::autograd::Node*> seen;
  std::vector<std::shared_ptr<torch::autograd::Node>> todo{root};
  while (!todo.empty()) {
    auto node = todo.back();
    todo.pop_back();
    if (!node || !seen.insert(node.get()).second) continue;
    count[node->name()] += 1;
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function);
  }
  return count;
}
}  // namespace

TEST(PatchEmbed, ShapeInitAndFrozenByDefault) {
  torch::manual_seed(0);
  PatchEmbed pe(PatchEmbedOptions(32, 8, 64));
  EXPECT_EQ(pe(torch::randn({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 16, 64}));
  // Xavier-uniform on [D, 3p²]: bound sqrt(6 / (3·64 + 64)); uniform std = bound/√3.
  const double bound = std::sqrt(6.0 / (3 * 64 + 64));
  EXPECT_LE(pe->proj->weight.abs().max().item<double>(), bound);
  EXPECT_NEAR(pe->proj->weight.std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound);
  EXPECT_EQ(pe->proj->bias.abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(pe->proj->weight.requires_grad());
  EXPECT_FALSE(pe->proj->bias.requires_grad());
  pe->set_frozen(false);
  EXPECT_TRUE(pe->proj->weight.requires_grad());
}

TEST(PatchEmbed, TokensAreRowMajorPatches) {
  // A one-hot image in patch (row 1, col 2) of a 4×4 grid must light up token 1·4 + 2 only.
  PatchEmbed pe(PatchEmbedOptions(16, 4, 8));
  {
    torch::NoGradGuard ng;
    pe->proj->weight.fill_(1.0);
  }
  auto img = torch::zeros({1, 3, 16, 16});
  img.index_put_({0, 0, 4 + 1, 8 + 3}, 1.0);
  auto tokens = pe(img)[0].sum(1);
  EXPECT_EQ(tokens.nonzero().item<int64_t>(), 6);
}

TEST(PatchEmbed, ClearErrors) {
  OCL_EXPECT_THROW_WITH(PatchEmbed(PatchEmbedOptions(30, 8, 16)),
                        "image size 30 is not divisible by the patch size 8");
  PatchEmbed pe(PatchEmbedOptions(32, 8, 16));
  OCL_EXPECT_THROW_WITH(pe(torch::randn({1, 4, 32, 32})), "got 4");
  OCL_EXPECT_THROW_WITH(pe(torch::randn({1, 3, 48, 48})), "48x48");
  OCL_EXPECT_THROW_WITH(pe(torch::randn({3, 32, 32})), "[B, C, H, W]");
}

TEST(VisionTransformer, TimmNames) {
  VisionTransformer vit(VisionTransformerOptions(32, 8, 32, 1, 2).num_classes(10));
  const std::set<std::string> expected = {"cls_token",
                                          "pos_embed",
                                          "patch_embed.proj.weight",
                                          "patch_embed.proj.bias",
                                          "blocks.0.norm1.weight",
                                          "blocks.0.norm1.bias",
                                          "blocks.0.attn.qkv.weight",
                                          "blocks.0.attn.qkv.bias",
                                          "blocks.0.attn.proj.weight",
                                          "blocks.0.attn.proj.bias",
                                          "blocks.0.norm2.weight",
                                          "blocks.0.norm2.bias",
                                          "blocks.0.mlp.fc1.weight",
                                          "blocks.0.mlp.fc1.bias",
                                          "blocks.0.mlp.fc2.weight",
                                          "blocks.0.mlp.fc2.bias",
                                          "norm.weight",
                                          "norm.bias",
                                          "head.weight",
                                          "head.bias"};
  EXPECT_EQ(keys(vit), expected);
  EXPECT_EQ(vit->named_buffers().size(), 1u);  // pos_embed is a fixed buffer by default

  VisionTransformer avg(VisionTransformerOptions(32, 8, 32, 1, 2)
                            .global_pool(GlobalPool::Avg)
                            .layer_scale_init(1e-5));
  auto k = keys(avg);
  EXPECT_TRUE(k.count("fc_norm.weight") && k.count("blocks.0.ls1.gamma") &&
              k.count("blocks.0.ls2.gamma"));
  EXPECT_FALSE(k.count("norm.weight") || k.count("head.weight"));
}

TEST(VisionTransformer, PresetSizesMatchTimm) {
  // timm's vit_base_patch16_224 with a 1000-class head: 86,567,656 tensors entries
  // (pos_embed counted, as timm does).
  VisionTransformer vit_b(vit_base_patch16().num_classes(1000));
  EXPECT_EQ(numel(vit_b), 86567656);
  EXPECT_EQ(vit_b->num_patches(), 196);
  auto l = vit_preset("vit_l16");
  EXPECT_EQ(l.embed_dim(), 1024);
  EXPECT_EQ(l.depth(), 24);
  EXPECT_EQ(l.num_heads(), 16);
  auto h = vit_preset("vit_huge_patch14");
  EXPECT_EQ(h.patch_size(), 14);
  EXPECT_EQ(h.embed_dim(), 1280);
  EXPECT_EQ(h.depth(), 32);
  OCL_EXPECT_THROW_WITH(vit_preset("vit_giant"), "vit_giant");
}

TEST(VisionTransformer, InitialisationFollowsMae) {
  torch::manual_seed(0);
  VisionTransformer vit(VisionTransformerOptions(32, 8, 64, 2, 2));
  auto w = vit->blocks[0]->as<Block>()->mlp->fc1->weight;  // [256, 64]
  EXPECT_LE(w.abs().max().item<double>(), std::sqrt(6.0 / (64 + 256)));
  EXPECT_EQ(vit->blocks[0]->as<Block>()->mlp->fc1->bias.abs().sum().item<double>(), 0.0);
  EXPECT_NEAR(vit->cls_token.std().item<double>(), 0.02, 0.006);
  EXPECT_TRUE(torch::allclose(vit->pos_embed[0], sincos_pos_embed_2d(64, 4, 4)));
  EXPECT_FALSE(vit->pos_embed.requires_grad());
  VisionTransformer trainable(VisionTransformerOptions(32, 8, 64, 1, 2).trainable_pos_embed(true));
  EXPECT_TRUE(trainable->pos_embed.requires_grad());
}

TEST(VisionTransformer, SubsetOfAllPatchesInOrderEqualsWholeImage) {
  torch::manual_seed(0);
  VisionTransformer vit(VisionTransformerOptions(32, 8, 32, 2, 2));
  auto images = torch::randn({3, 3, 32, 32}, torch::kFloat64);
  vit->to(torch::kFloat64);
  auto all = torch::arange(16).repeat({3, 1});
  auto subset = vit->forward_subset(vit->embed_patches(images), all);
  EXPECT_TRUE(torch::allclose(subset, vit->forward_features(images), 1e-12, 1e-12));
}

TEST(VisionTransformer, ClsOutputDoesNotDependOnTokenOrder) {
  // Positions are added before gathering, so a group's order carries no information: the CLS
  // output of a permuted group must be the same (what lets OCL keep the random order).
  torch::manual_seed(0);
  VisionTransformer vit(VisionTransformerOptions(32, 8, 32, 2, 2));
  vit->to(torch::kFloat64);
  auto tokens = vit->embed_patches(torch::randn({2, 3, 32, 32}, torch::kFloat64));
  auto ids = torch::tensor({3, 9, 4, 12, 0, 7}, torch::kLong).repeat({2, 1});
  auto perm = ids.index_select(1, torch::tensor({5, 2, 0, 4, 1, 3}, torch::kLong));
  auto cls = vit->forward_subset(tokens, ids).select(1, 0);
  auto cls_perm = vit->forward_subset(tokens, perm).select(1, 0);
  EXPECT_TRUE(torch::allclose(cls, cls_perm, 1e-12, 1e-12));
  // …but a different subset gives a different CLS output.
  auto other = vit->forward_subset(tokens, (ids + 1) % 16).select(1, 0);
  EXPECT_FALSE(torch::allclose(cls, other, 1e-6, 1e-6));
}

TEST(VisionTransformer, ClassificationForwardPools) {
  torch::manual_seed(0);
  VisionTransformer token(VisionTransformerOptions(32, 8, 32, 1, 2).num_classes(5));
  auto images = torch::randn({2, 3, 32, 32});
  EXPECT_EQ(token(images).sizes(), (std::vector<int64_t>{2, 5}));
  auto feats = token->forward_features(images);
  EXPECT_TRUE(torch::allclose(token->pool(feats), feats.select(1, 0)));

  VisionTransformer avg(VisionTransformerOptions(32, 8, 32, 1, 2).global_pool(GlobalPool::Avg));
  auto f = avg->forward_features(images);
  auto pooled = avg->pool(f);
  EXPECT_TRUE(torch::allclose(pooled, avg->fc_norm(f.narrow(1, 1, 16).mean(1))));
  EXPECT_EQ(avg(images).sizes(), (std::vector<int64_t>{2, 32}));
}

TEST(VisionTransformer, CloneIsIndependentAndEqual) {
  VisionTransformer vit(VisionTransformerOptions(32, 8, 32, 1, 2));
  auto copy = std::dynamic_pointer_cast<VisionTransformerImpl>(vit->clone());
  auto images = torch::randn({1, 3, 32, 32});
  EXPECT_TRUE(torch::equal(vit(images), copy->forward(images)));
  {
    torch::NoGradGuard ng;
    copy->cls_token.add_(1.0);
  }
  EXPECT_FALSE(torch::equal(vit(images), copy->forward(images)));
}

TEST(VisionTransformer, ClearErrors) {
  OCL_EXPECT_THROW_WITH(VisionTransformer(VisionTransformerOptions(32, 8, 30, 1, 4)), "30");
  OCL_EXPECT_THROW_WITH(VisionTransformer(VisionTransformerOptions(32, 8, 36, 1, 5)), "heads 5");
  VisionTransformer vit(VisionTransformerOptions(32, 8, 32, 1, 2));
  auto tokens = torch::randn({2, 16, 32});
  OCL_EXPECT_THROW_WITH(vit->forward_subset(tokens, torch::zeros({2, 4}, torch::kInt)), "int64");
  OCL_EXPECT_THROW_WITH(vit->encode_tokens(torch::randn({2, 4, 16})), "[B, K, 32]");
}

TEST(Block, DropPathDropsWholeSamplesOnlyInTraining) {
  torch::manual_seed(0);
  auto x = torch::ones({2000, 3, 4});
  EXPECT_TRUE(torch::equal(drop_path(x, 0.5, /*training=*/false), x));
  auto y = drop_path(x, 0.5, /*training=*/true);
  auto per_sample = y.sum({1, 2}) / 12.0;  // each sample is all 0 or all 2
  EXPECT_TRUE(torch::logical_or(per_sample == 0, per_sample == 2).all().item<bool>());
  EXPECT_NEAR((per_sample == 0).to(torch::kFloat).mean().item<double>(), 0.5, 0.05);
  OCL_EXPECT_THROW_WITH(drop_path(x, 1.0, true), "[0, 1)");
}

TEST(Block, LayerScaleScalesTheResidualBranches) {
  torch::manual_seed(0);
  Block tiny(BlockOptions(16, 2).layer_scale_init(1e-6));
  Block none(BlockOptions(16, 2));
  auto x = torch::randn({2, 5, 16});
  // With γ = 1e-6 the block is nearly the identity; without LayerScale it is not.
  EXPECT_LT((tiny(x) - x).abs().max().item<double>(), 1e-4);
  EXPECT_GT((none(x) - x).abs().max().item<double>(), 1e-2);
}

// The block's hot path as PyTorch's eager ViT runs it (an H100 profile found both): each linear
// is one GEMM that adds its bias (LibTorch's C++ Linear adds it in a second pass over the output
// for 3-D inputs), and q, k, v come apart by one unbind, whose backward stacks the three
// gradients, instead of three selects, whose backward zeroes and adds full-size tensors.
TEST(Block, LinearsAddTheirBiasInTheGemmAndQkvSplitsByOneUnbind) {
  torch::manual_seed(0);
  Block block(BlockOptions(16, 2));
  auto x = torch::randn({2, 5, 16}, torch::requires_grad());
  auto nodes = graph_nodes(block(x).grad_fn());
  EXPECT_EQ(nodes["AddBackward0"], 2) << "the two residual additions, no bias added apart";
  EXPECT_EQ(nodes["AddmmBackward0"], 4) << "qkv, proj, fc1, fc2";
  EXPECT_EQ(nodes["SelectBackward0"], 0);
  EXPECT_EQ(nodes["UnbindBackward0"], 1);
}
