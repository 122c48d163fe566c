// compat::CudaGraph (see include/ocl/compat.h): at::cuda::CUDAGraph where LibTorch is a CUDA
// build (OCL_WITH_CUDA_GRAPHS, set by CMake for this file only), else calls that say why not.
#include <stdexcept>
#include <string>

#include "ocl/compat.h"

#ifdef OCL_WITH_CUDA_GRAPHS
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ocl::compat {

#ifdef OCL_WITH_CUDA_GRAPHS

bool can_capture_graphs() { return true; }

struct CudaGraph::Impl {
  std::unique_ptr<at::cuda::CUDAGraph> graph;  // made at capture: its constructor needs a GPU
  c10::optional<c10::cuda::CUDAStream> side;
  bool captured = false;

  // `work` on the side stream, ordered after what the current stream has queued and before what
  // it queues next.
  void on_side_stream(const std::function<void()>& work, bool capture) {
    const auto current = c10::cuda::getCurrentCUDAStream();
    if (!side) side = c10::cuda::getStreamFromPool(false, current.device_index());
    at::cuda::CUDAEvent before;
    before.record(current);
    before.block(*side);
    {
      const c10::cuda::CUDAStreamGuard guard(*side);
      if (!capture) {
        work();
      } else {
        const bool cache = at::autocast::is_autocast_cache_enabled();
        at::autocast::set_autocast_cache_enabled(false);
        graph = std::make_unique<at::cuda::CUDAGraph>();
        graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        try {
          work();
        } catch (...) {
          try {
            graph->capture_end();
          } catch (...) {
          }
          graph.reset();
          at::autocast::set_autocast_cache_enabled(cache);
          throw;
        }
        graph->capture_end();
        at::autocast::set_autocast_cache_enabled(cache);
        captured = true;
      }
    }
    at::cuda::CUDAEvent after;
    after.record(*side);
    after.block(current);
  }
};

CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;
void CudaGraph::warm_up(const std::function<void()>& work) { impl_->on_side_stream(work, false); }
void CudaGraph::capture(const std::function<void()>& work) {
  TORCH_CHECK(!impl_->captured, "CudaGraph: captured already");
  impl_->on_side_stream(work, true);
}
void CudaGraph::replay() {
  TORCH_CHECK(impl_->captured, "CudaGraph: replay before capture");
  impl_->graph->replay();
}
bool CudaGraph::captured() const { return impl_->captured; }

#else

bool can_capture_graphs() { return false; }

struct CudaGraph::Impl {};
namespace {
[[noreturn]] void no_graphs() {
  throw std::runtime_error(std::string("CUDA graphs need a CUDA build of LibTorch; this one (") +
                           TORCH_VERSION + ") is not");
}
}  // namespace
CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;
void CudaGraph::warm_up(const std::function<void()>&) { no_graphs(); }
void CudaGraph::capture(const std::function<void()>&) { no_graphs(); }
void CudaGraph::replay() { no_graphs(); }
bool CudaGraph::captured() const { return false; }

#endif

}  // namespace ocl::compat
