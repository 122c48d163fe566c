// Fine-tuning's parts (MAE's layer-decay groups are in test_layer_decay.cpp): the fine-tuning
// model (trainable patch embedding and positions, MAE's head initialisation), the
// model EMA's update rule, and the classifier evaluation's figures on a model with known logits.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/synthetic.h>
#include <ocl/data/transforms.h>
#include <ocl/engine/finetune.h>
#include <ocl/io/config.h>

namespace {

using ocl::nn::VisionTransformer;

ocl::io::Config tiny_config() {
  ocl::io::Config c;
  c.model.arch = "custom";
  c.model.img_size = 16;
  c.model.patch_size = 4;
  c.model.embed_dim = 32;
  c.model.depth = 2;
  c.model.num_heads = 2;
  c.finetune.drop_path = 0.1;
  return c;
}

TEST(FinetuneModel, EverythingTrainsAndTheHeadStartsNearZero) {
  auto model = ocl::engine::build_finetune_model(tiny_config(), 7);
  const auto params = model->named_parameters();
  for (const char* name :
       {"patch_embed.proj.weight", "pos_embed", "cls_token", "head.weight", "fc_norm.weight"}) {
    ASSERT_NE(params.find(name), nullptr) << name;
    EXPECT_TRUE(params[name].requires_grad()) << name;
  }
  EXPECT_EQ(params.find("norm.weight"), nullptr);  // average pooling: fc_norm instead
  const auto& w = model->head->weight;
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{7, 32}));
  // N(0, (2e-5)²): 224 draws, all within 6σ, not all zero.
  EXPECT_LT(w.abs().max().item<double>(), 1.2e-4);
  EXPECT_GT(w.abs().max().item<double>(), 0.0);
  EXPECT_EQ(model->head->bias.abs().max().item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(model->options.drop_path_rate(), 0.1);
  // The same config gives the same model.
  auto again = ocl::engine::build_finetune_model(tiny_config(), 7);
  EXPECT_TRUE(torch::equal(again->head->weight, w));
  EXPECT_TRUE(torch::equal(again->blocks->parameters()[0], model->blocks->parameters()[0]));
}

TEST(ModelEma, UpdateIsTheExponentialAverage) {
  auto model = ocl::engine::build_finetune_model(tiny_config(), 3);
  ocl::optim::ModelEma ema(model, 0.9);
  const auto before = model->head->bias.clone();
  const auto qkv_before = model->named_parameters()["blocks.1.attn.qkv.weight"].clone();
  {
    torch::NoGradGuard no_grad;
    model->head->bias.fill_(1.0);
    model->named_parameters()["blocks.1.attn.qkv.weight"].add_(2.0);
  }
  ema.update(model);
  EXPECT_TRUE(torch::allclose(ema.model()->head->bias, 0.9 * before + 0.1));
  EXPECT_TRUE(torch::allclose(ema.model()->named_parameters()["blocks.1.attn.qkv.weight"],
                              qkv_before + 0.2, 1e-6, 1e-6));
  ema.update(model);
  EXPECT_TRUE(torch::allclose(ema.model()->head->bias, 0.81 * before + 0.19));
  // The EMA copy is its own: the model's parameters are untouched, and it does not train.
  EXPECT_TRUE(torch::allclose(model->head->bias, torch::ones({3})));
  EXPECT_FALSE(ema.model()->head->bias.requires_grad());
}

// A head with zero weights and bias b predicts argmax b for every image: top-1 is the share of
// that class, top-5 the share of the five largest, the loss lse(b) − b[label].
TEST(ClassifierEvaluation, FiguresOfKnownLogits) {
  auto model = ocl::engine::build_finetune_model(tiny_config(), 8);
  const std::vector<float> bias = {0.5f, 3.0f, -1.0f, 2.0f, 0.0f, 1.0f, 2.5f, -2.0f};
  {
    torch::NoGradGuard no_grad;
    model->head->weight.zero_();
    model->head->bias.copy_(torch::tensor(bias));
  }
  ocl::data::SyntheticOptions so;
  so.size = 21;  // labels i mod 8: classes 0..4 three times, 5..7 twice
  so.num_classes = 8;
  so.image_size = 16;
  ocl::data::SyntheticDataset val(so);
  auto transform = ocl::data::resize_center_crop(16, 16);
  model->train();
  const auto acc =
      ocl::engine::evaluate_classifier(model, val, *transform, torch::kCPU, 4, 1, false);
  EXPECT_TRUE(model->is_training());  // the mode is restored
  EXPECT_EQ(acc.images, 21);
  // argmax = class 1 (3 images); top-5 = {1, 6, 3, 5, 0} (3 + 2 + 3 + 2 + 3 = 13 images).
  EXPECT_NEAR(acc.top1, 100.0 * 3 / 21, 1e-9);
  EXPECT_NEAR(acc.top5, 100.0 * 13 / 21, 1e-9);
  const auto b = torch::tensor(bias, torch::kFloat64);
  const double lse = torch::logsumexp(b, 0).item<double>();
  double loss = 0;
  for (int64_t i = 0; i < 21; ++i) loss += lse - bias[i % 8];
  EXPECT_NEAR(acc.loss, loss / 21, 1e-5);
}

}  // namespace
