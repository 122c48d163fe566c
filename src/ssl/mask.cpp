// Mask-and-split (see include/ocl/ssl/mask.h).
#include "ocl/ssl/mask.h"

#include <cmath>

#include "ocl/io/spec.h"

namespace ocl::ssl {

int64_t kept_tokens(int64_t num_patches, double mask_ratio) {
  TORCH_CHECK(std::isfinite(mask_ratio) && mask_ratio >= 0.0 && mask_ratio < 1.0,
              "mask ratio must be in [0, 1), got ", mask_ratio);
  TORCH_CHECK(num_patches > 0, "number of patches must be positive, got ", num_patches);
  const int64_t kept = io::kept_token_count(num_patches, mask_ratio);
  TORCH_CHECK(kept >= 2, "mask ratio ", mask_ratio, " keeps ", kept, " of ", num_patches,
              " patches; each of the two groups needs at least one token, so lower the mask ratio");
  return kept;
}

MaskSplit mask_and_split(const torch::Tensor& noise, double mask_ratio) {
  TORCH_CHECK(noise.dim() == 2, "mask noise must be [B, N], got ", noise.sizes());
  TORCH_CHECK(noise.is_floating_point(), "mask noise must be floating point, got ",
              noise.scalar_type());
  const int64_t kept = kept_tokens(noise.size(1), mask_ratio);
  auto ids_shuffle = torch::argsort(noise, /*dim=*/int64_t{1});  // ascending: small noise kept
  return {ids_shuffle.narrow(1, 0, kept / 2), ids_shuffle.narrow(1, kept / 2, kept / 2)};
}

torch::Tensor removed_mask(const MaskSplit& split, int64_t num_patches) {
  const int64_t B = split.ids_a.size(0);
  auto mask = torch::ones({B, num_patches}, torch::TensorOptions().device(split.ids_a.device()));
  mask.scatter_(1, split.ids_a, 0.0);
  mask.scatter_(1, split.ids_b, 0.0);
  return mask;
}

}  // namespace ocl::ssl
