// A thin host emulation of the CUDA execution model, enough to compile msda_cuda.cu unchanged as C++
// and run its kernels on the CPU (tests/test_msda_cuda_emulated.py). A launch checks the limits a
// GPU checks (threads per block, grid size, 48 KiB of static plus dynamic shared memory without
// opt-in) and fails as cudaGetLastError() would; then it runs the grid block after block, every
// thread of a block on its own std::thread, so __syncthreads() is a real barrier. The dynamic shared
// memory is a heap block of exactly the launch's size (AddressSanitizer reports any access past
// it), guarded on both sides by canaries that the launch checks afterwards. "Device" pointers are
// host pointers.
#pragma once

#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
template <typename T>
T min(T a, T b) {
  return b < a ? b : a;
}

// cuda_fp16.h: binary16 storage, conversions rounding to nearest even.
struct __half {
  _Float16 bits;
};
struct __half2 {
  __half x, y;
};
inline float __half2float(__half h) { return static_cast<float>(h.bits); }
inline __half __float2half_rn(float f) { return __half{static_cast<_Float16>(f)}; }
inline float2 __half22float2(__half2 h) { return {__half2float(h.x), __half2float(h.y)}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }

typedef void* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9, cudaErrorLaunchFailure = 4 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };

namespace detrt_emulation {

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned long long kMaxGridX = 0x7fffffffULL;
constexpr size_t kSharedLimit = 48 * 1024;  // static + dynamic, without cudaFuncSetAttribute opt-in
constexpr size_t kCanary = 64;
// Multiprocessors of the one emulated device: few, so that the test shapes take both launch
// shapes of msda_cuda.cu (with and without sample groups).
constexpr int kMultiprocessors = 2;

inline thread_local uint3 thread_index;
inline uint3 block_index;
inline dim3 block_dim;
inline unsigned char* dynamic_shared = nullptr;
inline cudaError_t last_error = cudaSuccess;
inline size_t static_shared_bytes = 0;
inline std::vector<float> shuffle_slots;  // one per thread of the running block

// Block-wide barrier; a thread that returns drops out of it.
class Barrier {
 public:
  explicit Barrier(unsigned count) : expected_(count) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const unsigned long long generation = generation_;
    if (++arrived_ == expected_) {
      release();
    } else {
      changed_.wait(lock, [&] { return generation_ != generation; });
    }
  }
  // Between blocks, when no thread waits.
  void reset(unsigned count) {
    std::lock_guard<std::mutex> lock(mutex_);
    expected_ = count;
    arrived_ = 0;
  }
  void drop() {
    std::lock_guard<std::mutex> lock(mutex_);
    --expected_;
    if (arrived_ > 0 && arrived_ == expected_) {
      release();
    }
  }

 private:
  void release() {
    arrived_ = 0;
    ++generation_;
    changed_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  unsigned expected_;
  unsigned arrived_ = 0;
  unsigned long long generation_ = 0;
};

inline Barrier* block_barrier = nullptr;

// Shared memory declared `__shared__` inside a kernel: the emulation cannot see its size, so the
// test registers it (kernels here declare one level table).
inline void set_static_shared_bytes(size_t bytes) { static_shared_bytes = bytes; }

template <typename... Params, typename... Args>
void run_grid(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, Args&&... args) {
  const unsigned long long threads = 1ULL * block.x * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || grid.x == 0 || grid.x > kMaxGridX ||
      shared + static_shared_bytes > kSharedLimit) {
    std::fprintf(stderr, "emulated launch refused: grid %u, block %llu threads, %zu + %zu bytes shared\n", grid.x,
                 threads, shared, static_shared_bytes);
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  // `shared` bytes of garbage (as on a GPU) between two canaries; under AddressSanitizer the block
  // is exactly `shared` bytes, so reads past it are reported as well.
#if defined(__SANITIZE_ADDRESS__)
  constexpr size_t canary = 0;
#else
  constexpr size_t canary = kCanary;
#endif
  const size_t bytes = shared + 2 * canary;
  unsigned char* memory = nullptr;
  Barrier gate(static_cast<unsigned>(threads));     // every thread, between blocks
  Barrier barrier(static_cast<unsigned>(threads));  // __syncthreads() within a block
  block_barrier = &barrier;
  block_dim = block;
  shuffle_slots.assign(threads, 0.0f);
  // The threads of one block, reused block after block: thread 0 sets each block up and checks it.
  const auto worker = [&](unsigned t) {
    thread_index = {t % block.x, t / block.x % block.y, t / block.x / block.y};
    for (unsigned b = 0; b < grid.x; ++b) {
      if (t == 0) {
        memory = static_cast<unsigned char*>(std::malloc(bytes > 0 ? bytes : 1));
        std::memset(memory, 0xA5, bytes);
        dynamic_shared = memory + canary;
        block_index = {b, 0, 0};
        barrier.reset(static_cast<unsigned>(threads));
      }
      gate.arrive_and_wait();
      kernel(args...);
      barrier.drop();
      gate.arrive_and_wait();
      if (t == 0) {
        for (size_t i = 0; i < canary; ++i) {
          if (memory[i] != 0xA5 || memory[canary + shared + i] != 0xA5) {
            std::fprintf(stderr, "block %u wrote outside its %zu bytes of dynamic shared memory\n", b, shared);
            std::abort();
          }
        }
        std::free(memory);
      }
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (unsigned t = 1; t < threads; ++t) {
    workers.emplace_back(worker, t);
  }
  worker(0);
  for (std::thread& w : workers) {
    w.join();
  }
  dynamic_shared = nullptr;
}

template <typename Kernel>
struct Launch {
  Kernel kernel;
  dim3 grid, block;
  size_t shared;
  template <typename... Args>
  void operator()(Args&&... args) const {
    run_grid(kernel, grid, block, shared, args...);
  }
};

template <typename Kernel>
Launch<Kernel> launch(Kernel kernel, dim3 grid, dim3 block, size_t shared) {
  return Launch<Kernel>{kernel, grid, block, shared};
}

}  // namespace detrt_emulation

#define threadIdx (::detrt_emulation::thread_index)
#define blockIdx (::detrt_emulation::block_index)
#define blockDim (::detrt_emulation::block_dim)
inline void __syncthreads() { ::detrt_emulation::block_barrier->arrive_and_wait(); }
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (attribute != cudaDevAttrMultiProcessorCount || device != 0) {
    return cudaErrorInvalidConfiguration;
  }
  *value = ::detrt_emulation::kMultiprocessors;
  return cudaSuccess;
}
// A warp shuffle, emulated with two block barriers: valid only when every thread of the block makes
// the same shuffles (msda_cuda.cu does). It aborts where a GPU would be undefined: a partner outside
// the block or the caller's warp, or a caller or partner missing from `mask`.
inline float __shfl_xor_sync(unsigned mask, float value, int offset) {
  const unsigned self = threadIdx.x;
  const unsigned partner = self ^ static_cast<unsigned>(offset);
  if (offset <= 0 || offset >= 32 || partner >= blockDim.x || partner / 32 != self / 32 ||
      !(mask >> (self % 32) & 1u) || !(mask >> (partner % 32) & 1u)) {
    std::fprintf(stderr, "bad __shfl_xor_sync: thread %u, offset %d, mask %08x, block of %u threads\n", self, offset,
                 mask, blockDim.x);
    std::abort();
  }
  ::detrt_emulation::shuffle_slots[self] = value;
  __syncthreads();
  const float result = ::detrt_emulation::shuffle_slots[partner];
  __syncthreads();
  return result;
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t error = ::detrt_emulation::last_error;
  ::detrt_emulation::last_error = cudaSuccess;
  return error;
}

// The two hooks msda_cuda.cu leaves for this emulation.
#define DETRT_MSDA_DYNAMIC_SHARED(name) unsigned char* const name = ::detrt_emulation::dynamic_shared
#define DETRT_MSDA_LAUNCH(kernel, grid, block, shared, stream) \
  ((void)(stream), ::detrt_emulation::launch(kernel, grid, block, shared))
