// A Context is one sequence being processed by a Model: its tokens, its KV
// cache, every activation buffer and the logits, all carved out of memory
// allocated once when the Context is created. Processing and sampling never
// allocate (memory_stats() lets tests check it).
//
//   gon::Context ctx(model, {.context_length = 4096});
//   ctx.append(prompt.data(), prompt.size());
//   ctx.process();                        // prefill, in chunks of max_batch_tokens
//   auto [token, logprob] = ctx.sample({.temperature = 0});  // appends token
//
// KV cache: full-attention layers keep context_length positions. Sliding-window
// layers (window W) keep a ring of W + rewind_window positions (or
// context_length, if smaller; rounded up to whole blocks of the backend's cache
// layout, which options().rewind_window then reports), so a context can rewind
// up to rewind_window
// tokens behind the furthest position it has processed without recomputing
// anything. Rewinding further is still correct: the tokens are kept and the
// next process() recomputes the cache from the start.
//
// A Context is not thread-safe (except cancel()); different Contexts of one
// Model may be used from different threads (each has its own execution state:
// on the CPU they take turns on the thread pool, on a GPU each has a stream).
//
// Work runs asynchronously where the backend queues it: process() returns once
// the work is queued, and reading results (logits, a sampled token) waits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "gpt_oss_native/config.hpp"

namespace gon {

class Model;

struct ContextOptions {
  int context_length = 4096;   // most tokens the context holds (<= the model's max context)
  // Tokens per forward pass while prefilling; 0 = the backend's choice (128
  // on the CPU, 2048 on a GPU).
  int max_batch_tokens = 0;
  // Rows of logits process(kAll) can return; 0 = max_batch_tokens when that
  // was given, else 128 (a row costs vocab_size * 4 bytes, and more for the
  // sampler's scratch on a GPU).
  int logits_capacity = 0;
  int rewind_window = -1;      // guaranteed rewind without recompute; -1 = max(1024, max_batch_tokens)
  // KV cache element type; nullopt = the backend's default (fp32 on the CPU,
  // bf16 on a GPU).
  std::optional<KVDType> kv_dtype;
};

// The default sampling temperature everywhere (C++, Python, the command line's
// library calls): 1.0, the setting gpt-oss was tuned for. Pass 0 for greedy
// decoding.
inline constexpr float kDefaultTemperature = 1.0f;

enum class LogitsMode {
  kNone,  // compute no logits (prefill that will be continued)
  kLast,  // logits of the last token processed
  kAll,   // logits of every token processed by this call (at most logits_capacity)
};

struct SampleOptions {
  float temperature = kDefaultTemperature;  // 0 = argmax
  float top_p = 1.0f;          // nucleus: smallest set of tokens with probability mass >= top_p
  std::optional<uint64_t> seed;  // same seed, same position -> same token; nullopt = from the OS
  // Optional [vocab_size] flags: tokens whose flag is 0 are never sampled
  // (e.g. ids the tokenizer has no text for). Must outlive the call.
  const uint8_t* allowed = nullptr;
};

struct SampleResult {
  int32_t token;
  float logprob;  // log-probability of token under the model (temperature 1, no top-p)
};

// A buffer in a backend's memory, as DLPack describes its place.
struct DeviceBuffer {
  const void* data = nullptr;
  int device_type = 1;  // DLPack: 1 = CPU, 2 = CUDA, 8 = Metal
  int device_id = 0;
};

struct MemoryStats {
  uint64_t host_bytes = 0;        // host arena size (tokens, logits, sampler scratch)
  uint64_t device_bytes = 0;      // backend arena size (activations, KV cache, workspace); same memory kind as host on CPU
  uint64_t kv_cache_bytes = 0;    // part of device_bytes
  uint64_t arena_allocations = 0; // blocks obtained from the system: fixed at creation
  uint64_t buffers = 0;           // buffers carved from the arenas at creation
  uint64_t late_allocations = 0;  // attempts to carve a buffer after creation: always 0
};

class Context {
 public:
  Context(std::shared_ptr<const Model> model, const ContextOptions& options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Appends tokens without processing them. Throws kTokenOutOfRange for an id
  // outside [0, vocab_size) and kContextOverflow when they do not fit; on error
  // nothing is appended.
  void append(const int32_t* tokens, size_t count);
  void append(const int64_t* tokens, size_t count);

  // Makes the context hold exactly these tokens, keeping the cache of the
  // longest common prefix with what it holds now (as far as a rewind keeps
  // it): the way to continue a conversation whose earlier turns are cached.
  // Returns the number of tokens whose cache was kept. Errors as append().
  int assign(const int32_t* tokens, size_t count);
  int assign(const int64_t* tokens, size_t count);

  // Runs the model over the tokens appended since the last process(), in
  // chunks of max_batch_tokens. With kAll, throws kInvalidArgument before doing
  // anything when more than logits_capacity tokens are pending.
  void process(LogitsMode mode = LogitsMode::kLast);

  // Samples the next token from the logits of the last token (processing any
  // pending tokens first), appends it (unprocessed) and returns it.
  SampleResult sample(const SampleOptions& options);

  // Samples up to max_tokens tokens one after the other, the same tokens as
  // that many sample() calls give (each appended, and processed by the next
  // step), stopping after the first token of stop_tokens[0..num_stop) or when
  // the context is full; writes them to out and returns how many. Throws as
  // sample() before sampling the first. On a GPU the steps run as one loop on
  // the device (one launch and one wait for many tokens; cancel() then takes
  // effect when the loop ends: the tokens so far are returned and the next
  // call throws kCancelled).
  size_t sample_many(const SampleOptions& options, size_t max_tokens, const int32_t* stop_tokens, size_t num_stop,
                     SampleResult* out);
  // Streaming with sample_many()'s speed: samples like sample_many() but
  // leaves the tokens ahead of the context (num_tokens() does not count
  // them); accept_ahead(n) then appends the next n of them, with their cache,
  // as if each had come from sample(). Any other call that changes the
  // context (append, assign, process, sample, sample_many, sample_ahead,
  // rewind, reset) drops the tokens still ahead. gon::Generator streams this
  // way. accept_ahead() throws kInvalidArgument for more than tokens_ahead().
  size_t sample_ahead(const SampleOptions& options, size_t max_tokens, const int32_t* stop_tokens, size_t num_stop,
                      SampleResult* out);
  void accept_ahead(size_t count);
  size_t tokens_ahead() const;
  // How many tokens one sample_many() / sample_ahead() call should ask for
  // when streaming: 1 where each token is its own step anyway (the CPU), more
  // where the device loops (a GPU).
  int preferred_sample_chunk() const;

  // Waits until the work queued by process() is done (process() returns once
  // the work is queued on backends that queue; reading results waits anyway).
  void synchronize();

  // Makes a process() or sample() running on another thread stop before its
  // next forward pass (prefill checks between chunks of max_batch_tokens) and
  // throw gon::Error(kCancelled); with none running, the next such call does.
  // The tokens processed before it keep their cache and the context stays
  // usable. Safe to call from any thread (and from a signal handler).
  // A gon::Generator running on the context stops the same way: its next()
  // throws kCancelled and its finish_reason() becomes kCancelled.
  void cancel() noexcept;
  // Withdraws a cancel() no call has consumed yet (one that came after the
  // work it was meant for had finished), so that it does not stop the next
  // call; returns whether one was pending. Safe from any thread.
  bool clear_cancel() noexcept;

  // Logits of the last process() call: logits_rows() rows of vocab_size fp32,
  // overwritten by the next process()/sample(). On the CPU this is the
  // context's own buffer; on a GPU a host copy, made when this is called.
  const float* logits();
  // The logits buffer itself, in the backend's memory (waits for pending work).
  DeviceBuffer logits_buffer();
  int logits_rows() const;
  int vocab_size() const;

  int num_tokens() const;      // tokens in the context (processed or not)
  int num_processed() const;   // tokens whose KV entries are in the cache
  const int32_t* tokens() const;

  // Drops tokens after the first `n`. Keeps the cache where it is still valid
  // (see the comment at the top of this file); otherwise the next process()
  // recomputes it.
  void rewind(int n);
  void reset();

  const ContextOptions& options() const;  // with defaults resolved (kv_dtype set)
  MemoryStats memory_stats() const;
  const Model& model() const;

  struct Impl;  // opaque: defined in context.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gon
