// Validation of a detrt_msda_problem (see msda_problem.h).
#include "msda_problem.h"

#include <cstdint>
#include <limits>

namespace detrt {
namespace msda {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

int64_t read_index(const void* data, int32_t index_dtype, int64_t i) {
  return index_dtype == DETRT_MSDA_INT32 ? static_cast<const int32_t*>(data)[i]
                                         : static_cast<const int64_t*>(data)[i];
}

bool in_range(int64_t value, int64_t low) { return value >= low && value <= kIntMax; }

// Element counts of the largest tensor (N*Lq*M*T*2 or N*S*M*D) must fit int64 comfortably.
bool counts_fit(const detrt_msda_problem& p, int64_t samples_per_head) {
  const double samples = static_cast<double>(p.batch) * p.num_queries * p.num_heads * samples_per_head * 2;
  const double values = static_cast<double>(p.batch) * p.num_values * p.num_heads * p.head_dim;
  const double outputs = static_cast<double>(p.batch) * p.num_queries * p.num_heads * p.head_dim;
  const double limit = 0x1p62;
  return samples < limit && values < limit && outputs < limit;
}

// T, the samples per head, from num_points (one count for every level) or level_points; -1 with
// `status` set when they are invalid. num_levels is already known to be 1..DETRT_MSDA_MAX_LEVELS.
int64_t samples_per_head(const detrt_msda_problem& p, detrt_msda_status& status) {
  if (p.level_points == nullptr) {
    status = DETRT_MSDA_ERROR_INVALID_DIMENSION;
    return in_range(p.num_points, 1) && p.num_points * p.num_levels <= kIntMax ? p.num_points * p.num_levels : -1;
  }
  status = DETRT_MSDA_ERROR_INVALID_LEVEL_POINTS;
  int64_t total = 0;
  for (int64_t l = 0; l < p.num_levels; ++l) {
    if (p.level_points[l] < 1) {
      return -1;
    }
    total += p.level_points[l];
  }
  return total <= kIntMax && (p.num_points == 0 || p.num_points == total) ? total : -1;
}

detrt_msda_status check_dimensions(const detrt_msda_problem& p, int64_t& samples) {
  if (p.num_levels < 1 || p.num_levels > DETRT_MSDA_MAX_LEVELS) {
    return DETRT_MSDA_ERROR_INVALID_DIMENSION;
  }
  detrt_msda_status status = DETRT_MSDA_SUCCESS;
  samples = samples_per_head(p, status);
  if (samples < 0) {
    return status;
  }
  if (!in_range(p.batch, 0) || !in_range(p.num_queries, 0) || !in_range(p.num_values, 1) ||
      !in_range(p.num_heads, 1) || !in_range(p.head_dim, 1) || !counts_fit(p, samples)) {
    return DETRT_MSDA_ERROR_INVALID_DIMENSION;
  }
  return DETRT_MSDA_SUCCESS;
}

detrt_msda_status check_levels(const detrt_msda_problem& p, Problem& out) {
  int64_t total = 0;
  int first_sample = 0;
  for (int64_t l = 0; l < p.num_levels; ++l) {
    const int points = static_cast<int>(p.level_points != nullptr ? p.level_points[l] : p.num_points);
    const int64_t height = read_index(p.spatial_shapes, p.index_dtype, 2 * l);
    const int64_t width = read_index(p.spatial_shapes, p.index_dtype, 2 * l + 1);
    if (!in_range(height, 1) || !in_range(width, 1) || height * width > kIntMax) {
      return DETRT_MSDA_ERROR_INVALID_SPATIAL_SHAPES;
    }
    if (read_index(p.level_start_index, p.index_dtype, l) != total) {
      return DETRT_MSDA_ERROR_INVALID_LEVEL_START;
    }
    out.levels[l] = Level{static_cast<int>(height), static_cast<int>(width), static_cast<int>(total), points,
                          first_sample};
    first_sample += points;
    total += height * width;
    if (total > p.num_values) {
      return DETRT_MSDA_ERROR_SHAPE_MISMATCH;
    }
  }
  return total == p.num_values ? DETRT_MSDA_SUCCESS : DETRT_MSDA_ERROR_SHAPE_MISMATCH;
}

}  // namespace

detrt_msda_status validate_problem(const detrt_msda_problem* problem, Problem& out) {
  if (problem == nullptr || problem->spatial_shapes == nullptr || problem->level_start_index == nullptr) {
    return DETRT_MSDA_ERROR_NULL_POINTER;
  }
  const detrt_msda_problem& p = *problem;
  if (p.dtype != DETRT_MSDA_FLOAT32 && p.dtype != DETRT_MSDA_FLOAT16 && p.dtype != DETRT_MSDA_FLOAT16_FLOAT32) {
    return DETRT_MSDA_ERROR_UNSUPPORTED_DTYPE;
  }
  if (p.index_dtype != DETRT_MSDA_INT32 && p.index_dtype != DETRT_MSDA_INT64) {
    return DETRT_MSDA_ERROR_UNSUPPORTED_INDEX_DTYPE;
  }
  if (p.method != DETRT_MSDA_BILINEAR && p.method != DETRT_MSDA_DISCRETE) {
    return DETRT_MSDA_ERROR_INVALID_METHOD;
  }
  int64_t samples = 0;
  const detrt_msda_status dimensions = check_dimensions(p, samples);
  if (dimensions != DETRT_MSDA_SUCCESS) {
    return dimensions;
  }
  const detrt_msda_status levels = check_levels(p, out);
  if (levels != DETRT_MSDA_SUCCESS) {
    return levels;
  }
  out.batch = static_cast<int>(p.batch);
  out.num_values = static_cast<int>(p.num_values);
  out.num_heads = static_cast<int>(p.num_heads);
  out.head_dim = static_cast<int>(p.head_dim);
  out.num_queries = static_cast<int>(p.num_queries);
  out.num_levels = static_cast<int>(p.num_levels);
  out.num_samples = static_cast<int>(samples);
  out.method = p.method;
  out.dtype = static_cast<detrt_msda_dtype>(p.dtype);
  return DETRT_MSDA_SUCCESS;
}

}  // namespace msda
}  // namespace detrt
