// ComposedExecutor: an Executor whose blocks are composed of fine operations
// on fp32 activations. The CPU backend implements the fine operations; a GPU
// backend may implement some of them too (the op harness tests each one on
// every backend that has it) and override blocks with fused kernels.
//
// Fine operation names are the same in every backend, in its tests and in its
// benchmarks: embed, rmsnorm, linear, rope_kv_store, attention, router, moe,
// unembed, sample. Every pointer is an address in backend memory.
//
// KV cache: per layer, K and V buffers holding num_seqs sequence slots of
// `seq_stride` elements each (kv_dtype). Inside a slot the layout is the
// backend's own (rope_kv_store writes it, attention reads it), holding
// `capacity` positions: position p lives at p % capacity (a ring when
// capacity is smaller than the context, as for sliding-window layers).
#pragma once

#include <vector>

#include "backend/backend.hpp"
#include "core/arena.hpp"

namespace gon {

struct KVCacheLayer {
  void* k = nullptr;
  void* v = nullptr;
  int capacity = 0;          // positions per sequence slot
  int64_t seq_stride = 0;    // elements between sequence slots (in K and in V)
  KVDType dtype = KVDType::kF32;
};

class ComposedExecutor : public Executor {
 public:
  // `workspace_bytes`: scratch the derived backend's fine operations need for
  // steps of up to options.max_tokens tokens. `kv_slot_elements(capacity)`:
  // elements one sequence slot of one layer's K (or V) needs.
  ComposedExecutor(Backend& backend, const ModelWeights& weights, const ModelConfig& config,
                   const ExecutorOptions& options, size_t workspace_bytes,
                   const std::function<int64_t(int capacity)>& kv_slot_elements);
  ~ComposedExecutor() override;

  // ---- fine operations (x, y: fp32 [rows, width], row-major) --------------------
  // x[t] = float(embedding[tokens[t]])
  virtual void embed(const int32_t* tokens, int count, float* x) = 0;
  // y[i] = x[r] / sqrt(mean(x[r]^2) + eps) * weight with r = rows[i] (rows
  // nullable: r = i), for i in [0, count); y has `count` rows.
  virtual void rmsnorm(const float* x, const int32_t* rows, int count, int width, const uint16_t* weight,
                       float eps, float* y) = 0;
  // y[t] (=|+=) concat_i(mats[i] x[t] + bias_i) for matrices sharing their
  // input width; y has row stride ldy.
  virtual void linear(const float* x, int count, const BF16Matrix* mats, int num_mats, float* y, size_t ldy,
                      bool accumulate) = 0;
  // RoPE on the q and k parts of qkv [count, (nq + 2 nkv) hd] in place (angle
  // = float(positions[t]) * rope_inv_freq[i] as an fp32 product, cos and sin
  // times rope_scaling, half-split rotation), then k and v stored in slot
  // seqs[t] of the cache at positions[t] (rounded to nearest even for a bf16
  // cache).
  virtual void rope_kv_store(float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                             const KVCacheLayer& cache) = 0;
  // out[t, h hd..] = softmax over [sink_h, q_h(t) . k_j / sqrt(hd)] (the sink
  // column dropped) times v_j, over the keys of slot seqs[t] at positions
  // max(0, p - window + 1) .. p, p = positions[t] (window <= 0: from 0).
  virtual void attention(const float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                         const uint16_t* sinks, const KVCacheLayer& cache, int window, float* out) = 0;
  // ids[t, :k], weights[t, :k] = top-k of (router x[t] + bias) in order of
  // decreasing logit (ties: lower id first; the k ids are distinct), softmax
  // over the k.
  virtual void router(const float* x, int count, const BF16Matrix& router, int k, int32_t* ids,
                      float* weights) = 0;
  // y[t] += sum_j weights[t, j] expert_{ids[t, j]}(x[t]), an expert being
  // mlp2(swiglu(mlp1(x))).
  virtual void moe(const float* x, int count, const int32_t* ids, const float* weights, int k,
                   const LayerWeights& layer, float* y) = 0;
  // logits[r] = unembedding x[r] for r in [0, rows); logits row stride vocab.
  // (output_block writes logits rows [offset, offset + R) only.)
  virtual void unembed(const float* x, int rows, float* logits) = 0;
  // tokens[r], logprobs[r] = a draw from logits[r] with params[r] (see
  // core/sampler.hpp for the exact rule); `mask` is the allowed-token flags
  // (nullable) applied to rows with use_mask.
  virtual void sample(const float* logits, int rows, const SampleParams* params, const uint8_t* mask,
                      int32_t* tokens, float* logprobs) = 0;

  // ---- blocks, composed of the fine operations ----------------------------------
  void embed_block(const StepShape& s) override;
  void attention_block(int layer, const StepShape& s) override;
  void moe_block(int layer, const StepShape& s) override;
  void output_block(const StepShape& s) override;

  // ---- the rest of Executor ------------------------------------------------------
  StepInputs& inputs() override { return staging_; }
  // The loop on the host: decode_loop's steps one execute() after the other,
  // each step's inputs advanced from the last one's samples (the same tokens
  // as a device loop; backends with one override it). decode_loop_steps()
  // stays 0, so callers only take it when asked to (EngineOptions::
  // decode_loop_steps), which lets the CPU run the loop callers' code.
  int decode_loop(const StepShape& shape, const ForwardFn& forward, int graph_id, int max_steps,
                  const int32_t* stop_tokens, int num_stop, int32_t* tokens, float* logprobs) override;
  void sample_rows(int offset, int count) override;
  const int32_t* sampled_tokens() override;
  const float* sampled_logprobs() override;
  LogitsView logits() override;
  void copy_logits(int first_row, int rows, float* host_dst) override;
  void set_allowed_tokens(const uint8_t* mask) override;
  ExecutorMemory memory() const override;
  const ExecutorOptions& options() const override { return options_; }
  float* residual() override { return buf_.x; }

  const KVCacheLayer& kv_layer(int layer) const { return kv_[layer]; }
  const StepInputs& device_inputs() const { return device_inputs_; }
  const ModelWeights& weights() const { return weights_; }
  const ModelConfig& config() const { return config_; }

 protected:
  // Copies the step inputs a shape uses from staging to backend memory (a
  // no-op when the backend is host-addressable and they are the same).
  virtual void upload_inputs(const StepShape& s);
  void* workspace() const { return buf_.workspace; }

  Backend& backend_;
  const ModelWeights& weights_;
  const ModelConfig& config_;
  ExecutorOptions options_;

  struct Buffers {
    float* x = nullptr;          // [T, H] residual stream
    float* xn = nullptr;         // [T, H] normalised
    float* qkv = nullptr;        // [T, (nq + 2 nkv) hd]
    float* attn = nullptr;       // [T, nq hd]
    int32_t* expert_ids = nullptr;      // [T, k]
    float* expert_weights = nullptr;    // [T, k]
    float* logits = nullptr;     // [logits_rows, V]
    int32_t* sampled = nullptr;  // [logits_rows]
    float* logprobs = nullptr;   // [logits_rows]
    uint8_t* mask = nullptr;     // [V]
    void* workspace = nullptr;
  };
  Buffers buf_;
  bool mask_set_ = false;
  StepInputs device_inputs_;  // in backend memory
  StepInputs staging_;        // what inputs() hands out (== device_inputs_ when host-addressable)
  int32_t* host_sampled_ = nullptr;   // host mirror of sampled tokens (non-host-addressable backends)
  float* host_logprobs_ = nullptr;

 private:
  Arena host_;
  Arena device_;
  std::vector<uint8_t> loop_done_;  // [max_outputs] rows of a host decode_loop past a stop token
  std::vector<KVCacheLayer> kv_;
  uint64_t kv_bytes_ = 0;
};

}  // namespace gon
