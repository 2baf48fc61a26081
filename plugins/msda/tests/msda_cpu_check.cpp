// Correctness of the CPU kernels through the C ABI against a float64 reference written here,
// without Python: built for the host or cross-built (aarch64 under qemu) by tests/test_msda_cross.py.
// Plain and fused forms, fp32 and fp16, specialised D (16, 32, 64) and generic D, L 1..5, P 1..8,
// locations outside, on and inside the level borders. Exit status 0 when every case passes.
//
// Tolerance: |out - ref| <= tol * (|ref| + max|ref|), tol 1e-5 for fp32 (one fp32 rounding of h, w
// and the weights, at most L*P*4 fp32 terms: errors ~1e-7 of the output's scale) and 1e-3 for fp16
// (the output is rounded to half, relative step 2^-11). Wrong corners or weights err by 1e-2 and more.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "detrt_msda.h"

namespace {

#if defined(__aarch64__) || defined(__arm__)
typedef __fp16 Half;  // GCC 12 has no _Float16 in C++ on aarch64
#else
typedef _Float16 Half;
#endif

struct Case {
  std::vector<std::pair<int, int>> levels;
  int batch, queries, heads, dim, points;
};

struct Inputs {
  std::vector<int64_t> shapes, starts;
  int64_t total = 0;
  std::vector<float> value, locations, weights;       // plain form
  std::vector<float> reference, offsets, logits;      // fused form (reference_dim 4)
};

// A normalised coordinate for a map of `size` pixels: uniform in [-0.25, 1.25], or (half the time)
// one of the borders: h == -1 and h == size (excluded), just inside them, 0, 1, pixel centres.
float coordinate(int size, std::mt19937& rng) {
  const float s = static_cast<float>(size);
  const float special[] = {0.0f, 1.0f, -0.5f / s, (s + 0.5f) / s, 0.5f / s, (s - 0.5f) / s,
                           (-0.5f + 0.0009765625f) / s, (s + 0.5f - 0.0009765625f) / s, 1.5f / s};
  std::uniform_real_distribution<float> uniform(-0.25f, 1.25f);
  if (rng() % 2 == 0) {
    return special[rng() % (sizeof special / sizeof special[0])];
  }
  return uniform(rng);
}

Inputs make_inputs(const Case& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Inputs in;
  for (const auto& level : c.levels) {
    in.shapes.push_back(level.first);
    in.shapes.push_back(level.second);
    in.starts.push_back(in.total);
    in.total += static_cast<int64_t>(level.first) * level.second;
  }
  const int L = static_cast<int>(c.levels.size());
  const size_t heads = static_cast<size_t>(c.batch) * c.queries * c.heads;
  in.value.resize(static_cast<size_t>(c.batch) * in.total * c.heads * c.dim);
  for (float& v : in.value) v = normal(rng);
  for (size_t h = 0; h < heads; ++h) {
    std::vector<float> logits(static_cast<size_t>(L) * c.points);
    float sum = 0.0f;
    for (float& v : logits) {
      v = std::exp(normal(rng));
      sum += v;
    }
    for (int l = 0; l < L; ++l) {
      for (int p = 0; p < c.points; ++p) {
        in.locations.push_back(coordinate(c.levels[l].second, rng));
        in.locations.push_back(coordinate(c.levels[l].first, rng));
        in.weights.push_back(logits[static_cast<size_t>(l) * c.points + p] / sum);
        in.offsets.push_back(3.0f * normal(rng));
        in.offsets.push_back(3.0f * normal(rng));
        in.logits.push_back(2.0f * normal(rng));
      }
    }
  }
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  in.reference.resize(static_cast<size_t>(c.batch) * c.queries * L * 4);
  for (float& v : in.reference) v = unit(rng);
  return in;
}

// Bilinear sample of one channel, float64, zero outside (msda-spec.md, "Per sample").
double sample(const std::vector<double>& value, const Case& c, const Inputs& in, int n, int m, int d, int l,
              double x, double y) {
  const int H = static_cast<int>(in.shapes[2 * l]), W = static_cast<int>(in.shapes[2 * l + 1]);
  const double h = y * H - 0.5, w = x * W - 0.5;
  if (!(h > -1.0 && w > -1.0 && h < H && w < W)) return 0.0;
  const int h0 = static_cast<int>(std::floor(h)), w0 = static_cast<int>(std::floor(w));
  const double lh = h - h0, lw = w - w0;
  double total = 0.0;
  for (int dy = 0; dy < 2; ++dy) {
    for (int dx = 0; dx < 2; ++dx) {
      const int r = h0 + dy, col = w0 + dx;
      if (r < 0 || r >= H || col < 0 || col >= W) continue;
      const int64_t s = in.starts[l] + static_cast<int64_t>(r) * W + col;
      const double weight = (dy ? lh : 1.0 - lh) * (dx ? lw : 1.0 - lw);
      total += weight * value[((static_cast<size_t>(n) * in.total + s) * c.heads + m) * c.dim + d];
    }
  }
  return total;
}

// Reference output (N, Lq, M*D). fused: locations from reference (cx, cy, w, h) and offsets in fp32,
// in the module's operation order, and the softmax of the logits in float64.
std::vector<double> reference_output(const Case& c, const Inputs& in, const std::vector<double>& value,
                                     const std::vector<float>& locations, const std::vector<float>& weights,
                                     bool fused) {
  const int L = static_cast<int>(c.levels.size()), K = L * c.points;
  std::vector<double> out(static_cast<size_t>(c.batch) * c.queries * c.heads * c.dim, 0.0);
  for (int n = 0; n < c.batch; ++n) {
    for (int q = 0; q < c.queries; ++q) {
      for (int m = 0; m < c.heads; ++m) {
        const size_t head = (static_cast<size_t>(n) * c.queries + q) * c.heads + m;
        std::vector<double> attention(K);
        double sum = 0.0;
        for (int k = 0; k < K; ++k) {
          attention[k] = fused ? std::exp(static_cast<double>(weights[head * K + k])) : weights[head * K + k];
          sum += attention[k];
        }
        for (int k = 0; k < K; ++k) {
          const int l = k / c.points;
          float x = locations[2 * (head * K + k)], y = locations[2 * (head * K + k) + 1];
          if (fused) {
            const float* r = &in.reference[((static_cast<size_t>(n) * c.queries + q) * L + l) * 4];
            x = r[0] + x / static_cast<float>(c.points) * r[2] * 0.5f;
            y = r[1] + y / static_cast<float>(c.points) * r[3] * 0.5f;
          }
          const double a = fused ? attention[k] / sum : attention[k];
          for (int d = 0; d < c.dim; ++d) {
            out[head * c.dim + d] += a * sample(value, c, in, n, m, d, l, x, y);
          }
        }
      }
    }
  }
  return out;
}

template <typename T>
std::vector<T> cast(const std::vector<float>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
std::vector<float> widen(const std::vector<T>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}

// Runs one form in dtype T and compares; prints a line per failure, returns the failure count.
template <typename T>
int check(const Case& c, const Inputs& in, bool fused, int threads, const char* name) {
  const bool half = sizeof(T) == 2;
  const std::vector<T> value = cast<T>(in.value);
  const std::vector<T> locations = cast<T>(fused ? in.offsets : in.locations);
  const std::vector<T> weights = cast<T>(fused ? in.logits : in.weights);
  const std::vector<T> reference = cast<T>(in.reference);
  std::vector<T> output(static_cast<size_t>(c.batch) * c.queries * c.heads * c.dim);
  const detrt_msda_problem problem{c.batch, in.total, c.heads, c.dim, c.queries,
                                   static_cast<int64_t>(c.levels.size()), c.points,
                                   half ? DETRT_MSDA_FLOAT16 : DETRT_MSDA_FLOAT32, DETRT_MSDA_INT64,
                                   in.shapes.data(), in.starts.data()};
  const detrt_msda_status status =
      fused ? detrt_msda_fused_forward_cpu(&problem, value.data(), reference.data(), 4, locations.data(),
                                           weights.data(), output.data(), threads)
            : detrt_msda_forward_cpu(&problem, value.data(), locations.data(), weights.data(), output.data(),
                                     threads);
  if (status != DETRT_MSDA_SUCCESS) {
    std::printf("FAIL %s: status %d (%s)\n", name, status, detrt_msda_error_string(status));
    return 1;
  }
  Inputs rounded = in;  // the reference sees the inputs as the kernel did (rounded to half for fp16)
  rounded.reference = widen(reference);
  const std::vector<float> value_f = widen(value);
  const std::vector<double> value_d(value_f.begin(), value_f.end());
  const std::vector<double> expected =
      reference_output(c, rounded, value_d, widen(locations), widen(weights), fused);
  double scale = 0.0;
  for (double e : expected) scale = std::fmax(scale, std::fabs(e));
  const double tolerance = half ? 1e-3 : 1e-5;
  int failures = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double got = static_cast<double>(output[i]);
    if (!(std::fabs(got - expected[i]) <= tolerance * (std::fabs(expected[i]) + scale))) {
      if (failures++ < 3) std::printf("FAIL %s: output[%zu] = %.9g, float64 reference %.9g\n", name, i, got, expected[i]);
    }
  }
  return failures > 0 ? 1 : 0;
}

}  // namespace

int main() {
  const Case cases[] = {
      {{{1, 1}}, 1, 7, 1, 16, 1},
      {{{4, 8}, {1, 1}}, 2, 9, 2, 32, 2},
      {{{8, 4}, {2, 2}, {1, 1}}, 1, 11, 3, 64, 3},
      {{{16, 8}, {8, 4}, {4, 2}, {2, 1}}, 2, 13, 8, 32, 4},
      {{{8, 16}, {4, 8}, {2, 4}, {1, 2}, {1, 1}}, 2, 5, 2, 16, 8},
      {{{5, 7}, {3, 3}}, 3, 6, 2, 24, 5},
      {{{3, 1}, {1, 6}}, 1, 4, 1, 8, 6},
      {{{20, 12}, {10, 6}}, 1, 300, 2, 40, 4},  // more heads than one worker's chunk, generic D > 16
  };
  int failed = 0, run = 0;
  unsigned seed = 1;
  for (const Case& c : cases) {
    const Inputs in = make_inputs(c, seed++);
    char name[96];
    for (int threads : {1, 3}) {
      std::snprintf(name, sizeof name, "case %u D=%d threads=%d fp32", seed - 1, c.dim, threads);
      failed += check<float>(c, in, false, threads, name);
      std::snprintf(name, sizeof name, "case %u D=%d threads=%d fp16", seed - 1, c.dim, threads);
      failed += check<Half>(c, in, false, threads, name);
      std::snprintf(name, sizeof name, "case %u D=%d threads=%d fused fp32", seed - 1, c.dim, threads);
      failed += check<float>(c, in, true, threads, name);
      std::snprintf(name, sizeof name, "case %u D=%d threads=%d fused fp16", seed - 1, c.dim, threads);
      failed += check<Half>(c, in, true, threads, name);
      run += 4;
    }
  }
  std::printf("%d of %d checks passed (%s)\n", run - failed, run, detrt_msda_build_info());
  return failed == 0 ? 0 : 1;
}
