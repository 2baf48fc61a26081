// Validation of a detrt_msda_problem into the level table that the kernels read.
#pragma once

#include "detrt_msda.h"
#include "msda_sample.h"

namespace detrt {
namespace msda {

// The validated problem: dimensions as ints (every one fits, see validate_problem) and levels.
struct Problem {
  int batch;
  int num_values;
  int num_heads;
  int head_dim;
  int num_queries;
  int num_levels;
  int num_samples;  // T: samples per head, the sum of the levels' point counts
  int method;       // detrt_msda_method
  detrt_msda_dtype dtype;

  bool half_value() const { return dtype != DETRT_MSDA_FLOAT32; }
  // Locations/offsets, weights/logits and reference points in float32 (else in the value's type).
  bool float_samples() const { return dtype != DETRT_MSDA_FLOAT16; }
  Level levels[DETRT_MSDA_MAX_LEVELS];

  long long heads() const { return static_cast<long long>(batch) * num_queries * num_heads; }
  int samples_per_head() const { return num_samples; }
};

// Checks `problem` (pointers, dtypes, method, dimensions, then spatial_shapes, level_start_index and
// level_points, reading at most num_levels entries of each) and fills `out`. Reads nothing else.
detrt_msda_status validate_problem(const detrt_msda_problem* problem, Problem& out);

}  // namespace msda
}  // namespace detrt
