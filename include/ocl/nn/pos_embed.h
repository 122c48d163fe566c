// Fixed 2-D sin-cos position embeddings in MAE's layout, and bicubic resampling of a position
// table to another patch grid (for loading weights at another resolution).
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace ocl::nn {

/// Sin-cos table [cls_row + grid_h·grid_w, D] for a patch grid, row-major (MAE's
/// `get_2d_sincos_pos_embed`, paper §2.1): channels [0, D/2) encode the column, [D/2, D) the
/// row, each half [sin | cos] over the frequencies 1/10000^(2i/(D/2)), i < D/4 (D a multiple of
/// 4); with `cls_row`, a zero first row for CLS. Computed in float64, returned as `dtype`.
torch::Tensor sincos_pos_embed_2d(int64_t embed_dim, int64_t grid_h, int64_t grid_w,
                                  bool cls_row = true, torch::Dtype dtype = torch::kFloat32);

/// Resamples a position table [1, num_prefix + old_h·old_w, D] to the new grid bicubically (as
/// MAE's `interpolate_pos_embed`), keeping the first `num_prefix` rows (CLS) unchanged.
torch::Tensor resample_pos_embed(const torch::Tensor& pos_embed, int64_t old_h, int64_t old_w,
                                 int64_t new_h, int64_t new_w, int64_t num_prefix = 1);

}  // namespace ocl::nn
