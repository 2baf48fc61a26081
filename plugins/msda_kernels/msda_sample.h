// Per-sample MSDA math shared by the CPU and CUDA kernels (msda-spec.md, "Per sample").
// Compiled by g++ (plain inline functions) and by nvcc (__host__ __device__).
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define DETRT_MSDA_HD __host__ __device__ __forceinline__
#else
#define DETRT_MSDA_HD inline
#endif

namespace detrt {
namespace msda {

// One level of the value pyramid: (H_l, W_l) and its first row in the flattened S axis.
struct Level {
  int height;
  int width;
  int start;
};

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

// Fused form, location: 2-value reference points (x, y) give ref + offset / (W_l, H_l);
// 4-value (cx, cy, w, h) give ref_xy + offset / P * ref_wh * 0.5 (msda-spec.md, "How the
// module feeds it"). Operation order follows the PyTorch module so fp32 results agree.
DETRT_MSDA_HD void fused_location(const float* reference, int reference_dim, float offset_x, float offset_y,
                                  int num_points, const Level& level, float& x, float& y) {
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
