// The implementations behind the matmul.hpp entry points, one namespace each.
//
// matmul.cpp picks one of them at run time; the tests and the benchmark call
// both directly so each is checked on every machine that can run it. Every
// namespace offers exactly the matmul.hpp contract (see there), with its own
// packed activation layout: a buffer packed by one implementation must only be
// read by the same implementation. Arguments are not validated here (the
// public entry points do that): K > 0, K % 32 == 0, M >= 1, n0 <= n1.
#pragma once

#include <cstddef>
#include <cstdint>

// CMake defines GON_HAVE_AVX512_KERNELS=1 for the library on x86-64 only (where
// it compiles the *_avx512.cpp and *_avx2.cpp files); tests and benchmarks do not get the
// library's private definitions, so apply the same rule here.
#if !defined(GON_HAVE_AVX512_KERNELS) && (defined(__x86_64__) || defined(_M_X64))
#define GON_HAVE_AVX512_KERNELS 1
#endif

namespace gon::cpu {

// Portable C++ (matmul_generic.cpp); runs everywhere.
namespace generic {
size_t packed_activation_bytes(int M, int K);
void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1,
                      void* packed);
void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K,
                 float* y, size_t ldy, int n0, int n1, bool accumulate);
void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed,
                  int M, int K, float* y, size_t ldy, int n0, int n1, bool accumulate);
}  // namespace generic

#if GON_HAVE_AVX512_KERNELS
// AVX-512 (matmul_avx512.cpp, compiled with -mavx512*). Call only when
// avx512::cpu_supported() is true.
namespace avx512 {
// True when this CPU (and OS) supports everything the kernels are compiled for
// (avx512f/bw/vl/dq/bf16/vbmi). Defined in matmul.cpp, which is compiled
// without AVX-512 flags, so it is safe to call anywhere.
bool cpu_supported();
size_t packed_activation_bytes(int M, int K);
void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1,
                      void* packed);
void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K,
                 float* y, size_t ldy, int n0, int n1, bool accumulate);
void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed,
                  int M, int K, float* y, size_t ldy, int n0, int n1, bool accumulate);
}  // namespace avx512

// AVX-512 plus AMX-BF16 tiles for the bf16 products (matmul_amx.cpp): its own
// packed layout, which starts with the AVX-512 one, so avx512::matmul_mxfp4
// serves its MXFP4 products. Call only when amx::cpu_supported() is true.
namespace amx {
// avx512::cpu_supported(), the CPU's amx-tile and amx-bf16, and the OS's
// permission to use tile state (asked for once). Defined in matmul.cpp.
bool cpu_supported();
// Asks Linux for AMX tile state for this process (once); true when granted.
bool os_permits_amx();
size_t packed_activation_bytes(int M, int K);
void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1,
                      void* packed);
void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K,
                 float* y, size_t ldy, int n0, int n1, bool accumulate);
}  // namespace amx

// AVX2 + FMA (matmul_avx2.cpp, compiled with -mavx2 -mfma). Call only when
// avx2::cpu_supported() is true.
namespace avx2 {
// True when this CPU supports avx2 and fma (defined in matmul.cpp).
bool cpu_supported();
size_t packed_activation_bytes(int M, int K);
void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1,
                      void* packed);
void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K,
                 float* y, size_t ldy, int n0, int n1, bool accumulate);
void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed,
                  int M, int K, float* y, size_t ldy, int n0, int n1, bool accumulate);
}  // namespace avx2
#endif

}  // namespace gon::cpu
