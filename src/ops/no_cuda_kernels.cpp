// A build without ocl::ops' CUDA kernels (a CPU LibTorch, or no nvcc): kernels::cuda() has none,
// and the ops take their composites on a GPU. kernels.cu defines it where they are built.
#include "kernels.h"

namespace ocl::ops::kernels {

const Kernels* cuda() { return nullptr; }
int64_t weight_bias_grad_fallbacks() { return 0; }

}  // namespace ocl::ops::kernels
