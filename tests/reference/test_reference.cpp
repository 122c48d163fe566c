// Reference test: the OCL step of a tiny ViT in float64 against PyTorch (the fixture written by
// scripts/make_reference.py): mask indices, CLS outputs, loss, figures and the gradient of every
// parameter; plus sin-cos tables, bicubic resampling and the global-negative loss.
#include <set>
#include <string>

#include "reference/fixture.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/ocl.h>

// Named so that the three files compile as one unity batch.
namespace ocl_step_reference {
namespace {

constexpr const char* kFixture = OCL_FIXTURE_DIR "/ocl_reference.safetensors";
// Both sides compute in float64 with the same operation order up to BLAS blocking and
// reduction order, which leaves errors around 1e-15 relative; 1e-10 leaves five orders of
// margin while still catching any real difference (a wrong constant, eps or index shows ≫ 1e-6).
constexpr double kRelTol = 1e-10;

const ocl_test::ReferenceFixture& fixture() {
  static const ocl_test::ReferenceFixture f(kFixture, ocl_test::kOclStepFixtureVersion,
                                            ocl_test::kOclStepFixtureCommand);
  return f;
}

torch::Tensor fixture_tensor(const std::string& name) { return fixture().tensor(name); }

double meta(const std::string& key) { return std::stod(fixture().meta(key)); }

::testing::AssertionResult close(const std::string& what, const torch::Tensor& actual,
                                 const torch::Tensor& expected, double tol = kRelTol) {
  return ocl_test::close(what, actual, expected, tol);
}

ocl::nn::VisionTransformerOptions encoder_options(bool freeze_patch_embed) {
  return ocl::nn::VisionTransformerOptions(
             static_cast<int64_t>(meta("img_size")), static_cast<int64_t>(meta("patch_size")),
             static_cast<int64_t>(meta("embed_dim")), static_cast<int64_t>(meta("depth")),
             static_cast<int64_t>(meta("num_heads")))
      .freeze_patch_embed(freeze_patch_embed);
}

// patch_embed.proj 2 + cls_token 1 + 12 per block (norm1 2, qkv 2, proj 2, norm2 2, fc1 2, fc2 2)
// + norm 2 + logit_scale 1.
size_t expected_parameter_count() {
  return 2 + 1 + 12 * static_cast<size_t>(meta("depth")) + 2 + 1;
}

ocl::ssl::OCL reference_model(bool freeze_patch_embed) {
  ocl::ssl::OCL model(encoder_options(freeze_patch_embed),
                      ocl::ssl::OCLOptions()
                          .mask_ratio(meta("mask_ratio"))
                          .kappa(meta("kappa"))
                          .temperature(meta("temperature"))
                          .max_logit_scale(meta("max_logit_scale")));
  model->to(torch::kFloat64);
  // The table was built for float32; rebuild it in float64 so it is exact to the last bit.
  model->encoder->reset_pos_embed();
  ocl::io::TensorMap weights;
  for (const auto& [name, tensor] : fixture().file().tensors) {
    if (name.rfind("param.", 0) == 0) weights[name.substr(6)] = tensor;
  }
  // pos_embed is a fixed buffer: compare it separately instead of loading it.
  auto report = ocl::io::load_state_dict(*model, weights,
                                         ocl::io::LoadOptions{true, {"encoder.pos_embed"}, {}});
  EXPECT_TRUE(report.ok()) << report.summary();
  return model;
}

TEST(Reference, FixtureHasEveryParameterAndGradient) {
  auto model = reference_model(false);
  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) {
    names.insert(p.key());
    EXPECT_TRUE(fixture().file().tensors.count("grad." + p.key()))
        << "no reference gradient for " << p.key();
  }
  size_t in_fixture = 0;
  for (const auto& kv : fixture().file().tensors) in_fixture += kv.first.rfind("param.", 0) == 0;
  EXPECT_EQ(in_fixture, names.size());
  EXPECT_EQ(names.size(), expected_parameter_count());
}

TEST(Reference, OclStepMatchesPyTorch) {
  auto model = reference_model(/*freeze_patch_embed=*/false);
  EXPECT_TRUE(close("buffer encoder.pos_embed", model->encoder->pos_embed,
                    fixture_tensor("buffer.encoder.pos_embed")));

  auto out = model->forward(fixture_tensor("input.images"), fixture_tensor("input.noise"));
  EXPECT_TRUE(torch::equal(out.split.ids_a, fixture_tensor("out.ids_a")))
      << "group A indices differ";
  EXPECT_TRUE(torch::equal(out.split.ids_b, fixture_tensor("out.ids_b")))
      << "group B indices differ";
  EXPECT_TRUE(close("cls_a", out.cls_a, fixture_tensor("out.cls_a")));
  EXPECT_TRUE(close("cls_b", out.cls_b, fixture_tensor("out.cls_b")));
  EXPECT_TRUE(close("loss", out.loss, fixture_tensor("out.loss")));
  EXPECT_TRUE(close("pos_cos", out.figures.pos_cos, fixture_tensor("out.pos_cos")));
  EXPECT_TRUE(close("neg_cos", out.figures.neg_cos, fixture_tensor("out.neg_cos")));
  EXPECT_TRUE(close("accuracy", out.figures.accuracy, fixture_tensor("out.accuracy")));
  EXPECT_TRUE(close("temperature", out.figures.temperature, fixture_tensor("out.temperature")));

  out.loss.backward();
  int compared = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_TRUE(close("grad " + p.key(), p.value().grad(), fixture_tensor("grad." + p.key())));
    ++compared;
  }
  EXPECT_EQ(static_cast<size_t>(compared), expected_parameter_count());
}

TEST(Reference, IndependentGroupViewsMatchPyTorch) {
  // Group B's tokens come from a second image at the same indices (mask.group_views
  // independent): CLS outputs, loss and every gradient as PyTorch computes them.
  auto model = reference_model(/*freeze_patch_embed=*/false);
  auto out = model->forward(fixture_tensor("input.images"), fixture_tensor("input.noise"), nullptr,
                            fixture_tensor("views.images_b"));
  EXPECT_TRUE(torch::equal(out.split.ids_a, fixture_tensor("out.ids_a")));
  EXPECT_TRUE(torch::equal(out.split.ids_b, fixture_tensor("out.ids_b")));
  EXPECT_TRUE(close("views cls_a", out.cls_a, fixture_tensor("views.cls_a")));
  EXPECT_TRUE(close("views cls_b", out.cls_b, fixture_tensor("views.cls_b")));
  EXPECT_TRUE(close("views loss", out.loss, fixture_tensor("views.loss")));
  EXPECT_TRUE(close("views accuracy", out.figures.accuracy, fixture_tensor("views.accuracy")));
  // Group A is the shared-view step's group A: only B's input changed.
  EXPECT_TRUE(close("views cls_a = shared cls_a", out.cls_a, fixture_tensor("out.cls_a")));
  EXPECT_FALSE(torch::allclose(out.cls_b, fixture_tensor("out.cls_b")));
  out.loss.backward();
  size_t compared = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_TRUE(
        close("views grad " + p.key(), p.value().grad(), fixture_tensor("views.grad." + p.key())));
    ++compared;
  }
  EXPECT_EQ(compared, expected_parameter_count());
  // The same image for both groups is the shared step exactly.
  auto same =
      reference_model(false)->forward(fixture_tensor("input.images"), fixture_tensor("input.noise"),
                                      nullptr, fixture_tensor("input.images"));
  EXPECT_TRUE(close("same image twice", same.loss, fixture_tensor("out.loss")));
  EXPECT_THROW(
      reference_model(false)->forward(fixture_tensor("input.images"), fixture_tensor("input.noise"),
                                      nullptr, fixture_tensor("input.images").narrow(0, 0, 2)),
      c10::Error);
}

TEST(Reference, FrozenPatchEmbedGetsNoGradientAndLeavesTheRestUnchanged) {
  auto model = reference_model(/*freeze_patch_embed=*/true);
  auto out = model->forward(fixture_tensor("input.images"), fixture_tensor("input.noise"));
  EXPECT_TRUE(close("loss", out.loss, fixture_tensor("out.loss")));
  out.loss.backward();
  for (const auto& p : model->named_parameters()) {
    if (p.key().rfind("encoder.patch_embed.", 0) == 0) {
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    } else {
      EXPECT_TRUE(close("grad " + p.key(), p.value().grad(), fixture_tensor("grad." + p.key())));
    }
  }
}

TEST(Reference, WholeImageFeaturesMatchPyTorch) {
  auto model = reference_model(false);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(close("forward_features",
                    model->encoder->forward_features(fixture_tensor("input.images")),
                    fixture_tensor("out.features")));
}

TEST(Reference, SinCosTablesMatchMae) {
  EXPECT_TRUE(close("sincos d32 g4", ocl::nn::sincos_pos_embed_2d(32, 4, 4, true, torch::kFloat64),
                    fixture_tensor("pos.sincos_d32_g4")));
  EXPECT_TRUE(close("sincos d16 g3", ocl::nn::sincos_pos_embed_2d(16, 3, 3, true, torch::kFloat64),
                    fixture_tensor("pos.sincos_d16_g3")));
}

TEST(Reference, BicubicResamplingMatchesPyTorch) {
  const auto table = fixture_tensor("pos.table_g4");
  EXPECT_TRUE(close("4x4 -> 6x6", ocl::nn::resample_pos_embed(table, 4, 4, 6, 6),
                    fixture_tensor("pos.table_g6")));
  EXPECT_TRUE(close("4x4 -> 3x3", ocl::nn::resample_pos_embed(table, 4, 4, 3, 3),
                    fixture_tensor("pos.table_g3")));
}

TEST(Reference, GlobalNegativesLossAndGradientsMatchPyTorch) {
  auto leaf = [](const std::string& n) { return fixture_tensor(n).clone().requires_grad_(true); };
  auto a = leaf("global.a"), b = leaf("global.b"), a_all = leaf("global.a_all"),
       b_all = leaf("global.b_all"), scale = leaf("global.scale");
  auto out = ocl::ssl::symmetric_tsp_loss(a, b, scale, meta("global_kappa"), a_all, b_all,
                                          static_cast<int64_t>(meta("global_offset")));
  EXPECT_TRUE(close("loss", out.loss, fixture_tensor("global.loss")));
  EXPECT_TRUE(close("accuracy", out.accuracy, fixture_tensor("global.accuracy")));
  EXPECT_TRUE(close("neg_cos", out.neg_cos, fixture_tensor("global.neg_cos")));
  out.loss.backward();
  EXPECT_TRUE(close("grad a", a.grad(), fixture_tensor("global.grad_a")));
  EXPECT_TRUE(close("grad b", b.grad(), fixture_tensor("global.grad_b")));
  EXPECT_TRUE(close("grad a_all", a_all.grad(), fixture_tensor("global.grad_a_all")));
  EXPECT_TRUE(close("grad b_all", b_all.grad(), fixture_tensor("global.grad_b_all")));
  EXPECT_TRUE(close("grad scale", scale.grad(), fixture_tensor("global.grad_scale")));
}

}  // namespace
}  // namespace ocl_step_reference
