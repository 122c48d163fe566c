// ocl_preview: a PNG of what a config's pre-training reads. One row per training image: its
// held-out view (what the kNN monitor and evaluation see), then the copy each token group reads
// in the first epoch, as the loader draws it. With --grid N, the held-out view alone, N a row.
//
//   ocl_preview --config configs/quickstart_robust.yaml --output robust.png --images 12
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "app_common.h"
#include <CLI/CLI.hpp>

#include <ocl/data/factory.h>
#include <ocl/data/png.h>
#include <ocl/data/transforms.h>
#include <ocl/io/config.h>
#include <ocl/io/files.h>
#include <ocl/io/number_text.h>

namespace {

struct PreviewArgs {
  std::string config_path, output;
  std::vector<std::string> overrides;
  int64_t images = 8, first = 0, zoom = 0, grid = 0;
};

constexpr int kGap = 2;               // pixels between cells
constexpr uint8_t kBackground = 255;  // white between cells
// The largest side of a sheet (a 3 GiB picture at most), inside int and the PNG writer's range.
constexpr int kMaxSide = 32768;

// Copies `cell` into `sheet` at (top, left), each pixel as a zoom × zoom block.
void paste(ocl::data::Image& sheet, const ocl::data::Image& cell, int top, int left, int zoom) {
  for (int y = 0; y < cell.height * zoom; ++y) {
    for (int x = 0; x < cell.width * zoom; ++x) {
      const uint8_t* from =
          &cell.pixels[(static_cast<size_t>(y / zoom) * cell.width + x / zoom) * 3];
      uint8_t* to = &sheet.pixels[(static_cast<size_t>(top + y) * sheet.width + left + x) * 3];
      std::copy(from, from + 3, to);
    }
  }
}

int preview(const PreviewArgs& a) {
  const auto config = ocl::io::load_config(a.config_path, a.overrides);
  const int img = static_cast<int>(config.model.img_size);
  const auto dataset = ocl::data::make_dataset(config.data, img, /*train=*/true, config.train.seed);
  if (a.first > dataset->size() || a.images > dataset->size() - a.first)
    throw std::runtime_error("--first " + std::to_string(a.first) + " and --images " +
                             std::to_string(a.images) + " reach past the training split's " +
                             std::to_string(dataset->size()) + " images");
  const int views = config.mask.group_views == "independent" ? 2 : 1;
  const auto held_out = ocl::data::make_transform(config.data, img, /*train=*/false);
  const auto pretrain = ocl::data::make_pretrain_transform(config.data, img, views);

  const int64_t zoom64 = a.zoom > 0 ? a.zoom : std::max(1, (96 + img - 1) / img);
  const int64_t columns64 = a.grid > 0 ? a.grid : 3;
  const int64_t rows64 = a.grid > 0 ? (a.images + a.grid - 1) / a.grid : a.images;
  // Sizes in doubles first: a huge --zoom, --grid or --images would overflow any integer.
  const double side = static_cast<double>(img) * static_cast<double>(zoom64) + kGap;
  const double width = static_cast<double>(columns64) * side + kGap;
  const double height = static_cast<double>(rows64) * side + kGap;
  if (width > kMaxSide || height > kMaxSide)
    throw std::runtime_error("--zoom " + std::to_string(zoom64) + ", --grid " +
                             std::to_string(a.grid) + " and --images " + std::to_string(a.images) +
                             " make a sheet of " + ocl::io::shortest_number(width) + " x " +
                             ocl::io::shortest_number(height) + " pixels, more than the " +
                             std::to_string(kMaxSide) + " a side this writes: lower them");
  const int zoom = static_cast<int>(zoom64), columns = static_cast<int>(columns64);
  const int rows = static_cast<int>(rows64), cell = img * zoom;
  ocl::data::Image sheet;
  sheet.width = columns * (cell + kGap) + kGap;
  sheet.height = rows * (cell + kGap) + kGap;
  sheet.pixels.assign(static_cast<size_t>(sheet.width) * sheet.height * 3, kBackground);
  for (int64_t n = 0; n < a.images; ++n) {
    const int64_t index = a.first + n;
    // The seed the loader gives this sample in epoch 0 (data/loader.h).
    const uint64_t seed = ocl::data::sample_seed(config.train.seed, 0, index);
    const auto image = dataset->load(index);
    if (!image) throw std::runtime_error("image " + std::to_string(index) + " is unreadable");
    std::vector<ocl::data::Image> cells = {held_out->apply(*image, seed)};
    if (a.grid == 0) {
      for (auto& v : pretrain->apply_views(*image, seed)) cells.push_back(std::move(v));
      if (cells.size() == 2) cells.push_back(cells[1]);  // shared: both groups read one copy
    }
    const int row = a.grid > 0 ? static_cast<int>(n / a.grid) : static_cast<int>(n);
    const int first_column = a.grid > 0 ? static_cast<int>(n % a.grid) : 0;
    for (size_t c = 0; c < cells.size(); ++c)
      paste(sheet, cells[c], kGap + row * (cell + kGap),
            kGap + (first_column + static_cast<int>(c)) * (cell + kGap), zoom);
  }
  const auto png = ocl::data::encode_png(sheet);
  ocl::io::write_file_atomic(
      a.output, std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
  std::printf("ocl_preview: %s: %lld images of %s (%s)\n", a.output.c_str(),
              static_cast<long long>(a.images), dataset->describe().c_str(),
              a.grid > 0   ? "held-out view"
              : views == 2 ? "held-out view | group A | group B, each group its own copy"
                           : "held-out view | group A | group B, both groups one copy");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  PreviewArgs a;
  CLI::App app{"ocl_preview: a PNG of the images a config's pre-training reads"};
  app.add_option("--config", a.config_path, "YAML config: data, model.img_size, mask, train.seed")
      ->required();
  app.add_option("--set", a.overrides, "override a config key (repeatable)");
  app.add_option("--output", a.output, "the PNG to write")->required();
  app.add_option("--images", a.images, "rows: images of the training split")
      ->check(ocl::apps::at_least(1));
  app.add_option("--first", a.first, "index of the first image")->check(ocl::apps::at_least(0));
  app.add_option("--grid", a.grid,
                 "the held-out view alone, this many images a row (0: rows of views)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--zoom", a.zoom, "pixels per image pixel (0: cells of at least 96 pixels)")
      ->check(ocl::apps::at_least(0));
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;
  if (a.output.empty()) {
    std::fprintf(stderr, "ocl_preview: --output is empty: give the name of the PNG to write\n");
    return 2;
  }
  return ocl::apps::run_reporting_errors("ocl_preview", [&] { return preview(a); });
}
