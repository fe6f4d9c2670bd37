// Context: one sequence on an executor of its own (see context.hpp).
#include "gpt_oss_native/context.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <random>
#include <vector>

#include "backend/backend.hpp"
#include "core/check.hpp"
#include "core/forward.hpp"
#include "core/sequence.hpp"
#include "gpt_oss_native/model.hpp"

namespace gon {

struct Context::Impl {
  std::shared_ptr<const Model> model;
  ContextOptions options;
  std::unique_ptr<Executor> executor;
  Sequence seq;
  std::vector<float> host_logits;  // [logits_capacity, V] host copy for backends with device memory
  // Results of one device loop (sample_many), allocated with the context.
  static constexpr int kLoopTokens = 256;
  std::vector<int32_t> loop_ids = std::vector<int32_t>(kLoopTokens);
  std::vector<float> loop_logprobs = std::vector<float>(kLoopTokens);
  // Tokens sampled ahead (sample_ahead): seq's token array holds them after num_tokens(); the cache holds
  // positions up to ahead_processed - 1 when ahead_cache is set.
  int ahead = 0;
  int ahead_processed = 0;
  bool ahead_cache = false;

  int logits_rows = 0;
  bool last_logits_valid = false;  // logits row logits_rows-1 belongs to token num_tokens-1
  uint64_t random_seed = 0;        // for sample() without a seed
  uint64_t random_draws = 0;
  bool mask_set = false;           // the executor holds an allowed-token mask
  // Serialises calls from different threads on one Context (the Python
  // bindings release the GIL while processing).
  std::mutex mutex;
  // Set by cancel() from any thread; consumed (cleared) by the step loop that sees it.
  std::atomic<bool> cancel_requested{false};

  Impl(std::shared_ptr<const Model> m, const ContextOptions& o) : model(std::move(m)), options(o) {}

  // Runs the pending tokens in steps of max_batch_tokens; the last step also
  // samples when `sample` is given.
  void process(LogitsMode mode, const SampleParams* sample);
  void check_sample_options(const SampleOptions& o, const char* what) const;
  // The sampling parameters of the next token (its random counter: the token's index with a seed, else the next draw).
  SampleParams sample_params(const SampleOptions& o);
  SampleResult sample(const SampleOptions& o);
  size_t sample_many(const SampleOptions& o, size_t max_tokens, const int32_t* stop_tokens, size_t num_stop,
                     SampleResult* out);
  template <typename T>
  void check_tokens(const T* tokens, size_t count, size_t keep) const;
};

Context::Context(std::shared_ptr<const Model> model, const ContextOptions& options) {
  GON_CHECK(model != nullptr, kInvalidArgument, "Context: model is null");
  const ModelConfig& c = model->config();
  ContextOptions o = options;
  GON_CHECK(o.context_length >= 1, kInvalidArgument, "context_length must be >= 1, got ", o.context_length);
  GON_CHECK(o.context_length <= c.max_context, kInvalidArgument, "context_length ", o.context_length,
            " exceeds the model's maximum context of ", c.max_context);
  GON_CHECK(o.max_batch_tokens >= 0, kInvalidArgument, "max_batch_tokens must be >= 1 (or 0 for the backend's choice), got ",
            o.max_batch_tokens);
  GON_CHECK(o.logits_capacity >= 0, kInvalidArgument, "logits_capacity must be >= 0, got ", o.logits_capacity);
  if (o.logits_capacity == 0) o.logits_capacity = o.max_batch_tokens > 0 ? o.max_batch_tokens : 128;
  if (o.max_batch_tokens == 0) o.max_batch_tokens = model->backend().default_max_batch_tokens();
  o.max_batch_tokens = std::min(o.max_batch_tokens, o.context_length);
  o.logits_capacity = std::min(o.logits_capacity, o.context_length);
  GON_CHECK(o.rewind_window >= -1, kInvalidArgument, "rewind_window must be >= 0 (or -1 for the default), got ",
            o.rewind_window);
  if (o.rewind_window < 0) o.rewind_window = std::max(1024, o.max_batch_tokens);
  Backend& be = model->backend();
  if (!o.kv_dtype) o.kv_dtype = be.default_kv_dtype();

  impl_ = std::make_unique<Impl>(std::move(model), o);
  Impl& s = *impl_;
  const int ring = ring_capacity_for(c.sliding_window, o.context_length, o.rewind_window, o.max_batch_tokens,
                                     be.kv_block_positions());
  s.seq.init(o.context_length, ring, c.sliding_window);
  s.options.rewind_window = s.seq.rewind_window();

  ExecutorOptions eo;
  eo.max_tokens = o.max_batch_tokens;
  eo.max_outputs = std::max(1, std::min(o.max_batch_tokens, o.logits_capacity));
  eo.logits_rows = std::max(eo.max_outputs, o.logits_capacity);
  eo.num_seqs = 1;
  eo.context_length = o.context_length;
  eo.ring_capacity = ring;
  eo.kv_dtype = *o.kv_dtype;
  s.executor = be.create_executor(s.model->weights(), c, eo);
  if (!be.host_addressable()) s.host_logits.assign(static_cast<size_t>(eo.logits_rows) * c.vocab_size, 0.0f);

  s.random_seed = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
}

Context::~Context() = default;

template <typename T>
void Context::Impl::check_tokens(const T* tokens, size_t count, size_t keep) const {
  GON_CHECK(tokens != nullptr || count == 0, kInvalidArgument, "tokens is null");
  const int V = model->config().vocab_size;
  GON_CHECK(count <= size_t(options.context_length) - keep, kContextOverflow, count,
            " token(s) do not fit: the context holds ", keep, " of ", options.context_length);
  for (size_t i = 0; i < count; ++i)
    GON_CHECK(tokens[i] >= 0 && tokens[i] < V, kTokenOutOfRange, "token ", tokens[i], " at index ", i,
              " is outside the vocabulary [0, ", V, ")");
}

namespace {
// Validates every id before appending any, so a bad id leaves the context unchanged.
template <typename T>
void append_tokens(Context::Impl& s, const T* tokens, size_t count) {
  std::lock_guard<std::mutex> guard(s.mutex);
  try {
    s.check_tokens(tokens, count, static_cast<size_t>(s.seq.num_tokens()));
  } catch (const Error& e) {
    throw Error(e.status(), std::string("append: ") + e.what());
  }
  s.ahead = 0;
  if (count == 0) return;
  s.seq.append(tokens, count);
  s.last_logits_valid = false;
}

template <typename T>
int assign_tokens(Context::Impl& s, const T* tokens, size_t count) {
  std::lock_guard<std::mutex> guard(s.mutex);
  try {
    s.check_tokens(tokens, count, 0);
  } catch (const Error& e) {
    throw Error(e.status(), std::string("assign: ") + e.what());
  }
  s.ahead = 0;
  const int common = s.seq.common_prefix(tokens, count);
  if (common != s.seq.num_tokens() || static_cast<size_t>(common) != count) s.last_logits_valid = false;
  s.seq.rewind(common);
  s.seq.append(tokens + common, count - common);
  return std::min(common, s.seq.num_processed());
}
}  // namespace

void Context::append(const int32_t* tokens, size_t count) { append_tokens(*impl_, tokens, count); }
void Context::append(const int64_t* tokens, size_t count) { append_tokens(*impl_, tokens, count); }
int Context::assign(const int32_t* tokens, size_t count) { return assign_tokens(*impl_, tokens, count); }
int Context::assign(const int64_t* tokens, size_t count) { return assign_tokens(*impl_, tokens, count); }

void Context::process(LogitsMode mode) {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  impl_->ahead = 0;
  impl_->process(mode, nullptr);
}

void Context::Impl::process(LogitsMode mode, const SampleParams* sample) {
  Impl& s = *this;
  const ModelConfig& c = s.model->config();
  int pending = s.seq.pending();
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
    if (mode == LogitsMode::kNone || s.last_logits_valid || s.seq.num_tokens() == 0) return;
    // The last token's logits were not kept: run it again (its cache entries
    // are rewritten with the same values), or every token when the ring no
    // longer holds the window it reads (Sequence::unprocess_last).
    s.seq.unprocess_last();
    pending = s.seq.pending();
  }

  Executor& ex = *s.executor;
  const int B = s.options.max_batch_tokens;
  int row = 0;
  s.last_logits_valid = false;
  s.logits_rows = 0;
  while (s.seq.pending() > 0) {
    if (s.cancel_requested.exchange(false, std::memory_order_acq_rel))
      GON_THROW(kCancelled, "process: cancelled after ", s.seq.num_processed(), " of ", s.seq.num_tokens(),
                " tokens (the processed ones keep their cache)");
    const int first = s.seq.num_processed();
    const int count = std::min(B, s.seq.pending());
    const bool last_chunk = first + count == s.seq.num_tokens();
    StepInputs& in = ex.inputs();
    for (int i = 0; i < count; ++i) {
      in.tokens[i] = s.seq.token(first + i);
      in.positions[i] = first + i;
      in.seqs[i] = 0;  // the context's one sequence slot (a backend may reuse these rows between steps)
    }
    StepShape shape;
    shape.num_tokens = count;
    if (mode == LogitsMode::kAll) {
      shape.num_outputs = count;
      shape.output_offset = row;
      for (int i = 0; i < count; ++i) in.output_rows[i] = i;
    } else if (mode == LogitsMode::kLast && last_chunk) {
      shape.num_outputs = 1;
      in.output_rows[0] = count - 1;
    }
    if (sample != nullptr && last_chunk) {
      shape.sample = true;
      in.params[0] = *sample;
      shape.output_offset = row + shape.num_outputs - 1;
      in.output_rows[0] = count - 1;
      shape.num_outputs = 1;
    }
    run_step(ex, c, shape);
    row += shape.num_outputs;
    s.seq.processed(count);
  }
  s.logits_rows = row;
  s.last_logits_valid = mode != LogitsMode::kNone && row > 0;
}

void Context::Impl::check_sample_options(const SampleOptions& o, const char* what) const {
  GON_CHECK(std::isfinite(o.temperature) && o.temperature >= 0.0f, kInvalidArgument, what,
            ": temperature must be a finite number >= 0, got ", o.temperature);
  GON_CHECK(std::isfinite(o.top_p) && o.top_p > 0.0f && o.top_p <= 1.0f, kInvalidArgument, what,
            ": top_p must be in (0, 1], got ", o.top_p);
  GON_CHECK(seq.num_tokens() > 0, kInvalidArgument, what, ": the context is empty; append a prompt first");
  GON_CHECK(seq.num_tokens() < options.context_length, kContextOverflow, what, ": the context is full (",
            seq.num_tokens(), " of ", options.context_length, " tokens); no room for the sampled token");
}

SampleParams Context::Impl::sample_params(const SampleOptions& o) {
  SampleParams p;
  p.temperature = o.temperature;
  p.top_p = o.top_p;
  if (o.seed) {
    p.seed = *o.seed;
    p.counter = static_cast<uint64_t>(seq.num_tokens());
  } else {
    p.seed = random_seed;
    p.counter = random_draws++;
  }
  p.use_mask = o.allowed != nullptr;
  if (o.allowed != nullptr || mask_set) executor->set_allowed_tokens(o.allowed);
  mask_set = o.allowed != nullptr;
  return p;
}

SampleResult Context::sample(const SampleOptions& o) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  s.check_sample_options(o, "sample");
  s.ahead = 0;
  return s.sample(o);
}

SampleResult Context::Impl::sample(const SampleOptions& o) {
  Impl& s = *this;
  Executor& ex = *s.executor;
  const SampleParams p = s.sample_params(o);
  int row;
  if (s.seq.pending() == 0 && s.last_logits_valid) {
    row = s.logits_rows - 1;
    ex.inputs().params[0] = p;
    ex.sample_rows(row, 1);
  } else {
    s.process(LogitsMode::kLast, &p);
    row = s.logits_rows - 1;
  }
  SampleResult r;
  r.token = ex.sampled_tokens()[row];
  r.logprob = ex.sampled_logprobs()[row];
  s.seq.push(r.token);
  s.last_logits_valid = false;
  return r;
}

size_t Context::sample_many(const SampleOptions& o, size_t max_tokens, const int32_t* stop_tokens, size_t num_stop,
                             SampleResult* out) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  s.check_sample_options(o, "sample_many");
  s.ahead = 0;
  return s.sample_many(o, max_tokens, stop_tokens, num_stop, out);
}

size_t Context::sample_ahead(const SampleOptions& o, size_t max_tokens, const int32_t* stop_tokens, size_t num_stop,
                              SampleResult* out) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  s.check_sample_options(o, "sample_ahead");
  s.ahead = 0;
  const int before = s.seq.num_tokens();
  const size_t n = s.sample_many(o, max_tokens, stop_tokens, num_stop, out);
  // Take them back out of the context; the token array keeps them, the cache too where the rewind keeps it.
  s.ahead_processed = s.seq.num_processed();
  s.ahead_cache = s.seq.rewind(before);
  s.ahead = static_cast<int>(n);
  s.last_logits_valid = false;
  return n;
}

void Context::accept_ahead(size_t count) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  GON_CHECK(count <= static_cast<size_t>(s.ahead), kInvalidArgument, "accept_ahead: ", count,
            " tokens asked for but ", s.ahead, " are ahead");
  for (size_t i = 0; i < count; ++i) s.seq.push(s.seq.token(s.seq.num_tokens()));
  s.ahead -= static_cast<int>(count);
  // Every accepted token but the last has its keys and values in the cache already (as after sample()).
  if (s.ahead_cache) {
    const int target = std::min(s.seq.num_tokens() - 1, s.ahead_processed);
    if (target > s.seq.num_processed()) s.seq.processed(target - s.seq.num_processed());
  }
  if (count > 0) s.last_logits_valid = false;
}

size_t Context::tokens_ahead() const { return static_cast<size_t>(impl_->ahead); }

size_t Context::Impl::sample_many(const SampleOptions& o, size_t max_tokens, const int32_t* stop_tokens,
                                  size_t num_stop, SampleResult* out) {
  Impl& s = *this;
  GON_CHECK(out != nullptr || max_tokens == 0, kInvalidArgument, "sample_many: out is null");
  GON_CHECK(stop_tokens != nullptr || num_stop == 0, kInvalidArgument, "sample_many: stop_tokens is null");
  const int V = s.model->config().vocab_size;
  for (size_t i = 0; i < num_stop; ++i)
    GON_CHECK(stop_tokens[i] >= 0 && stop_tokens[i] < V, kTokenOutOfRange, "sample_many: stop token ", stop_tokens[i],
              " is outside the vocabulary [0, ", V, ")");
  auto is_stop = [&](int32_t t) { return std::find(stop_tokens, stop_tokens + num_stop, t) != stop_tokens + num_stop; };
  const ModelConfig& c = s.model->config();
  Executor& ex = *s.executor;
  size_t n = 0;
  while (n < max_tokens && s.seq.num_tokens() < s.options.context_length) {
    const int room = s.options.context_length - s.seq.num_tokens();
    const int want = static_cast<int>(std::min<size_t>({max_tokens - n, static_cast<size_t>(room),
                                                        static_cast<size_t>(Impl::kLoopTokens)}));
    // A cancel() ends the call between loops (or steps): with tokens sampled they are returned and the next
    // call throws; the flag is read once here and consumed only when it throws.
    if (s.cancel_requested.load(std::memory_order_acquire)) {
      if (n > 0) break;
      s.cancel_requested.store(false, std::memory_order_release);
      GON_THROW(kCancelled, "sample_many: cancelled before the first token");
    }
    if (want > 1 && s.seq.pending() == 1 && ex.decode_loop_steps() > 0 &&
        num_stop <= static_cast<size_t>(Executor::kDecodeLoopMaxStops)) {
      // One device-side loop for many steps: the pending token, then each sampled one.
      const int first = s.seq.num_tokens() - 1;
      const SampleParams p = s.sample_params(o);
      StepInputs& in = ex.inputs();
      in.tokens[0] = s.seq.token(first);
      in.positions[0] = first;
      in.seqs[0] = 0;
      in.output_rows[0] = 0;
      in.params[0] = p;
      StepShape shape;
      shape.num_tokens = 1;
      shape.num_outputs = 1;
      shape.sample = true;
      std::vector<int32_t>& ids = s.loop_ids;
      std::vector<float>& lps = s.loop_logprobs;
      const int k = ex.decode_loop(
          shape, [&c](Executor& e, const StepShape& sh) { forward(e, c, sh); }, 1, want, stop_tokens,
          static_cast<int>(num_stop), ids.data(), lps.data());
      if (k > 0) {
        for (int i = 0; i < k; ++i) {
          s.seq.push(ids[static_cast<size_t>(i)]);
          out[n++] = {ids[static_cast<size_t>(i)], lps[static_cast<size_t>(i)]};
        }
        s.seq.processed(k);  // the pending token and every sampled one but the last
        if (!o.seed) s.random_draws += static_cast<uint64_t>(k - 1);  // sample_params() counted the first
        s.last_logits_valid = false;
        s.logits_rows = 1;  // as after sample(): the logits the last token was drawn from
        if (is_stop(ids[static_cast<size_t>(k - 1)])) break;
        continue;
      }
      if (!o.seed) s.random_draws -= 1;  // no loop here after all: sample() draws this counter again
    }
    try {
      out[n] = s.sample(o);
    } catch (const Error& e) {
      // A cancel() that came after the check above: as if it had come before it.
      if (e.status() != Status::kCancelled || n == 0) throw;
      s.cancel_requested.store(true, std::memory_order_release);
      break;
    }
    if (is_stop(out[n++].token)) break;
  }
  GON_CHECK(n > 0 || max_tokens == 0, kInternal, "sample_many: nothing sampled");
  return n;
}

int Context::preferred_sample_chunk() const {
  // sample_ahead() takes its tokens back out of the context, keeping their cache only within the rewind window.
  return std::max(1, std::min(impl_->executor->decode_loop_steps(), impl_->options.rewind_window + 1));
}

void Context::synchronize() {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  impl_->executor->synchronize();
}

void Context::cancel() noexcept { impl_->cancel_requested.store(true, std::memory_order_release); }
bool Context::clear_cancel() noexcept { return impl_->cancel_requested.exchange(false, std::memory_order_acq_rel); }

const float* Context::logits() {
  Impl& s = *impl_;
  LogitsView v = s.executor->logits();
  if (s.model->backend().host_addressable()) {
    s.executor->synchronize();
    return v.data;
  }
  s.executor->copy_logits(0, std::max(s.logits_rows, 0), s.host_logits.data());
  return s.host_logits.data();
}

DeviceBuffer Context::logits_buffer() {
  impl_->executor->synchronize();
  LogitsView v = impl_->executor->logits();
  return {v.data, v.device_type, v.device_id};
}

int Context::logits_rows() const { return impl_->logits_rows; }
int Context::vocab_size() const { return impl_->model->config().vocab_size; }
int Context::num_tokens() const { return impl_->seq.num_tokens(); }
int Context::num_processed() const { return impl_->seq.num_processed(); }
const int32_t* Context::tokens() const { return impl_->seq.tokens(); }
const ContextOptions& Context::options() const { return impl_->options; }
const Model& Context::model() const { return *impl_->model; }

void Context::rewind(int n) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  GON_CHECK(n >= 0 && n <= s.seq.num_tokens(), kInvalidArgument, "rewind: ", n, " is outside [0, ",
            s.seq.num_tokens(), "] (the number of tokens in the context)");
  s.ahead = 0;
  if (n == s.seq.num_tokens()) return;
  s.last_logits_valid = false;
  s.seq.rewind(n);
}

void Context::reset() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.mutex);
  s.seq.clear();
  s.ahead = 0;
  s.logits_rows = 0;
  s.last_logits_valid = false;
}

MemoryStats Context::memory_stats() const {
  const Impl& s = *impl_;
  const ExecutorMemory e = s.executor->memory();
  MemoryStats m;
  m.host_bytes = e.host_bytes + s.seq.context_length() * sizeof(int32_t) + s.host_logits.size() * sizeof(float);
  m.device_bytes = e.device_bytes;
  m.kv_cache_bytes = e.kv_cache_bytes;
  m.arena_allocations = e.arena_allocations;
  m.buffers = e.buffers;
  m.late_allocations = e.late_allocations;
  return m;
}

}  // namespace gon
