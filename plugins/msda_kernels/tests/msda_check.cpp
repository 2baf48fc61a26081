// Correctness of the MSDA kernels through the C ABI against a float64 reference written here,
// without Python. `msda_check cpu` (default): the CPU kernels, built for the host or cross-built
// (aarch64 under qemu, tests/test_msda_cross.py). `msda_check cuda`: the CUDA entries, built against
// the host emulation of tests/cuda_emulation (tests/test_msda_cuda_emulated.py), with "device"
// pointers that are host pointers. Plain and fused forms, fp32 and fp16, specialised D (16, 32, 64)
// and generic D, L 1..5, P 1..8, unequal point counts per level (level_points), both methods
// (bilinear and discrete: the discrete locations include x*W + 0.5 exactly on integers, the edges,
// far outside the map, +-inf and NaN), locations outside, on and inside the level borders, value and
// output pointers not 16-byte aligned (the CUDA generic path), and samples per head at both edges
// of the CUDA kernel's shared memory. Exit status 0 when every check passes.
//
// Tolerance: |out - ref| <= tol * (|ref| + max|ref|), tol 1e-5 for fp32 (one fp32 rounding of h, w
// and the weights, at most T*4 fp32 terms: errors ~1e-7 of the output's scale) and 1e-3 for fp16
// (the output is rounded to half, relative step 2^-11). Wrong corners or weights err by 1e-2 and more.
// The discrete index is computed here with the same two fp32 roundings the kernels must make, so it
// agrees exactly; a kernel that rounds differently picks another pixel and errs by the value's scale.
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
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
  std::vector<int32_t> counts = {};  // per-level point counts (level_points); empty: `points` for every level
  int method = DETRT_MSDA_BILINEAR;

  int points_of(int l) const { return counts.empty() ? points : counts[static_cast<size_t>(l)]; }
  int samples() const {
    int total = 0;
    for (size_t l = 0; l < levels.size(); ++l) total += points_of(static_cast<int>(l));
    return total;
  }
  int level_of(int k) const {
    int l = 0;
    for (int first = 0; k >= first + points_of(l); first += points_of(l++)) {
    }
    return l;
  }
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

// A float x near some (j + 0.5) / size on which a fused multiply-add, fl(x * size + 0.5), truncates to
// another index than the two roundings fl(fl(x * size) + 0.5) (both computed exactly in double here).
// Such x exist for some sizes only (19 and 23, not powers of two); for the others the pixel centre
// 0.5 / size.
float rounding_trap(int size) {
  for (int j = 0; j < size; ++j) {
    const float centre = static_cast<float>((j + 0.5) / size);
    float below = centre, above = centre;
    for (int step = 0; step < 8; ++step) {
      for (const float x : {below, above}) {
        const double exact = static_cast<double>(x) * size;
        const float two_roundings = static_cast<float>(static_cast<double>(static_cast<float>(exact)) + 0.5);
        if (static_cast<int>(two_roundings) != static_cast<int>(static_cast<float>(exact + 0.5))) {
          return x;
        }
      }
      below = std::nextafter(below, 0.0f);
      above = std::nextafter(above, 2.0f);
    }
  }
  return 0.5f / static_cast<float>(size);
}

// A coordinate for the discrete method: (j + 0.5) / size puts x*W + 0.5 on the integer j + 1 (exactly
// when the products are exact, else within an ulp: the reference rounds as the kernel must), the
// rounding trap above, the edges and just beyond them, far outside, +-inf and NaN (index 0), or
// uniform in [-0.25, 1.25].
float discrete_coordinate(int size, std::mt19937& rng) {
  const float s = static_cast<float>(size);
  const float special[] = {0.0f, 1.0f, 0.5f / s, -0.5f / s, (s - 0.5f) / s, (s + 0.5f) / s, (s - 1.5f) / s,
                           std::floor(s / 2) / s + 0.5f / s, rounding_trap(size), rounding_trap(size), -1e-7f,
                           1.0f - 1e-7f, -3.0f, 4.0f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN};
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
  const auto place = c.method == DETRT_MSDA_DISCRETE ? discrete_coordinate : coordinate;
  for (size_t h = 0; h < heads; ++h) {
    std::vector<float> logits(static_cast<size_t>(c.samples()));
    float sum = 0.0f;
    for (float& v : logits) {
      v = std::exp(normal(rng));
      sum += v;
    }
    for (int l = 0, k = 0; l < L; ++l) {
      for (int p = 0; p < c.points_of(l); ++p, ++k) {
        in.locations.push_back(place(c.levels[l].second, rng));
        in.locations.push_back(place(c.levels[l].first, rng));
        in.weights.push_back(logits[static_cast<size_t>(k)] / sum);
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

// The discrete method's index on an axis of `size` pixels, written from the contract: fl(x * size)
// then fl(+ 0.5) (volatile: no fused multiply-add), truncated toward zero as x86's conversion to int64
// does (NaN and values at or beyond 2^63 give INT64_MIN), clamped to [0, size - 1].
int discrete_pixel(float x, int size) {
  volatile float product = x * static_cast<float>(size);
  volatile float shifted = product + 0.5f;
  const float f = shifted;
  const int64_t truncated = std::isnan(f) || std::fabs(f) >= 0x1p63f ? INT64_MIN : static_cast<int64_t>(f);
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(truncated, 0), size - 1));
}

// The value at the discrete sample of one channel (always inside the map), float64.
double discrete_sample(const std::vector<double>& value, const Case& c, const Inputs& in, int n, int m, int d, int l,
                       float x, float y) {
  const int H = static_cast<int>(in.shapes[2 * l]), W = static_cast<int>(in.shapes[2 * l + 1]);
  const int64_t s = in.starts[l] + static_cast<int64_t>(discrete_pixel(y, H)) * W + discrete_pixel(x, W);
  return value[((static_cast<size_t>(n) * in.total + s) * c.heads + m) * c.dim + d];
}

// Reference output (N, Lq, M*D). fused: locations from reference (cx, cy, w, h) and offsets in fp32,
// in the module's operation order, and the softmax of the logits in float64.
std::vector<double> reference_output(const Case& c, const Inputs& in, const std::vector<double>& value,
                                     const std::vector<float>& locations, const std::vector<float>& weights,
                                     bool fused) {
  const int L = static_cast<int>(c.levels.size()), K = c.samples();
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
          const int l = c.level_of(k);
          float x = locations[2 * (head * K + k)], y = locations[2 * (head * K + k) + 1];
          if (fused) {
            const float* r = &in.reference[((static_cast<size_t>(n) * c.queries + q) * L + l) * 4];
            x = r[0] + x / static_cast<float>(c.points_of(l)) * r[2] * 0.5f;
            y = r[1] + y / static_cast<float>(c.points_of(l)) * r[3] * 0.5f;
          }
          const double a = fused ? attention[k] / sum : attention[k];
          for (int d = 0; d < c.dim; ++d) {
            out[head * c.dim + d] += a * (c.method == DETRT_MSDA_DISCRETE ? discrete_sample(value, c, in, n, m, d, l, x, y)
                                                                          : sample(value, c, in, n, m, d, l, x, y));
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

// How one check calls the library.
struct Call {
  bool cuda;        // the CUDA entries (emulated) instead of the CPU ones
  int threads;      // CPU threads
  bool misaligned;  // value and output one element past a 16-byte boundary
  detrt_msda_status expected;
};

// Runs one form with value and output of type T and the sample tensors of type S (T, or float with a
// half T: DETRT_MSDA_FLOAT16_FLOAT32) and compares; prints a line per failure, returns the failure count.
template <typename T, typename S = T>
int check(const Case& c, const Inputs& in, bool fused, const Call& call, const char* name) {
  const bool half = sizeof(T) == 2;
  const detrt_msda_dtype dtype =
      !half ? DETRT_MSDA_FLOAT32 : (sizeof(S) == 2 ? DETRT_MSDA_FLOAT16 : DETRT_MSDA_FLOAT16_FLOAT32);
  const size_t shift = call.misaligned ? 1 : 0;
  std::vector<T> value_storage(in.value.size() + shift);
  std::copy(in.value.begin(), in.value.end(), value_storage.begin() + shift);
  const T* value = value_storage.data() + shift;
  const std::vector<S> locations = cast<S>(fused ? in.offsets : in.locations);
  const std::vector<S> weights = cast<S>(fused ? in.logits : in.weights);
  const std::vector<S> reference = cast<S>(in.reference);
  std::vector<T> output_storage(static_cast<size_t>(c.batch) * c.queries * c.heads * c.dim + shift);
  T* output = output_storage.data() + shift;
  // With level_points, num_points alternates between its two valid values, 0 and T.
  const int64_t points = c.counts.empty() ? c.points : (c.dim % 2 == 0 ? c.samples() : 0);
  const detrt_msda_problem problem{c.batch, in.total, c.heads, c.dim, c.queries,
                                   static_cast<int64_t>(c.levels.size()), points,
                                   dtype, DETRT_MSDA_INT64,
                                   in.shapes.data(), in.starts.data(),
                                   c.counts.empty() ? nullptr : c.counts.data(), c.method};
  detrt_msda_status status;
  if (call.cuda) {
    status = fused ? detrt_msda_fused_forward_cuda(&problem, value, reference.data(), 4, locations.data(),
                                                   weights.data(), output, nullptr)
                   : detrt_msda_forward_cuda(&problem, value, locations.data(), weights.data(), output, nullptr);
  } else {
    status = fused ? detrt_msda_fused_forward_cpu(&problem, value, reference.data(), 4, locations.data(),
                                                  weights.data(), output, call.threads)
                   : detrt_msda_forward_cpu(&problem, value, locations.data(), weights.data(), output, call.threads);
  }
  if (status != call.expected) {
    std::printf("FAIL %s: status %d (%s), expected %d\n", name, status, detrt_msda_error_string(status),
                call.expected);
    return 1;
  }
  if (status != DETRT_MSDA_SUCCESS) {
    return 0;
  }
  Inputs rounded = in;  // the reference sees the inputs as the kernel did (rounded to half where stored so)
  rounded.reference = widen(reference);
  const std::vector<float> value_f = widen(std::vector<T>(value, value + in.value.size()));
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

// The CUDA kernel keeps (T + 1) 32-byte corner records per head (+ 8 bytes fused) in 48 KiB less
// its 16-level static table: T = 1529 fills it exactly with one head per block (plain), one more
// sample (or the fused form's 8 bytes) does not fit.
constexpr int kEdgeLevels = 11, kEdgePoints = 139;  // 1529 samples per head

int main(int argc, char** argv) {
  const bool cuda = argc > 1 && std::string(argv[1]) == "cuda";
  const Case cases[] = {
      {{{1, 1}}, 1, 7, 1, 16, 1},
      {{{4, 8}, {1, 1}}, 2, 9, 2, 32, 2},
      {{{8, 4}, {2, 2}, {1, 1}}, 1, 11, 3, 64, 3},
      {{{16, 8}, {8, 4}, {4, 2}, {2, 1}}, 2, 13, 8, 32, 4},
      {{{8, 16}, {4, 8}, {2, 4}, {1, 2}, {1, 1}}, 2, 5, 2, 16, 8},
      {{{5, 7}, {3, 3}}, 3, 6, 2, 24, 5},
      {{{3, 1}, {1, 6}}, 1, 4, 1, 8, 6},
      {{{5, 4}, {2, 2}}, 2, 5, 3, 40, 3},       // generic D over more than one warp of lanes
      {{{20, 12}, {10, 6}}, 1, 300, 2, 40, 4},  // more heads than one CPU worker's chunk
      // unequal point counts per level (D-FINE's [3, 6, 3]), two levels, one level given as a list; at
      // most 8 heads each (one emulated CUDA block: each block costs its threads' start-up under ASan)
      {{{8, 4}, {4, 2}, {2, 1}}, 2, 2, 2, 32, 0, {3, 6, 3}},
      {{{5, 7}, {3, 3}}, 1, 4, 2, 24, 0, {1, 4}},
      {{{6, 5}}, 1, 4, 2, 16, 0, {5}},
      {{{4, 4}, {2, 3}, {1, 1}, {2, 2}}, 1, 2, 4, 64, 0, {2, 1, 7, 3}},
      // the discrete method: uniform and unequal counts, specialised and generic D
      {{{8, 4}, {4, 2}, {2, 1}}, 2, 2, 2, 32, 0, {3, 6, 3}, DETRT_MSDA_DISCRETE},
      {{{1, 1}, {3, 5}}, 1, 4, 2, 16, 0, {1, 4}, DETRT_MSDA_DISCRETE},
      {{{7, 3}}, 1, 6, 1, 64, 4, {}, DETRT_MSDA_DISCRETE},
      {{{5, 4}, {2, 2}}, 1, 4, 2, 40, 3, {}, DETRT_MSDA_DISCRETE},
      {{{19, 23}, {3, 5}}, 1, 4, 2, 16, 0, {3, 2}, DETRT_MSDA_DISCRETE},  // sizes with rounding traps
  };
  std::vector<std::pair<int, int>> edge(kEdgeLevels, {3, 2});
  edge.back() = {1, 1};
  const Case fits = {edge, 1, 2, 2, 16, kEdgePoints};
  Case generic_fits = fits;
  generic_fits.dim = 24;
  Case too_large = fits;
  too_large.levels.push_back({1, 1});  // 12 levels of 139 points: 1668 samples
  // The same edge with unequal counts: the limit is on T, not on L times the first level's count.
  const Case unequal_fits = {{{3, 2}, {1, 1}}, 1, 2, 2, 16, 0, {1000, 529}, DETRT_MSDA_DISCRETE};
  Case unequal_too_large = unequal_fits;
  unequal_too_large.counts = {1000, 530};
  int failed = 0, run = 0;
  unsigned seed = 1;
  const auto run_case = [&](const Case& c, bool misaligned, detrt_msda_status plain, detrt_msda_status fused) {
    const Inputs in = make_inputs(c, seed++);
    for (int threads : cuda ? std::vector<int>{0} : std::vector<int>{1, 3}) {
      const Call call{cuda, threads, misaligned, plain}, fused_call{cuda, threads, misaligned, fused};
      char name[128];
      const auto label = [&](const char* form) {
        std::snprintf(name, sizeof name, "case %u (D=%d, T=%d%s%s) threads=%d %s", seed - 1, c.dim, c.samples(),
                      c.method == DETRT_MSDA_DISCRETE ? ", discrete" : "", misaligned ? ", misaligned" : "", threads,
                      form);
        return name;
      };
      failed += check<float>(c, in, false, call, label("fp32"));
      failed += check<Half>(c, in, false, call, label("fp16"));
      failed += check<float>(c, in, true, fused_call, label("fused fp32"));
      failed += check<Half>(c, in, true, fused_call, label("fused fp16"));
      failed += check<Half, float>(c, in, false, call, label("fp16 value, fp32 samples"));
      failed += check<Half, float>(c, in, true, fused_call, label("fused fp16 value, fp32 samples"));
      run += 6;
    }
  };
  const detrt_msda_status ok = DETRT_MSDA_SUCCESS;
  const detrt_msda_status too_big = cuda ? DETRT_MSDA_ERROR_PROBLEM_TOO_LARGE : DETRT_MSDA_SUCCESS;
  for (const Case& c : cases) {
    if (cuda && c.queries * c.batch * c.heads > 256) {
      continue;  // the CPU chunking case: emulated, its 600 heads cost seconds and add no CUDA path
    }
    run_case(c, false, ok, ok);
    // The specialised D: misaligned tensors take the generic path instead (for one count, bilinear: the
    // per-level and discrete cases reach the generic path through D 24 and 40).
    if (c.dim % 16 == 0 && c.counts.empty() && c.method == DETRT_MSDA_BILINEAR) {
      run_case(c, true, ok, ok);
    }
  }
  run_case(fits, false, ok, too_big);
  run_case(generic_fits, false, ok, too_big);
  run_case(too_large, false, too_big, too_big);
  run_case(unequal_fits, false, ok, too_big);
  run_case(unequal_too_large, false, too_big, too_big);
  std::printf("%d of %d checks passed (%s)\n", run - failed, run, detrt_msda_build_info());
  return failed == 0 ? 0 : 1;
}
