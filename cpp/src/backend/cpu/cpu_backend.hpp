// The CPU backend: weights used in place from the memory-mapped checkpoint,
// activations in host memory, every operation split across a fixed pool of
// threads (see thread_pool.hpp) and computed in fp32 by vectorised kernels
// (matmul.hpp for the weight products).
#pragma once

#include <mutex>

#include "backend/backend.hpp"
#include "backend/cpu/thread_pool.hpp"

namespace gon::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);

  std::string name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }

  void* allocate(size_t bytes, bool host_visible) override;
  void release(void* block, bool host_visible) noexcept override;
  size_t workspace_bytes(const ModelConfig& config, int max_tokens, int context_length) const override;
  // K is stored in blocks of kKvBlock positions, transposed (attention.hpp).
  int kv_block_positions() const override;

  void lock() override { mutex_.lock(); }
  void unlock() override { mutex_.unlock(); }
  void begin_batch(const Batch&) override {}
  void end_batch() override {}

  void embed(const ModelWeights& w, const int32_t* tokens, const Batch& b, float* x) override;
  void rmsnorm(const float* x, const uint16_t* weight, const Batch& b, int width, float eps, float* y) override;
  void linear(const float* x, const BF16Matrix* mats, int num_mats, const Batch& b, float* y, size_t ldy,
              bool accumulate, void* workspace) override;
  void rope_kv_store(float* qkv, const ModelWeights& w, const ModelConfig& c, const Batch& b,
                     const KVCacheLayer& cache) override;
  void attention(const float* qkv, const uint16_t* sinks, const ModelConfig& c, const Batch& b,
                 const KVCacheLayer& cache, int window, float* out, void* workspace) override;
  void router(const float* x, const BF16Matrix& router, int k, const Batch& b, int32_t* ids, float* weights,
              void* workspace) override;
  void moe(const float* x, const int32_t* ids, const float* weights, int k, const LayerWeights& layer,
           const ModelConfig& c, const Batch& b, float* y, void* workspace) override;
  void unembed(const ModelWeights& w, const float* x, int first_row, int num_rows, int width, float* logits,
               void* workspace) override;

  std::unique_ptr<ModelWeights> prepare_weights(const ModelWeights& host_weights, const ModelConfig& c) override;

  ThreadPool& pool() { return pool_; }

 private:
  ThreadPool pool_;
  std::mutex mutex_;
};

// Bump allocation inside an op's workspace; 64-byte aligned pieces.
class WorkspaceCarver {
 public:
  explicit WorkspaceCarver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(size_t count) {
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += (count * sizeof(T) + 63) & ~size_t{63};
    return p;
  }
  void* take_bytes(size_t bytes) { return take<char>(bytes); }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

// Workspace each operation needs (bytes), shared by workspace_bytes() and the ops.
size_t moe_workspace_bytes(const ModelConfig& c, int max_tokens);
size_t attention_workspace_bytes(const ModelConfig& c, int threads);

}  // namespace gon::cpu
