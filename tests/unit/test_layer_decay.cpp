// MAE's layer-wise lr decay (util/lr_decay.py) for ViT-B: the layer of every parameter, the
// number of groups, their members, weight decay and lr scales.
#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/nn/vision_transformer.h>
#include <ocl/optim/param_groups.h>

namespace {

using ocl::nn::VisionTransformer;

VisionTransformer finetune_vit(ocl::nn::VisionTransformerOptions options, int64_t classes) {
  return VisionTransformer(options.num_classes(classes)
                               .global_pool(ocl::nn::GlobalPool::Avg)
                               .freeze_patch_embed(false)
                               .trainable_pos_embed(true));
}

TEST(LayerDecay, LayerIdsFollowMae) {
  EXPECT_EQ(ocl::optim::vit_layer_id("cls_token", 12), 0);
  EXPECT_EQ(ocl::optim::vit_layer_id("pos_embed", 12), 0);
  EXPECT_EQ(ocl::optim::vit_layer_id("patch_embed.proj.weight", 12), 0);
  EXPECT_EQ(ocl::optim::vit_layer_id("blocks.0.norm1.weight", 12), 1);
  EXPECT_EQ(ocl::optim::vit_layer_id("blocks.11.mlp.fc2.bias", 12), 12);
  EXPECT_EQ(ocl::optim::vit_layer_id("fc_norm.weight", 12), 13);
  EXPECT_EQ(ocl::optim::vit_layer_id("head.bias", 12), 13);
  EXPECT_EQ(ocl::optim::vit_layer_id("norm.weight", 24), 25);
}

// MAE's param_groups_lrd on timm's vit_base_patch16_224 (global_pool avg, 1000 classes) makes
// 28 groups: layers 0..13, each with a decayed and an undecayed group, lr_scale 0.65^(13 − id).
TEST(LayerDecay, VitBaseGroupsMatchMae) {
  auto vit = finetune_vit(ocl::nn::vit_base_patch16(), 1000);
  const auto groups = ocl::optim::layer_decay_groups(*vit, 12, 0.05, 0.65);
  ASSERT_EQ(groups.size(), 28u);
  std::map<std::string, const ocl::optim::ParamGroup*> by_name;
  int64_t params = 0;
  for (const auto& g : groups) {
    by_name[g.name] = &g;
    for (const auto& p : g.params) params += p.numel();
  }
  int64_t all = 0;
  for (const auto& p : vit->parameters()) all += p.numel();
  EXPECT_EQ(params, all);  // every parameter in exactly one group
  for (int64_t layer = 0; layer <= 13; ++layer) {
    for (const char* kind : {"_decay", "_no_decay"}) {
      const std::string name = "layer_" + std::to_string(layer) + kind;
      ASSERT_TRUE(by_name.count(name)) << name;
      EXPECT_NEAR(by_name[name]->lr_scale, std::pow(0.65, 13 - layer), 1e-15) << name;
      EXPECT_EQ(by_name[name]->weight_decay, std::string(kind) == "_decay" ? 0.05 : 0.0) << name;
    }
  }
  EXPECT_EQ(by_name["layer_13_decay"]->lr_scale, 1.0);
  // Members: layer 0 holds the patch embedding and the tokens, the head is in the last layer.
  const auto& l0 = by_name["layer_0_no_decay"]->names;
  EXPECT_EQ(std::set<std::string>(l0.begin(), l0.end()),
            (std::set<std::string>{"cls_token", "pos_embed", "patch_embed.proj.bias"}));
  EXPECT_EQ(by_name["layer_0_decay"]->names, std::vector<std::string>{"patch_embed.proj.weight"});
  EXPECT_EQ(by_name["layer_13_decay"]->names, std::vector<std::string>{"head.weight"});
  const auto& l13 = by_name["layer_13_no_decay"]->names;
  EXPECT_EQ(std::set<std::string>(l13.begin(), l13.end()),
            (std::set<std::string>{"fc_norm.weight", "fc_norm.bias", "head.bias"}));
  // Block 4 is layer 5: four matrices decayed, eight vectors not.
  EXPECT_EQ(by_name["layer_5_decay"]->names.size(), 4u);
  EXPECT_EQ(by_name["layer_5_no_decay"]->names.size(), 8u);
  EXPECT_EQ(by_name["layer_5_decay"]->names.front().rfind("blocks.4.", 0), 0u);
}

}  // namespace
