// Run-time choice of the CPU matrix-product implementation (matmul.hpp).
//
// On x86-64 builds (GON_HAVE_AVX512_KERNELS) the AVX-512 kernels are used when
// the CPU reports avx512f, avx512bw, avx512vl, avx512dq, avx512bf16 and
// avx512vbmi (the instruction sets matmul_avx512.cpp is compiled for), else the
// AVX2 kernels when it reports avx2 and fma (matmul_avx2.cpp);
// everywhere else the portable kernels. Where the CPU also has AMX-BF16 tiles
// and Linux grants the process their state, GON_MATMUL_ISA=avx512amx runs the
// bf16 products on them (matmul_amx.cpp says why that is not the default; the
// MXFP4 ones as in "avx512bf16"). The choice is made once, on first use,
// and can be forced with GON_MATMUL_ISA=generic|avx2|avx512bf16|avx512amx (for
// debugging and comparisons); attention.cpp uses its AVX-512 kernel with the
// AVX-512 sets, its AVX2 one with the AVX2 set, and sampler.cpp its AVX-512
// kernels with the AVX-512 sets; otherwise their portable ones. This file is
// compiled without AVX flags.
#include "backend/cpu/matmul.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cpu/matmul_impl.hpp"
#include "core/check.hpp"

namespace gon::cpu {

#if GON_HAVE_AVX512_KERNELS
namespace avx512 {
bool cpu_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vbmi");
}
}  // namespace avx512
namespace amx {
bool cpu_supported() {
  // CPUID leaf 7: EDX bit 24 is AMX-TILE, bit 22 AMX-BF16 (read directly: not
  // every compiler's __builtin_cpu_supports knows them).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool tiles = (edx >> 24 & 1u) && (edx >> 22 & 1u);
  return tiles && avx512::cpu_supported() && os_permits_amx();
}
}  // namespace amx
namespace avx2 {
bool cpu_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
}  // namespace avx2
#endif

namespace {

const MatmulKernels kGeneric{"generic", &generic::packed_activation_bytes, &generic::pack_activations,
                             &generic::matmul_bf16, &generic::matmul_mxfp4};
#if GON_HAVE_AVX512_KERNELS
const MatmulKernels kAvx512{"avx512bf16", &avx512::packed_activation_bytes, &avx512::pack_activations,
                            &avx512::matmul_bf16, &avx512::matmul_mxfp4};
const MatmulKernels kAmx{"avx512amx", &amx::packed_activation_bytes, &amx::pack_activations, &amx::matmul_bf16,
                         &avx512::matmul_mxfp4};
const MatmulKernels kAvx2{"avx2", &avx2::packed_activation_bytes, &avx2::pack_activations, &avx2::matmul_bf16,
                          &avx2::matmul_mxfp4};
#endif

const MatmulKernels& impl() { return default_matmul_kernels(); }

void check_shape(const char* fn, int M, int K) {
  GON_CHECK(M >= 1, kInvalidArgument, fn, ": M must be >= 1, got ", M);
  GON_CHECK(K > 0 && K % 32 == 0, kInvalidArgument, fn, ": K must be a positive multiple of 32, got ", K);
}

void check_rows(const char* fn, int M, int K, int n0, int n1) {
  check_shape(fn, M, K);
  GON_CHECK(0 <= n0 && n0 <= n1, kInvalidArgument, fn, ": bad row range [", n0, ", ", n1, ")");
}

}  // namespace

const MatmulKernels* matmul_kernels(const char* isa) {
  if (std::strcmp(isa, "generic") == 0) return &kGeneric;
#if GON_HAVE_AVX512_KERNELS
  if (std::strcmp(isa, "avx512bf16") == 0 && avx512::cpu_supported()) return &kAvx512;
  if (std::strcmp(isa, "avx512amx") == 0 && amx::cpu_supported()) return &kAmx;
  if (std::strcmp(isa, "avx2") == 0 && avx2::cpu_supported()) return &kAvx2;
#endif
  return nullptr;
}

const MatmulKernels& default_matmul_kernels() {
  static const MatmulKernels* chosen = [] {
    const char* force = std::getenv("GON_MATMUL_ISA");
    if (force != nullptr && *force != '\0') {
      bool known = false;
      std::string names;
      for (const char* set : kMatmulKernelSets) {
        known = known || std::strcmp(force, set) == 0;
        names += std::string(names.empty() ? "'" : ", '") + set + "'";
      }
      GON_CHECK(known, kInvalidArgument, "GON_MATMUL_ISA='", force, "' is not a kernel set: use one of ", names,
                " (or leave it unset)");
      const MatmulKernels* k = matmul_kernels(force);
      GON_CHECK(k != nullptr, kBackendUnavailable, "GON_MATMUL_ISA='", force,
                "': this CPU or build cannot run those kernels (use 'generic' or leave it unset)");
      return k;
    }
#if GON_HAVE_AVX512_KERNELS
    if (const MatmulKernels* k = matmul_kernels("avx512bf16")) return k;
    if (const MatmulKernels* k = matmul_kernels("avx2")) return k;
#endif
    return &kGeneric;
  }();
  return *chosen;
}

size_t packed_activation_bytes(int M, int K) {
  check_shape("packed_activation_bytes", M, K);
  return impl().packed_bytes(M, K);
}

void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1, void* packed) {
  check_shape("pack_activations", M, K);
  GON_CHECK(0 <= m0 && m0 <= m1 && m1 <= M, kInvalidArgument, "pack_activations: bad row range [", m0, ", ", m1,
            ") for M = ", M);
  impl().pack(x, ldx, rows, M, K, m0, m1, packed);
}

void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K, float* y,
                 size_t ldy, int n0, int n1, bool accumulate) {
  check_rows("matmul_bf16", M, K, n0, n1);
  impl().bf16(w, ldw, bias, packed, M, K, y, ldy, n0, n1, accumulate);
}

void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed, int M,
                  int K, float* y, size_t ldy, int n0, int n1, bool accumulate) {
  check_rows("matmul_mxfp4", M, K, n0, n1);
  impl().mxfp4(blocks, scales, bias, packed, M, K, y, ldy, n0, n1, accumulate);
}

const char* matmul_isa() { return impl().name; }

}  // namespace gon::cpu
