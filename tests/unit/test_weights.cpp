// Pre-trained encoder weights (ocl::nn::load_encoder_weights): our own files, folders and
// "none"; all-or-nothing errors naming the keys; head.* dropped, norm.* for mean pooling,
// positions resampled to another grid, other file dtypes.
#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/io/checkpoint.h>
#include <ocl/io/safetensors.h>
#include <ocl/io/state_dict.h>
#include <ocl/nn/pos_embed.h>
#include <ocl/nn/weights.h>

using ocl::io::TensorMap;
using ocl::nn::GlobalPool;
using ocl::nn::load_encoder_weights;
using ocl::nn::VisionTransformer;
using ocl::nn::VisionTransformerOptions;
using Names = std::vector<std::string>;

namespace {

std::string make_temp_dir() { return ocl::test::make_temp_dir("ocl_weights_"); }

// img 16, patch 8 (2x2 grid), D 16, depth 2, 2 heads.
VisionTransformerOptions tiny(int64_t img_size = 16, int64_t dim = 16) {
  return VisionTransformerOptions(img_size, 8, dim, 2, 2);
}

// A model whose every tensor (positions included) is random, as after training, so that a
// tensor loaded or left alone is told apart from the initialisation.
VisionTransformer trained(const VisionTransformerOptions& options, uint64_t seed) {
  torch::manual_seed(seed);
  VisionTransformer vit(options);
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : ocl::io::state_dict(*vit)) t.copy_(torch::randn_like(t));
  return vit;
}

TensorMap snapshot(const VisionTransformer& vit) {
  TensorMap out;
  for (const auto& [name, t] : ocl::io::state_dict(*vit)) out[name] = t.clone();
  return out;
}

// Every tensor of `vit` but those under the `skip` prefixes equals `expected`'s of that name.
::testing::AssertionResult holds(const VisionTransformer& vit, const TensorMap& expected,
                                 const Names& skip = {}) {
  for (const auto& [name, t] : ocl::io::state_dict(*vit)) {
    bool skipped = false;
    for (const auto& prefix : skip) skipped = skipped || name.rfind(prefix, 0) == 0;
    if (skipped) continue;
    const auto it = expected.find(name);
    if (it == expected.end()) return ::testing::AssertionFailure() << "no expected " << name;
    if (!torch::equal(t, it->second.to(t.dtype()))) {
      return ::testing::AssertionFailure() << name << " differs";
    }
  }
  return ::testing::AssertionSuccess();
}

std::string write(const TensorMap& tensors, const std::string& name = "w.safetensors") {
  const std::string path = make_temp_dir() + "/" + name;
  ocl::io::write_safetensors(path, tensors);
  return path;
}

TEST(EncoderWeights, OwnStateDictLoads) {
  auto source = trained(tiny(), 1);
  const auto file = write(ocl::io::state_dict(*source));
  auto vit = VisionTransformer(tiny());
  const auto report = load_encoder_weights(vit, file);
  EXPECT_TRUE(holds(vit, snapshot(source)));
  EXPECT_TRUE(report.loaded);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.path, file);
  EXPECT_EQ(static_cast<size_t>(report.tensors_loaded), ocl::io::state_dict(*vit).size());
  EXPECT_TRUE(report.dropped.empty());
  EXPECT_TRUE(report.left_at_init.empty());
  EXPECT_TRUE(report.pos_embed_resampled.empty());
  // One line when nothing was dropped or resampled.
  EXPECT_EQ(report.describe(),
            "encoder weights: " + std::to_string(report.tensors_loaded) + " tensors from " + file);
}

TEST(EncoderWeights, TheFilesInputNormMustBeTheModels) {
  using ocl::nn::InputNorm;
  const auto patch = tiny().input_norm(InputNorm::Patch);
  EXPECT_EQ(ocl::nn::encoder_metadata(patch),
            (ocl::io::Metadata{{"ocl.input_norm", "patch"}, {"ocl.input_norm_eps", "0.25"}}));
  EXPECT_EQ(ocl::nn::encoder_metadata(tiny()), (ocl::io::Metadata{{"ocl.input_norm", "none"}}));
  EXPECT_EQ(ocl::nn::encoder_metadata(tiny().input_norm(InputNorm::Patch).input_norm_eps(0.1 + 0.2))
                .at("ocl.input_norm_eps"),
            "0.30000000000000004");

  auto source = trained(patch, 11);
  const std::string recorded = make_temp_dir() + "/patch.safetensors";
  ocl::io::write_safetensors(recorded, ocl::io::state_dict(*source),
                             ocl::nn::encoder_metadata(source->options));
  auto same = VisionTransformer(patch);
  load_encoder_weights(same, recorded);
  EXPECT_TRUE(holds(same, snapshot(source)));

  // Plain pixels into a model trained on standardised patches, and the reverse (a file without
  // the key: timm, MAE, converted checkpoints): refused before anything is loaded.
  auto plain = trained(tiny(), 12);
  const auto plain_before = snapshot(plain);
  OCL_EXPECT_THROW_WITH(load_encoder_weights(plain, recorded),
                        "were trained with model.input_norm: patch, but the model is configured "
                        "with model.input_norm: none (set the config's model.input_norm to patch");
  EXPECT_TRUE(holds(plain, plain_before));
  const auto unrecorded = write(ocl::io::state_dict(*source));
  auto standardising = trained(patch, 13);
  const auto standardising_before = snapshot(standardising);
  OCL_EXPECT_THROW_WITH(load_encoder_weights(standardising, unrecorded),
                        "record no ocl.input_norm (taken as none: timm, MAE and converted "
                        "weights), but the model is configured with model.input_norm: patch");
  EXPECT_TRUE(holds(standardising, standardising_before));

  auto other_eps = VisionTransformer(tiny().input_norm(InputNorm::Patch).input_norm_eps(0.5));
  OCL_EXPECT_THROW_WITH(load_encoder_weights(other_eps, recorded),
                        "were trained with model.input_norm_eps: 0.25, but the model is configured "
                        "with model.input_norm_eps: 0.5");
  // A header that names the option without its eps is damaged.
  const std::string damaged = make_temp_dir() + "/damaged.safetensors";
  ocl::io::write_safetensors(damaged, ocl::io::state_dict(*source), {{"ocl.input_norm", "patch"}});
  auto reader = VisionTransformer(patch);
  OCL_EXPECT_THROW_WITH(load_encoder_weights(reader, damaged), "without its ocl.input_norm_eps");
  // A value no version of ocl writes is a damaged header, not advice to configure it.
  const std::string bogus = make_temp_dir() + "/bogus.safetensors";
  ocl::io::write_safetensors(bogus, ocl::io::state_dict(*source), {{"ocl.input_norm", "bogus"}});
  OCL_EXPECT_THROW_WITH(load_encoder_weights(reader, bogus),
                        "have a damaged header: ocl.input_norm is 'bogus', which is no input "
                        "normalisation ocl knows (none, patch)");
  // Likewise an eps that is no positive number: named as damage, not as a value to configure.
  for (const char* eps : {"abc", "nan", "-1", "0", "0.25x"}) {
    const std::string file = make_temp_dir() + "/eps.safetensors";
    ocl::io::write_safetensors(file, ocl::io::state_dict(*source),
                               {{"ocl.input_norm", "patch"}, {"ocl.input_norm_eps", eps}});
    OCL_EXPECT_THROW_WITH(load_encoder_weights(reader, file),
                          std::string("have a damaged header: ocl.input_norm_eps is '") + eps +
                              "', not a number > 0");
  }
}

TEST(EncoderWeights, UnknownKeyThrowsNamingItAndChangesNothing) {
  auto tensors = ocl::io::state_dict(*trained(tiny(), 2));
  tensors["dist_token"] = torch::zeros({1, 1, 16});
  const auto file = write(tensors);
  auto vit = trained(tiny(), 3);
  const auto before = snapshot(vit);
  OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, file), "unexpected: dist_token");
  OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, file), file);
  EXPECT_TRUE(holds(vit, before));
}

TEST(EncoderWeights, MissingBlockKeyThrowsNamingItAndChangesNothing) {
  auto tensors = ocl::io::state_dict(*trained(tiny(), 4));
  tensors.erase("blocks.1.mlp.fc2.weight");
  const auto file = write(tensors);
  auto vit = trained(tiny(), 5);
  const auto before = snapshot(vit);
  OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, file), "missing: blocks.1.mlp.fc2.weight");
  EXPECT_TRUE(holds(vit, before));
}

TEST(EncoderWeights, OtherWidthThrowsNamingBothSizes) {
  const auto file = write(ocl::io::state_dict(*trained(tiny(16, 32), 6)));
  auto vit = trained(tiny(16, 16), 7);
  const auto before = snapshot(vit);
  OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, file), "shape mismatched: blocks.0.attn.qkv");
  OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, file), "width 32");
  EXPECT_TRUE(holds(vit, before));
}

TEST(EncoderWeights, HeadIsDroppedAndLeftAtInit) {
  auto source = trained(tiny().num_classes(10), 8);
  const auto file = write(ocl::io::state_dict(*source));
  auto vit = trained(tiny().num_classes(5), 9);  // another number of classes: head [5, 16]
  const auto head_before = vit->head->weight.clone();
  const auto report = load_encoder_weights(vit, file);
  EXPECT_EQ(report.dropped, (Names{"head.bias", "head.weight"}));
  EXPECT_EQ(report.left_at_init, (Names{"head.bias", "head.weight"}));
  EXPECT_TRUE(torch::equal(vit->head->weight, head_before));
  EXPECT_TRUE(holds(vit, snapshot(source), {"head."}));
  EXPECT_NE(report.describe().find("dropped head.* (2)"), std::string::npos) << report.describe();

  // Into a model without a head: the file's head is still dropped, nothing is missing.
  auto bare = VisionTransformer(tiny());
  EXPECT_EQ(load_encoder_weights(bare, file).dropped, (Names{"head.bias", "head.weight"}));
}

TEST(EncoderWeights, MeanPoolingDropsNormAndKeepsFcNorm) {
  auto source = trained(tiny(), 10);  // token pooling: has norm.*
  const auto file = write(ocl::io::state_dict(*source));
  auto vit = trained(tiny().num_classes(3).global_pool(GlobalPool::Avg), 11);
  const auto fc_norm_before = vit->fc_norm->weight.clone();
  const auto report = load_encoder_weights(vit, file);
  EXPECT_EQ(report.dropped, (Names{"norm.bias", "norm.weight"}));
  EXPECT_EQ(report.left_at_init,
            (Names{"fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"}));
  EXPECT_TRUE(torch::equal(vit->fc_norm->weight, fc_norm_before));
  EXPECT_TRUE(holds(vit, snapshot(source), {"fc_norm.", "head."}));
  EXPECT_NE(report.describe().find("left at init fc_norm.* (2), head.* (2)"), std::string::npos)
      << report.describe();

  // Token pooling needs norm: a file from a mean-pooling model lacks it.
  const auto avg_file = write(ocl::io::state_dict(*vit));
  auto token = VisionTransformer(tiny());
  OCL_EXPECT_THROW_WITH(load_encoder_weights(token, avg_file), "missing: norm.bias");
}

TEST(EncoderWeights, CheckpointFolderLoadsItsEncoder) {
  auto source = trained(tiny(), 12);
  const auto dir = make_temp_dir();
  ocl::io::write_safetensors(dir + "/encoder.safetensors", ocl::io::state_dict(*source),
                             {{"source", "mae_pretrain.pth"}});
  auto vit = VisionTransformer(tiny());
  const auto report = load_encoder_weights(vit, dir);
  EXPECT_EQ(report.path, dir + "/encoder.safetensors");
  EXPECT_EQ(report.source, "mae_pretrain.pth");
  EXPECT_NE(report.describe().find("(converted from mae_pretrain.pth)"), std::string::npos);
  EXPECT_TRUE(holds(vit, snapshot(source)));

  const auto empty = make_temp_dir();
  OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, empty), empty + "' holds no encoder.safetensors");
}

// --weights of a checkpoint folder (ocl_knn, ocl_linprobe, ocl_finetune) checks the encoder
// against the CRC-32 its state.json records, as a resume does: a flipped bit that leaves every
// value finite is named instead of evaluated, whether the folder or the file is given.
TEST(EncoderWeights, ACheckpointsDamagedEncoderIsRefusedByItsChecksum) {
  auto source = trained(tiny(), 14);
  const auto dir = make_temp_dir();
  ocl::io::TrainingState state;
  state.epoch = 1;
  state.global_step = 10;
  const auto ckpt = ocl::io::save_checkpoint(dir, state, ocl::io::state_dict(*source), {}, "", 1);
  auto vit = VisionTransformer(tiny());
  EXPECT_NO_THROW(load_encoder_weights(vit, ckpt));
  const std::string file = ckpt + "/encoder.safetensors";
  std::string bytes = ocl::test::read_file(file);
  bytes[bytes.size() - 3] ^= 0x01;  // a mantissa bit of the last value
  std::ofstream(file, std::ios::binary) << bytes;
  const auto before = snapshot(vit);
  for (const std::string& given : std::vector<std::string>{ckpt, file})
    OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, given),
                          "encoder.safetensors' does not match the CRC-32 state.json recorded");
  EXPECT_TRUE(holds(vit, before));
  // The same bytes outside a checkpoint folder have no checksum to meet.
  const auto loose = make_temp_dir() + "/encoder.safetensors";
  std::ofstream(loose, std::ios::binary) << bytes;
  EXPECT_NO_THROW(load_encoder_weights(vit, loose));
}

TEST(EncoderWeights, NoneKeepsInitialisation) {
  auto vit = trained(tiny(), 13);
  const auto before = snapshot(vit);
  const auto report = load_encoder_weights(vit, "none");
  EXPECT_FALSE(report.loaded);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.tensors_loaded, 0);
  EXPECT_TRUE(holds(vit, before));
  EXPECT_EQ(report.describe(), "encoder weights: none (random initialisation kept)");
}

TEST(EncoderWeights, MissingFileNamesThePath) {
  auto vit = VisionTransformer(tiny());
  const std::string path = make_temp_dir() + "/no_such_weights.safetensors";
  OCL_EXPECT_THROW_WITH(load_encoder_weights(vit, path), "no file or folder at '" + path + "'");
}

TEST(EncoderWeights, PositionsOfAnotherGridAreResampled) {
  auto source = trained(tiny(16), 14);  // 2x2 grid
  const auto tensors = ocl::io::state_dict(*source);
  const auto file = write(tensors);
  auto vit = trained(tiny(32), 15);  // 4x4 grid
  const auto report = load_encoder_weights(vit, file);
  EXPECT_EQ(report.pos_embed_resampled, "2x2 -> 4x4");
  EXPECT_NE(report.describe().find("pos_embed resampled bicubically 2x2 -> 4x4"), std::string::npos)
      << report.describe();
  const auto expected =
      ocl::nn::resample_pos_embed(tensors.at("pos_embed").to(torch::kFloat64), 2, 2, 4, 4);
  EXPECT_TRUE(torch::equal(vit->pos_embed, expected.to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(vit->pos_embed.narrow(1, 0, 1), tensors.at("pos_embed").narrow(1, 0, 1)))
      << "the CLS row must be kept as it is";
  EXPECT_TRUE(holds(vit, snapshot(source), {"pos_embed"}));

  // Downwards too (a 224² checkpoint into a 160² model), and an error when resampling is off.
  auto small = VisionTransformer(tiny(16));
  EXPECT_EQ(load_encoder_weights(small, write(ocl::io::state_dict(*vit))).pos_embed_resampled,
            "4x4 -> 2x2");
  ocl::nn::EncoderLoadOptions no_resample;
  no_resample.resample_pos_embed = false;
  OCL_EXPECT_THROW_WITH(load_encoder_weights(small, write(ocl::io::state_dict(*vit)), no_resample),
                        "resampling is off");
}

TEST(EncoderWeights, Float64AndBfloat16FilesLoadIntoTheModelsDtype) {
  auto source = trained(tiny(), 16);
  TensorMap f64, bf16;
  for (const auto& [name, t] : ocl::io::state_dict(*source)) {
    f64[name] = t.to(torch::kFloat64);
    bf16[name] = t.to(torch::kBFloat16);
  }
  auto vit = VisionTransformer(tiny());
  load_encoder_weights(vit, write(f64));
  EXPECT_TRUE(holds(vit, snapshot(source)));
  load_encoder_weights(vit, write(bf16));
  EXPECT_TRUE(holds(vit, bf16));
  EXPECT_EQ(vit->cls_token.scalar_type(), torch::kFloat32);
}

}  // namespace
