// The CUDA entry points of a library built without a CUDA compiler: they validate, then
// return DETRT_MSDA_ERROR_CUDA_UNAVAILABLE.
#include "msda_forward.h"

namespace detrt {
namespace msda {

detrt_msda_status forward_cuda(const Problem&, const Tensors&, void*) { return DETRT_MSDA_ERROR_CUDA_UNAVAILABLE; }

bool cuda_built() { return false; }

const char* cuda_build_info() { return "built without CUDA: " DETRT_MSDA_NO_CUDA_REASON; }

}  // namespace msda
}  // namespace detrt
