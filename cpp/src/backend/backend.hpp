// The interface every backend (CPU now; CUDA and Metal later) implements.
//
// The model's forward pass is written once, in core/forward.cpp, as a
// sequence of the operations below; a backend supplies memory and the
// operations. Every pointer an operation receives is an address in the
// backend's own memory (host memory for the CPU, device memory for CUDA,
// a shared-storage buffer for Metal), carved from arenas the backend allocated
// when the Context was created, or from the weights the backend prepared when
// the Model was loaded. Operations never allocate.
//
// Operation names are the same in every backend, in its tests and in its
// benchmarks: embed, rmsnorm, linear, rope_kv_store, attention, router,
// moe, unembed.
//
// A backend that queues work (CUDA, Metal) may record the operations between
// begin_batch() and end_batch() once per batch shape and replay them (one CUDA
// graph per decoded token): that is why per-batch values (positions, token
// count) are passed to begin_batch() as well as to each op, and why ops must not
// read host memory that changes between batches except through begin_batch().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpt_oss_native/config.hpp"

namespace gon {

// A bf16 weight matrix [rows, cols] with an optional bf16 bias [rows].
struct BF16Matrix {
  const uint16_t* data = nullptr;
  const uint16_t* bias = nullptr;
  int rows = 0;
  int cols = 0;
};

// MXFP4 expert weights: blocks [experts, rows, cols/32, 16] u8,
// scales [experts, rows, cols/32] u8 (E8M0), bias [experts, rows] bf16.
struct MXFP4Experts {
  const uint8_t* blocks = nullptr;
  const uint8_t* scales = nullptr;
  const uint16_t* bias = nullptr;
  int experts = 0;
  int rows = 0;
  int cols = 0;
};

struct LayerWeights {
  const uint16_t* attn_norm = nullptr;  // [H] bf16
  BF16Matrix q, k, v;                   // [nq*hd, H], [nkv*hd, H], [nkv*hd, H]
  BF16Matrix out;                       // [H, nq*hd]
  const uint16_t* sinks = nullptr;      // [nq] bf16
  const uint16_t* mlp_norm = nullptr;   // [H] bf16
  BF16Matrix router;                    // [E, H]
  MXFP4Experts mlp1;                    // rows 2I, interleaved gate/up
  MXFP4Experts mlp2;                    // rows H, cols I
  bool sliding = false;
};

// The weights of a model in a backend's memory.
struct ModelWeights {
  const uint16_t* embedding = nullptr;  // [V, H] bf16
  const uint16_t* final_norm = nullptr; // [H] bf16
  BF16Matrix unembedding;               // [V, H]
  std::vector<LayerWeights> layers;
  const float* rope_inv_freq = nullptr; // [head_dim / 2] fp32 (YaRN-scaled)
  float rope_scaling = 1.0f;            // YaRN attention factor applied to cos and sin
};

// One layer's KV cache: `capacity` slots of [num_kv_heads, head_dim] fp32 for K
// and for V; position p lives in slot p % capacity (a ring when capacity is
// smaller than the context, as for sliding-window layers). The order of the
// values inside the K and V buffers is the backend's own (rope_kv_store writes
// them, attention reads them): each buffer holds kv_cache_slots(capacity)
// slots, and a ring's capacity is a multiple of kv_block_positions().
struct KVCacheLayer {
  float* k = nullptr;
  float* v = nullptr;
  int capacity = 0;
};

// What one forward batch covers: `count` consecutive tokens at positions
// first_position .. first_position + count - 1.
struct Batch {
  int first_position = 0;
  int count = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int threads() const = 0;

  // ---- memory ----------------------------------------------------------------
  // A block of backend memory for a Context's arena (64-byte aligned). Host-
  // visible memory is memory the host may read directly (logits, tokens).
  virtual void* allocate(size_t bytes, bool host_visible) = 0;
  virtual void release(void* block, bool host_visible) noexcept = 0;
  // Bytes of scratch the operations need for batches of up to max_tokens
  // tokens in a context of context_length positions.
  virtual size_t workspace_bytes(const ModelConfig& config, int max_tokens, int context_length) const = 0;
  // KV cache geometry: positions per block of the backend's cache layout (ring
  // capacities are rounded up to a multiple of it), and the slots a layer's K or
  // V buffer holds for `capacity` positions (capacity rounded up to whole blocks).
  virtual int kv_block_positions() const = 0;
  int64_t kv_cache_slots(int capacity) const {
    const int64_t blk = kv_block_positions();
    return (int64_t{capacity} + blk - 1) / blk * blk;
  }

  // ---- execution -------------------------------------------------------------
  // Serialises batches of different Contexts sharing this backend; a Context
  // holds this lock around begin_batch() ... end_batch().
  virtual void lock() = 0;
  virtual void unlock() = 0;
  virtual void begin_batch(const Batch& batch) = 0;
  virtual void end_batch() = 0;  // waits until results (logits) are readable by the host

  // ---- operations (x, y: fp32 activations [count, width], row-major) ----------
  // x[t] = float(embedding[tokens[t]])
  virtual void embed(const ModelWeights& w, const int32_t* tokens, const Batch& b, float* x) = 0;
  // y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight
  virtual void rmsnorm(const float* x, const uint16_t* weight, const Batch& b, int width, float eps, float* y) = 0;
  // y[t] (=|+=) concat_i(mats[i] x[t] + bias_i) for matrices sharing their input
  // width; y has row stride ldy.
  virtual void linear(const float* x, const BF16Matrix* mats, int num_mats, const Batch& b, float* y,
                      size_t ldy, bool accumulate, void* workspace) = 0;
  // Applies RoPE to the q and k parts of qkv [count, (nq + 2 nkv) * hd] in
  // place (angle = position * rope_inv_freq[i], cos and sin scaled by
  // rope_scaling, half-split rotation) and stores k and v into the cache at the
  // batch's positions.
  virtual void rope_kv_store(float* qkv, const ModelWeights& w, const ModelConfig& c, const Batch& b,
                             const KVCacheLayer& cache) = 0;
  // out[t, h*hd..] = attention of query head h of token t over the cached keys
  // of positions max(0, p - window + 1) .. p (window <= 0: all), with sinks.
  virtual void attention(const float* qkv, const uint16_t* sinks, const ModelConfig& c, const Batch& b,
                         const KVCacheLayer& cache, int window, float* out, void* workspace) = 0;
  // ids[t, :k], weights[t, :k] = top-k of (router x[t] + bias), softmax over the k.
  virtual void router(const float* x, const BF16Matrix& router, int k, const Batch& b, int32_t* ids,
                      float* weights, void* workspace) = 0;
  // y[t] += sum_j weights[t, j] * expert_{ids[t, j]}(x[t]), the experts being
  // mlp2(swiglu(mlp1(x))).
  virtual void moe(const float* x, const int32_t* ids, const float* weights, int k, const LayerWeights& layer,
                   const ModelConfig& c, const Batch& b, float* y, void* workspace) = 0;
  // logits[r] = unembedding x[first_row + r] for r in [0, num_rows); x has
  // rows of `width` floats; logits is host-visible with row stride vocab_size.
  virtual void unembed(const ModelWeights& w, const float* x, int first_row, int num_rows, int width,
                       float* logits, void* workspace) = 0;

  // The weights of a checkpoint prepared for this backend. The CPU backend uses
  // the memory-mapped tensors as they are; a GPU backend uploads them.
  virtual std::unique_ptr<ModelWeights> prepare_weights(const ModelWeights& host_weights, const ModelConfig& c) = 0;
};

// Creates the backend for a device name ("cpu", "cuda", "metal", "auto").
// Throws kBackendUnavailable when it is not built in or not present, and
// kInvalidArgument for an unknown name.
std::unique_ptr<Backend> create_backend(const std::string& device, int threads);

}  // namespace gon
