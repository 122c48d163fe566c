// Which path an ocl::ops operation takes (see include/ocl/ops/path.h).
#include "ocl/ops/path.h"

#include "kernels.h"

#include "ocl/compat.h"

namespace ocl::ops {

at::ScalarType compute_dtype(const at::Tensor& x) {
  const auto device = x.device().type();
  if ((device == c10::kCUDA || device == c10::kCPU) && compat::autocast_enabled(device))
    return compat::autocast_dtype(device);
  return x.scalar_type();
}

bool cuda_kernels_compiled() { return kernels::cuda() != nullptr; }

Path fused_path(bool fused, const at::Tensor& x) {
  return fused && x.device().is_cuda() && cuda_kernels_compiled() ? Path::kKernel
                                                                  : Path::kComposite;
}

}  // namespace ocl::ops
