// How a fused operation of ocl::ops is computed: its ATen composite, or its own kernel (CUDA on
// a GPU; on the CPU the kernel's arithmetic emulated on the host, for tests).
#pragma once

#include <ATen/core/Tensor.h>

namespace ocl::ops {

enum class Path {
  /// The op spelled in ATen operations: the CPU path, the GPU path with model.fused off, and the
  /// reference every kernel is tested against.
  kComposite,
  /// One kernel forward, one backward (an autograd function). On CUDA tensors the CUDA kernels
  /// (throws where this build has none); on CPU tensors their arithmetic run on the host.
  kKernel,
};

/// The dtype a GEMM on `x` computes in: autocast's for x's device when it is on, else x's.
at::ScalarType compute_dtype(const at::Tensor& x);

/// Whether this build compiled ocl's CUDA kernels (a CUDA LibTorch with nvcc).
bool cuda_kernels_compiled();

/// The path model.fused asks for on tensors like `x`: the kernel on a GPU where this build has
/// it, else the composite (on the CPU the composite is the faster path).
Path fused_path(bool fused, const at::Tensor& x);

}  // namespace ocl::ops
