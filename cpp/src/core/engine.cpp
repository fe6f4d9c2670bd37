// Engine: continuous batching over sequence slots of one executor (see engine.hpp).
#include "gpt_oss_native/engine.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <random>

#include "backend/backend.hpp"
#include "core/check.hpp"
#include "core/forward.hpp"
#include "core/sequence.hpp"
#include "gpt_oss_native/model.hpp"
#include "gpt_oss_native/tokenizer.hpp"

namespace gon {

namespace {
struct Request {
  RequestId id = 0;
  RequestOptions options;
  std::vector<int32_t> prompt;  // until admitted
  std::vector<int32_t> stop_tokens;
  std::unique_ptr<TextStream> stream;  // text mode
  uint64_t random_seed = 0;
  uint64_t draws = 0;
  uint64_t admitted = 0;  // admission order (prefill priority)
  int generated = 0;
  bool decoding = false;  // prompt done: each step processes its last token and samples
};
}  // namespace

struct Engine::Impl {
  std::shared_ptr<const Model> model;
  EngineOptions options;
  std::unique_ptr<Executor> executor;
  std::shared_ptr<const Tokenizer> tokenizer;  // text mode
  std::vector<uint8_t> mask;                   // sampleable ids (empty: all)
  std::vector<int32_t> default_stops;

  std::vector<Sequence> seqs;                     // per slot
  std::vector<std::unique_ptr<Request>> running;  // per slot, null when free
  std::deque<std::unique_ptr<Request>> waiting;
  std::vector<int> row_slot;                      // per output row of the current step: its slot
  std::vector<RequestId> row_request;             // per output row of the last step: its request
  int last_rows = 0;                              // output rows of the last step
  std::vector<uint8_t> scheduled;                 // per slot: has rows in the step being built
  std::vector<float> host_logits;                 // backends without host memory: copies for last_logits()
  std::vector<EngineEvent> events;
  RequestId next_id = 1;
  uint64_t admissions = 0;
  size_t decode_start = 0;  // round-robin start when decode rows exceed a step
  EngineStats stats;
  std::mt19937_64 rng{std::random_device{}()};

  std::mutex cancel_mutex;
  std::vector<RequestId> cancels;

  // Device loops (decode_loop): steps per loop (0: none), the union of the running requests' stop ids, results.
  int loop_steps = 0;
  std::vector<int32_t> loop_stops;
  std::vector<int32_t> loop_tokens;
  std::vector<float> loop_logprobs;
  std::vector<int> loop_first;  // per row: the position its first step processed

  void finish(int slot, FinishReason reason, Status error, std::string message, int32_t token, float logprob,
              std::string text);
  // A token sampled for the request in `slot`: appended, streamed, and the request finished if it ends it.
  void take(int slot, int32_t token, float logprob);
  // The sampling parameters of the request in `slot` for its next token.
  SampleParams sample_params(int slot);
  // Runs a device loop of decode steps when every running request is decoding and none waits; false when it
  // did not (the caller steps once).
  bool run_loop();
  void admit();
  void apply_cancels();
  template <typename T>
  RequestId submit(const T* prompt, size_t count, const RequestOptions& o);
};

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options) : impl_(std::make_unique<Impl>()) {
  GON_CHECK(model != nullptr, kInvalidArgument, "Engine: model is null");
  Impl& s = *impl_;
  const ModelConfig& c = model->config();
  EngineOptions o = options;
  GON_CHECK(o.max_sequences >= 1 && o.max_sequences <= 65536, kInvalidArgument,
            "max_sequences must be in [1, 65536], got ", o.max_sequences);
  GON_CHECK(o.context_length >= 2, kInvalidArgument, "context_length must be >= 2, got ", o.context_length);
  GON_CHECK(o.context_length <= c.max_context, kInvalidArgument, "context_length ", o.context_length,
            " exceeds the model's maximum context of ", c.max_context);
  GON_CHECK(o.max_batch_tokens >= 1, kInvalidArgument, "max_batch_tokens must be >= 1, got ", o.max_batch_tokens);
  GON_CHECK(o.rewind_window >= -1, kInvalidArgument, "rewind_window must be >= 0 (or -1), got ", o.rewind_window);
  if (o.rewind_window < 0) o.rewind_window = std::max(1024, o.max_batch_tokens);
  Backend& be = model->backend();
  if (!o.kv_dtype) o.kv_dtype = be.default_kv_dtype();
  s.model = std::move(model);

  const int ring = ring_capacity_for(c.sliding_window, o.context_length, o.rewind_window, o.max_batch_tokens,
                                     be.kv_block_positions());
  s.seqs.resize(o.max_sequences);
  for (Sequence& q : s.seqs) q.init(o.context_length, ring, c.sliding_window);
  o.rewind_window = s.seqs[0].rewind_window();
  s.options = o;
  s.running.resize(o.max_sequences);
  s.scheduled.assign(o.max_sequences, 0);

  ExecutorOptions eo;
  eo.max_tokens = o.max_batch_tokens;
  eo.max_outputs = std::min(o.max_sequences, o.max_batch_tokens);
  eo.logits_rows = eo.max_outputs;
  eo.num_seqs = o.max_sequences;
  eo.context_length = o.context_length;
  eo.ring_capacity = ring;
  eo.kv_dtype = *o.kv_dtype;
  s.executor = be.create_executor(s.model->weights(), c, eo);
  s.row_slot.assign(eo.max_outputs, -1);
  s.row_request.assign(eo.max_outputs, 0);
  if (!be.host_addressable()) s.host_logits.assign(size_t(eo.logits_rows) * c.vocab_size, 0.0f);
  s.events.reserve(static_cast<size_t>(o.max_sequences) * 2 + 16);  // a device loop's events: reserved below

  if (o.text) {
    s.tokenizer = s.model->tokenizer();  // throws kFileNotFound when the checkpoint has none
    s.default_stops = default_stop_tokens(c.eos_token_id, c.vocab_size, *s.tokenizer);
    s.mask = sampleable_tokens(*s.tokenizer, c.vocab_size, s.default_stops);
  } else if (c.eos_token_id >= 0 && c.eos_token_id < c.vocab_size) {
    s.default_stops = {c.eos_token_id};
  }
  s.executor->set_allowed_tokens(s.mask.empty() ? nullptr : s.mask.data());
  GON_CHECK(o.decode_loop_steps >= 0, kInvalidArgument, "decode_loop_steps must be >= 0, got ", o.decode_loop_steps);
  s.loop_steps = o.decode_loop_steps > 0 ? o.decode_loop_steps : s.executor->decode_loop_steps();
  if (s.loop_steps > 1) {
    const size_t slots = static_cast<size_t>(std::min(o.max_sequences, eo.max_outputs)) * s.loop_steps;
    s.loop_tokens.resize(slots);
    s.loop_logprobs.resize(slots);
    s.loop_first.resize(static_cast<size_t>(eo.max_outputs));
    s.loop_stops.reserve(Executor::kDecodeLoopMaxStops);
    s.events.reserve(s.events.capacity() + slots);
  }
}

Engine::~Engine() = default;

template <typename T>
RequestId Engine::Impl::submit(const T* prompt, size_t count, const RequestOptions& o) {
  const ModelConfig& c = model->config();
  GON_CHECK(prompt != nullptr && count > 0, kInvalidArgument, "submit: the prompt is empty");
  GON_CHECK(count < static_cast<size_t>(options.context_length), kContextOverflow, "submit: a prompt of ", count,
            " tokens leaves no room to generate in a context of ", options.context_length);
  for (size_t i = 0; i < count; ++i)
    GON_CHECK(prompt[i] >= 0 && prompt[i] < c.vocab_size, kTokenOutOfRange, "submit: token ", prompt[i],
              " at index ", i, " is outside the vocabulary [0, ", c.vocab_size, ")");
  GON_CHECK(o.max_tokens >= 0, kInvalidArgument, "submit: max_tokens must be >= 0, got ", o.max_tokens);
  const SampleOptions& so = o.sampling;
  GON_CHECK(std::isfinite(so.temperature) && so.temperature >= 0.0f, kInvalidArgument,
            "submit: temperature must be a finite number >= 0, got ", so.temperature);
  GON_CHECK(std::isfinite(so.top_p) && so.top_p > 0.0f && so.top_p <= 1.0f, kInvalidArgument,
            "submit: top_p must be in (0, 1], got ", so.top_p);
  for (int32_t t : o.stop_tokens)
    GON_CHECK(t >= 0 && t < c.vocab_size, kTokenOutOfRange, "submit: stop token ", t, " is outside [0, ",
              c.vocab_size, ")");
  GON_CHECK(tokenizer != nullptr || o.stop.empty(), kInvalidArgument,
            "submit: stop strings need an engine created with text=true");
  auto r = std::make_unique<Request>();
  r->id = next_id++;
  r->options = o;
  r->prompt.assign(prompt, prompt + count);
  r->stop_tokens = o.stop_tokens;
  if (o.default_stop_tokens)
    for (int32_t t : default_stops)
      if (std::find(r->stop_tokens.begin(), r->stop_tokens.end(), t) == r->stop_tokens.end())
        r->stop_tokens.push_back(t);
  if (tokenizer) r->stream = std::make_unique<TextStream>(tokenizer, o.stop, r->stop_tokens);
  r->random_seed = rng();
  const RequestId id = r->id;
  waiting.push_back(std::move(r));
  return id;
}

RequestId Engine::submit(const int32_t* prompt, size_t count, const RequestOptions& o) {
  return impl_->submit(prompt, count, o);
}
RequestId Engine::submit(const int64_t* prompt, size_t count, const RequestOptions& o) {
  return impl_->submit(prompt, count, o);
}

void Engine::cancel(RequestId id) {
  std::lock_guard<std::mutex> lock(impl_->cancel_mutex);
  impl_->cancels.push_back(id);
}

bool Engine::has_work() const {
  const Impl& s = *impl_;
  if (!s.waiting.empty()) return true;
  for (const auto& r : s.running)
    if (r) return true;
  return false;
}

void Engine::Impl::finish(int slot, FinishReason reason, Status error, std::string message, int32_t token,
                          float logprob, std::string text) {
  Request& r = *running[slot];
  EngineEvent e;
  e.id = r.id;
  e.token = token;
  e.logprob = logprob;
  e.text = std::move(text);
  if (r.stream && reason != FinishReason::kStopToken && reason != FinishReason::kStopString) {
    // Text held back at the end (an incomplete UTF-8 sequence, a possible stop-string
    // prefix) comes in a last event of its own with no token, as Generator::next gives
    // it, so a streamed request and a generation yield the same (text, token) pieces.
    std::string rest = r.stream->flush();
    if (!rest.empty() && token >= 0) {
      events.push_back(e);
      e.token = -1;
      e.logprob = 0.0f;
      e.text = std::move(rest);
    } else {
      e.text += rest;
    }
  }
  e.finished = true;
  e.finish = reason;
  e.error = error;
  e.message = std::move(message);
  events.push_back(std::move(e));
  running[slot].reset();  // the slot keeps its tokens and cache for prefix reuse
}

void Engine::Impl::apply_cancels() {
  std::vector<RequestId> ids;
  {
    std::lock_guard<std::mutex> lock(cancel_mutex);
    ids.swap(cancels);
  }
  for (RequestId id : ids) {
    for (auto it = waiting.begin(); it != waiting.end(); ++it) {
      if ((*it)->id == id) {
        EngineEvent e;
        e.id = id;
        e.finished = true;
        e.finish = FinishReason::kCancelled;
        e.error = Status::kCancelled;
        e.message = "request cancelled before it started";
        events.push_back(std::move(e));
        waiting.erase(it);
        break;
      }
    }
    for (size_t slot = 0; slot < running.size(); ++slot) {
      if (running[slot] && running[slot]->id == id) {
        finish(static_cast<int>(slot), FinishReason::kCancelled, Status::kCancelled,
               "request cancelled after " + std::to_string(running[slot]->generated) + " generated token(s)", -1,
               0.0f, std::string());
      }
    }
  }
}

void Engine::Impl::admit() {
  while (!waiting.empty()) {
    Request& r = *waiting.front();
    const int n = static_cast<int>(r.prompt.size());
    if (r.options.max_tokens == 0) {
      EngineEvent e;
      e.id = r.id;
      e.finished = true;
      e.finish = FinishReason::kLength;
      events.push_back(std::move(e));
      waiting.pop_front();
      continue;
    }
    // The free slot whose cache serves the longest prefix of the prompt.
    int best = -1, best_reuse = -1;
    for (size_t i = 0; i < running.size(); ++i) {
      if (running[i]) continue;
      const int common = std::min(seqs[i].common_prefix(r.prompt.data(), r.prompt.size()), n - 1);
      const int reuse = seqs[i].reusable(common);
      if (reuse > best_reuse) {
        best = static_cast<int>(i);
        best_reuse = reuse;
      }
    }
    if (best < 0) return;  // no free slot
    Sequence& q = seqs[best];
    const int common = std::min(q.common_prefix(r.prompt.data(), r.prompt.size()), n - 1);
    q.rewind(common);
    q.append(r.prompt.data() + common, static_cast<size_t>(n - common));
    stats.prefix_tokens_reused += static_cast<uint64_t>(q.num_processed());
    r.prompt.clear();
    r.prompt.shrink_to_fit();
    r.admitted = admissions++;
    running[best] = std::move(waiting.front());
    waiting.pop_front();
  }
}

SampleParams Engine::Impl::sample_params(int slot) {
  Request& r = *running[slot];
  const Sequence& q = seqs[slot];
  SampleParams p;
  p.temperature = r.options.sampling.temperature;
  p.top_p = r.options.sampling.top_p;
  if (r.options.sampling.seed) {
    p.seed = *r.options.sampling.seed;
    p.counter = static_cast<uint64_t>(q.num_tokens());  // as Context: the position being sampled
  } else {
    p.seed = r.random_seed;
    p.counter = r.draws++;
  }
  p.use_mask = mask.empty() ? 0 : 1;
  return p;
}

void Engine::Impl::take(int slot, int32_t token, float logprob) {
  Request& r = *running[slot];
  Sequence& q = seqs[slot];
  r.decoding = true;
  q.push(token);
  ++r.generated;
  stats.tokens_generated += 1;
  FinishReason stop = FinishReason::kNone;
  std::string text;
  if (r.stream) {
    text = r.stream->push(token, stop);
  } else if (std::find(r.stop_tokens.begin(), r.stop_tokens.end(), token) != r.stop_tokens.end()) {
    stop = FinishReason::kStopToken;
  }
  if (stop != FinishReason::kNone) {
    finish(slot, stop, Status::kInternal, std::string(), token, logprob, std::move(text));
  } else if (r.generated >= r.options.max_tokens) {
    finish(slot, FinishReason::kLength, Status::kInternal, std::string(), token, logprob, std::move(text));
  } else if (q.num_tokens() >= options.context_length) {
    finish(slot, FinishReason::kContextFull, Status::kContextOverflow,
           "the sequence reached the context length of " + std::to_string(options.context_length) + " tokens after " +
               std::to_string(r.generated) + " generated token(s)",
           token, logprob, std::move(text));
  } else {
    EngineEvent e;
    e.id = r.id;
    e.token = token;
    e.logprob = logprob;
    e.text = std::move(text);
    events.push_back(std::move(e));
  }
}

bool Engine::Impl::run_loop() {
  if (loop_steps < 2 || !waiting.empty()) return false;
  const int S = options.max_sequences, max_outputs = static_cast<int>(row_slot.size());
  int R = 0, room = options.context_length, longest = 0;
  loop_stops.clear();
  for (int slot = 0; slot < S; ++slot) {
    const Request* r = running[slot].get();
    if (r == nullptr) continue;
    if (!r->decoding || seqs[slot].pending() != 1) return false;
    for (int32_t t : r->stop_tokens)
      if (std::find(loop_stops.begin(), loop_stops.end(), t) == loop_stops.end()) {
        if (loop_stops.size() == Executor::kDecodeLoopMaxStops) return false;  // more than the device checks
        loop_stops.push_back(t);
      }
    room = std::min(room, options.context_length - seqs[slot].num_tokens());
    longest = std::max(longest, r->options.max_tokens - r->generated);
    ++R;
  }
  // Every step appends a token to every row: no row may pass its context; no longer than the longest budget.
  const int K = std::min({loop_steps, room, longest});
  if (R == 0 || R > max_outputs || R > options.max_batch_tokens || K < 2) return false;
  Executor& ex = *executor;
  StepInputs& in = ex.inputs();
  int row = 0;
  for (int slot = 0; slot < S; ++slot) {
    if (!running[slot]) continue;
    const Sequence& q = seqs[slot];
    in.tokens[row] = q.token(q.num_tokens() - 1);
    in.positions[row] = q.num_tokens() - 1;
    in.seqs[row] = slot;
    in.output_rows[row] = row;
    in.params[row] = sample_params(slot);
    loop_first[static_cast<size_t>(row)] = q.num_tokens() - 1;
    row_slot[static_cast<size_t>(row++)] = slot;
  }
  StepShape shape;
  shape.num_tokens = shape.num_outputs = R;
  shape.sample = true;
  const ModelConfig& c = model->config();
  const int n = ex.decode_loop(
      shape, [&c](Executor& e, const StepShape& sh) { forward(e, c, sh); }, 1, K, loop_stops.data(),
      static_cast<int>(loop_stops.size()), loop_tokens.data(), loop_logprobs.data());
  if (n < 0) {
    for (int r = 0; r < R; ++r) {
      Request& q = *running[row_slot[static_cast<size_t>(r)]];
      if (!q.options.sampling.seed) q.draws -= 1;  // step() draws these counters again
    }
    return false;
  }
  for (int r = 0; r < R; ++r) {
    const int slot = row_slot[static_cast<size_t>(r)];
    Request& q = *running[slot];
    if (!q.options.sampling.seed) q.draws += static_cast<uint64_t>(n - 1);  // the device drew n counters
    seqs[slot].wrote(loop_first[static_cast<size_t>(r)] + n - 1);  // rows that ended went on writing the cache
  }
  for (int i = 0; i < n; ++i) {
    for (int r = 0; r < R; ++r) {
      const int slot = row_slot[static_cast<size_t>(r)];
      if (!running[slot]) continue;  // ended earlier in this loop: the rest of its row is discarded
      seqs[slot].processed(1);
      const size_t at = static_cast<size_t>(i) * R + r;
      take(slot, loop_tokens[at], loop_logprobs[at]);
    }
  }
  stats.steps += static_cast<uint64_t>(n);
  stats.tokens_processed += static_cast<uint64_t>(n) * R;
  return true;
}

const std::vector<EngineEvent>& Engine::step() {
  Impl& s = *impl_;
  const ModelConfig& c = s.model->config();
  s.events.clear();
  s.last_rows = 0;
  s.apply_cancels();
  s.admit();
  if (s.run_loop()) return s.events;

  Executor& ex = *s.executor;
  StepInputs& in = ex.inputs();
  const int B = s.options.max_batch_tokens, S = s.options.max_sequences;
  const int max_outputs = static_cast<int>(s.row_slot.size());
  int T = 0, R = 0;
  // Decode rows first: the last token of every request past its prompt.
  for (int k = 0; k < S && T < B && R < max_outputs; ++k) {
    const int slot = static_cast<int>((s.decode_start + k) % S);
    const Request* r = s.running[slot].get();
    if (r == nullptr || !r->decoding) continue;
    const Sequence& q = s.seqs[slot];
    in.tokens[T] = q.token(q.num_tokens() - 1);
    in.positions[T] = q.num_tokens() - 1;
    in.seqs[T] = slot;
    in.output_rows[R] = T;
    s.row_slot[R++] = slot;
    ++T;
  }
  s.decode_start = (s.decode_start + 1) % S;
  // Then prefill chunks, oldest admission first.
  std::fill(s.scheduled.begin(), s.scheduled.end(), 0);
  while (T < B) {
    int slot = -1;
    uint64_t oldest = UINT64_MAX;
    for (int i = 0; i < S; ++i) {
      const Request* r = s.running[i].get();
      if (r && !r->decoding && !s.scheduled[i] && s.seqs[i].pending() > 0 && r->admitted < oldest) {
        oldest = r->admitted;
        slot = i;
      }
    }
    if (slot < 0) break;
    s.scheduled[slot] = 1;
    const Sequence& q = s.seqs[slot];
    int count = std::min(q.pending(), B - T);
    const bool completes = count == q.pending();
    if (completes && R >= max_outputs) count -= 1;  // no output row left: finish the prompt next step
    const int first = q.num_processed();
    for (int i = 0; i < count; ++i) {
      in.tokens[T + i] = q.token(first + i);
      in.positions[T + i] = first + i;
      in.seqs[T + i] = slot;
    }
    T += count;
    if (completes && count == q.pending()) {
      in.output_rows[R] = T - 1;
      s.row_slot[R++] = slot;
    }
  }
  if (T == 0) return s.events;

  // Sampling parameters of each output row.
  for (int row = 0; row < R; ++row) in.params[row] = s.sample_params(s.row_slot[row]);
  StepShape shape;
  shape.num_tokens = T;
  shape.num_outputs = R;
  shape.sample = R > 0;
  run_step(ex, c, shape);
  for (int t = 0; t < T; ++t) {
    // Rows of one slot are consecutive: count them once per slot.
    if (t + 1 < T && in.seqs[t + 1] == in.seqs[t]) continue;
    int n = 1;
    while (t - n >= 0 && in.seqs[t - n] == in.seqs[t]) ++n;
    s.seqs[in.seqs[t]].processed(n);
  }
  s.stats.steps += 1;
  s.stats.tokens_processed += static_cast<uint64_t>(T);
  if (R == 0) return s.events;

  const int32_t* tokens = ex.sampled_tokens();
  const float* logprobs = ex.sampled_logprobs();
  s.last_rows = R;
  for (int row = 0; row < R; ++row) {
    const int slot = s.row_slot[row];
    s.row_request[row] = s.running[slot]->id;
    s.take(slot, tokens[row], logprobs[row]);
  }
  return s.events;
}

const float* Engine::last_logits(RequestId id) {
  Impl& s = *impl_;
  const size_t V = static_cast<size_t>(s.model->config().vocab_size);
  for (int row = 0; row < s.last_rows; ++row) {
    if (s.row_request[row] != id) continue;
    if (s.model->backend().host_addressable()) {
      s.executor->synchronize();
      return s.executor->logits().data + row * V;
    }
    s.executor->copy_logits(row, 1, s.host_logits.data() + row * V);
    return s.host_logits.data() + row * V;
  }
  return nullptr;
}

EngineStats Engine::stats() const {
  EngineStats st = impl_->stats;
  st.waiting = static_cast<int>(impl_->waiting.size());
  for (const auto& r : impl_->running) st.running += r ? 1 : 0;
  return st;
}

MemoryStats Engine::memory_stats() const {
  const ExecutorMemory e = impl_->executor->memory();
  MemoryStats m;
  m.host_bytes = e.host_bytes;
  m.device_bytes = e.device_bytes;
  m.kv_cache_bytes = e.kv_cache_bytes;
  m.arena_allocations = e.arena_allocations;
  m.buffers = e.buffers;
  m.late_allocations = e.late_allocations;
  return m;
}

const EngineOptions& Engine::options() const { return impl_->options; }
const Model& Engine::model() const { return *impl_->model; }

}  // namespace gon
