// WebDataset shards of the synthetic set for the integration tests (ocl's TarBuilder, lossless
// PNG images): train-K.tar and val-K.tar, K < `count`, 128 and 64 samples a split.
#pragma once

#include <cstdint>
#include <string>

#include <ocl/data/png.h>
#include <ocl/data/synthetic.h>
#include <ocl/data/tar_writer.h>
#include <ocl/io/files.h>

namespace ocl_test {

inline void write_synthetic_shards(const std::string& dir, int64_t count = 3) {
  for (const bool train : {true, false}) {
    ocl::data::SyntheticOptions o;
    o.size = train ? 128 : 64;
    o.num_classes = 10;
    o.image_size = 16;
    o.seed = 3;
    o.train = train;
    const ocl::data::SyntheticDataset set(o);
    for (int64_t shard = 0; shard < count; ++shard) {
      ocl::data::TarBuilder tar(1700000000);
      for (int64_t i = shard * o.size / count; i < (shard + 1) * o.size / count; ++i) {
        const auto png = ocl::data::encode_png(set.load(i).value());
        const std::string key = "s" + std::to_string(1000 + i),
                          label = std::to_string(set.label(i));
        tar.add(key + ".png", png.data(), png.size());
        tar.add(key + ".cls", reinterpret_cast<const uint8_t*>(label.data()), label.size());
      }
      ocl::io::write_file_atomic(
          dir + (train ? "/train-" : "/val-") + std::to_string(shard) + ".tar", tar.finish());
    }
  }
}

}  // namespace ocl_test
