// ocl_preview end to end: the PNG it writes holds, cell for cell, the held-out view of each
// training image and the copies the two token groups read, as the library makes them.
#include <string>
#include <vector>

#include "test_util.h"
#include <gtest/gtest.h>

#include <ocl/data/factory.h>
#include <ocl/data/png.h>
#include <ocl/io/config.h>

#ifdef OCL_PREVIEW_EXE
namespace {

using ocl::data::Image;

Image read_png(const std::string& path) {
  const std::string bytes = ocl::test::read_file(path);
  auto image = ocl::data::decode_png(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_TRUE(image.has_value()) << path;
  return image.value_or(Image{});
}

// The cell at (row, column) of a sheet of `side`-pixel cells, 2 pixels apart, zoom 1.
Image cell(const Image& sheet, int row, int column, int side) {
  Image out;
  out.height = out.width = side;
  for (int y = 0; y < side; ++y) {
    const uint8_t* from =
        &sheet.pixels[(static_cast<size_t>(2 + row * (side + 2) + y) * sheet.width + 2 +
                       column * (side + 2)) *
                      3];
    out.pixels.insert(out.pixels.end(), from, from + side * 3);
  }
  return out;
}

const std::vector<std::string> kSet = {"model.img_size=32", "data.synthetic_noise=20",
                                       "data.synthetic_gradient=60", "data.synthetic_strokes=2"};

std::string preview_args(const std::string& png, const std::vector<std::string>& extra) {
  std::string args = "--config " OCL_SOURCE_DIR "/configs/quickstart_robust.yaml --output " + png;
  for (const auto& kv : kSet) args += " --set " + kv;
  for (const auto& a : extra) args += " " + a;
  return args;
}

}  // namespace

TEST(PreviewApp, CellsAreTheHeldOutViewAndEachGroupsCopy) {
  const auto dir = ocl::test::make_temp_dir("ocl_preview");
  const std::string png = dir + "/views.png";
  std::string output;
  ASSERT_EQ(ocl::test::run_exe(OCL_PREVIEW_EXE,
                               preview_args(png, {"--images 3", "--first 5", "--zoom 1"}), &output),
            0)
      << output;
  EXPECT_NE(output.find("3 images of synthetic"), std::string::npos) << output;
  EXPECT_NE(output.find("each group its own copy"), std::string::npos) << output;
  const Image sheet = read_png(png);
  ASSERT_EQ(sheet.width, 3 * 34 + 2);
  ASSERT_EQ(sheet.height, 3 * 34 + 2);
  // The same images and copies from the library, as the loader's epoch 0 draws them.
  std::vector<std::string> overrides = kSet;
  const auto config =
      ocl::io::load_config(OCL_SOURCE_DIR "/configs/quickstart_robust.yaml", overrides);
  const auto dataset = ocl::data::make_dataset(config.data, 32, true, config.train.seed);
  const auto held_out = ocl::data::make_transform(config.data, 32, false);
  const auto pretrain = ocl::data::make_pretrain_transform(config.data, 32, 2);
  for (int row = 0; row < 3; ++row) {
    const auto image = dataset->load(5 + row);
    const uint64_t seed = ocl::data::sample_seed(config.train.seed, 0, 5 + row);
    const auto copies = pretrain->apply_views(*image, seed);
    EXPECT_EQ(cell(sheet, row, 0, 32).pixels, held_out->apply(*image, seed).pixels) << row;
    EXPECT_EQ(cell(sheet, row, 1, 32).pixels, copies[0].pixels) << row;
    EXPECT_EQ(cell(sheet, row, 2, 32).pixels, copies[1].pixels) << row;
    EXPECT_NE(copies[0].pixels, copies[1].pixels) << row;  // independent views differ
  }
  // Shared views: both group columns are the one copy.
  output.clear();
  ASSERT_EQ(ocl::test::run_exe(
                OCL_PREVIEW_EXE,
                preview_args(png, {"--images 2", "--zoom 1", "--set", "mask.group_views=shared"}),
                &output),
            0)
      << output;
  const Image shared = read_png(png);
  for (int row = 0; row < 2; ++row)
    EXPECT_EQ(cell(shared, row, 1, 32).pixels, cell(shared, row, 2, 32).pixels) << row;
  // A grid of the held-out views, 4 a row, zoomed: 5 images make two rows.
  output.clear();
  ASSERT_EQ(ocl::test::run_exe(OCL_PREVIEW_EXE,
                               preview_args(png, {"--images 5", "--grid 4", "--zoom 2"}), &output),
            0)
      << output;
  const Image grid = read_png(png);
  EXPECT_EQ(grid.width, 4 * 66 + 2);
  EXPECT_EQ(grid.height, 2 * 66 + 2);
  // Past the split: refused naming the numbers, and nothing written over the earlier file.
  output.clear();
  EXPECT_EQ(ocl::test::run_exe(OCL_PREVIEW_EXE, preview_args(png, {"--first 4095", "--images 2"}),
                               &output),
            1);
  EXPECT_NE(output.find("reach past the training split's 4096 images"), std::string::npos)
      << output;
  EXPECT_EQ(read_png(png).width, grid.width);
  // A sheet too large to allocate is refused naming the options (it ended in a bare
  // std::bad_alloc after an int overflow), and so is an empty --output.
  for (const char* huge :
       {"--zoom 2000000000", "--grid 100000000 --images 2048", "--images 9223372036854775807"}) {
    output.clear();
    EXPECT_EQ(ocl::test::run_exe(OCL_PREVIEW_EXE, preview_args(png, {huge}), &output), 1) << huge;
    EXPECT_TRUE(output.find("lower them") != std::string::npos ||
                output.find("reach past the training split") != std::string::npos)
        << huge << ": " << output;
    EXPECT_EQ(output.find("bad_alloc"), std::string::npos) << output;
  }
  output.clear();
  EXPECT_EQ(ocl::test::run_exe(OCL_PREVIEW_EXE, preview_args("''", {}), &output), 2) << output;
  EXPECT_NE(output.find("--output is empty"), std::string::npos) << output;
  EXPECT_EQ(read_png(png).width, grid.width);
}
#endif
