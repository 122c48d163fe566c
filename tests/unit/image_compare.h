// Pixel comparisons of the augmentation tests against fixtures written by Python (Pillow,
// torchvision): uint8 [H, W, 3] tensors as images, and how far two images differ.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/data/dataset.h>

namespace ocl::test {

/// A uint8 [H, W, 3] tensor as an image.
inline data::Image image_from_hwc(const torch::Tensor& hwc) {
  data::Image im;
  im.height = static_cast<int>(hwc.size(0));
  im.width = static_cast<int>(hwc.size(1));
  auto c = hwc.contiguous();
  im.pixels.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
  return im;
}

struct PixelDiff {
  int64_t differing = 0;  // channel values that differ at all
  int max_abs = 0;
  double mean_abs = 0;
};

/// How `got` differs from `want`, channel value by channel value (sizes must match).
inline PixelDiff compare_pixels(const data::Image& got, const data::Image& want) {
  PixelDiff d;
  EXPECT_EQ(got.pixels.size(), want.pixels.size());
  int64_t sum = 0;
  const size_t n = std::min(got.pixels.size(), want.pixels.size());
  for (size_t i = 0; i < n; ++i) {
    const int e = std::abs(int(got.pixels[i]) - int(want.pixels[i]));
    d.differing += e != 0;
    d.max_abs = std::max(d.max_abs, e);
    sum += e;
  }
  d.mean_abs = n ? static_cast<double>(sum) / static_cast<double>(n) : 0.0;
  return d;
}

}  // namespace ocl::test
