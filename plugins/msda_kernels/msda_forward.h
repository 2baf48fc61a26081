// Internal entry points behind the C ABI: one validated problem, its tensors, one device.
#pragma once

#include "detrt_msda.h"
#include "msda_problem.h"

namespace detrt {
namespace msda {

// The tensors of one call, all of problem.dtype. Plain form: `locations` (N, Lq, M, L, P, 2) and
// `weights` (N, Lq, M, L, P); reference_dim is 0. Fused form: `reference` (N, Lq, L, reference_dim),
// `locations` holds the offsets (N, Lq, M, L, P, 2) and `weights` the logits (N, Lq, M, L*P).
struct Tensors {
  const void* value;
  const void* locations;
  const void* weights;
  const void* reference;
  int reference_dim;
  void* output;
};

detrt_msda_status forward_cpu(const Problem& problem, const Tensors& tensors, int num_threads);

detrt_msda_status forward_cuda(const Problem& problem, const Tensors& tensors, void* stream);

// True when forward_cuda runs kernels (the library was built with CUDA).
bool cuda_built();

// "cuda <version>; architectures <list>" or why CUDA is absent.
const char* cuda_build_info();

}  // namespace msda
}  // namespace detrt
