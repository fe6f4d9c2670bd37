// The gpt-oss forward pass, written once for every backend as a sequence of
// backend operations (see backend/backend.hpp):
//   x = embed(tokens)
//   per layer: x += out(attention(rope(qkv(rmsnorm(x)))));  x += moe(rmsnorm(x))
//   logits = unembed(rmsnorm(x))
#pragma once

#include <vector>

#include "backend/backend.hpp"

namespace gon {

// Activation buffers of a Context, in the backend's memory.
struct ForwardBuffers {
  float* x = nullptr;        // [B, H] residual stream
  float* xn = nullptr;       // [B, H] normalised
  float* qkv = nullptr;      // [B, (nq + 2 nkv) * hd]
  float* attn = nullptr;     // [B, nq * hd]
  int32_t* expert_ids = nullptr;  // [B, k]
  float* expert_weights = nullptr;  // [B, k]
  void* workspace = nullptr;
  std::vector<KVCacheLayer> kv;  // [layers]
};

// Which logits to produce for a batch: rows [first_row, first_row + num_rows)
// of the batch, written to `logits` (host-visible, row stride vocab).
struct LogitsRequest {
  int first_row = 0;
  int num_rows = 0;
  float* logits = nullptr;
};

// Runs one batch (b.count <= the buffers' capacity). The backend must be
// locked by the caller; the batch is bracketed by begin_batch()/end_batch().
void forward(Backend& backend, const ModelWeights& w, const ModelConfig& c, const ForwardBuffers& buf,
             const int32_t* tokens, const Batch& b, const LogitsRequest& logits);

}  // namespace gon
