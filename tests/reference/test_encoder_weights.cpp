// Reference test: pre-trained weights through scripts/convert_checkpoint.py and
// ocl::nn::load_encoder_weights give the CLS features PyTorch computes with them (fixture
// written by scripts/make_encoder_reference.py), at the checkpoint's grid and at a smaller one
// after bicubic resampling of the positions.
#include <stdlib.h>

#include <string>

#include "reference/fixture.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/nn/weights.h>
#include <ocl/ocl.h>

// Named so that the three files compile as one unity batch.
namespace encoder_weights_reference {
namespace {

constexpr const char* kFixture = OCL_FIXTURE_DIR "/encoder_reference.safetensors";
constexpr const char* kFormatVersion = "1";
// Both sides compute in float64 on the same float32-representable weights and images, so only
// BLAS blocking and reduction order differ (≈1e-15 relative); 1e-10 leaves margin while any
// wrong or skipped weight (a dropped norm, positions not loaded or resampled differently)
// shows at ≫ 1e-4.
constexpr double kRelTol = 1e-10;

const ocl_test::ReferenceFixture& fixture() {
  static const ocl_test::ReferenceFixture f(kFixture, kFormatVersion,
                                            "/usr/bin/python3 scripts/make_encoder_reference.py");
  return f;
}

torch::Tensor fixture_tensor(const std::string& name) { return fixture().tensor(name); }

int64_t meta(const std::string& key) { return std::stoll(fixture().meta(key)); }

::testing::AssertionResult close(const std::string& what, const torch::Tensor& actual,
                                 const torch::Tensor& expected, double tol = kRelTol) {
  return ocl_test::close(what, actual, expected, tol);
}

// The converted weights (float32, as convert_checkpoint.py wrote them) in a fresh folder as a
// checkpoint's encoder.safetensors, with the converter's metadata; returns the folder.
std::string write_weights_folder() {
  std::string dir = testing::TempDir() + "ocl_encref_XXXXXX";
  EXPECT_NE(::mkdtemp(dir.data()), nullptr);
  ocl::io::TensorMap weights;
  for (const auto& [name, tensor] : fixture().file().tensors) {
    if (name.rfind("weights.", 0) == 0) weights[name.substr(8)] = tensor;
  }
  ocl::io::write_safetensors(dir + "/encoder.safetensors", weights,
                             {{"format", "pt"},
                              {"source", fixture().meta("weights_source")},
                              {"converted_by", fixture().meta("weights_converted_by")}});
  return dir;
}

size_t weight_count() {
  size_t n = 0;
  for (const auto& kv : fixture().file().tensors) n += kv.first.rfind("weights.", 0) == 0;
  return n;
}

// A float64 ViT at `img_size` with the fixture's sizes, no head, CLS pooling: forward() is the
// CLS output after the final norm.
ocl::nn::VisionTransformer float64_vit(int64_t img_size) {
  ocl::nn::VisionTransformer vit(ocl::nn::VisionTransformerOptions(
      img_size, meta("patch_size"), meta("embed_dim"), meta("depth"), meta("num_heads")));
  vit->to(torch::kFloat64);
  vit->eval();
  return vit;
}

TEST(EncoderWeightsReference, ConvertedCheckpointGivesPyTorchFeatures) {
  // Weights of the float32 file, a float64 model: the conversion is exact.
  ASSERT_EQ(fixture().file().tensors.at("weights.pos_embed").scalar_type(), torch::kFloat32);
  auto vit = float64_vit(meta("img_size"));
  const auto report = ocl::nn::load_encoder_weights(vit, write_weights_folder());
  EXPECT_TRUE(report.loaded);
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_EQ(static_cast<size_t>(report.tensors_loaded), weight_count());
  EXPECT_TRUE(report.dropped.empty());
  EXPECT_TRUE(report.left_at_init.empty());
  EXPECT_TRUE(report.pos_embed_resampled.empty());
  EXPECT_NE(report.describe().find(fixture().meta("weights_source")), std::string::npos)
      << report.describe();

  EXPECT_TRUE(close("pos_embed", vit->pos_embed, fixture_tensor("weights.pos_embed")));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(close("CLS after norm",
                    vit->forward(fixture_tensor("input.images").to(torch::kFloat64)),
                    fixture_tensor("out.cls")));
}

TEST(EncoderWeightsReference, ResampledPositionsGivePyTorchFeatures) {
  const int64_t img = meta("resampled_img_size"), patch = meta("patch_size");
  const int64_t old_grid = meta("img_size") / patch, new_grid = img / patch;
  auto vit = float64_vit(img);
  const auto report =
      ocl::nn::load_encoder_weights(vit, write_weights_folder() + "/encoder.safetensors");
  EXPECT_TRUE(report.ok()) << report.summary();
  const std::string expected_grids = std::to_string(old_grid) + "x" + std::to_string(old_grid) +
                                     " -> " + std::to_string(new_grid) + "x" +
                                     std::to_string(new_grid);
  EXPECT_EQ(report.pos_embed_resampled, expected_grids);
  EXPECT_NE(report.describe().find("pos_embed resampled"), std::string::npos) << report.describe();

  EXPECT_TRUE(
      close("resampled pos_embed", vit->pos_embed, fixture_tensor("out.pos_embed_resampled")));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(close("CLS after norm",
                    vit->forward(fixture_tensor("input.images_resampled").to(torch::kFloat64)),
                    fixture_tensor("out.cls_resampled")));
}

}  // namespace
}  // namespace encoder_weights_reference
