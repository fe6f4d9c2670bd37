// A loaded gpt-oss model: configuration, memory-mapped weights, and the
// backend (CPU today; CUDA and Metal slot in behind the same interface) that
// runs it. A Model is immutable once loaded and is shared by any number of
// Contexts (hold it in a std::shared_ptr; each Context keeps it alive).
//
//   auto model = gon::Model::load("/path/to/gpt-oss-20b");
//   gon::Context ctx(model, {.context_length = 4096});
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "gpt_oss_native/config.hpp"

namespace gon {

class Backend;
struct ModelWeights;
class Checkpoint;
class Tokenizer;

struct LoadOptions {
  // "cpu", "cuda" or "auto" (CUDA when it is built in and a usable GPU is
  // present, else the CPU). "cuda" raises kBackendUnavailable saying why when
  // it cannot run here (not built, no driver, no GPU, no kernels for its
  // architecture); "metal" until that backend is built in.
  std::string device = "cpu";
  // Worker threads for the CPU backend; 0 means one per available core.
  int threads = 0;
  // Read the weights into the page cache while loading, so the first tokens
  // do not stall on disk reads. kAuto prefetches when the weights fit in the
  // memory that is available.
  enum class Prefetch { kAuto, kAlways, kNever } prefetch = Prefetch::kAuto;
  // Called now and then with (bytes done, bytes total) while loading.
  std::function<void(uint64_t, uint64_t)> progress;
};

class Model {
 public:
  // Loads a checkpoint directory in the Hugging Face layout (config.json +
  // model.safetensors.index.json + shards, or a single model.safetensors) or
  // the original layout (original/ subdirectory, or a directory holding the
  // original config.json and model.safetensors). `path` may also name the
  // config.json or a .safetensors file inside such a directory.
  // Throws gon::Error: kFileNotFound, kIoError, kCorruptCheckpoint,
  // kUnsupportedCheckpoint, kBackendUnavailable, kInvalidArgument.
  static std::shared_ptr<Model> load(const std::string& path, const LoadOptions& options = {});

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const std::string& path() const;            // the directory the checkpoint was loaded from
  const std::string& checkpoint_format() const;  // "hf" or "original"
  std::string device() const;                 // backend name, e.g. "cpu"
  std::string device_description() const;     // the device in words (CPU model and kernels, GPU name)
  // Backend memory (GPU memory for CUDA; allocated arenas on the CPU) in use now
  // and at most so far, in bytes: weights uploaded plus every context's buffers.
  uint64_t backend_memory_in_use() const;
  uint64_t backend_memory_peak() const;
  // The best read bandwidth of the backend's memory, bytes/s, measured now over
  // a buffer of `bytes` (the denominator of the decode floor).
  double measure_read_bandwidth(size_t bytes) const;
  int threads() const;                        // worker threads of the backend
  uint64_t weight_bytes() const;              // bytes of all tensors in the checkpoint
  // Bytes of weights read to decode one token at batch 1 (attention, router,
  // the active experts, the unembedding and one embedding row).
  uint64_t decode_bytes_per_token() const;

  // The checkpoint's tokenizer (tokenizer.json in its directory, or in the
  // parent directory for an original/ layout), loaded on first use.
  // Throws kFileNotFound when the checkpoint has none.
  std::shared_ptr<const Tokenizer> tokenizer() const;

  // Internal: the backend and its view of the weights (used by Context).
  Backend& backend() const;
  const ModelWeights& weights() const;

 private:
  Model();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gon
