/* C ABI of the MSDA kernels in libdetrt_plugins (see README.md beside this file).
 *
 * Multi-scale deformable attention as specified in msda-spec.md: value (N, S, M, D) sampled at
 * (N, Lq, M, T, 2) normalised locations (T = the sum of the levels' point counts; with one count P
 * for every level that is (N, Lq, M, L, P, 2)), bilinearly or at the nearest pixel, weighted and
 * summed into (N, Lq, M*D).
 * Every entry validates the problem description before it reads any tensor and returns a
 * detrt_msda_status; detrt_msda_error_string() names it. */
#ifndef DETRT_MSDA_H
#define DETRT_MSDA_H

#include <stdint.h>

#if defined(_WIN32)
#define DETRT_MSDA_API __declspec(dllexport)
#else
#define DETRT_MSDA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this ABI: major * 10000 + minor * 100 + patch. */
#define DETRT_MSDA_VERSION 300

/* Most levels one problem may have (the CUDA kernels pass the level table by value). */
#define DETRT_MSDA_MAX_LEVELS 16

typedef enum detrt_msda_status {
  DETRT_MSDA_SUCCESS = 0,
  DETRT_MSDA_ERROR_NULL_POINTER = 1,           /* a required pointer is NULL */
  DETRT_MSDA_ERROR_INVALID_DIMENSION = 2,      /* N, Lq < 0; S, M, D, L, P < 1; or S, L too large */
  DETRT_MSDA_ERROR_INVALID_SPATIAL_SHAPES = 3, /* some H_l or W_l is zero or negative */
  DETRT_MSDA_ERROR_SHAPE_MISMATCH = 4,         /* sum of H_l * W_l differs from S */
  DETRT_MSDA_ERROR_INVALID_LEVEL_START = 5,    /* level_start_index is not the exclusive prefix sum */
  DETRT_MSDA_ERROR_UNSUPPORTED_DTYPE = 6,      /* dtype is not a detrt_msda_dtype */
  DETRT_MSDA_ERROR_UNSUPPORTED_INDEX_DTYPE = 7,/* index_dtype is not a detrt_msda_index_dtype */
  DETRT_MSDA_ERROR_INVALID_REFERENCE_DIM = 8,  /* fused form: reference_dim is neither 2 nor 4 */
  DETRT_MSDA_ERROR_CUDA_UNAVAILABLE = 9,       /* the library was built without CUDA */
  DETRT_MSDA_ERROR_CUDA = 10,                  /* a CUDA launch failed (no device, bad pointer, ...) */
  DETRT_MSDA_ERROR_PROBLEM_TOO_LARGE = 11,     /* CUDA: the T samples of one head exceed shared memory */
  DETRT_MSDA_ERROR_OUT_OF_MEMORY = 12,         /* CPU: host scratch memory could not be allocated */
  DETRT_MSDA_ERROR_INVALID_LEVEL_POINTS = 13,  /* a level_points entry below 1, T too large, or
                                                  num_points neither 0 nor T */
  DETRT_MSDA_ERROR_INVALID_METHOD = 14         /* method is not a detrt_msda_method */
} detrt_msda_status;

/* How one sample reads the value map of its level (see detrt_msda_problem.method). */
typedef enum detrt_msda_method {
  DETRT_MSDA_BILINEAR = 0, /* bilinear, corners outside the map read 0 (msda-spec.md) */
  DETRT_MSDA_DISCRETE = 1  /* the nearest pixel: xi = clamp(trunc(fl(fl(x * W_l) + 0.5)), 0, W_l - 1), yi
                              alike; every sample counts; NaN (and beyond int64) reads index 0 */
} detrt_msda_method;

/* Storage types of the float tensors; coordinates and accumulation are fp32 in every case. */
typedef enum detrt_msda_dtype {
  DETRT_MSDA_FLOAT32 = 0, /* every float tensor float32 */
  DETRT_MSDA_FLOAT16 = 1, /* every float tensor IEEE binary16 */
  DETRT_MSDA_FLOAT16_FLOAT32 = 2 /* value and output float16; sampling locations or offsets, attention
                                    weights or logits and reference points float32 (an FP16 graph
                                    that keeps its location arithmetic in float32) */
} detrt_msda_dtype;

typedef enum detrt_msda_index_dtype {
  DETRT_MSDA_INT32 = 0, /* TensorRT / ONNX */
  DETRT_MSDA_INT64 = 1  /* PyTorch */
} detrt_msda_index_dtype;

/* One MSDA problem. All tensors are dense row-major (C-contiguous) in the shapes listed.
 * spatial_shapes (L, 2) rows (H_l, W_l) and level_start_index (L,) are HOST pointers of
 * index_dtype for every entry, CPU and CUDA alike: they are validated and read on the host.
 * Samples: T per head. level_points NULL: every level has num_points (P) samples, T = L * P.
 * level_points set: level l has level_points[l] samples (each >= 1), T is their sum, samples
 * prefix(l) <= t < prefix(l + 1) belong to level l, and num_points must be 0 or T. A C initialiser
 * that leaves out the last two fields zeroes them: one point count, bilinear. */
typedef struct detrt_msda_problem {
  int64_t batch;      /* N */
  int64_t num_values; /* S = sum of H_l * W_l */
  int64_t num_heads;  /* M */
  int64_t head_dim;   /* D */
  int64_t num_queries;/* Lq */
  int64_t num_levels; /* L, 1 .. DETRT_MSDA_MAX_LEVELS */
  int64_t num_points; /* P; with level_points: 0 or T */
  int32_t dtype;      /* detrt_msda_dtype: the storage of value and output, and of the other float inputs */
  int32_t index_dtype;/* detrt_msda_index_dtype of spatial_shapes and level_start_index */
  const void* spatial_shapes;
  const void* level_start_index;
  const int32_t* level_points; /* NULL: every level samples num_points; else L HOST entries >= 1 */
  int32_t method;              /* detrt_msda_method */
} detrt_msda_problem;

/* output (N, Lq, M*D) = MSDA(value (N, S, M, D), sampling_locations (N, Lq, M, T, 2) with
 * (x, y) in [0, 1], attention_weights (N, Lq, M, T)), stored as problem->dtype says.
 * num_threads <= 0 uses std::thread::hardware_concurrency(). */
DETRT_MSDA_API detrt_msda_status detrt_msda_forward_cpu(const detrt_msda_problem* problem, const void* value,
                                                        const void* sampling_locations,
                                                        const void* attention_weights, void* output,
                                                        int num_threads);

/* Fused form: the locations and weights are computed from reference_points (N, Lq, L, reference_dim),
 * sampling_offsets (N, Lq, M, T, 2) and pre-softmax attention_logits (N, Lq, M, T):
 *   reference_dim 2 (x, y):         loc = ref + offset / (W_l, H_l)
 *   reference_dim 4 (cx, cy, w, h): loc = ref_xy + offset / P_l * ref_wh * 0.5 (P_l: the sample's level's count)
 *   weights = softmax over the T logits of each (n, q, m). */
DETRT_MSDA_API detrt_msda_status detrt_msda_fused_forward_cpu(const detrt_msda_problem* problem, const void* value,
                                                              const void* reference_points, int reference_dim,
                                                              const void* sampling_offsets,
                                                              const void* attention_logits, void* output,
                                                              int num_threads);

/* CUDA forms: tensors are DEVICE pointers, problem->spatial_shapes and problem->level_start_index
 * are HOST pointers (validated before the launch). The kernel is queued on `stream` (a
 * cudaStream_t; NULL is the default stream) and the call does not synchronise: a fault inside
 * the kernel shows up at the caller's next synchronisation. */
DETRT_MSDA_API detrt_msda_status detrt_msda_forward_cuda(const detrt_msda_problem* problem, const void* value,
                                                         const void* sampling_locations,
                                                         const void* attention_weights, void* output,
                                                         void* stream);

DETRT_MSDA_API detrt_msda_status detrt_msda_fused_forward_cuda(const detrt_msda_problem* problem,
                                                               const void* value, const void* reference_points,
                                                               int reference_dim, const void* sampling_offsets,
                                                               const void* attention_logits, void* output,
                                                               void* stream);

/* A static, human-readable name for `status` ("unknown status" for other values). */
DETRT_MSDA_API const char* detrt_msda_error_string(int status);

/* DETRT_MSDA_VERSION of the built library. */
DETRT_MSDA_API int detrt_msda_version(void);

/* 1 when the CUDA entries were compiled in, 0 when they return DETRT_MSDA_ERROR_CUDA_UNAVAILABLE. */
DETRT_MSDA_API int detrt_msda_has_cuda(void);

/* How the library was built, e.g. "cuda 13.0.88; architectures 75-real;...;90". */
DETRT_MSDA_API const char* detrt_msda_build_info(void);

#ifdef __cplusplus
}
#endif

#endif /* DETRT_MSDA_H */
