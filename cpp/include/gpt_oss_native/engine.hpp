// Engine: continuous batching of many sequences on one Model.
//
// Each step runs one forward pass over the decode tokens of every running
// request and prefill chunks of newly admitted ones, up to max_batch_tokens
// tokens in all, then samples one token for each request whose prompt is
// done. Requests join (submit) and leave (finish, cancel) between steps; each
// has its own KV cache slot, positions and sampling parameters, and gets the
// same tokens it would get alone in a Context with the same seed.
//
//   gon::Engine engine(model, {.max_sequences = 16, .context_length = 4096});
//   auto a = engine.submit(prompt_a.data(), prompt_a.size(), {.max_tokens = 64});
//   auto b = engine.submit(prompt_b.data(), prompt_b.size(), {.max_tokens = 64});
//   while (engine.has_work())
//     for (const gon::EngineEvent& e : engine.step()) std::cout << e.id << ": " << e.text;
//
// A request whose sequence reaches the context length, or that is cancelled,
// ends with an event saying so (finish kContextFull / kCancelled and a
// message); the others go on. Free slots keep their tokens: a new request is
// put into the free slot sharing the longest prefix with its prompt, and the
// cache of that prefix is reused (a conversation resubmitted turn by turn
// processes only its new tokens).
//
// Memory (KV cache of every slot, activations, logits) is allocated when the
// engine is created. An Engine is not thread-safe, except cancel().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpt_oss_native/context.hpp"
#include "gpt_oss_native/error.hpp"
#include "gpt_oss_native/generate.hpp"

namespace gon {

class Model;
class Tokenizer;

struct EngineOptions {
  int max_sequences = 16;      // requests running at once (KV cache slots)
  int context_length = 4096;   // positions per sequence
  int max_batch_tokens = 256;  // tokens per step (decode tokens + prefill chunks)
  int rewind_window = -1;      // as ContextOptions (sliding-window headroom for prefix reuse)
  std::optional<KVDType> kv_dtype;  // nullopt: the backend's default
  // Stream text (needs the model's tokenizer): events carry text and stop
  // strings apply. Without it events carry tokens only.
  bool text = true;
  // Steps per decode loop. While every running request is decoding and none
  // is waiting, one step() runs up to this many decode steps (on a GPU one
  // device-side loop: one launch and one wait) and returns the events of all
  // of them (several per request); last_logits() then has none. 0: the
  // backend's choice (16 on a GPU, no loops on the CPU); 1: one step per
  // step(). On the CPU a value above 1 runs the loop on the host (the same
  // tokens; for tests).
  int decode_loop_steps = 0;
};

struct RequestOptions {
  int max_tokens = 256;
  SampleOptions sampling;              // temperature, top_p, seed (allowed is ignored: see EngineOptions)
  std::vector<std::string> stop;       // stop strings (text mode only)
  std::vector<int32_t> stop_tokens;    // added to the defaults below
  bool default_stop_tokens = true;     // the model's eos and harmony's <|return|> and <|call|>
};

using RequestId = uint64_t;

// What one step produced for one request.
struct EngineEvent {
  RequestId id = 0;
  int32_t token = -1;     // the sampled token, -1 if none (a final event that ends the request,
                          // possibly with text held back until the end)
  float logprob = 0.0f;
  std::string text;       // text released by this token (text mode), possibly empty
  bool finished = false;  // the request has ended; `finish` says why
  FinishReason finish = FinishReason::kNone;
  Status error = Status::kInternal;  // for kContextFull / kCancelled: kContextOverflow / kCancelled
  std::string message;    // for kContextFull / kCancelled: what happened
};

struct EngineStats {
  int running = 0;            // requests holding a slot
  int waiting = 0;            // requests waiting for one
  uint64_t steps = 0;
  uint64_t tokens_processed = 0;   // prompt and decode tokens run through the model
  uint64_t tokens_generated = 0;   // sampled tokens
  uint64_t prefix_tokens_reused = 0;  // prompt tokens whose cache was reused
};

class Engine {
 public:
  Engine(std::shared_ptr<const Model> model, const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws gon::Error for an empty prompt, an id outside the
  // vocabulary, a prompt that leaves no room in the context
  // (kContextOverflow), or invalid options.
  RequestId submit(const int32_t* prompt, size_t count, const RequestOptions& options = {});
  RequestId submit(const int64_t* prompt, size_t count, const RequestOptions& options = {});

  // Ends a request (waiting or running) at the next step, which reports it
  // with finish kCancelled. Unknown or finished ids are ignored. Thread-safe.
  void cancel(RequestId id);

  // Runs one step; returns the events it produced (valid until the next call).
  const std::vector<EngineEvent>& step();
  bool has_work() const;

  // The logits row of a request sampled in the last step (host-visible on
  // the CPU; nullptr if the request had no output in that step, or if the
  // step was a device loop: see EngineOptions::decode_loop_steps).
  const float* last_logits(RequestId id);

  EngineStats stats() const;
  MemoryStats memory_stats() const;
  const EngineOptions& options() const;  // with defaults resolved
  const Model& model() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gon
