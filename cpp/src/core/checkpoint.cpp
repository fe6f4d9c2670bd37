// Checkpoint loading: layout detection, config parsing for both layouts, and
// the tensor table with dtype/shape checks (see checkpoint.hpp).
#include "core/checkpoint.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "core/check.hpp"
#include "core/json.hpp"
#include "core/mapped_file.hpp"
#include "core/safetensors.hpp"

namespace gon {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  auto file = MappedFile::open(path.string());
  return std::string(reinterpret_cast<const char*>(file->data()), file->size());
}

bool exists_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Typed access to config values with messages that name the file and key.
class ConfigReader {
 public:
  ConfigReader(const Json& root, std::string origin) : root_(root), origin_(std::move(origin)) {
    GON_CHECK(root.is_object(), kCorruptCheckpoint, origin_, ": expected a JSON object at the top level");
  }
  bool has(const char* key) const {
    const Json* v = root_.find(key);
    return v != nullptr && !v->is_null();
  }
  const Json* get(const char* key) const {
    const Json* v = root_.find(key);
    return (v != nullptr && !v->is_null()) ? v : nullptr;
  }
  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const Json* v = get(key);
    GON_CHECK(v != nullptr, kCorruptCheckpoint, origin_, ": missing required key '", key, "'");
    return integer_value(*v, key, lo, hi);
  }
  int64_t integer_or(const char* key, int64_t fallback, int64_t lo, int64_t hi) const {
    const Json* v = get(key);
    return v ? integer_value(*v, key, lo, hi) : fallback;
  }
  int64_t integer_value(const Json& v, const char* key, int64_t lo, int64_t hi) const {
    bool integral = v.is_number() && (v.is_integer() || (std::isfinite(v.as_number()) &&
                                                         v.as_number() == std::floor(v.as_number()) &&
                                                         std::fabs(v.as_number()) < 9e15));
    GON_CHECK(integral, kCorruptCheckpoint, origin_, ": '", key, "' must be an integer");
    int64_t x = v.is_integer() ? v.as_int() : static_cast<int64_t>(v.as_number());
    GON_CHECK(x >= lo && x <= hi, kCorruptCheckpoint, origin_, ": '", key, "' = ", x, " is outside [", lo, ", ",
              hi, "]");
    return x;
  }
  double number_or(const char* key, double fallback) const {
    const Json* v = get(key);
    if (!v) return fallback;
    GON_CHECK(v->is_number() && std::isfinite(v->as_number()), kCorruptCheckpoint, origin_, ": '", key,
              "' must be a finite number");
    return v->as_number();
  }
  const std::string& origin() const { return origin_; }

 private:
  const Json& root_;
  std::string origin_;
};

// Every value the forward pass depends on, range-checked when the model loads,
// so a bad config.json fails here with its name rather than as NaN logits or an
// internal error later. Out-of-range values that no gpt-oss model can have are
// corrupt (kCorruptCheckpoint); well-formed values this runtime cannot run are
// unsupported (kUnsupportedCheckpoint).
void validate_config(const ModelConfig& c, const std::string& origin) {
  auto corrupt_unless = [&](bool ok, const auto&... why) {
    GON_CHECK(ok, kCorruptCheckpoint, origin, ": ", why...);
  };
  auto fail_unless = [&](bool ok, const auto&... why) {
    GON_CHECK(ok, kUnsupportedCheckpoint, origin, ": ", why...);
  };
  corrupt_unless(c.head_dim >= 2, "head_dim ", c.head_dim,
                 " is too small (hidden_size / num_attention_heads rounds to it when head_dim is absent)");
  corrupt_unless(c.num_kv_heads >= 1 && c.num_kv_heads <= c.num_heads, "num_key_value_heads ", c.num_kv_heads,
                 " must be in [1, num_attention_heads = ", c.num_heads, "]");
  corrupt_unless(c.experts_per_token >= 1 && c.experts_per_token <= c.num_experts, "experts_per_token ",
                 c.experts_per_token, " must be in [1, num_experts = ", c.num_experts, "]");
  corrupt_unless(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0.0f && c.rms_norm_eps <= 1.0f, "rms_norm_eps ",
                 c.rms_norm_eps, " must be in (0, 1]");
  corrupt_unless(std::isfinite(c.swiglu_limit) && c.swiglu_limit > 0.0f, "swiglu_limit ", c.swiglu_limit,
                 " must be a positive number");
  corrupt_unless(std::isfinite(c.swiglu_alpha) && c.swiglu_alpha > 0.0f, "swiglu_alpha ", c.swiglu_alpha,
                 " must be a positive number");
  corrupt_unless(c.sliding_window >= 0, "sliding_window ", c.sliding_window, " must be >= 0");
  corrupt_unless(c.max_context >= 1, "the maximum context ", c.max_context, " must be >= 1");
  corrupt_unless(std::isfinite(c.rope_theta) && c.rope_theta > 1.0, "rope_theta ", c.rope_theta, " must be > 1");
  corrupt_unless(std::isfinite(c.rope_scaling_factor) && c.rope_scaling_factor >= 1.0, "rope scaling factor ",
                 c.rope_scaling_factor, " must be >= 1");
  corrupt_unless(c.rope_original_context >= 1, "original_max_position_embeddings ", c.rope_original_context,
                 " must be >= 1");
  if (c.rope_scaling_factor > 1.0) {
    corrupt_unless(std::isfinite(c.rope_beta_fast) && std::isfinite(c.rope_beta_slow) && c.rope_beta_slow > 0.0 &&
                       c.rope_beta_fast > c.rope_beta_slow,
                   "YaRN needs beta_fast > beta_slow > 0, got beta_fast ", c.rope_beta_fast, ", beta_slow ",
                   c.rope_beta_slow);
  }
  corrupt_unless(c.eos_token_id < c.vocab_size, "eos_token_id ", c.eos_token_id, " is outside the vocabulary of ",
                 c.vocab_size);
  corrupt_unless(c.pad_token_id < c.vocab_size, "pad_token_id ", c.pad_token_id, " is outside the vocabulary of ",
                 c.vocab_size);
  fail_unless(c.hidden_size % 32 == 0, "hidden_size ", c.hidden_size, " is not a multiple of 32 (MXFP4 blocks)");
  fail_unless(c.intermediate_size % 32 == 0, "intermediate_size ", c.intermediate_size,
              " is not a multiple of 32 (MXFP4 blocks)");
  fail_unless(c.num_heads % c.num_kv_heads == 0, "num_attention_heads ", c.num_heads,
              " is not a multiple of num_key_value_heads ", c.num_kv_heads);
  fail_unless(c.head_dim % 2 == 0 && c.head_dim <= 512, "head_dim ", c.head_dim, " must be even and <= 512");
  fail_unless((c.num_heads * c.head_dim) % 32 == 0, "num_attention_heads * head_dim must be a multiple of 32");
  fail_unless(static_cast<int>(c.layer_is_sliding.size()) == c.num_layers, "layer_types has ",
              c.layer_is_sliding.size(), " entries for ", c.num_layers, " layers");
}

ModelConfig parse_hf_config(const Json& root, const std::string& origin) {
  ConfigReader r(root, origin);
  if (const Json* mt = r.get("model_type")) {
    GON_CHECK(mt->is_string() && mt->as_string() == "gpt_oss", kUnsupportedCheckpoint, origin, ": model_type '",
              mt->is_string() ? mt->as_string() : std::string("?"), "' is not gpt_oss");
  }
  if (const Json* q = r.get("quantization_config")) {
    GON_CHECK(q->is_object(), kCorruptCheckpoint, origin, ": quantization_config must be an object");
    const Json* method = q->find("quant_method");
    GON_CHECK(method && method->is_string(), kCorruptCheckpoint, origin, ": quantization_config has no quant_method");
    GON_CHECK(method->as_string() == "mxfp4", kUnsupportedCheckpoint, origin, ": unknown quantization method '",
              method->as_string(), "' (only mxfp4 expert weights are supported)");
  }
  ModelConfig c;
  c.num_layers = static_cast<int>(r.integer("num_hidden_layers", 1, 1024));
  c.num_experts = static_cast<int>(r.has("num_local_experts") ? r.integer("num_local_experts", 1, 4096)
                                                               : r.integer("num_experts", 1, 4096));
  c.experts_per_token = static_cast<int>(r.has("num_experts_per_tok") ? r.integer("num_experts_per_tok", 1, 64)
                                                                      : r.integer("experts_per_token", 1, 64));
  c.vocab_size = static_cast<int>(r.integer("vocab_size", 1, 1 << 24));
  c.hidden_size = static_cast<int>(r.integer("hidden_size", 32, 1 << 16));
  c.intermediate_size = static_cast<int>(r.integer("intermediate_size", 32, 1 << 17));
  c.num_heads = static_cast<int>(r.integer("num_attention_heads", 1, 1024));
  c.num_kv_heads = static_cast<int>(r.integer_or("num_key_value_heads", c.num_heads, 1, 1024));
  c.head_dim = static_cast<int>(r.integer_or("head_dim", c.hidden_size / c.num_heads, 2, 512));
  c.sliding_window = static_cast<int>(r.integer_or("sliding_window", 0, 0, 1 << 24));
  c.max_context = static_cast<int>(r.integer_or("max_position_embeddings", 131072, 1, 1 << 24));
  c.rms_norm_eps = static_cast<float>(r.number_or("rms_norm_eps", 1e-5));
  c.swiglu_limit = static_cast<float>(r.number_or("swiglu_limit", 7.0));
  c.swiglu_alpha = static_cast<float>(r.number_or("swiglu_alpha", 1.702));
  c.pad_token_id = static_cast<int>(r.integer_or("pad_token_id", -1, -1, 1 << 24));
  if (const Json* eos = r.get("eos_token_id")) {
    const Json& first = eos->is_array() && !eos->as_array().empty() ? eos->as_array()[0] : *eos;
    c.eos_token_id = static_cast<int>(r.integer_value(first, "eos_token_id", 0, 1 << 24));
  }
  if (const Json* tie = r.get("tie_word_embeddings")) {
    GON_CHECK(!(tie->is_bool() && tie->as_bool()), kUnsupportedCheckpoint, origin,
              ": tie_word_embeddings is true; gpt-oss has a separate lm_head");
  }

  c.layer_is_sliding.assign(c.num_layers, 0);
  if (const Json* types = r.get("layer_types")) {
    GON_CHECK(types->is_array(), kCorruptCheckpoint, origin, ": layer_types must be an array");
    GON_CHECK(static_cast<int>(types->as_array().size()) == c.num_layers, kCorruptCheckpoint, origin,
              ": layer_types has ", types->as_array().size(), " entries for ", c.num_layers, " layers");
    for (int i = 0; i < c.num_layers; ++i) {
      const Json& t = types->as_array()[i];
      GON_CHECK(t.is_string() && (t.as_string() == "sliding_attention" || t.as_string() == "full_attention"),
                kUnsupportedCheckpoint, origin, ": layer_types[", i, "] must be sliding_attention or full_attention");
      c.layer_is_sliding[i] = t.as_string() == "sliding_attention";
    }
  } else {
    for (int i = 0; i < c.num_layers; ++i) c.layer_is_sliding[i] = (i % 2 == 0);
  }
  if (c.sliding_window <= 0) std::fill(c.layer_is_sliding.begin(), c.layer_is_sliding.end(), 0);

  // RoPE: rope_scaling (older files) or rope_parameters (newer), theta at the
  // top level or inside. Defaults follow the reference implementation.
  const Json* rope = r.get("rope_scaling");
  if (!rope) rope = r.get("rope_parameters");
  c.rope_theta = r.number_or("rope_theta", 150000.0);
  c.rope_scaling_factor = 1.0;
  c.rope_original_context = c.max_context;
  if (rope) {
    GON_CHECK(rope->is_object(), kCorruptCheckpoint, origin, ": rope_scaling must be an object");
    ConfigReader rr(*rope, origin + " rope_scaling");
    c.rope_theta = rr.number_or("rope_theta", c.rope_theta);
    std::string type = "default";
    if (const Json* t = rr.get("rope_type")) {
      GON_CHECK(t->is_string(), kCorruptCheckpoint, origin, ": rope_type must be a string");
      type = t->as_string();
    }
    if (type == "yarn") {
      c.rope_scaling_factor = rr.number_or("factor", 32.0);
      c.rope_beta_fast = rr.number_or("beta_fast", 32.0);
      c.rope_beta_slow = rr.number_or("beta_slow", 1.0);
      c.rope_original_context = static_cast<int>(rr.integer_or("original_max_position_embeddings", 4096, 1, 1 << 24));
      const Json* trunc = rr.get("truncate");
      c.rope_truncate = trunc ? (trunc->is_bool() && trunc->as_bool()) : true;
      GON_CHECK(!rr.has("attention_factor") && !rr.has("mscale") && !rr.has("mscale_all_dim"),
                kUnsupportedCheckpoint, origin, ": YaRN attention_factor/mscale overrides are not supported");
    } else {
      GON_CHECK(type == "default", kUnsupportedCheckpoint, origin, ": rope_type '", type,
                "' is not supported (yarn or default)");
    }
  }
  validate_config(c, origin);
  return c;
}

ModelConfig parse_original_config(const Json& root, const std::string& origin) {
  ConfigReader r(root, origin);
  ModelConfig c;
  c.num_layers = static_cast<int>(r.integer("num_hidden_layers", 1, 1024));
  c.num_experts = static_cast<int>(r.integer("num_experts", 1, 4096));
  c.experts_per_token = static_cast<int>(r.integer("experts_per_token", 1, 64));
  c.vocab_size = static_cast<int>(r.integer("vocab_size", 1, 1 << 24));
  c.hidden_size = static_cast<int>(r.integer("hidden_size", 32, 1 << 16));
  c.intermediate_size = static_cast<int>(r.integer("intermediate_size", 32, 1 << 17));
  c.num_heads = static_cast<int>(r.integer("num_attention_heads", 1, 1024));
  c.num_kv_heads = static_cast<int>(r.integer("num_key_value_heads", 1, 1024));
  c.head_dim = static_cast<int>(r.integer("head_dim", 2, 512));
  c.sliding_window = static_cast<int>(r.integer("sliding_window", 0, 1 << 24));
  c.swiglu_limit = static_cast<float>(r.number_or("swiglu_limit", 7.0));
  c.rope_theta = r.number_or("rope_theta", 150000.0);
  c.rope_scaling_factor = r.number_or("rope_scaling_factor", 32.0);
  c.rope_beta_slow = r.number_or("rope_ntk_alpha", 1.0);
  c.rope_beta_fast = r.number_or("rope_ntk_beta", 32.0);
  c.rope_original_context = static_cast<int>(r.integer("initial_context_length", 1, 1 << 24));
  c.rope_truncate = false;
  c.max_context = static_cast<int>(std::min<double>(c.rope_original_context * c.rope_scaling_factor, 1 << 24));
  c.eos_token_id = 200002 < c.vocab_size ? 200002 : -1;
  c.pad_token_id = 199999 < c.vocab_size ? 199999 : -1;
  c.layer_is_sliding.assign(c.num_layers, 0);
  for (int i = 0; i < c.num_layers; ++i) c.layer_is_sliding[i] = c.sliding_window > 0 && i % 2 == 0;
  validate_config(c, origin);
  return c;
}

bool looks_original(const Json& root) {
  return root.is_object() && root.find("model_type") == nullptr && root.find("num_experts") != nullptr &&
         root.find("experts_per_token") != nullptr;
}

}  // namespace

// Builds the tensor table of a checkpoint and resolves every weight.
struct CheckpointLoader {
  Checkpoint& ck;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>> table;
  std::set<std::string> used;

  void add_file(std::shared_ptr<SafetensorsFile> file) {
    for (const TensorInfo& t : file->tensors()) {
      auto [it, inserted] = table.emplace(t.name, std::make_pair(file.get(), &t));
      GON_CHECK(inserted, kCorruptCheckpoint, file->path(), ": tensor '", t.name, "' also appears in ",
                it->second.first->path());
    }
    ck.total_bytes_ += file->file().size();
    ck.files_.push_back(std::move(file));
  }

  static std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  const uint8_t* tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
    auto it = table.find(name);
    if (it == table.end()) {
      GON_THROW(kCorruptCheckpoint, ck.directory_, ": missing tensor '", name, "' (expected ", dtype_name(dtype), " ",
                shape_str(shape), ")");
    }
    const auto& [file, info] = it->second;
    GON_CHECK(info->dtype == dtype, kCorruptCheckpoint, file->path(), ": tensor '", name, "' has dtype ",
              dtype_name(info->dtype), ", expected ", dtype_name(dtype));
    GON_CHECK(info->shape == shape, kCorruptCheckpoint, file->path(), ": tensor '", name, "' has shape ",
              shape_str(info->shape), ", expected ", shape_str(shape));
    const uint8_t* data = file->data(*info);
    GON_CHECK(reinterpret_cast<uintptr_t>(data) % dtype_size(dtype) == 0, kUnsupportedCheckpoint, file->path(),
              ": tensor '", name, "' is not aligned to its element size");
    used.insert(name);
    return data;
  }
  const uint16_t* bf16(const std::string& name, const std::vector<int64_t>& shape) {
    return reinterpret_cast<const uint16_t*>(tensor(name, DType::kBF16, shape));
  }
  const uint8_t* u8(const std::string& name, const std::vector<int64_t>& shape) {
    return tensor(name, DType::kU8, shape);
  }

  void check_all_used() {
    std::vector<std::string> extra;
    for (const auto& [name, _] : table)
      if (!used.count(name)) extra.push_back(name);
    if (extra.empty()) return;
    std::string list;
    for (size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", '" : "'") + extra[i] + "'";
    if (extra.size() > 5) list += ", ...";
    GON_THROW(kUnsupportedCheckpoint, ck.directory_, ": ", extra.size(),
              " tensor(s) this runtime does not know how to use: ", list);
  }

  void load_hf() {
    const ModelConfig& c = ck.config_;
    const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size, E = c.num_experts;
    const int64_t q_rows = int64_t{c.num_heads} * c.head_dim, kv_rows = int64_t{c.num_kv_heads} * c.head_dim;
    if (table.count("model.layers.0.mlp.experts.gate_up_proj")) {
      GON_THROW(kUnsupportedCheckpoint, ck.directory_,
                ": expert weights are stored dequantized (bf16 gate_up_proj); only MXFP4 experts are supported");
    }
    ModelWeights& w = ck.weights_;
    w.embedding = bf16("model.embed_tokens.weight", {V, H});
    w.unembedding = {bf16("lm_head.weight", {V, H}), nullptr, static_cast<int>(V), static_cast<int>(H)};
    w.final_norm = bf16("model.norm.weight", {H});
    w.layers.resize(c.num_layers);
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights& L = w.layers[l];
      L.sliding = c.layer_is_sliding[l];
      L.attn_norm = bf16(p + "input_layernorm.weight", {H});
      L.q = {bf16(p + "self_attn.q_proj.weight", {q_rows, H}), bf16(p + "self_attn.q_proj.bias", {q_rows}),
             static_cast<int>(q_rows), static_cast<int>(H)};
      L.k = {bf16(p + "self_attn.k_proj.weight", {kv_rows, H}), bf16(p + "self_attn.k_proj.bias", {kv_rows}),
             static_cast<int>(kv_rows), static_cast<int>(H)};
      L.v = {bf16(p + "self_attn.v_proj.weight", {kv_rows, H}), bf16(p + "self_attn.v_proj.bias", {kv_rows}),
             static_cast<int>(kv_rows), static_cast<int>(H)};
      L.out = {bf16(p + "self_attn.o_proj.weight", {H, q_rows}), bf16(p + "self_attn.o_proj.bias", {H}),
               static_cast<int>(H), static_cast<int>(q_rows)};
      L.sinks = bf16(p + "self_attn.sinks", {c.num_heads});
      L.mlp_norm = bf16(p + "post_attention_layernorm.weight", {H});
      L.router = {bf16(p + "mlp.router.weight", {E, H}), bf16(p + "mlp.router.bias", {E}), static_cast<int>(E),
                  static_cast<int>(H)};
      L.mlp1 = {u8(p + "mlp.experts.gate_up_proj_blocks", {E, 2 * I, H / 32, 16}),
                u8(p + "mlp.experts.gate_up_proj_scales", {E, 2 * I, H / 32}),
                bf16(p + "mlp.experts.gate_up_proj_bias", {E, 2 * I}), static_cast<int>(E), static_cast<int>(2 * I),
                static_cast<int>(H)};
      L.mlp2 = {u8(p + "mlp.experts.down_proj_blocks", {E, H, I / 32, 16}),
                u8(p + "mlp.experts.down_proj_scales", {E, H, I / 32}), bf16(p + "mlp.experts.down_proj_bias", {E, H}),
                static_cast<int>(E), static_cast<int>(H), static_cast<int>(I)};
    }
  }

  void load_original() {
    const ModelConfig& c = ck.config_;
    const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size, E = c.num_experts;
    const int64_t q_rows = int64_t{c.num_heads} * c.head_dim, kv_rows = int64_t{c.num_kv_heads} * c.head_dim;
    const int64_t qkv_rows = q_rows + 2 * kv_rows;
    ModelWeights& w = ck.weights_;
    w.embedding = bf16("embedding.weight", {V, H});
    w.unembedding = {bf16("unembedding.weight", {V, H}), nullptr, static_cast<int>(V), static_cast<int>(H)};
    w.final_norm = bf16("norm.scale", {H});
    w.layers.resize(c.num_layers);
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = "block." + std::to_string(l) + ".";
      LayerWeights& L = w.layers[l];
      L.sliding = c.layer_is_sliding[l];
      L.attn_norm = bf16(p + "attn.norm.scale", {H});
      const uint16_t* qkv = bf16(p + "attn.qkv.weight", {qkv_rows, H});
      const uint16_t* qkv_bias = bf16(p + "attn.qkv.bias", {qkv_rows});
      L.q = {qkv, qkv_bias, static_cast<int>(q_rows), static_cast<int>(H)};
      L.k = {qkv + q_rows * H, qkv_bias + q_rows, static_cast<int>(kv_rows), static_cast<int>(H)};
      L.v = {qkv + (q_rows + kv_rows) * H, qkv_bias + q_rows + kv_rows, static_cast<int>(kv_rows),
             static_cast<int>(H)};
      L.out = {bf16(p + "attn.out.weight", {H, q_rows}), bf16(p + "attn.out.bias", {H}), static_cast<int>(H),
               static_cast<int>(q_rows)};
      L.sinks = bf16(p + "attn.sinks", {c.num_heads});
      L.mlp_norm = bf16(p + "mlp.norm.scale", {H});
      L.router = {bf16(p + "mlp.gate.weight", {E, H}), bf16(p + "mlp.gate.bias", {E}), static_cast<int>(E),
                  static_cast<int>(H)};
      L.mlp1 = {u8(p + "mlp.mlp1_weight.blocks", {E, 2 * I, H / 32, 16}),
                u8(p + "mlp.mlp1_weight.scales", {E, 2 * I, H / 32}), bf16(p + "mlp.mlp1_bias", {E, 2 * I}),
                static_cast<int>(E), static_cast<int>(2 * I), static_cast<int>(H)};
      L.mlp2 = {u8(p + "mlp.mlp2_weight.blocks", {E, H, I / 32, 16}),
                u8(p + "mlp.mlp2_weight.scales", {E, H, I / 32}), bf16(p + "mlp.mlp2_bias", {E, H}),
                static_cast<int>(E), static_cast<int>(H), static_cast<int>(I)};
    }
  }
};

Checkpoint::~Checkpoint() = default;

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& path) {
  GON_CHECK(!path.empty(), kInvalidArgument, "checkpoint path is empty");
  fs::path p(path);
  std::error_code ec;
  GON_CHECK(fs::exists(p, ec), kFileNotFound, "checkpoint not found: '", path, "' does not exist");
  if (fs::is_regular_file(p, ec)) {
    const std::string name = p.filename().string();
    GON_CHECK(name == "config.json" || name == "model.safetensors.index.json" || p.extension() == ".safetensors",
              kInvalidArgument, "'", path,
              "' is a file; pass the checkpoint directory (or its config.json / .safetensors file)");
    p = p.parent_path();
    if (p.empty()) p = ".";
  }
  GON_CHECK(fs::is_directory(p, ec), kIoError, "'", path, "' is not a directory");

  std::unique_ptr<Checkpoint> ck(new Checkpoint());
  CheckpointLoader loader{*ck, {}, {}};

  fs::path dir = p;
  bool original = false;
  std::string config_text;
  if (exists_file(dir / "config.json")) {
    config_text = read_text(dir / "config.json");
    Json root = parse_json(config_text, (dir / "config.json").string());
    if (looks_original(root)) {
      original = true;
    } else if (!exists_file(dir / "model.safetensors.index.json") && !exists_file(dir / "model.safetensors") &&
               exists_file(dir / "original" / "config.json")) {
      dir = dir / "original";
      original = true;
      config_text.clear();
    }
  } else if (exists_file(dir / "original" / "config.json")) {
    dir = dir / "original";
    original = true;
  } else {
    GON_THROW(kFileNotFound, "'", p.string(), "' holds no config.json (nor original/config.json): not a checkpoint");
  }
  if (config_text.empty()) config_text = read_text(dir / "config.json");
  ck->directory_ = dir.string();
  const std::string config_origin = (dir / "config.json").string();
  Json root = parse_json(config_text, config_origin);
  GON_CHECK(root.is_object(), kCorruptCheckpoint, config_origin, ": expected a JSON object");

  if (original) {
    ck->format_ = "original";
    ck->config_ = parse_original_config(root, config_origin);
    GON_CHECK(exists_file(dir / "model.safetensors"), kFileNotFound, ck->directory_,
              ": original layout without model.safetensors");
    loader.add_file(SafetensorsFile::open((dir / "model.safetensors").string()));
    loader.load_original();
  } else {
    ck->format_ = "hf";
    ck->config_ = parse_hf_config(root, config_origin);
    const fs::path index_path = dir / "model.safetensors.index.json";
    if (exists_file(index_path)) {
      const std::string index_text = read_text(index_path);
      Json index = parse_json(index_text, index_path.string());
      const Json* map = index.is_object() ? index.find("weight_map") : nullptr;
      GON_CHECK(map && map->is_object(), kCorruptCheckpoint, index_path.string(), ": no weight_map object");
      std::map<std::string, std::vector<std::string>> shards;  // shard -> tensors it must hold
      for (const auto& [name, file] : map->as_object()) {
        GON_CHECK(file.is_string(), kCorruptCheckpoint, index_path.string(), ": weight_map['", name,
                  "'] is not a file name");
        const std::string& f = file.as_string();
        GON_CHECK(!f.empty() && f.find('/') == std::string::npos && f.find('\\') == std::string::npos && f != "." &&
                      f != "..",
                  kCorruptCheckpoint, index_path.string(), ": shard name '", f, "' must be a plain file name");
        shards[f].push_back(name);
      }
      GON_CHECK(!shards.empty(), kCorruptCheckpoint, index_path.string(), ": weight_map is empty");
      for (const auto& [shard, names] : shards) {
        GON_CHECK(exists_file(dir / shard), kFileNotFound, index_path.string(), ": shard '", shard,
                  "' listed in the index does not exist");
        auto file = SafetensorsFile::open((dir / shard).string());
        for (const std::string& n : names)
          GON_CHECK(file->find(n) != nullptr, kCorruptCheckpoint, file->path(), ": the index lists tensor '", n,
                    "' in this shard, but the shard does not hold it");
        loader.add_file(std::move(file));
      }
    } else {
      GON_CHECK(exists_file(dir / "model.safetensors"), kFileNotFound, ck->directory_,
                ": neither model.safetensors.index.json nor model.safetensors exists");
      loader.add_file(SafetensorsFile::open((dir / "model.safetensors").string()));
    }
    loader.load_hf();
  }
  loader.check_all_used();
  compute_rope(ck->config_, ck->rope_inv_freq_, ck->weights_.rope_scaling);
  for (float f : ck->rope_inv_freq_)
    GON_CHECK(std::isfinite(f) && f > 0.0f, kCorruptCheckpoint, ck->directory_,
              ": the RoPE parameters give a non-finite frequency (rope_theta ", ck->config_.rope_theta, ")");
  ck->weights_.rope_inv_freq = ck->rope_inv_freq_.data();
  return ck;
}

void Checkpoint::prefetch(const std::function<void(uint64_t, uint64_t)>& progress) const {
  constexpr size_t kChunk = size_t{64} << 20;
  constexpr size_t kPage = 4096;
  uint64_t done = 0;
  for (const auto& f : files_) {
    const MappedFile& m = f->file();
    m.advise_willneed(0, m.size());
    const volatile uint8_t* data = m.data();
    for (size_t off = 0; off < m.size(); off += kChunk) {
      const size_t end = std::min(m.size(), off + kChunk);
      uint8_t sink = 0;
      for (size_t i = off; i < end; i += kPage) sink ^= data[i];
      (void)sink;
      done += end - off;
      if (progress) progress(done, total_bytes_);
    }
  }
}

void compute_rope(const ModelConfig& c, std::vector<float>& inv_freq, float& attention_factor) {
  const int dim = c.head_dim, half = dim / 2;
  const float base = static_cast<float>(c.rope_theta);
  inv_freq.assign(half, 0.f);
  std::vector<float> pos_freqs(half);
  for (int i = 0; i < half; ++i)
    pos_freqs[i] = std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
  const double factor = c.rope_scaling_factor;
  if (factor <= 1.0) {
    for (int i = 0; i < half; ++i) inv_freq[i] = 1.0f / pos_freqs[i];
    attention_factor = 1.0f;
    return;
  }
  attention_factor = static_cast<float>(0.1 * std::log(factor) + 1.0);
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(c.rope_original_context / (rotations * 2 * M_PI))) / (2 * std::log(c.rope_theta));
  };
  double low = correction_dim(c.rope_beta_fast), high = correction_dim(c.rope_beta_slow);
  if (c.rope_truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  const float factor_f = static_cast<float>(factor);
  for (int i = 0; i < half; ++i) {
    const float extrapolation = 1.0f / pos_freqs[i];
    const float interpolation = 1.0f / (factor_f * pos_freqs[i]);
    float ramp = (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
    ramp = std::min(std::max(ramp, 0.0f), 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    inv_freq[i] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
}

}  // namespace gon
