// scripts/export_weights.py against what its targets load: the key lists of MAE's ViT (what
// detectron2's ViTDet and BEiT/MAE segmentation code take) and of mmsegmentation's
// VisionTransformer, written here from those projects' model definitions; the exported weights
// computing the encoder's own features; the position table resampled as ocl's C++ loader does;
// the refusal of an encoder trained with model.input_norm.
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <string>

#include "test_util.h"
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <ocl/io/checkpoint.h>
#include <ocl/io/files.h>
#include <ocl/io/safetensors.h>
#include <ocl/io/state_dict.h>
#include <ocl/nn/pos_embed.h>
#include <ocl/nn/vision_transformer.h>
#include <ocl/nn/weights.h>

namespace {

using ocl::test::make_temp_dir;
using ocl::test::run_exe;

constexpr const char* kPython = "/usr/bin/python3";
const std::string kScript = OCL_SOURCE_DIR "/scripts/export_weights.py";
const std::string kToSafetensors = OCL_SOURCE_DIR "/tests/integration/pth_to_safetensors.py";

// MAE's encoder (timm VisionTransformer with qkv_bias, no LayerScale, final norm), as
// mae_pretrain_vit_*.pth holds it.
std::set<std::string> mae_keys(int depth) {
  std::set<std::string> keys = {
      "cls_token",   "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
      "norm.weight", "norm.bias"};
  for (int i = 0; i < depth; ++i) {
    for (const char* k : {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                          "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                          "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"})
      keys.insert("blocks." + std::to_string(i) + "." + k);
  }
  return keys;
}

// mmsegmentation's VisionTransformer (mmseg/models/backbones/vit.py, final_norm=True): PatchEmbed's
// conv `projection`; per TransformerEncoderLayer ln1, mmcv's MultiheadAttention around
// nn.MultiheadAttention (`attn.attn`), ln2, and mmcv's FFN (first Linear at layers.0.0, second at
// layers.1); the backbone's final norm `ln1`.
std::set<std::string> mmseg_keys(int depth) {
  std::set<std::string> keys = {
      "cls_token",  "pos_embed", "patch_embed.projection.weight", "patch_embed.projection.bias",
      "ln1.weight", "ln1.bias"};
  for (int i = 0; i < depth; ++i) {
    for (const char* k :
         {"ln1.weight", "ln1.bias", "attn.attn.in_proj_weight", "attn.attn.in_proj_bias",
          "attn.attn.out_proj.weight", "attn.attn.out_proj.bias", "ln2.weight", "ln2.bias",
          "ffn.layers.0.0.weight", "ffn.layers.0.0.bias", "ffn.layers.1.weight",
          "ffn.layers.1.bias"})
      keys.insert("layers." + std::to_string(i) + "." + k);
  }
  return keys;
}

std::set<std::string> names(const ocl::io::TensorMap& tensors) {
  std::set<std::string> result;
  for (const auto& [name, t] : tensors) result.insert(name);
  return result;
}

// A small ViT (32 px, patch 4, D 32, 2 blocks) whose parameters are all drawn at random, so that
// no value is left at an initialisation a wrong mapping could reproduce by chance.
ocl::nn::VisionTransformer random_encoder(ocl::nn::VisionTransformerOptions options, int seed) {
  torch::manual_seed(seed);
  ocl::nn::VisionTransformer model(options);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.copy_(torch::randn_like(p) * 0.2 + 0.05);
  model->eval();
  return model;
}

ocl::nn::VisionTransformerOptions small_options() {
  return ocl::nn::VisionTransformerOptions(32, 4, 32, 2, 2);
}

std::string write_weights(const std::string& dir, const std::string& file,
                          const ocl::nn::VisionTransformer& model) {
  const std::string path = dir + "/" + file;
  ocl::io::write_safetensors(path, ocl::io::state_dict(*model),
                             ocl::nn::encoder_metadata(model->options));
  return path;
}

struct Exported {
  int rc = -1;
  std::string output;     // the script's stdout and stderr
  std::string container;  // "model" for {"model": ...}, "" for a plain state dict
  ocl::io::TensorMap tensors;
};

Exported export_weights(const std::string& source, const std::string& args,
                        const std::string& out) {
  Exported e;
  e.rc = run_exe(kPython, kScript + " " + source + " " + args + " -o " + out, &e.output);
  if (e.rc != 0) return e;
  std::string log;
  EXPECT_EQ(run_exe(kPython, kToSafetensors + " " + out + " " + out + ".safetensors", &log), 0)
      << log;
  auto file = ocl::io::read_safetensors(out + ".safetensors");
  e.container = file.metadata["container"];
  e.tensors = std::move(file.tensors);
  return e;
}

class ExportWeights : public testing::Test {
 protected:
  void SetUp() override {
    std::string log;
    if (run_exe(kPython, "-c 'import torch'", &log) != 0)
      GTEST_SKIP() << kPython << " has no PyTorch (python3-torch, which scripts/install-deps.sh "
                   << "installs on the host; the Debian 13 roots leave it out)";
    dir_ = make_temp_dir("ocl_export_");
  }
  std::string dir_;
};

// LayerScale and all: the mae export has exactly MAE's keys, and a plain timm ViT (no
// LayerScale) loaded strictly from it computes the original encoder's features.
TEST_F(ExportWeights, MaeFormatHoldsMaesKeysAndComputesTheEncodersFeatures) {
  auto options = small_options().layer_scale_init(0.1);
  auto model = random_encoder(options, 1);
  write_weights(dir_, "encoder.safetensors", model);

  const auto e = export_weights(dir_, "--format mae", dir_ + "/mae.pth");  // a checkpoint folder
  ASSERT_EQ(e.rc, 0) << e.output;
  EXPECT_EQ(e.container, "model");
  EXPECT_EQ(names(e.tensors), mae_keys(2));
  EXPECT_NE(e.output.find("folded 4 LayerScale gammas"), std::string::npos) << e.output;

  ocl::nn::VisionTransformer plain(small_options());
  ocl::io::load_state_dict(*plain, e.tensors);  // strict: every key used, none missing
  plain->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({3, 3, 32, 32});
  const auto want = model->forward_features(images), got = plain->forward_features(images);
  EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-5))
      << "largest difference " << (got - want).abs().max().item<double>();
  // Everything but the two folded layers is the source's tensor unchanged.
  const auto source = ocl::io::state_dict(*model);
  for (const auto& [name, t] : e.tensors) {
    if (name.find("attn.proj") != std::string::npos || name.find("mlp.fc2") != std::string::npos)
      continue;
    EXPECT_TRUE(torch::equal(t, source.at(name))) << name;
  }
}

// The same weights under mmsegmentation's names: each tensor is the mae export's under the
// name vit2mmseg gives it.
TEST_F(ExportWeights, MmsegFormatHoldsMmsegsKeysWithTheSameValues) {
  auto model = random_encoder(small_options(), 2);
  const std::string source = write_weights(dir_, "encoder.safetensors", model);
  const auto mae = export_weights(source, "--format mae", dir_ + "/mae.pth");
  const auto mmseg = export_weights(source, "--format mmseg", dir_ + "/mmseg.pth");
  ASSERT_EQ(mae.rc, 0) << mae.output;
  ASSERT_EQ(mmseg.rc, 0) << mmseg.output;
  EXPECT_EQ(mmseg.container, "");
  EXPECT_EQ(names(mmseg.tensors), mmseg_keys(2));

  const std::vector<std::pair<std::string, std::string>> block = {
      {"ln1.weight", "norm1.weight"},
      {"ln1.bias", "norm1.bias"},
      {"attn.attn.in_proj_weight", "attn.qkv.weight"},
      {"attn.attn.in_proj_bias", "attn.qkv.bias"},
      {"attn.attn.out_proj.weight", "attn.proj.weight"},
      {"attn.attn.out_proj.bias", "attn.proj.bias"},
      {"ln2.weight", "norm2.weight"},
      {"ln2.bias", "norm2.bias"},
      {"ffn.layers.0.0.weight", "mlp.fc1.weight"},
      {"ffn.layers.0.0.bias", "mlp.fc1.bias"},
      {"ffn.layers.1.weight", "mlp.fc2.weight"},
      {"ffn.layers.1.bias", "mlp.fc2.bias"}};
  std::vector<std::pair<std::string, std::string>> pairs = {
      {"cls_token", "cls_token"},
      {"pos_embed", "pos_embed"},
      {"patch_embed.projection.weight", "patch_embed.proj.weight"},
      {"patch_embed.projection.bias", "patch_embed.proj.bias"},
      {"ln1.weight", "norm.weight"},
      {"ln1.bias", "norm.bias"}};
  for (int i = 0; i < 2; ++i) {
    for (const auto& [m, t] : block)
      pairs.emplace_back("layers." + std::to_string(i) + "." + m,
                         "blocks." + std::to_string(i) + "." + t);
  }
  for (const auto& [m, t] : pairs)
    EXPECT_TRUE(torch::equal(mmseg.tensors.at(m), mae.tensors.at(t))) << m << " vs " << t;
}

// --img-size 64 on a 32 px, patch-4 encoder: an 8x8 grid resampled to 16x16, equal to ocl's own
// resampling (the C++ loader's, nn::resample_pos_embed); a size off the patch grid is refused.
TEST_F(ExportWeights, ImgSizeResamplesPositionsAsOclsLoaderDoes) {
  auto model = random_encoder(small_options(), 3);
  const std::string source = write_weights(dir_, "encoder.safetensors", model);
  const auto e = export_weights(source, "--format mmseg --img-size 64", dir_ + "/mmseg.pth");
  ASSERT_EQ(e.rc, 0) << e.output;
  const auto& pos = e.tensors.at("pos_embed");
  ASSERT_EQ(pos.sizes(), torch::IntArrayRef({1, 1 + 16 * 16, 32}));
  const auto want = ocl::nn::resample_pos_embed(model->pos_embed, 8, 8, 16, 16);
  EXPECT_TRUE(torch::allclose(pos, want, 1e-6, 1e-6))
      << "largest difference " << (pos - want).abs().max().item<double>();
  EXPECT_FALSE(torch::allclose(pos.narrow(1, 1, 64), model->pos_embed.narrow(1, 1, 64)));

  const auto off = export_weights(source, "--format mae --img-size 62", dir_ + "/off.pth");
  EXPECT_NE(off.rc, 0);
  EXPECT_NE(off.output.find("--img-size 62 is not a multiple of the patch size 4"),
            std::string::npos)
      << off.output;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/off.pth"));
}

// Downstream code feeds the patch projection plain pixels: an encoder that standardises each
// patch first is refused with the reason, and exported only when asked, saying what to add.
TEST_F(ExportWeights, InputNormEncoderIsRefusedUnlessAllowed) {
  auto model =
      random_encoder(small_options().input_norm(ocl::nn::InputNorm::Patch).input_norm_eps(0.5), 4);
  const std::string source = write_weights(dir_, "encoder.safetensors", model);
  const auto refused = export_weights(source, "--format mae", dir_ + "/refused.pth");
  EXPECT_NE(refused.rc, 0);
  EXPECT_NE(refused.output.find("model.input_norm: patch"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("sqrt(variance + 0.5)"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("--allow-input-norm"), std::string::npos) << refused.output;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/refused.pth"));

  const auto allowed =
      export_weights(source, "--format mae --allow-input-norm", dir_ + "/allowed.pth");
  ASSERT_EQ(allowed.rc, 0) << allowed.output;
  EXPECT_NE(allowed.output.find("must standardise its input"), std::string::npos) << allowed.output;
  EXPECT_EQ(names(allowed.tensors), mae_keys(2));
}

// A tensor the target model does not have, or one it needs, fails the export naming it: loaders
// that skip unknown keys would otherwise leave a layer at its initialisation unnoticed.
TEST_F(ExportWeights, AnExtraOrMissingTensorFailsNamingIt) {
  auto tensors = ocl::io::state_dict(*random_encoder(small_options(), 5));
  auto extra = tensors;
  extra["blocks.0.attn.q_norm.weight"] = torch::ones({16});
  ocl::io::write_safetensors(dir_ + "/extra.safetensors", extra);
  const auto e = export_weights(dir_ + "/extra.safetensors", "--format mmseg", dir_ + "/e.pth");
  EXPECT_NE(e.rc, 0);
  EXPECT_NE(e.output.find("extra ['blocks.0.attn.q_norm.weight']"), std::string::npos) << e.output;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/e.pth"));

  auto missing = tensors;
  missing.erase("blocks.1.mlp.fc2.bias");
  ocl::io::write_safetensors(dir_ + "/missing.safetensors", missing);
  const auto m = export_weights(dir_ + "/missing.safetensors", "--format mae", dir_ + "/m.pth");
  EXPECT_NE(m.rc, 0);
  EXPECT_NE(m.output.find("missing ['blocks.1.mlp.fc2.bias']"), std::string::npos) << m.output;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/m.pth"));
}

// OUT is written whole or not at all: a write that fails mid-file (a file-size limit stands in for
// a full disk; CPython ignores SIGXFSZ, so the write fails with EFBIG) is named and leaves neither
// OUT nor OUT.tmp, and the script exits 1 instead of aborting in torch.save's writer. A path that
// is not a regular file is refused even with --force and left as it was.
TEST_F(ExportWeights, AFailedWriteOrAPathNotARegularFileLeavesNothing) {
  const std::string source =
      write_weights(dir_, "encoder.safetensors", random_encoder(small_options(), 6));
  const std::string target = dir_ + "/limited.pth";
  std::string out;
  const int rc = run_exe("bash",
                         "-c 'ulimit -f 16; exec " + std::string(kPython) + " " + kScript + " " +
                             source + " --format mae -o " + target + "'",
                         &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("cannot write '" + target + "'"), std::string::npos) << out;
  EXPECT_EQ(out.find("Traceback"), std::string::npos) << out;
  EXPECT_EQ(out.find("terminate called"), std::string::npos) << out;
  EXPECT_FALSE(ocl::io::path_exists(target));
  EXPECT_FALSE(ocl::io::path_exists(target + ".tmp"));

  const std::string fifo = dir_ + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto refused = export_weights(source, "--format mae --force", fifo);
  EXPECT_NE(refused.rc, 0);
  EXPECT_NE(refused.output.find("exists and is not a regular file (a pipe)"), std::string::npos)
      << refused.output;
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

// A checkpoint's encoder that fails the CRC-32 its state.json records, or weights that are not
// finite (a diverged run), are named and not exported.
TEST_F(ExportWeights, ADamagedOrNonFiniteEncoderIsNotExported) {
  ocl::io::TrainingState state;
  state.epoch = 1;
  const auto ckpt = ocl::io::save_checkpoint(
      dir_, state, ocl::io::state_dict(*random_encoder(small_options(), 7)), {}, "", 1);
  const std::string file = ckpt + "/encoder.safetensors";
  std::string bytes = ocl::test::read_file(file);
  bytes[bytes.size() - 3] ^= 0x01;
  std::ofstream(file, std::ios::binary) << bytes;
  const auto damaged = export_weights(ckpt, "--format mae", dir_ + "/damaged.pth");
  EXPECT_NE(damaged.rc, 0);
  EXPECT_NE(damaged.output.find("does not match the CRC-32 state.json recorded"), std::string::npos)
      << damaged.output;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/damaged.pth"));

  auto tensors = ocl::io::state_dict(*random_encoder(small_options(), 8));
  tensors["blocks.1.mlp.fc1.weight"][0][0] = std::numeric_limits<float>::quiet_NaN();
  ocl::io::write_safetensors(dir_ + "/nan.safetensors", tensors);
  const auto nan = export_weights(dir_ + "/nan.safetensors", "--format mae", dir_ + "/nan.pth");
  EXPECT_NE(nan.rc, 0);
  EXPECT_NE(nan.output.find("non-finite values in ['blocks.1.mlp.fc1.weight']"), std::string::npos)
      << nan.output;
  EXPECT_FALSE(ocl::io::path_exists(dir_ + "/nan.pth"));
}

// Fine-tuning's best model (global average pooling, a classifier head): the head is dropped and
// its fc_norm becomes the final norm.
TEST_F(ExportWeights, FineTunedModelLosesItsHeadAndKeepsItsNorm) {
  auto model =
      random_encoder(small_options().num_classes(5).global_pool(ocl::nn::GlobalPool::Avg), 6);
  write_weights(dir_, "model-best.safetensors", model);
  const auto e = export_weights(dir_, "--format mae", dir_ + "/mae.pth");
  ASSERT_EQ(e.rc, 0) << e.output;
  EXPECT_EQ(names(e.tensors), mae_keys(2));
  EXPECT_NE(e.output.find("dropped the classifier head"), std::string::npos) << e.output;
  EXPECT_TRUE(torch::equal(e.tensors.at("norm.weight"), model->fc_norm->weight));
}

}  // namespace
