// CPU matrix products over weights in their stored precision.
//
// Two weight formats: bf16 rows ([N, K] row-major) and MXFP4 rows (K/32 blocks
// of 16 bytes plus one E8M0 scale byte per block; see gpt-oss-model.md). The
// activations are fp32; every product accumulates in fp32 so the result agrees
// with an fp32 reference to about 1e-5 relative.
//
// A product runs in two steps so work can be split across threads:
//   1. pack_activations(): converts M fp32 activation rows once into the
//      layout the kernels read (done by one thread, or split over rows);
//   2. matmul_bf16() / matmul_mxfp4(): computes output rows [n0, n1) for all
//      M activation rows; threads take disjoint row ranges.
// The sum order for one output element never depends on M, on n0/n1 or on
// how rows are split, so a token gives bit-identical results whether it is
// processed alone or in a batch (rewinding and re-processing relies on this).
//
// The implementation is chosen once at run time: AVX-512 (with BF16) where the
// CPU has it, AVX2, portable C++ otherwise; AMX tiles for the bf16 products
// (with AVX-512 for the rest) on request. All follow this contract.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace gon::cpu {

// Bytes of packed storage for M activation rows of length K (K % 32 == 0).
// Any alignment works; a 64-byte aligned buffer is fastest.
size_t packed_activation_bytes(int M, int K);

// Packs rows x[rows[i] * ldx .. + K) (or x[i * ldx ..) when rows is null) for
// i in [m0, m1) into `packed`, which holds all M rows. Different threads may
// pack disjoint [m0, m1) ranges of the same buffer.
void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1,
                      void* packed);

// y[m * ldy + n] (=|+=) bias[n] + sum_k w[n * ldw + k] * x[m][k]
// for m in [0, M), n in [n0, n1). w and bias are bf16 bit patterns; bias may be
// null. With accumulate the result is added to y (used for the residual).
void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K,
                 float* y, size_t ldy, int n0, int n1, bool accumulate);

// Same for MXFP4 weights: row n's blocks start at blocks + n * (K / 32) * 16,
// its scales at scales + n * (K / 32).
void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed,
                  int M, int K, float* y, size_t ldy, int n0, int n1, bool accumulate);

// Output rows per work unit when the CPU backend splits a product across its
// threads (parallel_chunks): about 1 MiB of weights, enough for the kernels'
// prefetch to run ahead, and small enough that threads slowed by other work on
// their cores hand the rest to the others. A multiple of 8 rows.
inline int64_t bf16_unit_rows(int K) { return std::max<int64_t>(8, (int64_t{1} << 20) / (2 * int64_t{K}) / 8 * 8); }
inline int64_t mxfp4_unit_rows(int K) {
  return std::max<int64_t>(8, (int64_t{1} << 20) / (int64_t{K} / 32 * 17) / 8 * 8);
}

// The experts' units (moe.cpp: the rows of all active experts, flattened),
// evened out over the threads: as many units as a multiple of the thread
// count, each at most mxfp4_unit_rows(K), a multiple of 8 rows. At batch 1 on
// 16 threads the plain size gives 34 units (mlp1) and 17 (mlp2), so the last
// round keeps 2 and 1 of 16 threads busy; evened out, 48 and 32 units. Measured
// on a 16-core Xeon (bench/gpu/NOTES.md, runs 93-94): the MoE at batch 1 9-11%
// faster in three A/B pairs, at 8 sequences 1-2%. The dense products keep the
// plain size: evening them out made qkv 14-24% slower there.
inline int64_t mxfp4_balanced_unit_rows(int K, int64_t rows, int threads) {
  const int64_t unit = mxfp4_unit_rows(K);
  if (threads <= 1 || rows <= unit) return unit;
  int64_t units = (rows + unit - 1) / unit;
  units = (units + threads - 1) / threads * threads;
  const int64_t r = (rows + units - 1) / units;
  return std::max<int64_t>(8, (r + 7) / 8 * 8);
}

// Which implementation is in use ("avx512amx", "avx512bf16", "avx2" or "generic").
const char* matmul_isa();

// One implementation of the above, without argument checks (callers pass
// valid shapes). The CPU backend holds one, so two backends of one process can
// use different instruction sets (the op harness runs both).
struct MatmulKernels {
  const char* name;  // "avx512amx", "avx512bf16", "avx2" or "generic"
  size_t (*packed_bytes)(int M, int K);
  void (*pack)(const float*, size_t, const int32_t*, int, int, int, int, void*);
  void (*bf16)(const uint16_t*, size_t, const uint16_t*, const void*, int, int, float*, size_t, int, int, bool);
  void (*mxfp4)(const uint8_t*, const uint8_t*, const uint16_t*, const void*, int, int, float*, size_t, int, int,
                bool);
};
// Every kernel set's name, whether or not this build or CPU has it (the names
// GON_MATMUL_ISA and matmul_kernels accept).
inline constexpr const char* kMatmulKernelSets[] = {"generic", "avx2", "avx512bf16", "avx512amx"};
// The implementation for an instruction set name, or nullptr when this build
// or this CPU does not have it.
const MatmulKernels* matmul_kernels(const char* isa);
// The default: GON_MATMUL_ISA when set (one of kMatmulKernelSets), else the best
// this CPU runs. Throws kInvalidArgument for an unknown GON_MATMUL_ISA and
// kBackendUnavailable when it names a set this CPU or build lacks.
const MatmulKernels& default_matmul_kernels();

}  // namespace gon::cpu
