// CpuBackend: memory, workspace sizing, weight preparation and the small
// element-wise operations (embed, rmsnorm, rope_kv_store). The weight products
// live in linear.cpp, attention in attention.cpp, the expert mixture in moe.cpp.
#include "backend/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/attention.hpp"
#include "backend/cpu/matmul.hpp"
#include "core/bf16.hpp"
#include "core/check.hpp"

namespace gon::cpu {

CpuBackend::CpuBackend(int threads) : pool_(threads > 0 ? threads : available_cores()) {}

void* CpuBackend::allocate(size_t bytes, bool) {
  size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t{63};
  void* p = std::aligned_alloc(64, rounded);
  GON_CHECK(p != nullptr, kOutOfMemory, "cpu backend: cannot allocate ", rounded, " bytes");
  return p;
}

void CpuBackend::release(void* block, bool) noexcept { std::free(block); }

int CpuBackend::kv_block_positions() const { return kKvBlock; }

size_t CpuBackend::workspace_bytes(const ModelConfig& c, int max_tokens, int context_length) const {
  int widest = std::max({c.hidden_size, c.num_heads * c.head_dim, c.intermediate_size});
  size_t linear = packed_activation_bytes(max_tokens, widest) + 64;
  size_t router = linear + static_cast<size_t>(max_tokens) * c.num_experts * sizeof(float) + 64;
  (void)context_length;  // attention needs no scratch per cached position
  size_t attention = attention_workspace_bytes(c, pool_.size());
  size_t moe = moe_workspace_bytes(c, max_tokens);
  return std::max({linear, router, attention, moe}) + 4096;
}

std::unique_ptr<ModelWeights> CpuBackend::prepare_weights(const ModelWeights& host_weights, const ModelConfig&) {
  // The CPU reads the memory-mapped tensors in place: nothing is copied.
  return std::make_unique<ModelWeights>(host_weights);
}

void CpuBackend::embed(const ModelWeights& w, const int32_t* tokens, const Batch& b, float* x) {
  // Width comes from the unembedding, which has the same [V, H] shape.
  const int H = w.unembedding.cols;
  for (int t = 0; t < b.count; ++t) {
    const uint16_t* row = w.embedding + static_cast<size_t>(tokens[t]) * H;
    float* out = x + static_cast<size_t>(t) * H;
    for (int i = 0; i < H; ++i) out[i] = bf16_to_f32(row[i]);
  }
}

namespace {
void rmsnorm_row(const float* x, const uint16_t* weight, int width, float eps, float* y) {
  constexpr int kLanes = 16;
  float partial[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= width; i += kLanes)
    for (int l = 0; l < kLanes; ++l) partial[l] += x[i + l] * x[i + l];
  float sum = 0.f;
  for (; i < width; ++i) sum += x[i] * x[i];
  for (int l = 0; l < kLanes; ++l) sum += partial[l];
  const float inv = 1.0f / std::sqrt(sum / static_cast<float>(width) + eps);
  for (int j = 0; j < width; ++j) y[j] = bf16_to_f32(weight[j]) * (x[j] * inv);
}
}  // namespace

void CpuBackend::rmsnorm(const float* x, const uint16_t* weight, const Batch& b, int width, float eps, float* y) {
  pool_.parallel_for(b.count, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) rmsnorm_row(x + t * width, weight, width, eps, y + t * width);
  });
}

void CpuBackend::rope_kv_store(float* qkv, const ModelWeights& w, const ModelConfig& c, const Batch& b,
                               const KVCacheLayer& cache) {
  const int hd = c.head_dim, half = hd / 2, nq = c.num_heads, nkv = c.num_kv_heads;
  const int width = c.qkv_rows();
  pool_.parallel_for(b.count, 4, [&](int64_t t0, int64_t t1) {
    float ct[256], st[256];  // head_dim <= 512 (checked when the model is loaded)
    for (int64_t t = t0; t < t1; ++t) {
      float* row = qkv + t * width;
      // Same float32 steps as the reference: angle = float(position) * inv_freq.
      const float position = static_cast<float>(b.first_position + t);
      for (int i = 0; i < half; ++i) {
        const float angle = position * w.rope_inv_freq[i];
        ct[i] = std::cos(angle) * w.rope_scaling;
        st[i] = std::sin(angle) * w.rope_scaling;
      }
      for (int h = 0; h < nq + nkv; ++h) {  // q heads then k heads are contiguous
        float* v = row + h * hd;
        for (int i = 0; i < half; ++i) {
          float x1 = v[i], x2 = v[i + half];
          v[i] = x1 * ct[i] - x2 * st[i];
          v[i + half] = x2 * ct[i] + x1 * st[i];
        }
      }
      const int slot = static_cast<int>((b.first_position + t) % cache.capacity);
      // Layout: attention.hpp (element d of head h's key goes to lane slot % kKvBlock
      // of row d of its transposed block).
      for (int h = 0; h < nkv; ++h) {
        const float* k = row + (nq + h) * hd;
        float* dst = cache.k + kt_block_offset(slot, h, cache.capacity, hd) + slot % kKvBlock;
        for (int d = 0; d < hd; ++d) dst[static_cast<size_t>(d) * kKvBlock] = k[d];
        std::memcpy(cache.v + v_row_offset(slot, h, cache.capacity, hd), row + (nq + nkv + h) * hd,
                    hd * sizeof(float));
      }
    }
  });
}

}  // namespace gon::cpu
