// Writes small random gpt-oss checkpoints in the Hugging Face layout for the
// C++ tests (the Python tests use gpt_oss_native.checkpoint, which also writes
// the original layout and is checked against transformers).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.hpp"

namespace gon_test {

struct TinySpec {
  int layers = 2, experts = 4, top_k = 2, hidden = 64, intermediate = 96, heads = 4, kv_heads = 2, head_dim = 16;
  int window = 4, vocab = 300;
  uint64_t seed = 1;
  std::string quant_method = "mxfp4";
};

struct TensorBlob {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

inline std::string shape_json(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

// Serialises tensors as a safetensors file.
inline void write_safetensors(const std::string& path, const std::vector<TensorBlob>& tensors) {
  std::string header = "{";
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    header += (i ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"" + t.dtype +
              "\",\"shape\":" + shape_json(t.shape) + ",\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), header.size());
  for (const auto& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
}

inline TensorBlob bf16_tensor(const std::string& name, std::vector<int64_t> shape, std::mt19937_64& rng, float std_dev,
                              float mean = 0.f) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  std::normal_distribution<float> dist(mean, std_dev);
  TensorBlob t{name, "BF16", shape, std::vector<uint8_t>(n * 2)};
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h = gon::f32_to_bf16(dist(rng));
    std::memcpy(t.bytes.data() + 2 * i, &h, 2);
  }
  return t;
}

inline TensorBlob u8_tensor(const std::string& name, std::vector<int64_t> shape, std::mt19937_64& rng, int lo, int hi) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  std::uniform_int_distribution<int> dist(lo, hi);
  TensorBlob t{name, "U8", shape, std::vector<uint8_t>(n)};
  for (auto& b : t.bytes) b = static_cast<uint8_t>(dist(rng));
  return t;
}

inline std::vector<TensorBlob> tiny_tensors(const TinySpec& s) {
  std::mt19937_64 rng(s.seed);
  const int64_t V = s.vocab, H = s.hidden, I = s.intermediate, E = s.experts;
  const int64_t q = int64_t{s.heads} * s.head_dim, kv = int64_t{s.kv_heads} * s.head_dim;
  std::vector<TensorBlob> t;
  t.push_back(bf16_tensor("model.embed_tokens.weight", {V, H}, rng, 0.5f));
  t.push_back(bf16_tensor("lm_head.weight", {V, H}, rng, 0.05f));
  t.push_back(bf16_tensor("model.norm.weight", {H}, rng, 0.05f, 1.0f));
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back(bf16_tensor(p + "input_layernorm.weight", {H}, rng, 0.05f, 1.0f));
    t.push_back(bf16_tensor(p + "post_attention_layernorm.weight", {H}, rng, 0.05f, 1.0f));
    t.push_back(bf16_tensor(p + "self_attn.q_proj.weight", {q, H}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.q_proj.bias", {q}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.k_proj.weight", {kv, H}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.k_proj.bias", {kv}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.v_proj.weight", {kv, H}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.v_proj.bias", {kv}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.o_proj.weight", {H, q}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.o_proj.bias", {H}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "self_attn.sinks", {s.heads}, rng, 0.5f));
    t.push_back(bf16_tensor(p + "mlp.router.weight", {E, H}, rng, 0.1f));
    t.push_back(bf16_tensor(p + "mlp.router.bias", {E}, rng, 0.1f));
    t.push_back(u8_tensor(p + "mlp.experts.gate_up_proj_blocks", {E, 2 * I, H / 32, 16}, rng, 0, 255));
    t.push_back(u8_tensor(p + "mlp.experts.gate_up_proj_scales", {E, 2 * I, H / 32}, rng, 120, 123));
    t.push_back(bf16_tensor(p + "mlp.experts.gate_up_proj_bias", {E, 2 * I}, rng, 0.1f));
    t.push_back(u8_tensor(p + "mlp.experts.down_proj_blocks", {E, H, I / 32, 16}, rng, 0, 255));
    t.push_back(u8_tensor(p + "mlp.experts.down_proj_scales", {E, H, I / 32}, rng, 120, 123));
    t.push_back(bf16_tensor(p + "mlp.experts.down_proj_bias", {E, H}, rng, 0.1f));
  }
  return t;
}

inline std::string tiny_config_json(const TinySpec& s) {
  std::string layer_types = "[";
  for (int l = 0; l < s.layers; ++l)
    layer_types += std::string(l ? "," : "") + (l % 2 == 0 ? "\"sliding_attention\"" : "\"full_attention\"");
  layer_types += "]";
  return "{\"model_type\":\"gpt_oss\",\"num_hidden_layers\":" + std::to_string(s.layers) +
         ",\"num_local_experts\":" + std::to_string(s.experts) +
         ",\"num_experts_per_tok\":" + std::to_string(s.top_k) + ",\"vocab_size\":" + std::to_string(s.vocab) +
         ",\"hidden_size\":" + std::to_string(s.hidden) + ",\"intermediate_size\":" + std::to_string(s.intermediate) +
         ",\"num_attention_heads\":" + std::to_string(s.heads) +
         ",\"num_key_value_heads\":" + std::to_string(s.kv_heads) + ",\"head_dim\":" + std::to_string(s.head_dim) +
         ",\"sliding_window\":" + std::to_string(s.window) + ",\"layer_types\":" + layer_types +
         ",\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-5,\"swiglu_limit\":7.0,\"rope_theta\":150000,"
         "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":32.0,\"beta_fast\":32.0,\"beta_slow\":1.0,"
         "\"original_max_position_embeddings\":4096,\"truncate\":false},\"eos_token_id\":" +
         std::to_string(s.vocab - 1) + ",\"quantization_config\":{\"quant_method\":\"" +
         s.quant_method + "\"}}";
}

// A fresh directory under the system temp dir, removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / ("gon_test_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

inline void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

inline void write_tiny_checkpoint(const std::filesystem::path& dir, const TinySpec& s) {
  std::filesystem::create_directories(dir);
  write_text(dir / "config.json", tiny_config_json(s));
  write_safetensors((dir / "model.safetensors").string(), tiny_tensors(s));
}

}  // namespace gon_test
