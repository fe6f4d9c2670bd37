// Context: token buffer, KV cache, activations and logits of one sequence,
// planned and allocated once at creation (see context.hpp).
#include "gpt_oss_native/context.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <random>

#include "backend/backend.hpp"
#include "core/arena.hpp"
#include "core/check.hpp"
#include "core/forward.hpp"
#include "core/sampler.hpp"
#include "gpt_oss_native/model.hpp"

namespace gon {

struct Context::Impl {
  std::shared_ptr<const Model> model;
  ContextOptions options;
  Arena host;
  Arena device;
  uint64_t kv_bytes = 0;

  int32_t* tokens = nullptr;   // [context_length]
  float* logits = nullptr;     // [logits_capacity, vocab]
  SamplerScratch sampler;
  ForwardBuffers buffers;

  int num_tokens = 0;
  int num_processed = 0;
  int high_water = -1;        // highest position whose KV was written since the cache was last rebuilt
  int logits_rows = 0;
  bool last_logits_valid = false;  // logits row logits_rows-1 belongs to token num_tokens-1
  int ring_capacity = 0;      // slots of the sliding-window layers' rings
  uint64_t random_seed = 0;   // for sample() without a seed
  uint64_t random_draws = 0;
  // Serialises calls from different threads on one Context (the Python
  // bindings release the GIL while processing).
  std::mutex mutex;
  // Set by cancel() from any thread; consumed (cleared) by the process() that sees it.
  std::atomic<bool> cancel_requested{false};

  void process(LogitsMode mode);

  Impl(std::shared_ptr<const Model> m, const ContextOptions& o)
      : model(std::move(m)), options(o), host(model->backend(), true), device(model->backend(), false) {}

  int sliding_rewind_limit() const {
    // A rewind to n keeps the cache valid when every sliding layer still holds
    // positions n - W + 1 .. n - 1, i.e. high_water - n <= ring_capacity - W.
    return ring_capacity - model->config().sliding_window;
  }
};

Context::Context(std::shared_ptr<const Model> model, const ContextOptions& options) {
  GON_CHECK(model != nullptr, kInvalidArgument, "Context: model is null");
  const ModelConfig& c = model->config();
  ContextOptions o = options;
  GON_CHECK(o.context_length >= 1, kInvalidArgument, "context_length must be >= 1, got ", o.context_length);
  GON_CHECK(o.context_length <= c.max_context, kInvalidArgument, "context_length ", o.context_length,
            " exceeds the model's maximum context of ", c.max_context);
  GON_CHECK(o.max_batch_tokens >= 1, kInvalidArgument, "max_batch_tokens must be >= 1, got ", o.max_batch_tokens);
  o.max_batch_tokens = std::min(o.max_batch_tokens, o.context_length);
  GON_CHECK(o.logits_capacity >= 0, kInvalidArgument, "logits_capacity must be >= 0, got ", o.logits_capacity);
  if (o.logits_capacity == 0) o.logits_capacity = o.max_batch_tokens;
  o.logits_capacity = std::min(o.logits_capacity, o.context_length);
  GON_CHECK(o.rewind_window >= -1, kInvalidArgument, "rewind_window must be >= 0 (or -1 for the default), got ",
            o.rewind_window);
  if (o.rewind_window < 0) o.rewind_window = std::max(1024, o.max_batch_tokens);

  impl_ = std::make_unique<Impl>(std::move(model), o);
  Impl& s = *impl_;
  Backend& be = s.model->backend();
  const int B = o.max_batch_tokens, L = o.context_length, V = c.vocab_size, H = c.hidden_size;
  const int k = c.experts_per_token;

  // Ring size of the sliding-window layers: the window, plus room for a whole
  // batch of new keys, plus the rewind headroom.
  // Rounded up to whole blocks of the backend's cache layout (more rewind room).
  s.ring_capacity = L;
  if (c.sliding_window > 0) {
    const int64_t blk = be.kv_block_positions();
    int64_t ring = int64_t{c.sliding_window} + std::max<int64_t>(o.rewind_window, B - 1);
    ring = (ring + blk - 1) / blk * blk;
    s.ring_capacity = static_cast<int>(std::min<int64_t>(ring, L));
  }
  if (s.ring_capacity < L) {
    s.options.rewind_window = s.ring_capacity - c.sliding_window;
  } else {
    s.options.rewind_window = L;
  }

  // Plan every buffer, then allocate each arena once.
  const size_t tokens_at = s.host.plan(sizeof(int32_t) * L);
  const size_t logits_at = s.host.plan(sizeof(float) * size_t(o.logits_capacity) * V);
  const size_t probs_at = s.host.plan(sizeof(float) * size_t(V));
  const size_t order_at = s.host.plan(sizeof(int32_t) * size_t(V));

  const size_t x_at = s.device.plan(sizeof(float) * size_t(B) * H);
  const size_t xn_at = s.device.plan(sizeof(float) * size_t(B) * H);
  const size_t qkv_at = s.device.plan(sizeof(float) * size_t(B) * c.qkv_rows());
  const size_t attn_at = s.device.plan(sizeof(float) * size_t(B) * c.num_heads * c.head_dim);
  const size_t ids_at = s.device.plan(sizeof(int32_t) * size_t(B) * k);
  const size_t wts_at = s.device.plan(sizeof(float) * size_t(B) * k);
  const size_t ws_at = s.device.plan(be.workspace_bytes(c, B, L));
  std::vector<std::pair<size_t, size_t>> kv_at(c.num_layers);
  std::vector<int> capacity(c.num_layers);
  const size_t slot_bytes = sizeof(float) * size_t(c.num_kv_heads) * c.head_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    capacity[l] = c.layer_is_sliding[l] ? s.ring_capacity : L;
    const size_t slots = static_cast<size_t>(be.kv_cache_slots(capacity[l]));
    kv_at[l].first = s.device.plan(slot_bytes * slots);
    kv_at[l].second = s.device.plan(slot_bytes * slots);
    s.kv_bytes += 2 * slot_bytes * slots;
  }
  s.host.commit();
  s.device.commit();

  s.tokens = s.host.at<int32_t>(tokens_at);
  s.logits = s.host.at<float>(logits_at);
  s.sampler.probs = s.host.at<float>(probs_at);
  s.sampler.order = s.host.at<int32_t>(order_at);
  ForwardBuffers& f = s.buffers;
  f.x = s.device.at<float>(x_at);
  f.xn = s.device.at<float>(xn_at);
  f.qkv = s.device.at<float>(qkv_at);
  f.attn = s.device.at<float>(attn_at);
  f.expert_ids = s.device.at<int32_t>(ids_at);
  f.expert_weights = s.device.at<float>(wts_at);
  f.workspace = s.device.at<void>(ws_at);
  f.kv.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l)
    f.kv[l] = {s.device.at<float>(kv_at[l].first), s.device.at<float>(kv_at[l].second), capacity[l]};

  s.random_seed = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
}

Context::~Context() = default;

namespace {
// Validates every id before appending any, so a bad id leaves the context unchanged.
template <typename T>
void append_tokens(Context::Impl& s, const T* tokens, size_t count) {
  std::lock_guard<std::mutex> guard(s.mutex);
  GON_CHECK(tokens != nullptr || count == 0, kInvalidArgument, "append: tokens is null");
  const int V = s.model->config().vocab_size;
  GON_CHECK(count <= size_t(s.options.context_length - s.num_tokens), kContextOverflow, "append: ", count,
            " token(s) do not fit: the context holds ", s.num_tokens, " of ", s.options.context_length);
  for (size_t i = 0; i < count; ++i)
    GON_CHECK(tokens[i] >= 0 && tokens[i] < V, kTokenOutOfRange, "append: token ", tokens[i], " at index ", i,
              " is outside the vocabulary [0, ", V, ")");
  if (count == 0) return;
  for (size_t i = 0; i < count; ++i) s.tokens[s.num_tokens + i] = static_cast<int32_t>(tokens[i]);
  s.num_tokens += static_cast<int>(count);
  s.last_logits_valid = false;
}
}  // namespace

void Context::append(const int32_t* tokens, size_t count) { append_tokens(*impl_, tokens, count); }
void Context::append(const int64_t* tokens, size_t count) { append_tokens(*impl_, tokens, count); }

void Context::process(LogitsMode mode) {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  impl_->process(mode);
}

void Context::Impl::process(LogitsMode mode) {
  Impl& s = *this;
  const ModelConfig& c = s.model->config();
  int pending = s.num_tokens - s.num_processed;
  if (mode == LogitsMode::kAll) {
    GON_CHECK(pending <= s.options.logits_capacity, kInvalidArgument, "process(logits='all'): ", pending,
              " tokens are pending but the context keeps logits for at most ", s.options.logits_capacity,
              " (raise logits_capacity when creating the context)");
  }
  if (pending == 0) {
    if (mode == LogitsMode::kAll) {
      s.logits_rows = 0;
      s.last_logits_valid = false;
      return;
    }
    if (mode == LogitsMode::kNone || s.last_logits_valid || s.num_tokens == 0) return;
    // The last token's logits were not kept: run it again (its cache entries
    // are rewritten with the same values).
    s.num_processed -= 1;
    pending = 1;
  }

  Backend& be = s.model->backend();
  const ModelWeights& w = s.model->weights();
  const int B = s.options.max_batch_tokens;
  std::lock_guard<Backend> lock(be);
  int row = 0;
  s.last_logits_valid = false;
  s.logits_rows = 0;
  while (s.num_processed < s.num_tokens) {
    if (s.cancel_requested.exchange(false, std::memory_order_acq_rel))
      GON_THROW(kCancelled, "process: cancelled after ", s.num_processed, " of ", s.num_tokens,
                " tokens (the processed ones keep their cache)");
    const int count = std::min(B, s.num_tokens - s.num_processed);
    const Batch batch{s.num_processed, count};
    const bool last_chunk = s.num_processed + count == s.num_tokens;
    LogitsRequest req;
    if (mode == LogitsMode::kAll) {
      req = {0, count, s.logits + size_t(row) * c.vocab_size};
    } else if (mode == LogitsMode::kLast && last_chunk) {
      req = {count - 1, 1, s.logits};
    }
    forward(be, w, c, s.buffers, s.tokens + s.num_processed, batch, req);
    row += req.num_rows;
    s.num_processed += count;
    s.high_water = std::max(s.high_water, s.num_processed - 1);
  }
  s.logits_rows = row;
  s.last_logits_valid = mode != LogitsMode::kNone && row > 0;
}

SampleResult Context::sample(const SampleOptions& o) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  GON_CHECK(std::isfinite(o.temperature) && o.temperature >= 0.0f, kInvalidArgument,
            "sample: temperature must be a finite number >= 0, got ", o.temperature);
  GON_CHECK(std::isfinite(o.top_p) && o.top_p > 0.0f && o.top_p <= 1.0f, kInvalidArgument,
            "sample: top_p must be in (0, 1], got ", o.top_p);
  GON_CHECK(s.num_tokens > 0, kInvalidArgument, "sample: the context is empty; append a prompt first");
  GON_CHECK(s.num_tokens < s.options.context_length, kContextOverflow, "sample: the context is full (",
            s.num_tokens, " of ", s.options.context_length, " tokens); no room for the sampled token");
  if (!(s.num_processed == s.num_tokens && s.last_logits_valid)) s.process(LogitsMode::kLast);
  const int V = s.model->config().vocab_size;
  const float* row = s.logits + size_t(s.logits_rows - 1) * V;
  const uint64_t position = static_cast<uint64_t>(s.num_tokens);
  const double u = o.seed ? uniform_from(*o.seed, position) : uniform_from(s.random_seed, s.random_draws++);
  SampleResult r;
  r.token = sample_token(row, V, o.temperature, o.top_p, u, s.sampler, o.allowed, &r.logprob);
  s.tokens[s.num_tokens++] = r.token;
  s.last_logits_valid = false;
  return r;
}

void Context::cancel() noexcept { impl_->cancel_requested.store(true, std::memory_order_release); }

const float* Context::logits() const { return impl_->logits; }
int Context::logits_rows() const { return impl_->logits_rows; }
int Context::vocab_size() const { return impl_->model->config().vocab_size; }
int Context::num_tokens() const { return impl_->num_tokens; }
int Context::num_processed() const { return impl_->num_processed; }
const int32_t* Context::tokens() const { return impl_->tokens; }
const ContextOptions& Context::options() const { return impl_->options; }
const Model& Context::model() const { return *impl_->model; }

void Context::rewind(int n) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  GON_CHECK(n >= 0 && n <= s.num_tokens, kInvalidArgument, "rewind: ", n, " is outside [0, ", s.num_tokens,
            "] (the number of tokens in the context)");
  if (n == s.num_tokens) return;
  s.num_tokens = n;
  s.last_logits_valid = false;
  if (n >= s.num_processed) return;
  const bool has_ring = s.ring_capacity < s.options.context_length;
  if (!has_ring || s.high_water - n <= s.sliding_rewind_limit()) {
    s.num_processed = n;
  } else {
    // The sliding-window rings no longer hold the keys position n needs:
    // rebuild the whole cache on the next process().
    s.num_processed = 0;
    s.high_water = -1;
  }
}

void Context::reset() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  s.num_tokens = 0;
  s.num_processed = 0;
  s.high_water = -1;
  s.logits_rows = 0;
  s.last_logits_valid = false;
}

MemoryStats Context::memory_stats() const {
  const Impl& s = *impl_;
  MemoryStats m;
  m.host_bytes = s.host.size();
  m.device_bytes = s.device.size();
  m.kv_cache_bytes = s.kv_bytes;
  m.arena_allocations = s.host.allocations() + s.device.allocations();
  m.buffers = s.host.buffers() + s.device.buffers();
  m.late_allocations = s.host.late_allocations() + s.device.late_allocations();
  return m;
}

}  // namespace gon
