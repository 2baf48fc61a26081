// Which instruction-set variant of the CPU kernel runs: the widest the CPU supports, optionally
// capped by the environment variable DETRT_MSDA_CPU_ISA (avx512, avx2 or baseline), so the
// narrower variants can be tested and timed on a wider CPU.
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DETRT_MSDA_X86_VARIANTS 1
#else
#define DETRT_MSDA_X86_VARIANTS 0
#endif

namespace detrt {
namespace msda {

enum class CpuIsa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The cap requested by DETRT_MSDA_CPU_ISA; unset or unknown values cap nothing.
inline CpuIsa requested_isa() {
  const char* name = std::getenv("DETRT_MSDA_CPU_ISA");
  if (name == nullptr) {
    return CpuIsa::kAvx512;
  }
  if (std::strcmp(name, "baseline") == 0) {
    return CpuIsa::kBaseline;
  }
  return std::strcmp(name, "avx2") == 0 ? CpuIsa::kAvx2 : CpuIsa::kAvx512;
}

// The variant for this CPU: x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), x86-64-v3 (AVX2, FMA, F16C) or baseline.
inline CpuIsa cpu_isa() {
  CpuIsa supported = CpuIsa::kBaseline;
#if DETRT_MSDA_X86_VARIANTS
  if (__builtin_cpu_supports("x86-64-v4")) {
    supported = CpuIsa::kAvx512;
  } else if (__builtin_cpu_supports("x86-64-v3")) {
    supported = CpuIsa::kAvx2;
  }
#endif
  const CpuIsa cap = requested_isa();
  return static_cast<int>(cap) < static_cast<int>(supported) ? cap : supported;
}

}  // namespace msda
}  // namespace detrt
