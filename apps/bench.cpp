// ocl_bench's measurements (bench.h).
#include "bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>

#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/data/factory.h>
#include <ocl/data/loader.h>
#include <ocl/distributed/communicator.h>
#include <ocl/distributed/grad_sync.h>
#include <ocl/distributed/launch.h>
#include <ocl/engine/loop.h>
#include <ocl/engine/pretrain.h>
#include <ocl/io/config.h>
#include <ocl/optim/adamw_step.h>

// OCL_BENCH_CUDA: LibTorch was built with CUDA (apps/CMakeLists.txt): allocator statistics.
#if defined(OCL_BENCH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
using ocl::apps::BenchArgs;
using ocl::engine::seconds_since;

// Training FLOPs of one image: per group T = L/2 + 1 tokens through `depth` blocks, each token
// costing 24·D² (qkv 6D², proj 2D², MLP 16D²) plus 4·T·D for QKᵀ and AV; two groups; backward
// twice the forward. The frozen patch embedding runs forward only (2·3p²·D per patch).
double train_flops_per_image(const ocl::io::DerivedConfig& d) {
  const double D = static_cast<double>(d.embed_dim),
               T = static_cast<double>(d.tokens_per_group + 1);
  const double block_fwd = 2.0 * T * static_cast<double>(d.depth) * (24.0 * D * D + 4.0 * T * D);
  const double patch =
      static_cast<double>(d.num_patches) * 2.0 * 3.0 * d.patch_size * d.patch_size * D;
  return 3.0 * block_fwd + patch;
}

using ocl::apps::synchronize;

// The matrix-product rate the achieved TFLOP/s is measured against: n×n by n×n products (2n³
// FLOPs), bf16 on CUDA (the tensor-core rate the bf16 step can at best reach), fp32 on CPU.
double matmul_tflops(const torch::Device& device, int64_t n, at::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  const auto opts = torch::TensorOptions().device(device).dtype(dtype);
  const auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  const double secs = ocl::apps::seconds_per_call(
      device, [&] { torch::mm(a, b); }, 0.5);
  const double nn = static_cast<double>(n);
  return 2.0 * nn * nn * nn / secs / 1e12;
}

// Peak bytes the CUDA caching allocator handed out since the last reset (index 0 of the stat
// arrays is the aggregate over pool types in LibTorch 1.13 and 2.x alike).
#if defined(OCL_BENCH_CUDA)
c10::DeviceIndex cuda_index(const torch::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
double peak_memory_gib(const torch::Device& device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(device));
  return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);
}
#endif

// The same uint8 batch for every micro-batch (the step without the data path).
class FixedBatch : public ocl::engine::BatchSource {
 public:
  explicit FixedBatch(ocl::data::Batch batch) : batch_(std::move(batch)) {}
  int64_t batches_per_epoch() const override { return std::numeric_limits<int64_t>::max(); }
  void start_epoch(int64_t, int64_t) override {}
  ocl::data::Batch next() override { return batch_; }
  int64_t size() const override { return batch_.images.size(0); }

 private:
  ocl::data::Batch batch_;
};

// A Pretrainer of `config` on synthetic data that writes nothing and logs warnings only.
std::unique_ptr<ocl::engine::Pretrainer> quiet_trainer(const ocl::io::Config& config,
                                                       const ocl::distributed::LaunchInfo& launch) {
  ocl::engine::PretrainOptions quiet;
  quiet.write_nothing = true;
  quiet.console = std::make_shared<ocl::io::ConsoleSink>(stderr, false);
  quiet.launch = launch;
  auto step_config = config;
  step_config.data.dataset = "synthetic";
  step_config.log.level = "warn";
  step_config.eval.knn_every = 0;
  step_config.dist.verify_every = 0;  // the local mode below lets the replicas drift apart
  return std::make_unique<ocl::engine::Pretrainer>(step_config, quiet);
}

// The loop's step three ways on every rank (GradSyncMode: local, overlapped, after backward):
// after − local is the all-reduce time, overlapped − local what of it still shows. Rank 0 prints
// the medians.
int bench_grad_sync(const ocl::io::Config& config, const ocl::distributed::LaunchInfo& launch,
                    int64_t steps, int64_t warmup) {
  using Mode = ocl::engine::GradSyncMode;
  auto trainer = quiet_trainer(config, launch);
  auto& loop = trainer->loop();
  auto& comm = *trainer->context().process().comm;
  const torch::Device device = trainer->context().process().device;
  const auto& t = config.train;
  torch::manual_seed(static_cast<uint64_t>(t.seed) + static_cast<uint64_t>(launch.rank));
  ocl::data::Batch batch;
  batch.images =
      torch::randint(0, 256, {t.batch_size, 3, config.model.img_size, config.model.img_size},
                     torch::TensorOptions().dtype(torch::kUInt8))
          .to(device);
  loop.set_source(std::make_unique<FixedBatch>(batch));
  loop.connect_gradients();
  const Mode modes[] = {Mode::kLocal, Mode::kOverlapped, Mode::kAfterBackward};
  // Interleaved, so that the three see the same machine state; medians against outliers.
  std::vector<double> times[3];
  for (int64_t i = 0; i < warmup + steps; ++i) {
    for (int m = 0; m < 3; ++m) {
      loop.set_grad_sync_mode(modes[m]);
      comm.barrier("benchmark step");
      const auto t0 = Clock::now();
      loop.step();
      synchronize(device);
      if (i >= warmup) times[m].push_back(seconds_since(t0));
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double local = median(times[0]), overlapped = median(times[1]), after = median(times[2]);
  const double comm_s = std::max(after - local, 1e-9);
  const auto& sync = *loop.grad_sync();
  int64_t bytes = 0;
  for (auto b : sync.bucket_bytes()) bytes += b;
  if (launch.rank == 0) {
    const auto d = ocl::io::derive(config, launch.world_size);
    std::printf(
        "grad_sync world=%lld backend=%s threads=%d batch=%lld D=%lld depth=%lld gradient_mib=%.2f "
        "buckets=%lld\n",
        (long long)launch.world_size, comm.backend().c_str(), torch::get_num_threads(),
        (long long)t.batch_size, (long long)d.embed_dim, (long long)d.depth, bytes / 1048576.0,
        (long long)sync.num_buckets());
    std::printf(
        "step_local_ms=%.2f step_overlapped_ms=%.2f step_allreduce_after_backward_ms=%.2f "
        "allreduce_ms=%.2f exposed_ms=%.2f hidden_fraction=%.3f\n",
        1e3 * local, 1e3 * overlapped, 1e3 * after, 1e3 * comm_s, 1e3 * (overlapped - local),
        1.0 - (overlapped - local) / comm_s);
  }
  comm.barrier("end of benchmark");
  return 0;
}

// The loader alone for `batches` batches of the config's data set; returns the first.
ocl::data::Batch bench_loader(const ocl::io::Config& config, int64_t batches) {
  const auto& t = config.train;
  const int img = static_cast<int>(config.model.img_size);
  ocl::data::LoaderOptions lo;
  lo.batch_size = t.batch_size;
  lo.workers = config.data.workers;
  lo.prefetch = config.data.prefetch;
  lo.seed = t.seed;
  // Pre-training's transform: data.photometric and mask.group_views count in the figure.
  const int views = config.mask.group_views == "independent" ? 2 : 1;
  const auto transform = ocl::data::make_pretrain_transform(config.data, img, views);
  // The data set through its index, or streamed shards (data/streaming.h).
  std::unique_ptr<ocl::data::Loader> loader;
  std::unique_ptr<ocl::data::StreamingLoader> stream;
  std::string described;
  if (ocl::data::is_streamed(config.data)) {
    std::string counted_by;
    stream = ocl::data::make_streaming_loader(config.data, transform, lo, &counted_by);
    described = "webdataset streamed (" + ocl::data::redact(config.data.path) + ")";
  } else {
    auto dataset = ocl::data::make_dataset(config.data, img, true, t.seed);
    described = dataset->describe();
    loader = std::make_unique<ocl::data::Loader>(dataset, transform, lo);
  }
  auto start = [&](int64_t epoch) {
    loader ? loader->start_epoch(epoch) : stream->start_epoch(epoch);
  };
  auto next = [&] { return loader ? loader->next() : stream->next(); };
  start(0);
  auto first = next();
  TORCH_CHECK(first.has_value(), "the data set is smaller than one batch");
  if (batches == 0) return std::move(*first);
  const auto t0 = Clock::now();
  int64_t images = 0;
  for (int64_t i = 0; i < batches; ++i) {
    auto b = next();
    if (!b) {
      start(1);
      b = next();
    }
    images += b->images.size(0);
  }
  std::printf("loader_img_per_s=%.1f workers=%lld views=%d photometric=%s data=%s\n",
              images / seconds_since(t0), (long long)config.data.workers, transform->views(),
              config.data.photometric.c_str(), described.c_str());
  return std::move(*first);
}

// The largest batch whose step fits in GPU memory: doubling from `batch` until out of memory,
// then bisection. Two steps per trial (the first allocates the optimiser state).
void search_max_batch(ocl::engine::Pretrainer& trainer,
                      const std::function<void(const torch::Tensor&)>& step, int64_t batch, int img,
                      const torch::Device& device) {
#if defined(OCL_BENCH_CUDA)
  auto fits = [&](int64_t b) {
    try {
      auto x = torch::randint(0, 256, {b, 3, img, img},
                              torch::TensorOptions().dtype(torch::kUInt8).device(device));
      step(x);
      step(x);
      synchronize(device);
      return true;
    } catch (const c10::OutOfMemoryError&) {
      ocl::compat::zero_grad(trainer.model()->parameters());
      c10::cuda::CUDACachingAllocator::emptyCache();
      return false;
    }
  };
  int64_t lo = 0, hi = batch;
  const int64_t cap = int64_t{1} << 16;
  while (hi <= cap && fits(hi)) {
    lo = hi;
    hi *= 2;
  }
  if (lo == 0) {
    std::printf("max_batch=0 (batch %lld does not fit)\n", (long long)batch);
  } else if (hi > cap) {
    std::printf("max_batch>=%lld (search capped)\n", (long long)lo);
  } else {
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (fits(mid) ? lo : hi) = mid;
    }
    std::printf("max_batch=%lld\n", (long long)lo);
  }
#else
  (void)trainer, (void)step, (void)batch, (void)img, (void)device;  // refused by run_benchmarks
#endif
}

// The loop's training step on a fixed batch on the device; then the matmul rate and the largest
// batch when asked.
int bench_step(const BenchArgs& args, const ocl::io::Config& config,
               const ocl::data::Batch& first) {
  const auto d = ocl::io::derive(config);
  auto trainer = quiet_trainer(config, ocl::distributed::LaunchInfo{});
  const torch::Device device = trainer->context().process().device;
  const bool fused = ocl::optim::resolve_fused_adamw(config.optim.fused, device);
  auto& loop = trainer->loop();
  auto step = [&](const torch::Tensor& images_u8) {
    ocl::data::Batch batch;
    batch.images = images_u8;
    loop.set_source(std::make_unique<FixedBatch>(batch));
    return loop.step();
  };
  auto images = first.images.to(device);
  // A step runs optim.accum_iter micro-batches of this batch: img/s counts them all.
  const int64_t B = images.size(0) * config.optim.accum_iter;
  for (int64_t i = 0; i < args.warmup; ++i) step(images);
  // Timed from an idle device to the last update's end (the step's loss read comes before its
  // update); the peak is the steady state's, after the warm-up (as bench_gpu.py measures it).
  synchronize(device);
#if defined(OCL_BENCH_CUDA)
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
#endif
  const auto t0 = Clock::now();
  double loss = 0;
  for (int64_t i = 0; i < args.steps; ++i) loss = step(images);
  synchronize(device);
  const double secs = seconds_since(t0);
  const double img_s = static_cast<double>(args.steps * B) / secs;
  const double achieved = img_s * train_flops_per_image(d) / 1e12;
  std::printf(
      "step_ms=%.2f img_per_s=%.2f gflop_per_image=%.3f achieved_tflops=%.4f last_loss=%.4f "
      "adamw=%s accum_iter=%lld\n",
      1e3 * secs / args.steps, img_s, train_flops_per_image(d) / 1e9, achieved, loss,
      fused ? "fused" : "plain", static_cast<long long>(config.optim.accum_iter));
#if defined(OCL_BENCH_CUDA)
  if (device.is_cuda()) std::printf("peak_mem_gib=%.3f\n", peak_memory_gib(device));
#endif
  if (args.matmul_size != 0) {
    const auto dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
    const int64_t n = args.matmul_size > 0 ? args.matmul_size : (device.is_cuda() ? 8192 : 1024);
    const double rate = matmul_tflops(device, n, dtype);
    std::printf("matmul_size=%lld matmul_dtype=%s matmul_tflops=%.3f fraction_of_matmul=%.4f\n",
                (long long)n, device.is_cuda() ? "bf16" : "fp32", rate, achieved / rate);
  }
  if (args.max_batch) {
    search_max_batch(
        *trainer, [&](const torch::Tensor& x) { step(x); }, B,
        static_cast<int>(config.model.img_size), device);
  }
  return 0;
}

}  // namespace

namespace ocl::apps {

int run_benchmarks(const BenchArgs& args, ocl::io::Config config) {
  if (args.grad_sync) {
    const auto launch = ocl::distributed::launch_from_environment();
    if (!launch.distributed()) {
      throw std::runtime_error("--grad-sync needs several processes: add --nproc-per-node 2");
    }
    return bench_grad_sync(config, launch, args.steps, args.warmup);
  }
  if (!args.data_only) config.data.dataset = "synthetic";
  // One process: every core.
  const auto process = ocl::engine::start_process(
      config, {},
      ocl::engine::rank_logger(std::make_shared<ocl::io::ConsoleSink>(stdout, false), "", config,
                               0));
  const torch::Device device = process.device;
  // optim.fused: on without a kernel for this device fails here, before the slow set-up.
  ocl::optim::resolve_fused_adamw(config.optim.fused, device);
#if !defined(OCL_BENCH_CUDA)
  if (args.max_batch) {
    throw std::runtime_error("--max-batch needs a CUDA build of LibTorch; this one (" +
                             ocl::compat::torch_version() + ") has none");
  }
#endif
  if (args.max_batch && !device.is_cuda()) {
    throw std::runtime_error(
        "--max-batch needs a CUDA device (train.device=cuda); this run is on " + device.str());
  }
  const bool bf16 = process.bf16;
  const auto d = ocl::io::derive(config);
  std::printf(
      "config=%s arch=%s img=%lld patch=%lld D=%lld depth=%lld heads=%lld tokens_per_group=%lld "
      "batch=%lld threads=%d device=%s precision=%s tf32=%d torch=%s\n",
      args.command.config_path.c_str(), config.model.arch.c_str(), (long long)config.model.img_size,
      (long long)d.patch_size, (long long)d.embed_dim, (long long)d.depth, (long long)d.num_heads,
      (long long)d.tokens_per_group, (long long)config.train.batch_size, torch::get_num_threads(),
      device.str().c_str(), bf16 ? "bf16" : "fp32", process.tf32 ? 1 : 0,
      ocl::compat::torch_version().c_str());
  if (args.micro) {
    run_micro_benchmarks({.sequences = 2 * config.train.batch_size,
                          .seq = d.tokens_per_group + 1,
                          .dim = d.embed_dim,
                          .heads = d.num_heads,
                          .mlp_hidden = static_cast<int64_t>(static_cast<double>(d.embed_dim) *
                                                             config.model.mlp_ratio)},
                         device, bf16 ? at::kBFloat16 : at::kFloat);
    return 0;
  }
  const auto first = bench_loader(config, args.loader_batches);
  if (args.data_only) return 0;
  return bench_step(args, config, first);
}

}  // namespace ocl::apps
