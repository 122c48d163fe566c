// CIFAR-10 and CIFAR-100 in their binary format (`data_batch_1.bin` … `data_batch_5.bin` and
// `test_batch.bin`; `train.bin` and `test.bin` for CIFAR-100), read whole into memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ocl/data/dataset.h"

namespace ocl::data {

enum class CifarVariant { Cifar10, Cifar100 };

class CifarDataset : public Dataset {
 public:
  /// `dir` holds the .bin files (or its `cifar-10-batches-bin/` or `cifar-100-binary/` does).
  /// Throws std::runtime_error naming a missing or truncated file (not whole records).
  CifarDataset(const std::string& dir, CifarVariant variant, bool train);
  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  const std::vector<std::string>& class_names() const override { return classes_; }
  int64_t label(int64_t index) const override;
  std::optional<Image> load(int64_t index, BadSample* error = nullptr) const override;
  std::string describe() const override;

 private:
  std::string dir_;
  CifarVariant variant_;
  bool train_;
  std::vector<std::string> classes_;
  std::vector<uint8_t> pixels_;  // N × 3072, CHW planes as stored
  std::vector<int32_t> labels_;  // fine labels for CIFAR-100
};

}  // namespace ocl::data
