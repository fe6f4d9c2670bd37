// The interface every backend (CPU now; CUDA and Metal behind the same
// interface) implements, in two parts:
//  * Backend (this file): one per Model. Device memory, the weights in the
//    backend's memory, and creating Executors.
//  * Executor (executor.hpp): one per Context or Engine. Its KV cache,
//    activations, logits, step inputs and, on a GPU, its stream and graphs.
//
// The model's forward pass is written once (core/forward.cpp) over an
// executor's blocks: embed, attention, moe, output. Backends that compose
// them from fine operations derive from ComposedExecutor (composed.hpp); a GPU
// backend overrides blocks with fused kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "backend/executor.hpp"
#include "backend/weights.hpp"
#include "gpt_oss_native/config.hpp"

namespace gon {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;         // "cpu", "cuda"
  virtual std::string description() const = 0;  // the device in words, e.g. "NVIDIA H200 (sm_90, 139 GiB)"
  virtual int threads() const = 0;              // host worker threads (1 for a GPU backend)

  // ---- memory ----------------------------------------------------------------
  // A block of backend memory (64-byte aligned at least). Host-visible memory
  // is memory the host may read and write directly.
  virtual void* allocate(size_t bytes, bool host_visible) = 0;
  virtual void release(void* block, bool host_visible) noexcept = 0;
  // True when backend memory is host memory (the CPU): no copies are needed.
  virtual bool host_addressable() const = 0;
  // Synchronous copies between host memory and backend memory.
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  // Backend memory in use now and at most so far (weights and executors), bytes.
  virtual uint64_t memory_in_use() const = 0;
  virtual uint64_t memory_peak() const = 0;

  // ---- KV cache -------------------------------------------------------------------
  // Element type a Context or Engine gets when it does not choose one.
  virtual KVDType default_kv_dtype() const { return KVDType::kF32; }
  // Tokens per prefill step when a Context is not told (ContextOptions::max_batch_tokens = 0): the CPU's
  // products are as fast per token from a hundred rows; a GPU's grouped expert products fill their tiles only
  // with thousands.
  virtual int default_max_batch_tokens() const { return 128; }
  // Positions per block of the backend's KV cache layout: ring capacities are
  // rounded up to a multiple of it.
  virtual int kv_block_positions() const = 0;

  // ---- weights and executors ---------------------------------------------------
  // The weights of a checkpoint prepared for this backend (the CPU uses the
  // memory-mapped tensors in place; a GPU backend uploads them). `progress`
  // (nullable) is called with (bytes done, bytes total).
  using Progress = std::function<void(uint64_t, uint64_t)>;
  virtual std::unique_ptr<ModelWeights> prepare_weights(const ModelWeights& host_weights, const ModelConfig& c,
                                                        const Progress& progress) = 0;
  virtual std::unique_ptr<Executor> create_executor(const ModelWeights& weights, const ModelConfig& c,
                                                    const ExecutorOptions& options) = 0;

  // ---- diagnostics -------------------------------------------------------------
  // Best read bandwidth of the backend's memory in bytes/s (a sum over a
  // buffer of `bytes`), the denominator of the decode floor.
  virtual double measure_read_bandwidth(size_t bytes) = 0;
};

// Creates the backend for a device name ("cpu", "cuda", "metal", "auto").
// Throws kBackendUnavailable when it is not built in or not usable here (the
// message says why), and kInvalidArgument for an unknown name. "auto" takes
// CUDA when it is built in and a usable GPU is present, else the CPU.
std::unique_ptr<Backend> create_backend(const std::string& device, int threads);

// Which backends this binary was built with ("cpu", "cuda", ...).
std::string built_backends();

}  // namespace gon
