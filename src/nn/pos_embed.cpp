// Sin-cos position tables and their bicubic resampling (see include/ocl/nn/pos_embed.h).
#include "ocl/nn/pos_embed.h"

#include <torch/nn/functional/upsampling.h>

namespace ocl::nn {

namespace {
// [P] positions → [P, dim]: [sin(p·ω_i) | cos(p·ω_i)], ω_i = 1/10000^(i/(dim/2)).
torch::Tensor sincos_1d(int64_t dim, const torch::Tensor& positions) {
  auto omega = torch::arange(dim / 2, torch::kFloat64) / (dim / 2.0);
  omega = 1.0 / torch::pow(10000.0, omega);
  auto angles = positions.reshape({-1, 1}) * omega.reshape({1, -1});  // [P, dim/2]
  return torch::cat({torch::sin(angles), torch::cos(angles)}, 1);
}
}  // namespace

torch::Tensor sincos_pos_embed_2d(int64_t embed_dim, int64_t grid_h, int64_t grid_w, bool cls_row,
                                  torch::Dtype dtype) {
  TORCH_CHECK(embed_dim > 0 && embed_dim % 4 == 0,
              "sin-cos positions need an embedding width divisible by 4, got ", embed_dim);
  TORCH_CHECK(grid_h > 0 && grid_w > 0, "sin-cos positions need a non-empty grid, got ", grid_h,
              "x", grid_w);
  // Patch k = r·grid_w + c sits at column c (x) and row r (y).
  auto k = torch::arange(grid_h * grid_w, torch::kFloat64);
  auto col = torch::fmod(k, static_cast<double>(grid_w));
  auto row = torch::floor(k / static_cast<double>(grid_w));
  auto table = torch::cat({sincos_1d(embed_dim / 2, col), sincos_1d(embed_dim / 2, row)}, 1);
  if (cls_row) table = torch::cat({torch::zeros({1, embed_dim}, torch::kFloat64), table}, 0);
  return table.to(dtype);
}

torch::Tensor resample_pos_embed(const torch::Tensor& pos_embed, int64_t old_h, int64_t old_w,
                                 int64_t new_h, int64_t new_w, int64_t num_prefix) {
  TORCH_CHECK(pos_embed.dim() == 3 && pos_embed.size(0) == 1,
              "position table must be [1, prefix + H*W, D], got ", pos_embed.sizes());
  TORCH_CHECK(pos_embed.size(1) == num_prefix + old_h * old_w, "position table has ",
              pos_embed.size(1), " rows, expected ", num_prefix, " + ", old_h, "x", old_w);
  TORCH_CHECK(new_h > 0 && new_w > 0, "cannot resample positions to a ", new_h, "x", new_w,
              " grid");
  if (old_h == new_h && old_w == new_w) return pos_embed;
  const int64_t dim = pos_embed.size(2);
  auto prefix = pos_embed.narrow(1, 0, num_prefix);
  // [1, H·W, D] → [1, D, H, W] so that interpolate sees an image with D channels.
  auto grid = pos_embed.narrow(1, num_prefix, old_h * old_w)
                  .reshape({1, old_h, old_w, dim})
                  .permute({0, 3, 1, 2});
  namespace F = torch::nn::functional;
  auto compute_dtype = grid.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto resized =
      F::interpolate(grid.to(compute_dtype), F::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{new_h, new_w})
                                                 .mode(torch::kBicubic)
                                                 .align_corners(false));
  resized = resized.permute({0, 2, 3, 1}).reshape({1, new_h * new_w, dim}).to(pos_embed.dtype());
  return torch::cat({prefix, resized}, 1);
}

}  // namespace ocl::nn
