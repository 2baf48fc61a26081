// msda_cuda.cu itself, compiled as host C++ under cuda_emulation.h (found first as <cuda_runtime.h>
// and <cuda_fp16.h> through this folder's include path).
#include "cuda_emulation.h"

#include "../../msda_cuda.cu"

namespace {

// The kernels' static shared memory: one level table each (msda_kernel's `levels`).
const bool kStaticSharedRegistered =
    (detrt_emulation::set_static_shared_bytes(sizeof(detrt::msda::Level) * DETRT_MSDA_MAX_LEVELS), true);

}  // namespace
