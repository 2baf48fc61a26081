// Per-sample MSDA math shared by the CPU and CUDA kernels (msda-spec.md, "Per sample").
// Compiled by g++ (plain inline functions) and by nvcc (__host__ __device__).
#pragma once

#include <math.h>

#include "detrt_msda.h"

#if defined(__CUDACC__)
#define DETRT_MSDA_HD __host__ __device__ __forceinline__
#else
#define DETRT_MSDA_HD inline
#endif

namespace detrt {
namespace msda {

// One level of the value pyramid: (H_l, W_l), its first row in the flattened S axis, its point
// count P_l and its first sample among a head's T (the exclusive prefix sum of the counts).
struct Level {
  int height;
  int width;
  int start;
  int points;
  int first_sample;
};

// The level of sample k of a head (first_sample <= k < first_sample + points); `levels` in order.
DETRT_MSDA_HD int level_of_sample(const Level* levels, int num_levels, int k) {
  int l = 0;
  while (l + 1 < num_levels && k >= levels[l + 1].first_sample) {
    ++l;
  }
  return l;
}

// The four bilinear corners of one sample: positions in the flattened S axis (-1 where the
// corner lies outside the level: it reads 0) and weights that already include the attention
// weight. Corner order is (h0,w0), (h0,w0+1), (h0+1,w0), (h0+1,w0+1). 32 bytes, 16-aligned so
// the CUDA kernels move it with two vector loads.
struct alignas(16) Corners {
  int position[4];
  float weight[4];
};

// Fills `corners` for the normalised location (x, y) on `level`, scaled by `attention`.
// Returns false (and leaves `corners` untouched) when the sample contributes nothing:
// unless -1 < h < H_l and -1 < w < W_l, with h = y*H_l - 0.5 and w = x*W_l - 0.5 (NaN too).
DETRT_MSDA_HD bool bilinear_corners(float x, float y, float attention, const Level& level, Corners& corners) {
  const float h = fmaf(y, static_cast<float>(level.height), -0.5f);
  const float w = fmaf(x, static_cast<float>(level.width), -0.5f);
  if (!(h > -1.0f && w > -1.0f && h < static_cast<float>(level.height) && w < static_cast<float>(level.width))) {
    return false;
  }
  const float h_floor = floorf(h);
  const float w_floor = floorf(w);
  const int h0 = static_cast<int>(h_floor);
  const int w0 = static_cast<int>(w_floor);
  const float lh = h - h_floor;
  const float lw = w - w_floor;
  const float hh = 1.0f - lh;
  const float hw = 1.0f - lw;
  const bool top = h0 >= 0;
  const bool bottom = h0 + 1 < level.height;
  const bool left = w0 >= 0;
  const bool right = w0 + 1 < level.width;
  const int base = level.start + h0 * level.width + w0;
  corners.position[0] = top && left ? base : -1;
  corners.position[1] = top && right ? base + 1 : -1;
  corners.position[2] = bottom && left ? base + level.width : -1;
  corners.position[3] = bottom && right ? base + level.width + 1 : -1;
  corners.weight[0] = top && left ? attention * (hh * hw) : 0.0f;
  corners.weight[1] = top && right ? attention * (hh * lw) : 0.0f;
  corners.weight[2] = bottom && left ? attention * (lh * hw) : 0.0f;
  corners.weight[3] = bottom && right ? attention * (lh * lw) : 0.0f;
  return true;
}

// fl(fl(a * b) + 0.5): one fp32 rounding after the multiply and one after the add, never a fused
// multiply-add (which picks another pixel for some x, e.g. x = 0.0263157878 on 19 pixels). On the
// host the product goes through a volatile: GCC contracts a * b + c into an FMA wherever the target
// has one (the AVX2 and AVX-512 variants, aarch64) and sees through casts to double.
DETRT_MSDA_HD float scaled_plus_half(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(a, b), 0.5f);
#else
  volatile float product = a * b;
  return product + 0.5f;
#endif
}

// The discrete method's index on an axis of `size` pixels: trunc(fl(fl(x * size) + 0.5)) clamped to
// [0, size - 1]. NaN, and values that PyTorch's x86 conversion to int64 turns into INT64_MIN (at or
// beyond 2^63, +inf), read 0, as `.to(torch.int64).clamp(0, size - 1)` does there.
DETRT_MSDA_HD int discrete_index(float coordinate, int size) {
  const float f = scaled_plus_half(coordinate, static_cast<float>(size));
  if (!(f >= 1.0f && f < 0x1p63f)) {
    return 0;
  }
  return f >= static_cast<float>(size) ? size - 1 : static_cast<int>(f);
}

// The discrete method as bilinear corners: the nearest pixel (clamped to the map, never outside)
// as corner 0 with weight `attention`, the other three absent.
DETRT_MSDA_HD void discrete_corner(float x, float y, float attention, const Level& level, Corners& corners) {
  const int xi = discrete_index(x, level.width);
  const int yi = discrete_index(y, level.height);
  corners.position[0] = level.start + yi * level.width + xi;
  corners.position[1] = -1;
  corners.position[2] = -1;
  corners.position[3] = -1;
  corners.weight[0] = attention;
  corners.weight[1] = 0.0f;
  corners.weight[2] = 0.0f;
  corners.weight[3] = 0.0f;
}

// One sample by `method` (detrt_msda_method): false when it contributes nothing (bilinear only).
DETRT_MSDA_HD bool sample_corners(int method, float x, float y, float attention, const Level& level,
                                  Corners& corners) {
  if (method == DETRT_MSDA_DISCRETE) {
    discrete_corner(x, y, attention, level, corners);
    return true;
  }
  return bilinear_corners(x, y, attention, level, corners);
}

// Fused form, location: 2-value reference points (x, y) give ref + offset / (W_l, H_l);
// 4-value (cx, cy, w, h) give ref_xy + offset / P_l * ref_wh * 0.5 with P_l the level's point count
// (msda-spec.md, "How the module feeds it"). Operation order follows the PyTorch module so fp32
// results agree.
DETRT_MSDA_HD void fused_location(const float* reference, int reference_dim, float offset_x, float offset_y,
                                  const Level& level, float& x, float& y) {
  const int num_points = level.points;
  if (reference_dim == 2) {
    x = reference[0] + offset_x / static_cast<float>(level.width);
    y = reference[1] + offset_y / static_cast<float>(level.height);
  } else {
    x = reference[0] + offset_x / static_cast<float>(num_points) * reference[2] * 0.5f;
    y = reference[1] + offset_y / static_cast<float>(num_points) * reference[3] * 0.5f;
  }
}

}  // namespace msda
}  // namespace detrt
