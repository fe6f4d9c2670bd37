// The architecture hyper-parameters of a gpt-oss model, as read from a
// checkpoint's config.json (either the Hugging Face or the original layout).
#pragma once

#include <cstdint>
#include <vector>

namespace gon {

// Element type of a KV cache (a Context or Engine option): fp32 keeps keys and
// values exactly as computed; bf16 halves the cache's memory and the bytes
// attention reads, at a cost in agreement with an fp32 reference (see README).
enum class KVDType : uint8_t { kF32, kBF16 };
const char* kv_dtype_name(KVDType t);  // "fp32", "bf16"

struct ModelConfig {
  int num_layers = 0;
  int num_experts = 0;
  int experts_per_token = 0;
  int vocab_size = 0;
  int hidden_size = 0;         // H
  int intermediate_size = 0;   // I (per expert)
  int head_dim = 0;
  int num_heads = 0;           // query heads
  int num_kv_heads = 0;
  int sliding_window = 0;      // W: a sliding layer's query i sees keys i-W < j <= i
  std::vector<uint8_t> layer_is_sliding;  // [num_layers]

  // RoPE with YaRN scaling.
  double rope_theta = 150000.0;
  double rope_scaling_factor = 32.0;
  double rope_beta_fast = 32.0;
  double rope_beta_slow = 1.0;
  int rope_original_context = 4096;
  bool rope_truncate = false;
  int max_context = 131072;    // max_position_embeddings

  float rms_norm_eps = 1e-5f;
  float swiglu_limit = 7.0f;
  float swiglu_alpha = 1.702f;

  int eos_token_id = -1;
  int pad_token_id = -1;

  int qkv_rows() const { return (num_heads + 2 * num_kv_heads) * head_dim; }
};

}  // namespace gon
