// The CPU backend: weights used in place from the memory-mapped checkpoint,
// activations in host memory, every operation split across a fixed pool of
// threads (thread_pool.hpp) and computed in fp32 by vectorised kernels
// (matmul.hpp for the weight products, attention.hpp, sampler.hpp).
//
// CpuBackend is shared by the executors of one model; they take turns on its
// thread pool (a step holds the pool for its duration).
#pragma once

#include <atomic>
#include <mutex>

#include "backend/backend.hpp"
#include "backend/composed.hpp"
#include "backend/cpu/matmul.hpp"
#include "backend/cpu/thread_pool.hpp"

namespace gon::cpu {

class CpuBackend final : public Backend {
 public:
  // `kernels`: the instruction set of every kernel (matrix products,
  // attention, sampling); nullptr = default_matmul_kernels().
  explicit CpuBackend(int threads, const MatmulKernels* kernels = nullptr);

  std::string name() const override { return "cpu"; }
  std::string description() const override;
  int threads() const override { return pool_.size(); }

  void* allocate(size_t bytes, bool host_visible) override;
  void release(void* block, bool host_visible) noexcept override;
  bool host_addressable() const override { return true; }
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  uint64_t memory_in_use() const override { return in_use_.load(); }
  uint64_t memory_peak() const override { return peak_.load(); }
  // K is stored in blocks of kKvBlock positions, transposed (attention.hpp).
  int kv_block_positions() const override;

  std::unique_ptr<ModelWeights> prepare_weights(const ModelWeights& host_weights, const ModelConfig& c,
                                                const Progress& progress) override;
  std::unique_ptr<Executor> create_executor(const ModelWeights& weights, const ModelConfig& c,
                                            const ExecutorOptions& options) override;
  double measure_read_bandwidth(size_t bytes) override;

  ThreadPool& pool() { return pool_; }
  std::mutex& pool_mutex() { return mutex_; }
  const MatmulKernels& kernels() const { return kernels_; }

 private:
  const MatmulKernels& kernels_;
  ThreadPool pool_;
  std::mutex mutex_;
  std::atomic<uint64_t> in_use_{0};
  std::atomic<uint64_t> peak_{0};
};

class CpuExecutor final : public ComposedExecutor {
 public:
  CpuExecutor(CpuBackend& backend, const ModelWeights& weights, const ModelConfig& c, const ExecutorOptions& o);

  void execute(const StepShape& shape, const ForwardFn& forward, int graph_id) override;
  void synchronize() override {}

  void embed(const int32_t* tokens, int count, float* x) override;
  void rmsnorm(const float* x, const int32_t* rows, int count, int width, const uint16_t* weight, float eps,
               float* y) override;
  void linear(const float* x, int count, const BF16Matrix* mats, int num_mats, float* y, size_t ldy,
              bool accumulate) override;
  void rope_kv_store(float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                     const KVCacheLayer& cache) override;
  void attention(const float* qkv, const int32_t* positions, const int32_t* seqs, int count, const uint16_t* sinks,
                 const KVCacheLayer& cache, int window, float* out) override;
  void router(const float* x, int count, const BF16Matrix& router, int k, int32_t* ids, float* weights) override;
  void moe(const float* x, int count, const int32_t* ids, const float* weights, int k, const LayerWeights& layer,
           float* y) override;
  void unembed(const float* x, int rows, float* logits) override;
  void sample(const float* logits, int rows, const SampleParams* params, const uint8_t* mask, int32_t* tokens,
              float* logprobs) override;

  // Scratch the operations need (bytes), for steps of up to max_tokens tokens.
  static size_t workspace_bytes(const MatmulKernels& k, const ModelConfig& c, int max_tokens, int threads);

 private:
  const MatmulKernels& mm_;
  ThreadPool& pool_;
  std::mutex& pool_mutex_;
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
size_t moe_workspace_bytes(const MatmulKernels& k, const ModelConfig& c, int max_tokens);
size_t attention_workspace_bytes(const ModelConfig& c, int threads);
size_t sampler_workspace_bytes(int vocab, int threads);

}  // namespace gon::cpu
