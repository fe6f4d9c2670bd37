// Checkpoint: finds, parses and validates a gpt-oss checkpoint on disk.
//
// Owns the memory maps of every safetensors file and describes each weight as
// a pointer into them (ModelWeights, in host memory). Both layouts are read:
//   hf:       config.json (+ quantization_config mxfp4) and either
//             model.safetensors.index.json with its shards or model.safetensors;
//   original: config.json with the original keys and model.safetensors, either
//             in original/ or in the directory itself.
// Every tensor's presence, dtype and shape is checked against the config; a
// tensor the runtime would not use is an error too (it usually means a layout
// we do not understand).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "gpt_oss_native/config.hpp"

namespace gon {

class SafetensorsFile;

class Checkpoint {
 public:
  // Throws gon::Error (kFileNotFound, kIoError, kCorruptCheckpoint,
  // kUnsupportedCheckpoint) with a message naming the file and the problem.
  static std::unique_ptr<Checkpoint> open(const std::string& path);
  ~Checkpoint();

  const std::string& directory() const { return directory_; }
  const std::string& format() const { return format_; }  // "hf" or "original"
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }  // pointers into the maps
  uint64_t total_bytes() const { return total_bytes_; }

  // Reads every mapped byte once so it is resident, calling progress(done, total).
  void prefetch(const std::function<void(uint64_t, uint64_t)>& progress) const;

 private:
  Checkpoint() = default;
  std::string directory_;
  std::string format_;
  ModelConfig config_;
  ModelWeights weights_;
  std::vector<float> rope_inv_freq_;
  uint64_t total_bytes_ = 0;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;

  friend struct CheckpointLoader;
};

// YaRN inverse frequencies [head_dim / 2] and the attention factor, computed
// with the same float32 steps as the reference implementation.
void compute_rope(const ModelConfig& c, std::vector<float>& inv_freq, float& attention_factor);

}  // namespace gon
