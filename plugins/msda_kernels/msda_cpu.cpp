// CPU MSDA: threads over chunks of (n, q, m) heads; per head, the valid samples' corners are
// gathered first (msda_sample.h), then all D channels accumulate in registers, as vectors of the
// CPU's own width. On x86-64 (GCC) the loop is compiled for AVX-512, AVX2 and baseline SSE2 and
// picked per call from the CPU's features (msda_cpu_isa.h), so one build runs on any x86-64.
#include <cmath>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "msda_cpu_isa.h"
#include "msda_forward.h"
#include "msda_sample.h"
#include "msda_threads.h"

#if defined(__GNUC__) && !defined(__clang__)
#define DETRT_MSDA_IVDEP _Pragma("GCC ivdep")
#else
#define DETRT_MSDA_IVDEP
#endif

namespace detrt {
namespace msda {
namespace {

// IEEE binary16 storage: ARM's __fp16 (GCC 12 has no _Float16 in C++ on aarch64), _Float16 elsewhere.
#if defined(__aarch64__) || defined(__arm__)
using Half = __fp16;
#else
using Half = _Float16;
#endif

constexpr long long kHeadsPerChunk = 128;

// Per-worker buffers, allocated before the workers start.
template <typename T>
struct Scratch {
  std::vector<Corners> corners;    // 2 * T
  std::vector<float> exps;         // T: the fused form's softmax
  std::vector<float> accumulator;  // D: run-time D only
  std::vector<T> zeros;            // D: what an outside corner reads
};

// The tensors of one call: value and output of type T; the sample tensors (locations or offsets,
// weights or logits, reference points) of type T too, or float where problem.float_samples().
template <typename T>
struct Job {
  const Problem& problem;
  const T* value;
  const void* locations;
  const void* weights;
  const void* reference;
  int reference_dim;
  T* output;
};

// Element i of one of the job's sample tensors, as float.
template <typename T>
inline float sample_at(const Job<T>& job, const void* tensor, long long i) {
  return job.problem.float_samples() ? static_cast<const float*>(tensor)[i]
                                     : static_cast<float>(static_cast<const T*>(tensor)[i]);
}

// Softmax of the T logits of one head, starting at element `first` of job.weights, into `exps`
// (exp(l - max) / sum, as torch.softmax).
template <typename T>
void softmax(const Job<T>& job, long long first, int count, float* exps) {
  for (int k = 0; k < count; ++k) {  // widened first: GCC 12 for aarch64 fails on an __fp16 max reduction
    exps[k] = sample_at(job, job.weights, first + k);
  }
  float maximum = exps[0];
  for (int k = 1; k < count; ++k) {
    maximum = std::fmax(maximum, exps[k]);
  }
  float sum = 0.0f;
  for (int k = 0; k < count; ++k) {
    exps[k] = std::exp(exps[k] - maximum);
    sum += exps[k];
  }
  for (int k = 0; k < count; ++k) {
    exps[k] /= sum;
  }
}

// The corners of the valid samples of head (n, q, m) in sample order (level by level); returns their number.
template <typename T>
int gather_corners(const Job<T>& job, long long head, Scratch<T>& scratch, Corners* corners) {
  const Problem& p = job.problem;
  const long long nq = head / p.num_heads;  // n * Lq + q
  const int samples = p.samples_per_head();
  const long long first = head * samples;
  if (job.reference_dim != 0) {
    softmax(job, first, samples, scratch.exps.data());
  }
  int count = 0;
  for (int l = 0; l < p.num_levels; ++l) {
    const Level& level = p.levels[l];
    float reference[4] = {};
    if (job.reference_dim != 0) {
      const long long source = (nq * p.num_levels + l) * job.reference_dim;
      for (int i = 0; i < job.reference_dim; ++i) {
        reference[i] = sample_at(job, job.reference, source + i);
      }
    }
    for (int k = level.first_sample; k < level.first_sample + level.points; ++k) {
      float x = sample_at(job, job.locations, 2 * (first + k));
      float y = sample_at(job, job.locations, 2 * (first + k) + 1);
      float attention;
      if (job.reference_dim != 0) {
        fused_location(reference, job.reference_dim, x, y, level, x, y);
        attention = scratch.exps[k];
      } else {
        attention = sample_at(job, job.weights, first + k);
      }
      count += sample_corners(p.method, x, y, attention, level, corners[count]) ? 1 : 0;
    }
  }
  return count;
}

// The four corner rows of one sample; outside corners read `zeros`.
template <typename T>
struct CornerRows {
  const T* row[4];
  CornerRows(const Corners& c, const T* base, long long stride, const T* zeros) {
    for (int i = 0; i < 4; ++i) {
      row[i] = c.position[i] >= 0 ? base + c.position[i] * stride : zeros;
    }
  }
};

// kLanes fp32 (or fp16) channels as one GCC/Clang vector. Each instruction-set variant uses its own
// register width: a vector wider than the registers is split through the stack on every operation.
template <int kLanes>
struct Lanes {
  typedef float Float __attribute__((vector_size(4 * kLanes)));
  typedef Half Halves __attribute__((vector_size(2 * kLanes)));
};

// Vectors go by reference: by value, their calling convention would differ between variants.
template <int kLanes>
inline void load_lanes(const float* p, typename Lanes<kLanes>::Float& v) {
  std::memcpy(&v, p, sizeof v);
}

template <int kLanes>
inline void load_lanes(const Half* p, typename Lanes<kLanes>::Float& v) {
  typename Lanes<kLanes>::Halves h;
  std::memcpy(&h, p, sizeof h);
  v = __builtin_convertvector(h, typename Lanes<kLanes>::Float);
}

template <int kLanes>
inline void store_lanes(float* p, const typename Lanes<kLanes>::Float& v) {
  std::memcpy(p, &v, sizeof v);
}

template <int kLanes>
inline void store_lanes(Half* p, const typename Lanes<kLanes>::Float& v) {
  const typename Lanes<kLanes>::Halves h = __builtin_convertvector(v, typename Lanes<kLanes>::Halves);
  std::memcpy(p, &h, sizeof h);
}

// out[d] = sum over samples of (w0*c0[d] + w1*c1[d] + w2*c2[d] + w3*c3[d]), D = kDim (a multiple of
// kLanes), with the kDim / kLanes accumulators in registers.
template <typename T, int kDim, int kLanes>
inline void accumulate_fixed(const Corners* corners, int count, const T* base, long long stride, const T* zeros,
                             T* out) {
  typedef typename Lanes<kLanes>::Float Vector;
  constexpr int kVectors = kDim / kLanes;
  static_assert(kDim % kLanes == 0, "the specialised D must be a multiple of the vector width");
  Vector acc[kVectors] = {};
  for (int i = 0; i < count; ++i) {
    const Corners& c = corners[i];
    const CornerRows<T> r(c, base, stride, zeros);
    for (int v = 0; v < kVectors; ++v) {
      Vector c0, c1, c2, c3;
      load_lanes<kLanes>(r.row[0] + v * kLanes, c0);
      load_lanes<kLanes>(r.row[1] + v * kLanes, c1);
      load_lanes<kLanes>(r.row[2] + v * kLanes, c2);
      load_lanes<kLanes>(r.row[3] + v * kLanes, c3);
      acc[v] += c.weight[0] * c0 + c.weight[1] * c1 + c.weight[2] * c2 + c.weight[3] * c3;
    }
  }
  for (int v = 0; v < kVectors; ++v) {
    store_lanes<kLanes>(out + v * kLanes, acc[v]);
  }
}

// The same for any D, accumulating in `acc` (D floats); the compiler vectorises the loop over d.
template <typename T>
inline void accumulate_any(const Corners* corners, int count, const T* base, long long stride, const T* zeros,
                           int dim, float* acc, T* out) {
  for (int d = 0; d < dim; ++d) {
    acc[d] = 0.0f;
  }
  for (int i = 0; i < count; ++i) {
    const Corners& c = corners[i];
    const CornerRows<T> r(c, base, stride, zeros);
    DETRT_MSDA_IVDEP
    for (int d = 0; d < dim; ++d) {
      acc[d] += c.weight[0] * static_cast<float>(r.row[0][d]) + c.weight[1] * static_cast<float>(r.row[1][d]) +
                c.weight[2] * static_cast<float>(r.row[2][d]) + c.weight[3] * static_cast<float>(r.row[3][d]);
    }
  }
  for (int d = 0; d < dim; ++d) {
    out[d] = static_cast<T>(acc[d]);
  }
}

// Value of head `head`'s batch item and head index: row s of it is base + s * M * D.
template <typename T>
inline const T* head_values(const Job<T>& job, long long head) {
  const Problem& p = job.problem;
  const long long m = head % p.num_heads;
  const long long n = head / p.num_heads / p.num_queries;
  return job.value + (n * p.num_values * p.num_heads + m) * p.head_dim;
}

// Asks the memory system for the value rows (D channels) that `count` gathered corners will read.
template <typename T, int kDim>
inline void prefetch_rows(const Corners* corners, int count, const T* base, long long stride, int dim) {
  constexpr int kLine = 64;
  const int bytes = (kDim > 0 ? kDim : dim) * static_cast<int>(sizeof(T));
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < 4; ++j) {
      if (corners[i].position[j] >= 0) {
        const char* row = reinterpret_cast<const char*>(base + corners[i].position[j] * stride);
        for (int offset = 0; offset < bytes; offset += kLine) {
          __builtin_prefetch(row + offset);
        }
      }
    }
  }
}

// All heads in [begin, end): one output row of D channels each. kDim 0: D known at run time.
// Two stages: while head h accumulates, the corners of head h + 1 are gathered and their value
// rows prefetched, so the scattered reads of consecutive heads overlap instead of each waiting for
// memory in turn (the decoder's samples land anywhere in a value tensor larger than the caches).
template <typename T, int kDim, int kLanes>
__attribute__((flatten)) void run_heads(const Job<T>& job, long long begin, long long end, Scratch<T>& scratch) {
  const Problem& p = job.problem;
  const int dim = p.head_dim;
  const long long stride = static_cast<long long>(p.num_heads) * dim;
  Corners* current = scratch.corners.data();
  Corners* next = current + p.samples_per_head();
  int count = gather_corners(job, begin, scratch, current);
  for (long long head = begin; head < end; ++head) {
    int next_count = 0;
    if (head + 1 < end) {
      next_count = gather_corners(job, head + 1, scratch, next);
      prefetch_rows<T, kDim>(next, next_count, head_values(job, head + 1), stride, dim);
    }
    const T* base = head_values(job, head);
    T* out = job.output + head * dim;
    if constexpr (kDim > 0) {
      accumulate_fixed<T, kDim, kLanes>(current, count, base, stride, scratch.zeros.data(), out);
    } else {
      accumulate_any(current, count, base, stride, scratch.zeros.data(), dim, scratch.accumulator.data(), out);
    }
    std::swap(current, next);
    count = next_count;
  }
}

template <typename T>
using RunHeads = void (*)(const Job<T>&, long long, long long, Scratch<T>&);

#if DETRT_MSDA_X86_VARIANTS
// The same loop compiled for AVX-512 (16 lanes) and AVX2 + FMA + F16C (8 lanes).
template <typename T, int kDim>
__attribute__((target("arch=x86-64-v4"), flatten)) void run_heads_avx512(const Job<T>& job, long long begin,
                                                                         long long end, Scratch<T>& scratch) {
  run_heads<T, kDim, 16>(job, begin, end, scratch);
}

template <typename T, int kDim>
__attribute__((target("arch=x86-64-v3"), flatten)) void run_heads_avx2(const Job<T>& job, long long begin,
                                                                       long long end, Scratch<T>& scratch) {
  run_heads<T, kDim, 8>(job, begin, end, scratch);
}
#endif

// The widest variant this CPU runs, capped by DETRT_MSDA_CPU_ISA (see cpu_isa()).
template <typename T, int kDim>
RunHeads<T> select_run_heads() {
#if DETRT_MSDA_X86_VARIANTS
  switch (cpu_isa()) {
    case CpuIsa::kAvx512:
      return run_heads_avx512<T, kDim>;
    case CpuIsa::kAvx2:
      return run_heads_avx2<T, kDim>;
    default:
      break;
  }
#endif
  return run_heads<T, kDim, 4>;  // SSE2 / NEON: 128-bit registers
}

template <typename T, int kDim>
detrt_msda_status run(const Job<T>& job, int num_threads) {
  const Problem& p = job.problem;
  const long long heads = p.heads();
  const int workers = worker_count(num_threads, heads, kHeadsPerChunk);
  std::vector<Scratch<T>> scratch;
  try {
    scratch.resize(static_cast<size_t>(workers));
    for (Scratch<T>& s : scratch) {
      s.corners.resize(2 * static_cast<size_t>(p.samples_per_head()));  // this head's and the next
      s.exps.resize(job.reference_dim != 0 ? static_cast<size_t>(p.samples_per_head()) : 0);
      s.accumulator.resize(static_cast<size_t>(p.head_dim));
      s.zeros.assign(static_cast<size_t>(p.head_dim), T(0));
    }
  } catch (const std::bad_alloc&) {
    return DETRT_MSDA_ERROR_OUT_OF_MEMORY;
  }
  const RunHeads<T> run_heads_here = select_run_heads<T, kDim>();
  parallel_for(heads, kHeadsPerChunk, workers, [&](long long begin, long long end, int worker) {
    run_heads_here(job, begin, end, scratch[static_cast<size_t>(worker)]);
  });
  return DETRT_MSDA_SUCCESS;
}

template <typename T>
detrt_msda_status dispatch(const Problem& problem, const Tensors& tensors, int num_threads) {
  const Job<T> job{problem,         static_cast<const T*>(tensors.value), tensors.locations, tensors.weights,
                   tensors.reference, tensors.reference_dim,                 static_cast<T*>(tensors.output)};
  switch (problem.head_dim) {
    case 16:
      return run<T, 16>(job, num_threads);
    case 32:
      return run<T, 32>(job, num_threads);
    case 64:
      return run<T, 64>(job, num_threads);
    default:
      return run<T, 0>(job, num_threads);
  }
}

}  // namespace

detrt_msda_status forward_cpu(const Problem& problem, const Tensors& tensors, int num_threads) {
  if (problem.heads() == 0) {
    return DETRT_MSDA_SUCCESS;
  }
  return problem.half_value() ? dispatch<Half>(problem, tensors, num_threads)
                              : dispatch<float>(problem, tensors, num_threads);
}

}  // namespace msda
}  // namespace detrt
