// The C ABI of detrt_msda.h: validation, then the CPU or CUDA forward.
#include "detrt_msda.h"

#include "msda_forward.h"
#include "msda_problem.h"

namespace {

using detrt::msda::Problem;
using detrt::msda::Tensors;

// Validates the problem and the tensor pointers; an empty problem (N or Lq zero) needs none.
detrt_msda_status prepare(const detrt_msda_problem* problem, const Tensors& tensors, Problem& out) {
  const detrt_msda_status status = detrt::msda::validate_problem(problem, out);
  if (status != DETRT_MSDA_SUCCESS) {
    return status;
  }
  if (tensors.reference_dim != 0 && tensors.reference_dim != 2 && tensors.reference_dim != 4) {
    return DETRT_MSDA_ERROR_INVALID_REFERENCE_DIM;
  }
  const bool missing = tensors.value == nullptr || tensors.locations == nullptr || tensors.weights == nullptr ||
                       tensors.output == nullptr || (tensors.reference_dim != 0 && tensors.reference == nullptr);
  return missing && out.heads() > 0 ? DETRT_MSDA_ERROR_NULL_POINTER : DETRT_MSDA_SUCCESS;
}

// Fused calls pass reference_dim as given; 0 is reserved for the plain form.
int fused_dim(int reference_dim) { return reference_dim == 0 ? -1 : reference_dim; }

}  // namespace

extern "C" {

detrt_msda_status detrt_msda_forward_cpu(const detrt_msda_problem* problem, const void* value,
                                         const void* sampling_locations, const void* attention_weights,
                                         void* output, int num_threads) {
  const Tensors tensors{value, sampling_locations, attention_weights, nullptr, 0, output};
  Problem p;
  const detrt_msda_status status = prepare(problem, tensors, p);
  return status != DETRT_MSDA_SUCCESS ? status : detrt::msda::forward_cpu(p, tensors, num_threads);
}

detrt_msda_status detrt_msda_fused_forward_cpu(const detrt_msda_problem* problem, const void* value,
                                               const void* reference_points, int reference_dim,
                                               const void* sampling_offsets, const void* attention_logits,
                                               void* output, int num_threads) {
  const Tensors tensors{value, sampling_offsets, attention_logits, reference_points, fused_dim(reference_dim), output};
  Problem p;
  const detrt_msda_status status = prepare(problem, tensors, p);
  return status != DETRT_MSDA_SUCCESS ? status : detrt::msda::forward_cpu(p, tensors, num_threads);
}

detrt_msda_status detrt_msda_forward_cuda(const detrt_msda_problem* problem, const void* value,
                                          const void* sampling_locations, const void* attention_weights,
                                          void* output, void* stream) {
  const Tensors tensors{value, sampling_locations, attention_weights, nullptr, 0, output};
  Problem p;
  const detrt_msda_status status = prepare(problem, tensors, p);
  return status != DETRT_MSDA_SUCCESS ? status : detrt::msda::forward_cuda(p, tensors, stream);
}

detrt_msda_status detrt_msda_fused_forward_cuda(const detrt_msda_problem* problem, const void* value,
                                                const void* reference_points, int reference_dim,
                                                const void* sampling_offsets, const void* attention_logits,
                                                void* output, void* stream) {
  const Tensors tensors{value, sampling_offsets, attention_logits, reference_points, fused_dim(reference_dim), output};
  Problem p;
  const detrt_msda_status status = prepare(problem, tensors, p);
  return status != DETRT_MSDA_SUCCESS ? status : detrt::msda::forward_cuda(p, tensors, stream);
}

const char* detrt_msda_error_string(int status) {
  switch (status) {
    case DETRT_MSDA_SUCCESS:
      return "success";
    case DETRT_MSDA_ERROR_NULL_POINTER:
      return "a required pointer is null";
    case DETRT_MSDA_ERROR_INVALID_DIMENSION:
      return "invalid dimension: N and Lq must be >= 0, S, M, D and P >= 1, L in 1..16, all below 2^31";
    case DETRT_MSDA_ERROR_INVALID_SPATIAL_SHAPES:
      return "spatial_shapes must be positive (H_l, W_l) with H_l * W_l below 2^31";
    case DETRT_MSDA_ERROR_SHAPE_MISMATCH:
      return "spatial_shapes do not cover S: the sum of H_l * W_l differs from value's S";
    case DETRT_MSDA_ERROR_INVALID_LEVEL_START:
      return "level_start_index is not the exclusive prefix sum of H_l * W_l";
    case DETRT_MSDA_ERROR_UNSUPPORTED_DTYPE:
      return "unsupported dtype: expected float32, float16, or float16 value with float32 samples";
    case DETRT_MSDA_ERROR_UNSUPPORTED_INDEX_DTYPE:
      return "unsupported index dtype: expected int32 or int64";
    case DETRT_MSDA_ERROR_INVALID_REFERENCE_DIM:
      return "reference points must have 2 (x, y) or 4 (cx, cy, w, h) values";
    case DETRT_MSDA_ERROR_CUDA_UNAVAILABLE:
      return "libdetrt_plugins was built without CUDA";
    case DETRT_MSDA_ERROR_CUDA:
      return "a CUDA kernel launch failed";
    case DETRT_MSDA_ERROR_PROBLEM_TOO_LARGE:
      return "the T samples per head do not fit the CUDA kernel's shared memory";
    case DETRT_MSDA_ERROR_OUT_OF_MEMORY:
      return "host memory allocation failed";
    case DETRT_MSDA_ERROR_INVALID_LEVEL_POINTS:
      return "level_points must hold L counts >= 1 whose sum T is below 2^31, with num_points 0 or T";
    case DETRT_MSDA_ERROR_INVALID_METHOD:
      return "unsupported method: expected DETRT_MSDA_BILINEAR (0) or DETRT_MSDA_DISCRETE (1)";
    default:
      return "unknown status";
  }
}

int detrt_msda_version(void) { return DETRT_MSDA_VERSION; }

int detrt_msda_has_cuda(void) { return detrt::msda::cuda_built() ? 1 : 0; }

const char* detrt_msda_build_info(void) { return detrt::msda::cuda_build_info(); }

}  // extern "C"
