// A run's start-up pieces and its layout (engine/run.h) that unit tests can check on any
// machine.
#include <iostream>
#include <memory>
#include <sstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/engine/run.h>
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

// model.attention: the process holds SDPA to one kernel family while it lives (the same output
// as SDPA's own choice where that family runs the call, a message naming the setting where none
// does) and hands the choice back after; LibTorch 1.13, without that choice, refuses it by name.
TEST(RunSetup, ModelAttentionHoldsSdpaToOneBackendWhileTheProcessLives) {
  ocl::io::Config config;
  auto log = std::make_shared<spdlog::logger>(
      "attention-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(std::cerr));
  config.model.attention = "math";
  config.train.threads = torch::get_num_threads();  // left as the other tests have it
  if (!ocl::compat::kCanChooseSdpaBackend) {
    try {
      ocl::engine::start_process(config, {}, log);
      FAIL() << "model.attention: math was accepted by LibTorch " << ocl::compat::torch_version();
    } catch (const ocl::io::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("model.attention: math needs LibTorch >= 2.6"),
                std::string::npos)
          << e.what();
    }
    return;
  }
  torch::manual_seed(2);
  const auto q = torch::randn({2, 4, 60, 16}), k = torch::randn({2, 4, 60, 16}),
             v = torch::randn({2, 4, 60, 16});
  const auto chosen = ocl::compat::attention(q, k, v);
  {
    const auto process = ocl::engine::start_process(config, {}, log);
    ASSERT_TRUE(process.attention_scope);
    EXPECT_FALSE(at::globalContext().userEnabledFlashSDP());
    EXPECT_TRUE(at::globalContext().userEnabledMathSDP());
    EXPECT_TRUE(torch::allclose(ocl::compat::attention(q, k, v), chosen, 1e-5, 1e-6));
  }
  EXPECT_TRUE(at::globalContext().userEnabledFlashSDP());  // restored with the process
  config.model.attention = "cudnn";                        // a GPU-only family, on the CPU
  const auto process = ocl::engine::start_process(config, {}, log);
  try {
    ocl::compat::attention(q, k, v);
    FAIL() << "SDPA ran on the CPU with only cuDNN's kernels allowed";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no SDPA kernel this process allows (model.attention)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace

// A resume with another layout continues at the first step of the new layout whose images were
// not all seen, and says so when the world size changed.
TEST(RunSetup, ResumeStepConvertsThePositionByImagesSeen) {
  std::ostringstream log_text;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text);
  spdlog::logger logger("resume-test", sink);
  using ocl::engine::resume_step_in_epoch;
  // 6 steps of 2 × 8 images = 96 images = 12 steps of 1 × 8.
  EXPECT_EQ(resume_step_in_epoch(0, 6, {2, 8, 1}, {1, 8, 1}, 0.1, logger), 12);
  EXPECT_NE(log_text.str().find("written by 2 processes and this run has 1: epoch 0 continues at "
                                "step 12 (after 96 of its images"),
            std::string::npos)
      << log_text.str();
  // 5 steps of 1 × 16 = 80 images: 2 whole steps of 2 × 16 (the third, partly seen, is redone).
  EXPECT_EQ(resume_step_in_epoch(3, 5, {1, 16, 1}, {2, 16, 1}, 0.1, logger), 2);
  // The batch and accumulation count too, not only the world size.
  EXPECT_EQ(resume_step_in_epoch(0, 4, {1, 8, 4}, {1, 16, 1}, 0.1, logger), 8);
  // The same layout: the same step, and nothing logged.
  log_text.str("");
  EXPECT_EQ(resume_step_in_epoch(1, 7, {4, 32, 2}, {4, 32, 2}, 0.1, logger), 7);
  EXPECT_EQ(log_text.str(), "");
}
