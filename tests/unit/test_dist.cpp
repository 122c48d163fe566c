// ocl::dist in one process: bucket layout, the gradient synchroniser's hooks, views and no_sync
// over a one-rank Gloo group, the differentiable all-gather's plumbing, and the errors of a
// rendezvous that cannot complete; the data-set agreement with two ranks in two threads. The rest
// of the multi-rank behaviour is tested with several processes in
// tests/integration/test_distributed.cpp.
#include <chrono>
#include <string>
#include <thread>

#include "test_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ocl/distributed/agreement.h>
#include <ocl/distributed/all_gather.h>
#include <ocl/distributed/communicator.h>
#include <ocl/distributed/grad_sync.h>
#include <ocl/distributed/launch.h>

namespace {

using ocl::distributed::assign_buckets;

torch::Tensor floats(int64_t n) { return torch::zeros({n}, torch::kFloat32); }

TEST(Buckets, ReverseOrderFirstBucketSmallerAndCapsRespected) {
  // 6 parameters of 100 floats (400 bytes); first bucket ≤ 400 bytes, then ≤ 1000.
  std::vector<torch::Tensor> params;
  for (int i = 0; i < 6; ++i) params.push_back(floats(100));
  const auto b = assign_buckets(params, 400, 1000);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0], (std::vector<size_t>{5}));
  EXPECT_EQ(b[1], (std::vector<size_t>{4, 3}));  // 800 bytes; a third would make 1200
  EXPECT_EQ(b[2], (std::vector<size_t>{2, 1}));
  EXPECT_EQ(b[3], (std::vector<size_t>{0}));
}

TEST(Buckets, EveryParameterOnceOversizedAloneDtypesApart) {
  std::vector<torch::Tensor> params = {floats(10), floats(5000), floats(10),
                                       torch::zeros({10}, torch::kFloat64), floats(10)};
  const auto b = assign_buckets(params, 100, 1000);
  std::vector<int> seen(params.size(), 0);
  for (const auto& bucket : b) {
    for (size_t k : bucket) seen[k] += 1;
    for (size_t k : bucket) EXPECT_EQ(params[k].scalar_type(), params[bucket[0]].scalar_type());
  }
  for (int s : seen) EXPECT_EQ(s, 1);
  // The 20000-byte parameter is alone in its bucket.
  for (const auto& bucket : b) {
    if (std::find(bucket.begin(), bucket.end(), size_t{1}) != bucket.end()) {
      EXPECT_EQ(bucket.size(), 1u);
    }
  }
  // Reverse order: parameter 4 comes first, parameter 0 last.
  EXPECT_EQ(b.front().front(), 4u);
  EXPECT_EQ(b.back().back(), 0u);
}

ocl::distributed::LaunchInfo single_rank_launch() {
  ocl::distributed::LaunchInfo l;
  l.rank = 0;
  l.world_size = 1;
  l.master_port = ocl::distributed::free_tcp_port();
  l.source = "test";
  return l;
}

// Gloo is compiled in where its headers were found beside LibTorch (every Debian build; not
// PyTorch's pip wheels, whose CUDA builds run over NCCL alone). The tests that meet over Gloo
// need it; Communicator.GlooIsCompiledInExactlyWhereItsHeadersAre checks the refusal without it.
#define OCL_REQUIRE_GLOO()                          \
  if (!ocl::distributed::backend_available("gloo")) \
  GTEST_SKIP() << "this build has no Gloo (a LibTorch without Gloo's headers)"

ocl::distributed::CommunicatorOptions quick_options() {
  ocl::distributed::CommunicatorOptions o;
  o.backend = "gloo";
  o.timeout = std::chrono::seconds(20);
  o.heartbeat_s = 0;
  return o;
}

// Two linear layers: w1 (registered first) feeds w2.
struct TwoLayers {
  torch::Tensor w1 = torch::randn({64, 32}).requires_grad_();
  torch::Tensor b1 = torch::randn({64}).requires_grad_();
  torch::Tensor w2 = torch::randn({8, 64}).requires_grad_();
  std::vector<torch::Tensor> params() const { return {w1, b1, w2}; }
  torch::Tensor loss(const torch::Tensor& x) const {
    return torch::tanh(torch::nn::functional::linear(x, w1, b1)).matmul(w2.t()).pow(2).sum();
  }
};

TEST(GradSynchronizer, GradientsAreBucketViewsAndOneRankAveragesToThemselves) {
  OCL_REQUIRE_GLOO();
  torch::manual_seed(0);
  TwoLayers net;
  auto x = torch::randn({4, 32});
  // The expected gradient, without any synchroniser.
  TwoLayers plain = net;
  plain.w1 = net.w1.detach().clone().requires_grad_();
  plain.b1 = net.b1.detach().clone().requires_grad_();
  plain.w2 = net.w2.detach().clone().requires_grad_();
  plain.loss(x).backward();

  ocl::distributed::Communicator comm(single_rank_launch(), quick_options());
  ocl::distributed::GradSyncOptions so;
  so.first_bucket_mb = 2048.0 / (1024 * 1024);  // w2 (2 KiB) alone first
  so.bucket_mb = 9000.0 / (1024 * 1024);        // then b1 + w1 (8.25 KiB) together
  ocl::distributed::GradSynchronizer sync(comm, net.params(), so);
  ASSERT_EQ(sync.num_buckets(), 2);
  EXPECT_EQ(sync.bucket_bytes(), (std::vector<int64_t>{2048, 8448}));
  // Views: writing through one gradient is seen in the bucket layout (w2 starts bucket 0).
  for (const auto& p : net.params()) ASSERT_TRUE(p.grad().defined());
  EXPECT_EQ(net.w2.grad().abs().sum().item<float>(), 0.0f);

  net.loss(x).backward();
  EXPECT_EQ(sync.buckets_launched_in_backward(), 2);  // all started before finish()
  sync.finish();
  EXPECT_EQ(sync.buckets_launched(), 2);
  EXPECT_TRUE(torch::allclose(net.w1.grad(), plain.w1.grad()));
  EXPECT_TRUE(torch::allclose(net.b1.grad(), plain.b1.grad()));
  EXPECT_TRUE(torch::allclose(net.w2.grad(), plain.w2.grad()));
}

TEST(GradSynchronizer, NoSyncAccumulatesWithoutCommunicating) {
  OCL_REQUIRE_GLOO();
  torch::manual_seed(1);
  TwoLayers net;
  auto x1 = torch::randn({4, 32}), x2 = torch::randn({4, 32});
  TwoLayers plain = net;
  plain.w1 = net.w1.detach().clone().requires_grad_();
  plain.b1 = net.b1.detach().clone().requires_grad_();
  plain.w2 = net.w2.detach().clone().requires_grad_();
  plain.loss(x1).backward();
  plain.loss(x2).backward();

  ocl::distributed::Communicator comm(single_rank_launch(), quick_options());
  ocl::distributed::GradSynchronizer sync(comm, net.params(), {});
  const int64_t before = comm.collectives_started(ocl::distributed::Group::kGradients);
  sync.set_sync(false);
  net.loss(x1).backward();
  sync.finish();  // a no-op after a no_sync backward
  EXPECT_EQ(sync.buckets_launched(), 0);
  EXPECT_EQ(comm.collectives_started(ocl::distributed::Group::kGradients), before);
  sync.set_sync(true);
  net.loss(x2).backward();
  sync.finish();
  EXPECT_EQ(sync.buckets_launched(), sync.num_buckets());
  EXPECT_EQ(comm.collectives_started(ocl::distributed::Group::kGradients),
            before + sync.num_buckets());
  EXPECT_TRUE(torch::allclose(net.w1.grad(), plain.w1.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(net.w2.grad(), plain.w2.grad(), 1e-5, 1e-6));
}

TEST(GradSynchronizer, WithoutOverlapFinishCommunicatesEverything) {
  OCL_REQUIRE_GLOO();
  torch::manual_seed(3);
  TwoLayers net;
  auto x = torch::randn({4, 32});
  ocl::distributed::Communicator comm(single_rank_launch(), quick_options());
  ocl::distributed::GradSynchronizer sync(comm, net.params(), {});
  sync.set_sync(false);  // what dist.overlap: false does during backward
  net.loss(x).backward();
  EXPECT_EQ(sync.buckets_launched(), 0);
  auto expected = net.w1.grad().clone();
  sync.set_sync(true);
  sync.finish();
  EXPECT_EQ(sync.buckets_launched(), sync.num_buckets());
  EXPECT_EQ(sync.buckets_launched_in_backward(), 0);
  EXPECT_TRUE(torch::allclose(net.w1.grad(), expected));
}

TEST(GradSynchronizer, ParametersWithoutGradientStillLaunchInOrder) {
  OCL_REQUIRE_GLOO();
  torch::manual_seed(2);
  TwoLayers net;
  ocl::distributed::Communicator comm(single_rank_launch(), quick_options());
  ocl::distributed::GradSyncOptions so;
  so.first_bucket_mb = 2048.0 / (1024 * 1024);
  so.bucket_mb = 9000.0 / (1024 * 1024);
  ocl::distributed::GradSynchronizer sync(comm, net.params(), so);
  // A loss of w2 alone: bucket 1 (w1, b1) never becomes ready during backward.
  net.w2.pow(2).sum().backward();
  EXPECT_EQ(sync.buckets_launched_in_backward(), 1);
  sync.finish();
  EXPECT_EQ(sync.buckets_launched(), 2);
  EXPECT_EQ(net.w1.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(net.w2.grad(), 2 * net.w2.detach()));
}

TEST(GradSynchronizer, RefusesFrozenParameters) {
  OCL_REQUIRE_GLOO();
  ocl::distributed::Communicator comm(single_rank_launch(), quick_options());
  OCL_EXPECT_THROW_WITH(ocl::distributed::GradSynchronizer(comm, {torch::zeros({3})}, {}),
                        "leave frozen parameters out");
}

TEST(AllGatherWithGrad, OneRankIsTheIdentityForwardAndBackward) {
  OCL_REQUIRE_GLOO();
  ocl::distributed::Communicator comm(single_rank_launch(), quick_options());
  auto x = torch::randn({3, 4}, torch::kFloat64).requires_grad_();
  auto y = ocl::distributed::all_gather_with_grad(comm, x);
  EXPECT_TRUE(torch::equal(y, x));
  auto w = torch::randn({3, 4}, torch::kFloat64);
  (y * w).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), w));
  EXPECT_EQ(comm.collectives_started(ocl::distributed::Group::kLoss),
            2);  // gather + reduce-scatter
}

TEST(Communicator, RendezvousWithoutThePeersTimesOutNamingTheAddress) {
  OCL_REQUIRE_GLOO();
  auto launch = single_rank_launch();
  launch.world_size = 2;  // rank 1 never comes
  auto o = quick_options();
  o.timeout = std::chrono::seconds(2);
  const auto start = std::chrono::steady_clock::now();
  OCL_EXPECT_THROW_WITH(ocl::distributed::Communicator(launch, o),
                        "rendezvous at 127.0.0.1:" + std::to_string(launch.master_port));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 30);
}

TEST(Communicator, RejectsABackendThisBuildLacks) {
  auto o = quick_options();
  o.backend = "mpi";
  OCL_EXPECT_THROW_WITH(ocl::distributed::Communicator(single_rank_launch(), o),
                        "dist.backend must be auto, nccl or gloo");
  if (!ocl::distributed::backend_available("nccl")) {
    o.backend = "nccl";
    OCL_EXPECT_THROW_WITH(ocl::distributed::Communicator(single_rank_launch(), o),
                          "dist.backend nccl is not available");
  }
}

// A CUDA LibTorch configured with OCL_WITH_NCCL (the default) has ocl's NCCL code compiled in:
// asked for NCCL on a machine without a GPU, the communicator stops in that code with the
// message for a missing device, before any rendezvous. A CPU LibTorch (or OCL_WITH_NCCL=OFF)
// says instead that the build has no NCCL. OCL_TEST_EXPECT_NCCL comes from CMake.
TEST(Communicator, NcclIsCompiledInExactlyWhereLibTorchIsACudaBuild) {
  auto o = quick_options();
  o.backend = "nccl";
  o.device = torch::Device(torch::kCUDA, 0);
#if OCL_TEST_EXPECT_NCCL
  EXPECT_TRUE(ocl::distributed::backend_available("nccl"))
      << "a CUDA LibTorch with OCL_WITH_NCCL=ON must have the NCCL process group";
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible: tests/gpu covers NCCL there";
  const auto start = std::chrono::steady_clock::now();
  OCL_EXPECT_THROW_WITH(ocl::distributed::Communicator(single_rank_launch(), o),
                        "dist.backend nccl needs a CUDA device, and this process sees no CUDA "
                        "device");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10);
#else
  EXPECT_FALSE(ocl::distributed::backend_available("nccl"));
  OCL_EXPECT_THROW_WITH(ocl::distributed::Communicator(single_rank_launch(), o),
                        "dist.backend nccl is not available in this build");
#endif
}

// OCL_TEST_EXPECT_GLOO comes from CMake: whether it found Gloo's headers beside LibTorch.
TEST(Communicator, GlooIsCompiledInExactlyWhereItsHeadersAre) {
#if OCL_TEST_EXPECT_GLOO
  EXPECT_TRUE(ocl::distributed::backend_available("gloo"));
#else
  EXPECT_FALSE(ocl::distributed::backend_available("gloo"));
  OCL_EXPECT_THROW_WITH(ocl::distributed::Communicator(single_rank_launch(), quick_options()),
                        "dist.backend gloo is not available in this build (its LibTorch came "
                        "without Gloo's headers");
#endif
}

}  // namespace

// Ranks that see different copies of a data set stop, each naming the ranks that differ and both
// views; the same data passes. Two ranks in two threads of this process, over Gloo.
TEST(Agreement, RanksWithDifferentDataSetsStopNamingBothViews) {
  OCL_REQUIRE_GLOO();
  const int port = ocl::distributed::free_tcp_port();
  std::string errors[2];
  auto rank = [&](int r, int64_t size) {
    try {
      ocl::distributed::LaunchInfo l;
      l.rank = l.local_rank = r;
      l.world_size = l.local_world_size = 2;
      l.master_port = port;
      l.source = "test";
      auto o = quick_options();
      o.heartbeat_s = 0;
      ocl::distributed::Communicator comm(l, o);
      ocl::distributed::require_same_data(comm, torch::kCPU, "the training set", 1000, 10);
      ocl::distributed::require_same_data(comm, torch::kCPU, "the training set", size, 10);
    } catch (const std::exception& e) {
      errors[r] = e.what();
    }
  };
  std::thread t0(rank, 0, 1000), t1(rank, 1, 998);
  t0.join();
  t1.join();
  for (const auto& e : errors) {
    EXPECT_NE(e.find("ranks see different data: the training set of rank 1 differs from rank 0's "
                     "(rank 0: 1000 images of 10 classes; rank 1: 998 images of 10 classes)"),
              std::string::npos)
        << e;
  }
}
