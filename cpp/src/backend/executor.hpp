// Executor: the execution state of one Context or Engine on a backend.
//
// A Backend (backend.hpp) belongs to a Model and holds what is shared: the
// weights and, for the CPU, the thread pool. An Executor belongs to one
// Context or Engine and holds everything a forward pass touches: the KV cache
// of its sequence slots, the activations, the logits, the sampler's scratch,
// the step inputs and, on a GPU, the stream and the captured graphs. Several
// executors of one model run independently (the CPU serialises them on its
// pool; a GPU gives each its own stream).
//
// A step is one forward pass over a batch of tokens that may belong to
// different sequences (decode tokens of running sequences and prefill chunks
// of new ones together). Everything that changes from one step to the next
// reaches the operations through StepInputs, arrays at fixed addresses in
// the backend's memory that the caller fills through inputs() before each
// execute(): a GPU backend uploads them with one small copy and replays a
// graph captured for the step's shape. The shape (StepShape: token count,
// output rows) is the only host value a step depends on.
//
// Memory is planned and allocated when the executor is created; executing
// allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "backend/weights.hpp"
#include "gpt_oss_native/config.hpp"

namespace gon {

// One output row's sampling parameters; the same 32-byte layout in every
// backend's memory. uniform = uniform_from(seed, counter) (core/sampler.hpp).
struct SampleParams {
  float temperature = 1.0f;  // 0 = argmax
  float top_p = 1.0f;        // (0, 1]: exact nucleus
  uint64_t seed = 0;
  uint64_t counter = 0;
  int32_t use_mask = 0;      // 1: only tokens allowed by set_allowed_tokens()
  int32_t reserved = 0;
};
static_assert(sizeof(SampleParams) == 32, "SampleParams is shared with device code");

// What a step covers (host values; a GPU backend keys its graphs on them).
struct StepShape {
  int num_tokens = 0;     // T: rows of the batch
  int num_outputs = 0;    // R: rows whose logits are computed (inputs().output_rows[0..R))
  int output_offset = 0;  // logits / sampled rows [offset, offset + R) receive them
  bool sample = false;    // sample a token from each output row (inputs().params[0..R))
};

// Per-step arrays in the backend's memory, at fixed addresses.
struct StepInputs {
  int32_t* tokens = nullptr;       // [max_tokens] token ids
  int32_t* positions = nullptr;    // [max_tokens] position of each token in its sequence
  int32_t* seqs = nullptr;         // [max_tokens] sequence slot (whose KV cache it reads and extends)
  int32_t* output_rows = nullptr;  // [max_outputs] batch row of each output
  SampleParams* params = nullptr;  // [max_outputs]
};

struct ExecutorOptions {
  int max_tokens = 1;       // tokens per step
  int max_outputs = 1;      // output rows per step (<= max_tokens)
  int logits_rows = 1;      // rows of the logits and sampled-token buffers (>= max_outputs)
  int num_seqs = 1;         // sequence slots in the KV cache
  int context_length = 1;   // positions per sequence (full-attention layers)
  // Positions kept by sliding-window layers (a ring). Either context_length, or
  // a multiple of the backend's kv_block_positions() of at least
  // sliding_window + max_tokens - 1 (keys a step stores must not overwrite
  // keys its earlier tokens still read); validate_executor_options() checks.
  int ring_capacity = 1;
  KVDType kv_dtype = KVDType::kF32;
};

// Throws kInvalidArgument when options break the rules above (for backends'
// create_executor()).
void validate_executor_options(const ExecutorOptions& o, const ModelConfig& c, int kv_block_positions);

// Where the logits live (DLPack's device codes: 1 = CPU, 2 = CUDA, 8 = Metal).
struct LogitsView {
  const float* data = nullptr;  // [logits_rows, vocab] fp32, row-major
  int device_type = 1;
  int device_id = 0;
};

struct ExecutorMemory {
  uint64_t host_bytes = 0;        // host-visible arena
  uint64_t device_bytes = 0;      // backend arena (== host memory on the CPU)
  uint64_t kv_cache_bytes = 0;    // part of device_bytes
  uint64_t arena_allocations = 0; // blocks obtained at creation
  uint64_t buffers = 0;           // buffers carved from them at creation
  uint64_t late_allocations = 0;  // attempts after creation: always 0
};

class Executor {
 public:
  virtual ~Executor() = default;

  // ---- steps -----------------------------------------------------------------
  // The step inputs to fill before execute(); host-writable (the backend
  // memory itself on the CPU, a pinned staging copy on a GPU).
  virtual StepInputs& inputs() = 0;
  // Runs a step: `forward` calls the blocks below with the shape it is given
  // (core/forward.cpp's model graph, or a single block in tests). When
  // `graph_id` is non-zero, `forward` does the same work every time it is
  // called with that id, so a queueing backend may pad the shape to a bucket
  // (filling the padding rows' inputs itself), capture `forward` once per
  // (graph_id, bucket) and replay it; with 0 it runs `forward` as it is.
  // Returns before the device is done; the readers below wait.
  using ForwardFn = std::function<void(Executor&, const StepShape&)>;
  virtual void execute(const StepShape& shape, const ForwardFn& forward, int graph_id = 0) = 0;
  // Most stop ids a device loop checks (triton_kernels/loop.py MAX_STOPS);
  // callers with more step instead of calling decode_loop().
  static constexpr int kDecodeLoopMaxStops = 16;
  // Decodes up to `max_steps` steps of R sequences, one token each, without
  // the host between steps (a device-side loop, on backends that have one).
  // The inputs are those of a decode step of R rows that all sample:
  // inputs() holds each row's token, position and sequence slot (distinct
  // slots), output_rows[r] = r and params[r]; `shape` is {R tokens, R
  // outputs, offset 0, sample}. Each step runs `forward` (graph_id as for
  // execute()) and samples; the next step takes each row's sampled token at
  // the next position, with params[r].counter one higher. Stops after
  // max_steps steps (a backend may take fewer: it says how many it ran), or
  // once every row has sampled a token of stop_tokens[0..num_stop) (rows go
  // on decoding after their stop: the caller ignores what follows, and must
  // leave room in each sequence for max_steps positions). Writes the tokens
  // and logprobs, [steps, R], and returns the number of steps (>= 1), having
  // waited for them. Returns -1, doing nothing, where there is no such loop
  // (the caller then steps with execute()).
  virtual int decode_loop(const StepShape& shape, const ForwardFn& forward, int graph_id, int max_steps,
                          const int32_t* stop_tokens, int num_stop, int32_t* tokens, float* logprobs) {
    (void)shape, (void)forward, (void)graph_id, (void)max_steps, (void)stop_tokens, (void)num_stop, (void)tokens,
        (void)logprobs;
    return -1;
  }
  // Steps a decode_loop() call should cover when a caller streams tokens: 0
  // where there is no loop (each token is its own step).
  virtual int decode_loop_steps() const { return 0; }
  // Samples rows [offset, offset + count) of the logits again (no forward
  // pass), with inputs().params[0..count).
  virtual void sample_rows(int offset, int count) = 0;
  // Waits until the work queued so far is done.
  virtual void synchronize() = 0;
  // Results of sampling, host-visible, [logits_rows] (they wait for the device).
  virtual const int32_t* sampled_tokens() = 0;
  virtual const float* sampled_logprobs() = 0;
  // The logits buffer in backend memory (no wait: synchronize() before reading
  // it from the host) and a copy of some rows to host memory (waits).
  virtual LogitsView logits() = 0;
  virtual void copy_logits(int first_row, int rows, float* host_dst) = 0;
  // Copies [vocab] flags (0 = never sample) for rows with use_mask; nullptr
  // clears them.
  virtual void set_allowed_tokens(const uint8_t* mask) = 0;
  virtual ExecutorMemory memory() const = 0;
  virtual const ExecutorOptions& options() const = 0;

  // ---- blocks: the model graph's units, on the executor's own buffers ----------
  // The residual stream x [max_tokens, hidden] fp32 is the only activation
  // shared between blocks; what a block keeps in between (normalised inputs,
  // q/k/v, expert choices) is the backend's business.
  // x[t] = embedding[tokens[t]]
  virtual void embed_block(const StepShape& s) = 0;
  // x += out(attention(rope(qkv(rmsnorm(x))))), storing k and v in the cache
  // of seqs[t] at positions[t].
  virtual void attention_block(int layer, const StepShape& s) = 0;
  // x += sum over the top-k experts of weight * expert(rmsnorm(x)).
  virtual void moe_block(int layer, const StepShape& s) = 0;
  // logits[offset + r] = unembedding rmsnorm(x[output_rows[r]]); then, with
  // s.sample, sampled[offset + r] = sample(logits[offset + r], params[r]).
  virtual void output_block(const StepShape& s) = 0;

  // The residual stream, in backend memory (tests read and write it).
  virtual float* residual() = 0;
};

}  // namespace gon
