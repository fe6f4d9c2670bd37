// CpuBackend and CpuExecutor: memory, workspace sizing, stepping, and the
// small element-wise operations (embed, rmsnorm, rope_kv_store). The weight
// products live in linear.cpp, attention in attention.cpp, the expert mixture
// in moe.cpp, sampling in sampler.cpp.
#include "backend/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "backend/cpu/attention.hpp"
#include "backend/cpu/bandwidth.hpp"
#include "backend/cpu/matmul.hpp"
#include "core/bf16.hpp"
#include "core/check.hpp"

namespace gon::cpu {

namespace {
constexpr size_t kHeader = 64;  // each block starts with its size, so release() can account for it

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "CPU";
}
}  // namespace

CpuBackend::CpuBackend(int threads, const MatmulKernels* kernels)
    : kernels_(kernels != nullptr ? *kernels : default_matmul_kernels()),
      pool_(threads > 0 ? threads : available_cores()) {}

std::string CpuBackend::description() const {
  return cpu_model_name() + ", " + std::to_string(pool_.size()) + " threads, " + kernels_.name + " kernels";
}

void* CpuBackend::allocate(size_t bytes, bool) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t{63};
  char* p = static_cast<char*>(std::aligned_alloc(64, rounded + kHeader));
  GON_CHECK(p != nullptr, kOutOfMemory, "cpu backend: cannot allocate ", rounded, " bytes");
  std::memcpy(p, &rounded, sizeof rounded);
  const uint64_t now = in_use_.fetch_add(rounded) + rounded;
  uint64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  return p + kHeader;
}

void CpuBackend::release(void* block, bool) noexcept {
  if (block == nullptr) return;
  char* p = static_cast<char*>(block) - kHeader;
  size_t rounded;
  std::memcpy(&rounded, p, sizeof rounded);
  in_use_.fetch_sub(rounded);
  std::free(p);
}

void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

int CpuBackend::kv_block_positions() const { return kKvBlock; }

std::unique_ptr<ModelWeights> CpuBackend::prepare_weights(const ModelWeights& host_weights, const ModelConfig&,
                                                          const Progress&) {
  // The CPU reads the memory-mapped tensors in place: nothing is copied.
  return std::make_unique<ModelWeights>(host_weights);
}

std::unique_ptr<Executor> CpuBackend::create_executor(const ModelWeights& weights, const ModelConfig& c,
                                                      const ExecutorOptions& options) {
  validate_executor_options(options, c, kv_block_positions());
  return std::make_unique<CpuExecutor>(*this, weights, c, options);
}

double CpuBackend::measure_read_bandwidth(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  return cpu::measure_read_bandwidth(bytes, pool_.size(), 5);
}

// ---- executor -----------------------------------------------------------------

size_t CpuExecutor::workspace_bytes(const MatmulKernels& k, const ModelConfig& c, int max_tokens, int threads) {
  const int widest = std::max({c.hidden_size, c.num_heads * c.head_dim, c.intermediate_size});
  const size_t linear = k.packed_bytes(max_tokens, widest) + 64;
  const size_t router = linear + static_cast<size_t>(max_tokens) * c.num_experts * sizeof(float) + 64;
  const size_t attention = attention_workspace_bytes(c, threads);
  const size_t moe = moe_workspace_bytes(k, c, max_tokens);
  const size_t sampler = sampler_workspace_bytes(c.vocab_size, threads);
  return std::max({linear, router, attention, moe, sampler}) + 4096;
}

CpuExecutor::CpuExecutor(CpuBackend& backend, const ModelWeights& weights, const ModelConfig& c,
                         const ExecutorOptions& o)
    : ComposedExecutor(backend, weights, c, o, workspace_bytes(backend.kernels(), c, o.max_tokens, backend.threads()),
                       [&c](int capacity) {
                         return static_cast<int64_t>(c.num_kv_heads) * static_cast<int64_t>(kv_slots(capacity)) *
                                c.head_dim;
                       }),
      mm_(backend.kernels()),
      pool_(backend.pool()),
      pool_mutex_(backend.pool_mutex()) {}

void CpuExecutor::execute(const StepShape& shape, const ForwardFn& forward, int) {
  upload_inputs(shape);
  std::lock_guard<std::mutex> lock(pool_mutex_);
  forward(*this, shape);
}

void CpuExecutor::embed(const int32_t* tokens, int count, float* x) {
  const int H = config_.hidden_size;
  const uint16_t* embedding = weights_.embedding;
  pool_.parallel_for(count, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const uint16_t* row = embedding + static_cast<size_t>(tokens[t]) * H;
      float* out = x + static_cast<size_t>(t) * H;
      for (int i = 0; i < H; ++i) out[i] = bf16_to_f32(row[i]);
    }
  });
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

template <typename KV>
inline KV store_kv(float v);
template <>
inline float store_kv<float>(float v) { return v; }
template <>
inline uint16_t store_kv<uint16_t>(float v) { return f32_to_bf16(v); }

template <typename KV>
void store_row_kv(const float* row, const KVCacheLayer& cache, int seq, int position, int nq, int nkv, int hd) {
  KV* kbase = static_cast<KV*>(cache.k) + static_cast<size_t>(seq) * cache.seq_stride;
  KV* vbase = static_cast<KV*>(cache.v) + static_cast<size_t>(seq) * cache.seq_stride;
  const int slot = position % cache.capacity;
  // Layout: attention.hpp (element d of head h's key goes to lane slot % kKvBlock
  // of row d of its transposed block).
  for (int h = 0; h < nkv; ++h) {
    const float* k = row + (nq + h) * hd;
    KV* dst = kbase + kt_block_offset(slot, h, cache.capacity, hd) + slot % kKvBlock;
    for (int d = 0; d < hd; ++d) dst[static_cast<size_t>(d) * kKvBlock] = store_kv<KV>(k[d]);
    const float* v = row + (nq + nkv + h) * hd;
    KV* vdst = vbase + v_row_offset(slot, h, cache.capacity, hd);
    for (int d = 0; d < hd; ++d) vdst[d] = store_kv<KV>(v[d]);
  }
}
}  // namespace

void CpuExecutor::rmsnorm(const float* x, const int32_t* rows, int count, int width, const uint16_t* weight,
                          float eps, float* y) {
  pool_.parallel_for(count, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = rows ? rows[t] : t;
      rmsnorm_row(x + r * width, weight, width, eps, y + t * width);
    }
  });
}

void CpuExecutor::rope_kv_store(float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                                const KVCacheLayer& cache) {
  const ModelConfig& c = config_;
  const int hd = c.head_dim, half = hd / 2, nq = c.num_heads, nkv = c.num_kv_heads;
  const int width = c.qkv_rows();
  const float* inv_freq = weights_.rope_inv_freq;
  const float scaling = weights_.rope_scaling;
  pool_.parallel_for(count, 4, [&](int64_t t0, int64_t t1) {
    float ct[256], st[256];  // head_dim <= 512 (checked when the model is loaded)
    for (int64_t t = t0; t < t1; ++t) {
      float* row = qkv + t * width;
      // Same float32 steps as the reference: angle = float(position) * inv_freq.
      const float position = static_cast<float>(positions[t]);
      for (int i = 0; i < half; ++i) {
        const float angle = position * inv_freq[i];
        ct[i] = std::cos(angle) * scaling;
        st[i] = std::sin(angle) * scaling;
      }
      for (int h = 0; h < nq + nkv; ++h) {  // q heads then k heads are contiguous
        float* v = row + h * hd;
        for (int i = 0; i < half; ++i) {
          float x1 = v[i], x2 = v[i + half];
          v[i] = x1 * ct[i] - x2 * st[i];
          v[i + half] = x2 * ct[i] + x1 * st[i];
        }
      }
      if (cache.dtype == KVDType::kBF16) {
        store_row_kv<uint16_t>(row, cache, seqs[t], positions[t], nq, nkv, hd);
      } else {
        store_row_kv<float>(row, cache, seqs[t], positions[t], nq, nkv, hd);
      }
    }
  });
}

}  // namespace gon::cpu
