// The CPU implementation of the sampling rule (core/sampler.hpp), one row at
// a time, in a few passes over the vocabulary and without sorting it:
//  1. max / argmax, and the log-sum-exp at temperature 1 for the logprob;
//  2. p_i = exp((l_i - max) / T) in double, rounded to float, and their sum;
//  3. top_p = 1: the first token whose running sum exceeds u * sum, found
//     through block sums; top_p < 1: the nucleus boundary and the drawn token
//     are found by descending a radix histogram of the mass by the bits of
//     p_i (a float's bits order like its value): at each level the buckets
//     are walked from the largest p down, whole buckets are taken while the
//     running mass stays below the target, and the bucket the target falls in
//     is refined by the next bits (ties by lower index last), so only tokens
//     of one bucket per level are looked at again.
// The bulk passes (1, 2) use AVX-512 where the matrix kernels do.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/matmul_impl.hpp"  // GON_HAVE_AVX512_KERNELS
#include "backend/executor.hpp"

namespace gon::cpu {

struct SamplerScratch {
  float* probs = nullptr;   // [vocab]
  int32_t* list = nullptr;  // [vocab]
  double* mass = nullptr;   // [2048]
};

size_t sampler_scratch_bytes(int vocab);
SamplerScratch carve_sampler_scratch(void* base, int vocab);


// Bulk passes (portable and AVX-512 versions with identical results up to the
// rounding of the double sums and of exp's last bit).
struct SamplerKernels {
  // Largest non-NaN logit among allowed tokens (mask nullable), -inf if none.
  float (*max_allowed)(const float* l, int n, const uint8_t* mask);
  // First allowed index with l[i] == value, or -1.
  int (*first_equal)(const float* l, int n, const uint8_t* mask, float value);
  // sum over non-NaN allowed i of exp((double(l[i]) - shift) * inv_t); with
  // p non-null also p[i] = float(that) (0 for NaN or excluded tokens).
  double (*exp_sum)(const float* l, int n, const uint8_t* mask, double shift, double inv_t, float* p);
};
// The passes for a kernel set name ("avx512bf16" or "avx512amx": AVX-512 where built; any other: portable).
const SamplerKernels& sampler_kernels(const char* isa);

// Samples one row: returns the token, *logprob its log-probability.
int32_t sample_row(const SamplerKernels& kernels, const float* logits, int vocab, const SampleParams& params,
                   const uint8_t* mask, const SamplerScratch& scratch, float* logprob);

namespace generic {
float max_allowed(const float* l, int n, const uint8_t* mask);
int first_equal(const float* l, int n, const uint8_t* mask, float value);
double exp_sum(const float* l, int n, const uint8_t* mask, double shift, double inv_t, float* p);
}  // namespace generic

#if GON_HAVE_AVX512_KERNELS
namespace avx512 {
float max_allowed(const float* l, int n, const uint8_t* mask);
int first_equal(const float* l, int n, const uint8_t* mask, float value);
double exp_sum(const float* l, int n, const uint8_t* mask, double shift, double inv_t, float* p);
}  // namespace avx512
#endif

}  // namespace gon::cpu
