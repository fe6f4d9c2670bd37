// ComposedExecutor: memory planning and the blocks composed of fine
// operations (see composed.hpp).
#include "backend/composed.hpp"

#include <algorithm>
#include <cstring>

#include "core/check.hpp"
#include "core/profile.hpp"

namespace gon {

const char* kv_dtype_name(KVDType t) { return t == KVDType::kBF16 ? "bf16" : "fp32"; }

void validate_executor_options(const ExecutorOptions& o, const ModelConfig& c, int block) {
  GON_CHECK(o.max_tokens >= 1, kInvalidArgument, "executor: max_tokens must be >= 1, got ", o.max_tokens);
  GON_CHECK(o.max_outputs >= 1 && o.max_outputs <= o.max_tokens, kInvalidArgument,
            "executor: max_outputs must be in [1, max_tokens], got ", o.max_outputs);
  GON_CHECK(o.logits_rows >= o.max_outputs, kInvalidArgument, "executor: logits_rows ", o.logits_rows,
            " < max_outputs ", o.max_outputs);
  GON_CHECK(o.num_seqs >= 1, kInvalidArgument, "executor: num_seqs must be >= 1, got ", o.num_seqs);
  GON_CHECK(o.context_length >= 1 && o.ring_capacity >= 1 && o.ring_capacity <= o.context_length,
            kInvalidArgument, "executor: bad context_length ", o.context_length, " / ring_capacity ",
            o.ring_capacity);
  if (o.ring_capacity < o.context_length && c.sliding_window > 0) {
    GON_CHECK(o.ring_capacity % block == 0, kInvalidArgument, "executor: ring_capacity ", o.ring_capacity,
              " is not a multiple of the backend's KV block of ", block, " positions");
    GON_CHECK(int64_t{o.ring_capacity} >= int64_t{c.sliding_window} + o.max_tokens - 1, kInvalidArgument,
              "executor: ring_capacity ", o.ring_capacity, " < sliding_window ", c.sliding_window,
              " + max_tokens ", o.max_tokens, " - 1 (a step would overwrite keys it still reads)");
  }
}

ComposedExecutor::ComposedExecutor(Backend& backend, const ModelWeights& weights, const ModelConfig& config,
                                   const ExecutorOptions& o, size_t workspace_bytes,
                                   const std::function<int64_t(int)>& kv_slot_elements)
    : backend_(backend), weights_(weights), config_(config), options_(o), host_(backend, true),
      device_(backend, false) {
  loop_done_.assign(static_cast<size_t>(std::max(o.max_outputs, 1)), 0);
  const ModelConfig& c = config;
  const size_t T = o.max_tokens, H = c.hidden_size, V = c.vocab_size, k = c.experts_per_token;
  const size_t R = o.max_outputs, rows = o.logits_rows;

  const size_t x_at = device_.plan(sizeof(float) * T * H);
  const size_t xn_at = device_.plan(sizeof(float) * T * H);
  const size_t qkv_at = device_.plan(sizeof(float) * T * c.qkv_rows());
  const size_t attn_at = device_.plan(sizeof(float) * T * c.num_heads * c.head_dim);
  const size_t ids_at = device_.plan(sizeof(int32_t) * T * k);
  const size_t wts_at = device_.plan(sizeof(float) * T * k);
  const size_t logits_at = device_.plan(sizeof(float) * rows * V);
  const size_t sampled_at = device_.plan(sizeof(int32_t) * rows);
  const size_t logprobs_at = device_.plan(sizeof(float) * rows);
  const size_t mask_at = device_.plan(V);
  const size_t ws_at = device_.plan(workspace_bytes);
  const size_t in_tokens = device_.plan(sizeof(int32_t) * T);
  const size_t in_positions = device_.plan(sizeof(int32_t) * T);
  const size_t in_seqs = device_.plan(sizeof(int32_t) * T);
  const size_t in_rows = device_.plan(sizeof(int32_t) * R);
  const size_t in_params = device_.plan(sizeof(SampleParams) * R);

  const size_t elem = o.kv_dtype == KVDType::kBF16 ? 2 : 4;
  std::vector<std::pair<size_t, size_t>> kv_at(c.num_layers);
  kv_.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    KVCacheLayer& L = kv_[l];
    L.capacity = c.layer_is_sliding[l] ? o.ring_capacity : o.context_length;
    L.seq_stride = kv_slot_elements(L.capacity);
    L.dtype = o.kv_dtype;
    const size_t bytes = elem * static_cast<size_t>(L.seq_stride) * o.num_seqs;
    kv_at[l] = {device_.plan(bytes), device_.plan(bytes)};
    kv_bytes_ += 2 * bytes;
  }

  const bool host_mem = backend.host_addressable();
  size_t h_tokens = 0, h_positions = 0, h_seqs = 0, h_rows = 0, h_params = 0, h_sampled = 0, h_logprobs = 0;
  if (!host_mem) {
    h_tokens = host_.plan(sizeof(int32_t) * T);
    h_positions = host_.plan(sizeof(int32_t) * T);
    h_seqs = host_.plan(sizeof(int32_t) * T);
    h_rows = host_.plan(sizeof(int32_t) * R);
    h_params = host_.plan(sizeof(SampleParams) * R);
    h_sampled = host_.plan(sizeof(int32_t) * rows);
    h_logprobs = host_.plan(sizeof(float) * rows);
    host_.commit();
  }
  device_.commit();

  buf_.x = device_.at<float>(x_at);
  buf_.xn = device_.at<float>(xn_at);
  buf_.qkv = device_.at<float>(qkv_at);
  buf_.attn = device_.at<float>(attn_at);
  buf_.expert_ids = device_.at<int32_t>(ids_at);
  buf_.expert_weights = device_.at<float>(wts_at);
  buf_.logits = device_.at<float>(logits_at);
  buf_.sampled = device_.at<int32_t>(sampled_at);
  buf_.logprobs = device_.at<float>(logprobs_at);
  buf_.mask = device_.at<uint8_t>(mask_at);
  buf_.workspace = device_.at<void>(ws_at);
  device_inputs_ = {device_.at<int32_t>(in_tokens), device_.at<int32_t>(in_positions), device_.at<int32_t>(in_seqs),
                    device_.at<int32_t>(in_rows), device_.at<SampleParams>(in_params)};
  for (int l = 0; l < c.num_layers; ++l) {
    kv_[l].k = device_.at<void>(kv_at[l].first);
    kv_[l].v = device_.at<void>(kv_at[l].second);
  }
  if (host_mem) {
    staging_ = device_inputs_;
  } else {
    staging_ = {host_.at<int32_t>(h_tokens), host_.at<int32_t>(h_positions), host_.at<int32_t>(h_seqs),
                host_.at<int32_t>(h_rows), host_.at<SampleParams>(h_params)};
    host_sampled_ = host_.at<int32_t>(h_sampled);
    host_logprobs_ = host_.at<float>(h_logprobs);
  }
}

ComposedExecutor::~ComposedExecutor() = default;

void ComposedExecutor::upload_inputs(const StepShape& s) {
  GON_CHECK(s.num_tokens >= 0 && s.num_tokens <= options_.max_tokens, kInternal, "step of ", s.num_tokens,
            " tokens exceeds max_tokens ", options_.max_tokens);
  GON_CHECK(s.num_outputs >= 0 && s.num_outputs <= options_.max_outputs &&
                s.output_offset >= 0 && s.output_offset + s.num_outputs <= options_.logits_rows,
            kInternal, "step outputs [", s.output_offset, ", +", s.num_outputs, ") exceed the executor's buffers");
  if (backend_.host_addressable()) return;
  const size_t T = s.num_tokens, R = s.num_outputs;
  backend_.copy_to_device(device_inputs_.tokens, staging_.tokens, T * sizeof(int32_t));
  backend_.copy_to_device(device_inputs_.positions, staging_.positions, T * sizeof(int32_t));
  backend_.copy_to_device(device_inputs_.seqs, staging_.seqs, T * sizeof(int32_t));
  backend_.copy_to_device(device_inputs_.output_rows, staging_.output_rows, R * sizeof(int32_t));
  if (s.sample) backend_.copy_to_device(device_inputs_.params, staging_.params, R * sizeof(SampleParams));
}

void ComposedExecutor::embed_block(const StepShape& s) {
  profile::Scope p(profile::kEmbed, s.num_tokens);
  embed(device_inputs_.tokens, s.num_tokens, buf_.x);
}

void ComposedExecutor::attention_block(int layer, const StepShape& s) {
  const ModelConfig& c = config_;
  const LayerWeights& L = weights_.layers[layer];
  const int T = s.num_tokens, H = c.hidden_size;
  {
    profile::Scope p(profile::kRmsnorm, T);
    rmsnorm(buf_.x, nullptr, T, H, L.attn_norm, c.rms_norm_eps, buf_.xn);
  }
  {
    profile::Scope p(profile::kQkv, T);
    const BF16Matrix qkv[3] = {L.q, L.k, L.v};
    linear(buf_.xn, T, qkv, 3, buf_.qkv, c.qkv_rows(), false);
  }
  {
    profile::Scope p(profile::kRopeKv, T);
    rope_kv_store(buf_.qkv, device_inputs_.positions, device_inputs_.seqs, T, kv_[layer]);
  }
  {
    profile::Scope p(profile::kAttention, T);
    attention(buf_.qkv, device_inputs_.positions, device_inputs_.seqs, T, L.sinks, kv_[layer],
              L.sliding ? c.sliding_window : 0, buf_.attn);
  }
  {
    profile::Scope p(profile::kOut, T);
    linear(buf_.attn, T, &L.out, 1, buf_.x, H, true);
  }
}

void ComposedExecutor::moe_block(int layer, const StepShape& s) {
  const ModelConfig& c = config_;
  const LayerWeights& L = weights_.layers[layer];
  const int T = s.num_tokens, H = c.hidden_size, k = c.experts_per_token;
  {
    profile::Scope p(profile::kRmsnorm, T);
    rmsnorm(buf_.x, nullptr, T, H, L.mlp_norm, c.rms_norm_eps, buf_.xn);
  }
  {
    profile::Scope p(profile::kRouter, T);
    router(buf_.xn, T, L.router, k, buf_.expert_ids, buf_.expert_weights);
  }
  {
    profile::Scope p(profile::kMoe, T);
    moe(buf_.xn, T, buf_.expert_ids, buf_.expert_weights, k, L, buf_.x);
  }
}

void ComposedExecutor::output_block(const StepShape& s) {
  const ModelConfig& c = config_;
  const int R = s.num_outputs;
  const size_t V = c.vocab_size;
  float* logits = buf_.logits + static_cast<size_t>(s.output_offset) * V;
  {
    // Only the rows whose logits are wanted are normalised and projected.
    profile::Scope p(profile::kUnembed, R);
    rmsnorm(buf_.x, device_inputs_.output_rows, R, c.hidden_size, weights_.final_norm, c.rms_norm_eps, buf_.xn);
    unembed(buf_.xn, R, logits);
  }
  if (s.sample) {
    profile::Scope p(profile::kSample, R);
    sample(logits, R, device_inputs_.params, mask_set_ ? buf_.mask : nullptr, buf_.sampled + s.output_offset,
           buf_.logprobs + s.output_offset);
  }
}

void ComposedExecutor::sample_rows(int offset, int count) {
  GON_CHECK(count >= 0 && count <= options_.max_outputs && offset >= 0 && offset + count <= options_.logits_rows,
            kInternal, "sample_rows: rows [", offset, ", +", count, ") outside the logits buffer");
  if (!backend_.host_addressable())
    backend_.copy_to_device(device_inputs_.params, staging_.params, count * sizeof(SampleParams));
  profile::Scope p(profile::kSample, count);
  sample(buf_.logits + static_cast<size_t>(offset) * config_.vocab_size, count, device_inputs_.params,
         mask_set_ ? buf_.mask : nullptr, buf_.sampled + offset, buf_.logprobs + offset);
}

const int32_t* ComposedExecutor::sampled_tokens() {
  synchronize();
  if (backend_.host_addressable()) return buf_.sampled;
  backend_.copy_to_host(host_sampled_, buf_.sampled, sizeof(int32_t) * options_.logits_rows);
  return host_sampled_;
}

const float* ComposedExecutor::sampled_logprobs() {
  synchronize();
  if (backend_.host_addressable()) return buf_.logprobs;
  backend_.copy_to_host(host_logprobs_, buf_.logprobs, sizeof(float) * options_.logits_rows);
  return host_logprobs_;
}

LogitsView ComposedExecutor::logits() { return {buf_.logits, 1, 0}; }

void ComposedExecutor::copy_logits(int first_row, int rows, float* host_dst) {
  GON_CHECK(first_row >= 0 && rows >= 0 && first_row + rows <= options_.logits_rows, kInvalidArgument,
            "copy_logits: rows [", first_row, ", +", rows, ") outside the logits buffer");
  synchronize();
  const size_t V = config_.vocab_size;
  backend_.copy_to_host(host_dst, buf_.logits + first_row * V, sizeof(float) * rows * V);
}

void ComposedExecutor::set_allowed_tokens(const uint8_t* mask) {
  mask_set_ = mask != nullptr;
  if (mask == nullptr) return;
  if (backend_.host_addressable()) {
    std::memcpy(buf_.mask, mask, config_.vocab_size);
  } else {
    backend_.copy_to_device(buf_.mask, mask, config_.vocab_size);
  }
}

ExecutorMemory ComposedExecutor::memory() const {
  ExecutorMemory m;
  m.host_bytes = host_.size();
  m.device_bytes = device_.size();
  m.kv_cache_bytes = kv_bytes_;
  m.arena_allocations = host_.allocations() + device_.allocations();
  m.buffers = host_.buffers() + device_.buffers();
  m.late_allocations = host_.late_allocations() + device_.late_allocations();
  return m;
}

int ComposedExecutor::decode_loop(const StepShape& shape, const ForwardFn& forward, int graph_id, int max_steps,
                                  const int32_t* stop_tokens, int num_stop, int32_t* tokens, float* logprobs) {
  const int R = shape.num_tokens;
  if (R < 1 || R > options_.max_outputs || shape.num_outputs != R || shape.output_offset != 0 || !shape.sample ||
      max_steps < 1 || num_stop < 0)
    return -1;
  std::fill(loop_done_.begin(), loop_done_.begin() + R, uint8_t{0});
  int done = 0;
  for (int i = 0; i < max_steps; ++i) {
    if (i > 0) {
      StepInputs& in = inputs();
      for (int r = 0; r < R; ++r) {
        in.tokens[r] = tokens[static_cast<size_t>(i - 1) * R + r];
        in.positions[r] += 1;
        in.params[r].counter += 1;
      }
    }
    execute(shape, forward, graph_id);
    const int32_t* t = sampled_tokens();
    const float* lp = sampled_logprobs();
    for (int r = 0; r < R; ++r) {
      tokens[static_cast<size_t>(i) * R + r] = t[r];
      logprobs[static_cast<size_t>(i) * R + r] = lp[r];
      if (!loop_done_[r] && std::find(stop_tokens, stop_tokens + num_stop, t[r]) != stop_tokens + num_stop) {
        loop_done_[r] = 1;
        ++done;
      }
    }
    if (done == R) return i + 1;
  }
  return max_steps;
}

}  // namespace gon
