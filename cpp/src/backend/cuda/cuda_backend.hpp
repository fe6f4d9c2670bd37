// The CUDA backend: the Triton kernels of triton_kernels/ (compiled ahead of
// time into cubins and embedded in the binary) launched through the driver
// API, which is loaded at run time (driver.hpp).
//
// CudaBackend (one per Model) owns the device, its primary context, the
// loaded kernels and the uploaded weights. CudaExecutor (one per Context or
// Engine) owns a stream, its buffers and the CUDA graphs it captured: a
// decoding step of up to 64 tokens is captured once per size bucket (1, 2,
// 4, ... 64 tokens) and replayed, so a decoded token costs one small upload,
// one graph launch and one copy of the sampled ids back. Longer steps (prefill
// chunks) run their kernels directly. decode_loop() puts a one-token step in
// the body of a WHILE conditional node, so one launch decodes many tokens.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/backend.hpp"
#include "backend/composed.hpp"
#include "backend/cuda/driver.hpp"
#include "backend/cuda/kernel_table.hpp"

namespace gon::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device_index);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  std::string description() const override { return description_; }
  int threads() const override { return 1; }

  void* allocate(size_t bytes, bool host_visible) override;
  void release(void* block, bool host_visible) noexcept override;
  bool host_addressable() const override { return false; }
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  uint64_t memory_in_use() const override { return in_use_.load(); }
  uint64_t memory_peak() const override { return peak_.load(); }

  KVDType default_kv_dtype() const override { return KVDType::kBF16; }
  // An H200 prefills the 20b model's 1k prompt at 20.5K tok/s in chunks of 512, 27.3K in chunks of 2048.
  int default_max_batch_tokens() const override { return 2048; }
  int kv_block_positions() const override { return 1; }

  std::unique_ptr<ModelWeights> prepare_weights(const ModelWeights& host_weights, const ModelConfig& c,
                                                const Progress& progress) override;
  std::unique_ptr<Executor> create_executor(const ModelWeights& weights, const ModelConfig& c,
                                            const ExecutorOptions& options) override;
  double measure_read_bandwidth(size_t bytes) override;

  // Makes the device's context current on the calling thread (every entry point does).
  void make_current() const;
  const KernelSet& kernels() const { return *kernels_; }
  int sm_count() const { return sm_count_; }
  int device_id() const { return device_index_; }
  CUcontext context() const { return context_; }

 private:
  int device_index_ = 0;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  int sm_count_ = 0;
  std::string description_;
  std::unique_ptr<KernelSet> kernels_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, std::pair<size_t, bool>> blocks_;  // allocation -> (bytes, host)
  std::atomic<uint64_t> in_use_{0};
  std::atomic<uint64_t> peak_{0};
  std::vector<void*> weight_blocks_;
};

class CudaExecutor final : public ComposedExecutor {
 public:
  CudaExecutor(CudaBackend& backend, const ModelWeights& weights, const ModelConfig& c, const ExecutorOptions& o);
  ~CudaExecutor() override;

  // Waits until the last step's inputs have left the staging buffer (its upload
  // is asynchronous), so the caller can write the next step's.
  StepInputs& inputs() override;
  void execute(const StepShape& shape, const ForwardFn& forward, int graph_id) override;
  void synchronize() override;
  void sample_rows(int offset, int count) override;
  int decode_loop(const StepShape& shape, const ForwardFn& forward, int graph_id, int max_steps,
                  const int32_t* stop_tokens, int num_stop, int32_t* tokens, float* logprobs) override;
  int decode_loop_steps() const override;
  const int32_t* sampled_tokens() override;
  const float* sampled_logprobs() override;
  LogitsView logits() override;
  void set_allowed_tokens(const uint8_t* mask) override;
  const ExecutorOptions& options() const override { return user_options_; }

  // Fine operations (each launches the kernels of triton_kernels/ on the stream).
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

  // Fused blocks (fewer launches and passes over memory than the composition).
  void attention_block(int layer, const StepShape& s) override;
  void moe_block(int layer, const StepShape& s) override;
  void output_block(const StepShape& s) override;

  CUstream stream() const { return stream_; }
  // Steps captured into graphs so far (for tests and diagnostics).
  size_t graphs() const { return graphs_.size() + loop_graphs_.size(); }

 protected:
  void upload_inputs(const StepShape& s) override;

 private:
  struct Scratch;
  static ExecutorOptions internal_options(const ExecutorOptions& o);
  void launch_gemv(const float* x, const int32_t* rows, const uint16_t* norm_w, const BF16Matrix& w, int count,
                   int n_rows, float* y, size_t ldy, bool accumulate);
  void linear_matrix(const float* x, const uint16_t* x_bf16, int count, const uint16_t* w, const uint16_t* bias,
                     int N, int K, float* y, size_t ldy, bool accumulate);
  // attention() with the output in fp32 or bf16 ([count, heads * head_dim]).
  void attention_to(const float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                    const uint16_t* sinks, const KVCacheLayer& cache, int window, void* out, bool out_bf16);
  // moe() whose grouped products take xb (== scratch xb, bf16 [count, H]; in the xg form where uses_gemm_mma)
  // when the caller wrote it, else cast x.
  void moe_experts(const float* x, const uint16_t* xb, int count, const int32_t* ids, const float* weights, int k,
                   const LayerWeights& layer, float* y);
  // Whether moe_experts takes the tensor-core grouped products (moe_gemm_mma.py, input in the xg form) for a
  // tile family.
  bool uses_gemm_mma(const std::string& family) const;
  void attention_decode(const float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                        const uint16_t* sinks, const KVCacheLayer& cache, int window, float* out, bool out_bf16);
  void build_attention_tiles(int count);
  std::string decode_variant(int splits, bool kv_bf16) const;
  std::string direct_variant(bool kv_bf16, bool out_bf16) const;
  std::string prefill_variant(bool kv_bf16, bool out_bf16) const;
  // Sampling kernels to launch for these rows: 2 when all are greedy, 3 when
  // none needs a nucleus, else all 9.
  static int sample_launches(const SampleParams* host_params, int rows);
  void copy_results_async(int offset, int count);

  CudaBackend& cuda_;
  const KernelSet& k_;
  ExecutorOptions user_options_;
  CUstream stream_ = nullptr;
  // Recorded after each step's work; waiting on it sleeps instead of spinning,
  // so a decoded token costs the host only its launch work.
  CUevent done_ = nullptr;
  CUevent uploaded_ = nullptr;  // recorded after each upload from the staging buffer
  bool upload_pending_ = false;
  bool inputs_contiguous_ = false;  // the step inputs are one span in staging and device memory
  std::unique_ptr<Scratch> scratch_;
  // Graphs by (graph id, tokens bucket, outputs bucket, sample, sampling kernels).
  std::map<std::tuple<int, int, int, bool, int>, CUgraphExec> graphs_;
  std::vector<CUgraph> graph_sources_;
  // Device loops (decode_loop) by (graph id, rows bucket, sampling kernels).
  std::map<std::tuple<int, int, int>, CUgraphExec> loop_graphs_;
  int sample_launches_ = 0;  // sampling kernels the current step needs (0: all)
  int tiles_ = -1;  // prefill attention tiles of the current eager step (-1: none built)
  bool capturing_ = false;
};

}  // namespace gon::cuda
