// Process start-up settings of engine/run_setup.h that unit tests can check on any machine.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/engine/run_setup.h>
#include <ocl/io/config.h>

namespace {

// Restores LibTorch's global TF32 switches after a test.
struct Tf32Restore {
  bool cublas = at::globalContext().allowTF32CuBLAS();
  bool cudnn = at::globalContext().allowTF32CuDNN();
  ~Tf32Restore() {
    at::globalContext().setAllowTF32CuBLAS(cublas);
    at::globalContext().setAllowTF32CuDNN(cudnn);
  }
};

TEST(RunSetup, Tf32IsLeftAloneOnCpu) {
  Tf32Restore restore;
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  ocl::io::Config config;
  ASSERT_TRUE(config.train.tf32) << "train.tf32 defaults to on";
  EXPECT_FALSE(ocl::engine::set_tf32(config, torch::Device(torch::kCPU)));
  EXPECT_FALSE(at::globalContext().allowTF32CuBLAS());
  EXPECT_FALSE(at::globalContext().allowTF32CuDNN());
}

TEST(RunSetup, Tf32FollowsTheConfigOnCuda) {
  // Setting the switches needs no GPU, but set_tf32 only acts for a CUDA device, and building
  // one for a CPU-only LibTorch is allowed (a Device is a name): the switches are checked here,
  // nothing runs on the device.
  Tf32Restore restore;
  ocl::io::Config config;
  const torch::Device cuda(torch::kCUDA, 0);
  EXPECT_TRUE(ocl::engine::set_tf32(config, cuda));
  EXPECT_TRUE(at::globalContext().allowTF32CuBLAS());
  EXPECT_TRUE(at::globalContext().allowTF32CuDNN());
  config.train.tf32 = false;
  EXPECT_FALSE(ocl::engine::set_tf32(config, cuda));
  EXPECT_FALSE(at::globalContext().allowTF32CuBLAS());
  EXPECT_FALSE(at::globalContext().allowTF32CuDNN());
}

}  // namespace
