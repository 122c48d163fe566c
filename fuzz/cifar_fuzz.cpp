// Fuzz target: the CIFAR-10/100 binary reader (data::CifarDataset). The input is one batch file,
// optionally followed by a part marker and the class names file; both variants read it (as
// test_batch.bin with batches.meta.txt, and as test.bin with fine_label_names.txt). Findings
// beyond the sanitizers': an exception other than std::runtime_error, a label outside the
// classes, or an image that is not 32 × 32 RGB.
#include <stdexcept>
#include <string>

#include "fuzz_support.h"
#include "targets.h"

#include "ocl/data/cifar.h"

namespace ocl::fuzz::cifar_target {

void init() {}

int run(const uint8_t* data, size_t size) {
  const auto parts = ocl::fuzz::split_parts(data, size);
  const std::string dir = ocl::fuzz::scratch_dir();
  const std::string_view names = parts.size() > 1 ? parts[1] : std::string_view();
  ocl::fuzz::write_file(dir + "/test_batch.bin", parts[0]);
  ocl::fuzz::write_file(dir + "/test.bin", parts[0]);
  ocl::fuzz::write_file(dir + "/batches.meta.txt", names);
  ocl::fuzz::write_file(dir + "/fine_label_names.txt", names);
  for (const auto variant : {ocl::data::CifarVariant::Cifar10, ocl::data::CifarVariant::Cifar100}) {
    try {
      const ocl::data::CifarDataset set(dir, variant, /*train=*/false);
      const auto classes = static_cast<int64_t>(set.class_names().size());
      ocl::fuzz::require(classes == (variant == ocl::data::CifarVariant::Cifar10 ? 10 : 100),
                         "a CIFAR set has the wrong number of classes");
      for (int64_t i = 0; i < set.size(); ++i) {
        ocl::fuzz::require(set.label(i) >= 0 && set.label(i) < classes,
                           "a CIFAR label is outside the classes");
        const auto image = set.load(i);
        ocl::fuzz::require(image && image->height == 32 && image->width == 32 &&
                               image->pixels.size() == 32 * 32 * 3,
                           "a CIFAR image is not 32 x 32 RGB");
      }
    } catch (const std::runtime_error&) {
    }
  }
  return 0;
}

}  // namespace ocl::fuzz::cifar_target

OCL_FUZZ_ENTRY_POINTS(ocl::fuzz::cifar_target)
