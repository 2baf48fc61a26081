// CUDA MSDA, fp32 and fp16 storage (fp32 coordinates and accumulation), plain and fused.
//
// One block handles a run of consecutive (n, q, m) heads. First the block turns every sample
// of its heads into bilinear corners in shared memory (msda_sample.h: each location and weight
// is read once per head, not once per channel; the fused form computes the locations and the
// softmax here). Then a group of lanes per head walks the samples, each lane owning 16 bytes of
// channels (float4 or 8 halves) that it gathers with one vector load per corner. D in
// {16, 32, 64} is specialised; other D, or unaligned tensors, use one warp per head.
//
// Small problems (the decoder: a few thousand heads) would leave most of the GPU idle and each
// thread walking a long chain of dependent loads, so there every head gets several lane groups
// in one warp ("sample groups"), each walking every groups-th sample, summed by warp shuffles.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "msda_forward.h"
#include "msda_sample.h"

// Hooks for the host emulation of tests/cuda_emulation (which defines both); nvcc uses these.
#ifndef DETRT_MSDA_DYNAMIC_SHARED
#define DETRT_MSDA_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif
#ifndef DETRT_MSDA_LAUNCH
#define DETRT_MSDA_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#endif

namespace detrt {
namespace msda {
namespace {

constexpr int kBlockThreads = 256;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 750
constexpr int kMinBlocks = 4;  // Turing: 1024 threads per SM
#else
constexpr int kMinBlocks = 6;  // 1536 threads per SM (2048 on sm_80/90): at most 40 registers per thread
#endif
// Dynamic shared memory per block: 48 KiB (the most without opting in) less the kernel's static
// level table, since static and dynamic shared memory share that budget.
constexpr int kSharedBytes = 48 * 1024 - static_cast<int>(sizeof(Level)) * DETRT_MSDA_MAX_LEVELS;
constexpr int kWarp = 32;
// Sample groups are added while the problem has fewer lane threads than this per multiprocessor
// (half of the 2048 an sm_80/90 multiprocessor holds).
constexpr int kThreadsWantedPerMultiprocessor = 1024;

// Everything a block needs besides the tensors; passed by value.
struct Shape {
  Level levels[DETRT_MSDA_MAX_LEVELS];
  long long heads;
  int num_values;
  int num_heads;
  int num_queries;
  int num_levels;
  int num_samples;  // T: samples per head
  int method;       // detrt_msda_method
  int head_dim;
  int heads_per_block;
  int sample_groups;  // lane groups per head (a power of two; 1 for the scalar form)
  int reference_dim;  // 0: plain form
};

// value and output of type T; the sample tensors of type T too, or float where `float_samples`.
template <typename T>
struct Pointers {
  const T* __restrict__ value;
  const void* __restrict__ locations;  // fused: offsets
  const void* __restrict__ weights;    // fused: logits
  const void* __restrict__ reference;
  T* __restrict__ output;
  bool float_samples;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ void from_float(float v, float* out) { *out = v; }

// Element i of one of the sample tensors, as float.
template <typename T>
__device__ __forceinline__ float sample_at(const Pointers<T>& t, const void* tensor, long long i) {
  return t.float_samples ? static_cast<const float*>(tensor)[i] : to_float(static_cast<const T*>(tensor)[i]);
}
__device__ __forceinline__ void from_float(float v, __half* out) { *out = __float2half_rn(v); }

// 16 bytes of channels: 4 floats or 8 halves.
template <typename T>
struct Vec;

template <>
struct Vec<float> {
  static constexpr int kCount = 4;
  __device__ static void load(const float* p, float* out) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  }
  __device__ static void store(float* p, const float* in) {
    *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]);
  }
};

template <>
struct Vec<__half> {
  static constexpr int kCount = 8;
  __device__ static void load(const __half* p, float* out) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const __half2* pairs = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(pairs[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
  __device__ static void store(__half* p, const float* in) {
    uint4 raw;
    __half2* pairs = reinterpret_cast<__half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      pairs[i] = __floats2half2_rn(in[2 * i], in[2 * i + 1]);
    }
    *reinterpret_cast<uint4*>(p) = raw;
  }
};

// Fused form: softmax statistics (max, sum of exp) of each head's logits, staged through the
// corner table's first weight slot.
template <typename T>
__device__ void softmax_stats(const Shape& s, const Pointers<T>& t, long long first_head, int heads_here,
                              Corners* table, float2* stats) {
  const int samples = s.num_samples;
  const int row = samples + 1;
  for (int i = threadIdx.x; i < heads_here * samples; i += blockDim.x) {
    const int head = i / samples;
    table[head * row + i % samples].weight[0] = sample_at(t, t.weights, first_head * samples + i);
  }
  __syncthreads();
  if (threadIdx.x < heads_here) {
    const Corners* logits = table + threadIdx.x * row;
    float maximum = logits[0].weight[0];
    for (int k = 1; k < samples; ++k) {
      maximum = fmaxf(maximum, logits[k].weight[0]);
    }
    float sum = 0.0f;
    for (int k = 0; k < samples; ++k) {
      sum += expf(logits[k].weight[0] - maximum);
    }
    stats[threadIdx.x] = make_float2(maximum, sum);
  }
  __syncthreads();
}

// Fills table[head * (T + 1) + k] with the corners of sample k of each head of the block.
template <typename T, bool kFused>
__device__ void fill_corners(const Shape& s, const Pointers<T>& t, const Level* levels, long long first_head,
                             int heads_here, Corners* table, const float2* stats) {
  const int samples = s.num_samples;
  const int row = samples + 1;
  const long long first_nq = first_head / s.num_heads;  // (n * Lq + q) of the block's first head
  const int first_m = static_cast<int>(first_head % s.num_heads);
  for (int i = threadIdx.x; i < heads_here * samples; i += blockDim.x) {
    const int head = i / samples;
    const int k = i % samples;
    const int l = level_of_sample(levels, s.num_levels, k);
    const Level& level = levels[l];
    const long long sample = first_head * samples + i;
    float x = sample_at(t, t.locations, 2 * sample);
    float y = sample_at(t, t.locations, 2 * sample + 1);
    float attention;
    Corners& slot = table[head * row + k];
    if constexpr (kFused) {
      const long long nq = first_nq + (first_m + head) / s.num_heads;
      const long long source = (nq * s.num_levels + l) * s.reference_dim;
      float reference[4] = {sample_at(t, t.reference, source), sample_at(t, t.reference, source + 1), 0.0f, 0.0f};
      if (s.reference_dim == 4) {
        reference[2] = sample_at(t, t.reference, source + 2);
        reference[3] = sample_at(t, t.reference, source + 3);
      }
      fused_location(reference, s.reference_dim, x, y, level, x, y);
      attention = expf(slot.weight[0] - stats[head].x) / stats[head].y;
    } else {
      attention = sample_at(t, t.weights, sample);
    }
    Corners corners;
    if (!sample_corners(s.method, x, y, attention, level, corners)) {
      corners = Corners{{-1, -1, -1, -1}, {0.0f, 0.0f, 0.0f, 0.0f}};
    }
    slot = corners;
  }
  __syncthreads();
}

// One head's output for the kCount channels of `lane`: one 16-byte load per corner and sample.
// Lane group `group` of `groups` walks samples group, group + groups, ...; the groups of a head sit
// kLanes threads apart in one warp and are summed by shuffles, which every thread of the block
// makes (`active` is false for threads past the block's heads: they add zeros and store nothing).
template <typename T, int kDim>
__device__ void accumulate_vector(const Shape& s, const Pointers<T>& t, long long head, const Corners* corners,
                                  int lane, int group, bool active) {
  constexpr int kCount = Vec<T>::kCount;
  constexpr int kLanes = kDim / kCount;
  const int samples = active ? s.num_samples : 0;
  const long long m = head % s.num_heads;
  const long long n = head / s.num_heads / s.num_queries;
  const T* base = t.value + (n * s.num_values * s.num_heads + m) * kDim + lane * kCount;
  const long long stride = static_cast<long long>(s.num_heads) * kDim;
  float acc[kCount] = {};
  for (int k = group; k < samples; k += s.sample_groups) {
    const Corners c = corners[k];
    float sum[kCount] = {};
#pragma unroll
    for (int corner = 0; corner < 4; ++corner) {
      if (c.position[corner] >= 0) {
        float v[kCount];
        Vec<T>::load(base + c.position[corner] * stride, v);
#pragma unroll
        for (int j = 0; j < kCount; ++j) {
          sum[j] = fmaf(c.weight[corner], v[j], sum[j]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kCount; ++j) {
      acc[j] += sum[j];
    }
  }
  if (s.sample_groups > 1) {
    const unsigned warp_first = threadIdx.x & ~static_cast<unsigned>(kWarp - 1);
    const unsigned present = min(static_cast<unsigned>(kWarp), blockDim.x - warp_first);
    const unsigned mask = present == kWarp ? 0xffffffffu : (1u << present) - 1u;
    for (int offset = kLanes; offset < kLanes * s.sample_groups; offset *= 2) {
#pragma unroll
      for (int j = 0; j < kCount; ++j) {
        acc[j] += __shfl_xor_sync(mask, acc[j], offset);
      }
    }
  }
  if (active && group == 0) {
    Vec<T>::store(t.output + head * kDim + lane * kCount, acc);
  }
}

// Any D, any alignment: one warp per head, lanes over channels, scalar loads.
template <typename T>
__device__ void accumulate_scalar(const Shape& s, const Pointers<T>& t, long long head, const Corners* corners,
                                  int lane) {
  const int samples = s.num_samples;
  const long long m = head % s.num_heads;
  const long long n = head / s.num_heads / s.num_queries;
  const T* base = t.value + (n * s.num_values * s.num_heads + m) * s.head_dim;
  const long long stride = static_cast<long long>(s.num_heads) * s.head_dim;
  for (int d = lane; d < s.head_dim; d += kWarp) {
    float acc = 0.0f;
    for (int k = 0; k < samples; ++k) {
      const Corners c = corners[k];
      float sum = 0.0f;
#pragma unroll
      for (int corner = 0; corner < 4; ++corner) {
        if (c.position[corner] >= 0) {
          sum = fmaf(c.weight[corner], to_float(base[c.position[corner] * stride + d]), sum);
        }
      }
      acc += sum;
    }
    from_float(acc, t.output + head * s.head_dim + d);
  }
}

// kDim 0: the scalar fallback with one warp per head. kFused: offsets, logits and reference points.
template <typename T, int kDim, bool kFused>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocks)
    msda_kernel(const Shape shape, const Pointers<T> pointers) {
  DETRT_MSDA_DYNAMIC_SHARED(shared);
  __shared__ Level levels[DETRT_MSDA_MAX_LEVELS];
  // Thread 0 copies the level table (a block may have fewer threads than levels); static indices
  // keep the kernel parameter in constant memory.
  if (threadIdx.x == 0) {
#pragma unroll
    for (int l = 0; l < DETRT_MSDA_MAX_LEVELS; ++l) {
      if (l < shape.num_levels) {
        levels[l] = shape.levels[l];
      }
    }
  }
  const int row = shape.num_samples + 1;
  Corners* table = reinterpret_cast<Corners*>(shared);
  float2* stats = reinterpret_cast<float2*>(table + shape.heads_per_block * row);
  const long long first_head = static_cast<long long>(blockIdx.x) * shape.heads_per_block;
  const int heads_here = static_cast<int>(min(static_cast<long long>(shape.heads_per_block), shape.heads - first_head));
  __syncthreads();
  if constexpr (kFused) {
    softmax_stats(shape, pointers, first_head, heads_here, table, stats);
  }
  fill_corners<T, kFused>(shape, pointers, levels, first_head, heads_here, table, stats);

  constexpr int kLanes = kDim > 0 ? kDim / Vec<T>::kCount : kWarp;
  const int head = threadIdx.x / (kLanes * shape.sample_groups);
  if constexpr (kDim > 0) {
    const int group = threadIdx.x / kLanes % shape.sample_groups;
    accumulate_vector<T, kDim>(shape, pointers, first_head + head, table + head * row, threadIdx.x % kLanes, group,
                               head < heads_here);
  } else {
    if (head < heads_here) {
      accumulate_scalar<T>(shape, pointers, first_head + head, table + head * row, threadIdx.x % kLanes);
    }
  }
}

template <typename T, int kDim>
detrt_msda_status launch(const Problem& p, const Tensors& t, cudaStream_t stream) {
  constexpr int kLanes = kDim > 0 ? kDim / Vec<T>::kCount : kWarp;
  const bool fused = t.reference_dim != 0;
  const int row_bytes = (p.samples_per_head() + 1) * static_cast<int>(sizeof(Corners));
  const int head_bytes = row_bytes + (fused ? static_cast<int>(sizeof(float2)) : 0);
  int sample_groups = 1;
  if (kDim > 0) {
    int device = 0;
    int multiprocessors = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      return DETRT_MSDA_ERROR_CUDA;
    }
    const long long wanted = static_cast<long long>(kThreadsWantedPerMultiprocessor) * multiprocessors;
    while (kLanes * sample_groups * 2 <= kWarp && p.heads() * kLanes * sample_groups < wanted) {
      sample_groups *= 2;
    }
  }
  const int lanes_per_head = kLanes * sample_groups;
  int heads_per_block = std::min(kBlockThreads / lanes_per_head, kSharedBytes / head_bytes);
  const int heads_per_warp = kWarp / lanes_per_head > 0 ? kWarp / lanes_per_head : 1;
  if (heads_per_block >= heads_per_warp) {
    heads_per_block -= heads_per_block % heads_per_warp;  // whole warps
  }
  if (heads_per_block == 0) {
    return DETRT_MSDA_ERROR_PROBLEM_TOO_LARGE;
  }
  const long long blocks = (p.heads() + heads_per_block - 1) / heads_per_block;
  if (blocks > 0x7fffffffLL) {
    return DETRT_MSDA_ERROR_PROBLEM_TOO_LARGE;
  }
  Shape shape{};
  for (int l = 0; l < p.num_levels; ++l) {
    shape.levels[l] = p.levels[l];
  }
  shape.heads = p.heads();
  shape.num_values = p.num_values;
  shape.num_heads = p.num_heads;
  shape.num_queries = p.num_queries;
  shape.num_levels = p.num_levels;
  shape.num_samples = p.num_samples;
  shape.method = p.method;
  shape.head_dim = p.head_dim;
  shape.heads_per_block = heads_per_block;
  shape.sample_groups = sample_groups;
  shape.reference_dim = t.reference_dim;
  const Pointers<T> pointers{static_cast<const T*>(t.value), t.locations, t.weights, t.reference,
                             static_cast<T*>(t.output), p.float_samples()};
  const dim3 grid(static_cast<unsigned>(blocks));
  const dim3 block(static_cast<unsigned>(heads_per_block * lanes_per_head));
  const size_t shared = static_cast<size_t>(heads_per_block) * head_bytes;
  if (fused) {
    DETRT_MSDA_LAUNCH((msda_kernel<T, kDim, true>), grid, block, shared, stream)(shape, pointers);
  } else {
    DETRT_MSDA_LAUNCH((msda_kernel<T, kDim, false>), grid, block, shared, stream)(shape, pointers);
  }
  return cudaGetLastError() == cudaSuccess ? DETRT_MSDA_SUCCESS : DETRT_MSDA_ERROR_CUDA;
}

bool aligned16(const void* pointer) { return reinterpret_cast<unsigned long long>(pointer) % 16 == 0; }

template <typename T>
detrt_msda_status dispatch(const Problem& p, const Tensors& t, cudaStream_t stream) {
  if (!aligned16(t.value) || !aligned16(t.output)) {
    return launch<T, 0>(p, t, stream);
  }
  switch (p.head_dim) {
    case 16:
      return launch<T, 16>(p, t, stream);
    case 32:
      return launch<T, 32>(p, t, stream);
    case 64:
      return launch<T, 64>(p, t, stream);
    default:
      return launch<T, 0>(p, t, stream);
  }
}

}  // namespace

detrt_msda_status forward_cuda(const Problem& problem, const Tensors& tensors, void* stream) {
  if (problem.heads() == 0) {
    return DETRT_MSDA_SUCCESS;
  }
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  return problem.half_value() ? dispatch<__half>(problem, tensors, cuda_stream)
                              : dispatch<float>(problem, tensors, cuda_stream);
}

bool cuda_built() { return true; }

const char* cuda_build_info() {
  return "cuda " DETRT_MSDA_CUDA_VERSION "; architectures " DETRT_MSDA_CUDA_ARCHITECTURES;
}

}  // namespace msda
}  // namespace detrt
