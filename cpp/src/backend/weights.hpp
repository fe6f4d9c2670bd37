// The weights of a model as a backend sees them: plain pointers into the
// backend's memory (the memory-mapped checkpoint for the CPU, uploaded device
// buffers for CUDA), with the shapes the operations need. Built by
// core/checkpoint.cpp from the tensor table, then handed to
// Backend::prepare_weights(), which returns the backend's own copy.
#pragma once

#include <cstdint>
#include <vector>

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

struct ModelWeights {
  const uint16_t* embedding = nullptr;  // [V, H] bf16
  const uint16_t* final_norm = nullptr; // [H] bf16
  BF16Matrix unembedding;               // [V, H]
  std::vector<LayerWeights> layers;
  const float* rope_inv_freq = nullptr; // [head_dim / 2] fp32 (YaRN-scaled)
  float rope_scaling = 1.0f;            // YaRN attention factor applied to cos and sin
};

}  // namespace gon
