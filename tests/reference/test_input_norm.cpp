// Reference test: model.input_norm: patch (ocl::nn::standardize_patches and the PatchEmbed that
// reads it) equals what PyTorch computes in float64 (fixture written by
// scripts/make_input_norm_reference.py, by unfolding the patches rather than reshaping them), at
// the default eps and a small one, on images with a flat patch, a smooth ramp and a hard edge.
#include <string>

#include "reference/fixture.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/nn/patch_embed.h>

// Named so that the three files compile as one unity batch.
namespace input_norm_reference {
namespace {

constexpr const char* kFixture = OCL_FIXTURE_DIR "/input_norm_reference.safetensors";
constexpr const char* kFormatVersion = "1";
// float64 on both sides, a few additions per value: only the reduction order differs.
constexpr double kRelTol = 1e-12;

const ocl_test::ReferenceFixture& fixture() {
  static const ocl_test::ReferenceFixture f(
      kFixture, kFormatVersion, "/usr/bin/python3 scripts/make_input_norm_reference.py");
  return f;
}

double eps(const std::string& name) { return std::stod(fixture().meta("eps_" + name)); }

TEST(InputNormReference, StandardizedPatchesMatchPyTorch) {
  const auto images = fixture().tensor("images");
  const int64_t p = std::stoll(fixture().meta("patch_size"));
  for (const std::string name : {"default", "small"}) {
    SCOPED_TRACE("eps " + name);
    const auto z = ocl::nn::standardize_patches(images, p, eps(name));
    EXPECT_TRUE(ocl_test::close("standardized_" + name, z, fixture().tensor("standardized_" + name),
                                kRelTol));
    // The flat patch of image 0 (rows 0-3, columns 0-3) is exactly 0 whatever its colour.
    EXPECT_EQ(z.index({0, torch::indexing::Slice(), torch::indexing::Slice(0, 4),
                       torch::indexing::Slice(0, 4)})
                  .abs()
                  .max()
                  .item<double>(),
              0.0);
  }
  // The smooth ramp of image 0 (rows 4-7, columns 8-11; variance 5e-4) stays faint at the
  // default eps (max 0.06) and is stretched more than tenfold at the small one (max 0.77): what
  // eps is for.
  const auto ramp = [&](const std::string& name) {
    return ocl::nn::standardize_patches(images, p, eps(name))
        .index({0, 0, torch::indexing::Slice(4, 8), torch::indexing::Slice(8, 12)})
        .abs()
        .max()
        .item<double>();
  };
  EXPECT_LT(ramp("default"), 0.1);
  EXPECT_GT(ramp("small"), 0.5);
}

TEST(InputNormReference, PatchEmbeddingReadsTheStandardizedPatches) {
  const auto images = fixture().tensor("images");
  const int64_t p = std::stoll(fixture().meta("patch_size"));
  const auto weight = fixture().tensor("proj.weight");
  for (const std::string name : {"default", "small"}) {
    SCOPED_TRACE("eps " + name);
    ocl::nn::PatchEmbed embed(ocl::nn::PatchEmbedOptions(images.size(2), p, weight.size(0))
                                  .input_norm(ocl::nn::InputNorm::Patch)
                                  .input_norm_eps(eps(name)));
    embed->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      embed->proj->weight.copy_(weight);
      embed->proj->bias.copy_(fixture().tensor("proj.bias"));
    }
    EXPECT_TRUE(ocl_test::close("tokens_" + name, embed(images), fixture().tensor("tokens_" + name),
                                kRelTol));
  }
}

TEST(InputNormReference, WithoutTheOptionThePixelsAreProjectedAsTheyCome) {
  // The default embedding must not standardise: the tokens differ from the fixture's.
  const auto images = fixture().tensor("images");
  const auto weight = fixture().tensor("proj.weight");
  ocl::nn::PatchEmbed embed(ocl::nn::PatchEmbedOptions(
      images.size(2), std::stoll(fixture().meta("patch_size")), weight.size(0)));
  embed->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    embed->proj->weight.copy_(weight);
    embed->proj->bias.copy_(fixture().tensor("proj.bias"));
  }
  const auto plain =
      torch::conv2d(images, weight, fixture().tensor("proj.bias"), 4).flatten(2).transpose(1, 2);
  EXPECT_TRUE(ocl_test::close("plain tokens", embed(images), plain, kRelTol));
  EXPECT_FALSE(ocl_test::close("plain vs standardized", embed(images),
                               fixture().tensor("tokens_default"), 1e-3));
}

}  // namespace
}  // namespace input_norm_reference
