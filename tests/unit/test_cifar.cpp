// The CIFAR-10 and CIFAR-100 binaries: records, labels, class names and the planes interleaved
// into RGB pixels; truncated and missing batches named.
#include <array>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data_files.h"
#include <gtest/gtest.h>

#include <ocl/data/cifar.h>

namespace fs = std::filesystem;
using namespace ocl::data;

namespace {

using ocl::test::pixel;
using ocl::test::TempDir;
using ocl::test::write_bytes;

// Record k: label `labels[k]`, R plane p → (p + k) mod 256, G plane 2p + k, B plane 255 − p − k.
std::vector<uint8_t> cifar_records(const std::vector<std::vector<int>>& labels) {
  std::vector<uint8_t> out;
  for (size_t k = 0; k < labels.size(); ++k) {
    for (int l : labels[k]) out.push_back(static_cast<uint8_t>(l));
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < 1024; ++p) {
        const int v = c == 0   ? p + static_cast<int>(k)
                      : c == 1 ? 2 * p + static_cast<int>(k)
                               : 255 - p - static_cast<int>(k);
        out.push_back(static_cast<uint8_t>(v & 255));
      }
    }
  }
  return out;
}

void expect_planes_interleaved(const Image& im, int k) {
  ASSERT_EQ(im.height, 32);
  ASSERT_EQ(im.width, 32);
  for (int p : {0, 1, 33, 500, 1023}) {
    EXPECT_EQ(pixel(im, p / 32, p % 32),
              (std::array<int, 3>{(p + k) & 255, (2 * p + k) & 255, (255 - p - k) & 255}))
        << "pixel " << p;
  }
}

}  // namespace

TEST(Cifar, Cifar10RecordsLabelsAndPixelOrder) {
  TempDir dir;
  const fs::path d = fs::path(dir.path()) / "cifar-10-batches-bin";  // the archive's sub-folder
  for (int b = 1; b <= 5; ++b) {
    write_bytes(d / ("data_batch_" + std::to_string(b) + ".bin"),
                cifar_records({{2 * b - 2}, {2 * b - 1}}));
  }
  write_bytes(d / "test_batch.bin", cifar_records({{7}, {3}}));
  {
    std::ofstream meta(d / "batches.meta.txt");
    for (const char* n : {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}) meta << n << "\n";
    meta << "\n";
  }
  CifarDataset train(dir.path(), CifarVariant::Cifar10, true);
  ASSERT_EQ(train.size(), 10);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(train.label(i), i);
  EXPECT_EQ(train.class_names().front(), "a");
  EXPECT_EQ(train.class_names().back(), "j");
  expect_planes_interleaved(*train.load(0), 0);
  expect_planes_interleaved(*train.load(9), 1);
  CifarDataset test(d.string(), CifarVariant::Cifar10, false);
  ASSERT_EQ(test.size(), 2);
  EXPECT_EQ(test.label(0), 7);
  EXPECT_EQ(test.label(1), 3);
  EXPECT_THROW(test.load(2), std::out_of_range);

  // Without the names file: the standard ten names.
  fs::remove(d / "batches.meta.txt");
  EXPECT_EQ(CifarDataset(d.string(), CifarVariant::Cifar10, false).class_names()[0], "airplane");
  // A truncated batch and a missing one are errors naming the file.
  auto bytes = cifar_records({{1}, {2}});
  bytes.resize(bytes.size() - 100);
  write_bytes(d / "data_batch_3.bin", bytes);
  try {
    CifarDataset broken(d.string(), CifarVariant::Cifar10, true);
    FAIL() << "a truncated batch was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("data_batch_3.bin"), std::string::npos) << e.what();
  }
  fs::remove(d / "data_batch_3.bin");
  try {
    CifarDataset missing(d.string(), CifarVariant::Cifar10, true);
    FAIL() << "a missing batch was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("data_batch_3.bin"), std::string::npos) << e.what();
  }
}

TEST(Cifar, Cifar100UsesTheFineLabel) {
  TempDir dir;
  write_bytes(fs::path(dir.path()) / "train.bin", cifar_records({{3, 42}, {19, 99}}));
  write_bytes(fs::path(dir.path()) / "test.bin", cifar_records({{0, 5}, {1, 6}}));
  CifarDataset train(dir.path(), CifarVariant::Cifar100, true);
  ASSERT_EQ(train.size(), 2);
  EXPECT_EQ(train.label(0), 42);
  EXPECT_EQ(train.label(1), 99);
  ASSERT_EQ(train.num_classes(), 100);
  EXPECT_EQ(train.class_names()[42], "class_42");
  expect_planes_interleaved(*train.load(1), 1);
  EXPECT_EQ(CifarDataset(dir.path(), CifarVariant::Cifar100, false).label(1), 6);
  // The CIFAR-10 reader looks for data_batch_*.bin, which a CIFAR-100 folder lacks.
  EXPECT_THROW(CifarDataset(dir.path(), CifarVariant::Cifar10, true), std::runtime_error);
}
