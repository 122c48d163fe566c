// The fuzz targets as plain functions, for the unit tests that replay the corpora and past
// findings through them without libFuzzer (see fuzz_support.h).
#pragma once

#include <cstddef>
#include <cstdint>

#define OCL_FUZZ_DECLARE(name)                 \
  namespace ocl::fuzz::name##_target {         \
    void init();                               \
    int run(const uint8_t* data, size_t size); \
  }

OCL_FUZZ_DECLARE(safetensors)
OCL_FUZZ_DECLARE(pack)
OCL_FUZZ_DECLARE(jpeg_region)
OCL_FUZZ_DECLARE(image)
OCL_FUZZ_DECLARE(cifar)
OCL_FUZZ_DECLARE(config)
OCL_FUZZ_DECLARE(state_json)
OCL_FUZZ_DECLARE(tar)

#undef OCL_FUZZ_DECLARE
