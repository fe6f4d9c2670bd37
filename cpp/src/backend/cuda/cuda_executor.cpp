// CudaExecutor: one stream, its buffers, captured graphs, and the operations
// as launches of the Triton kernels (see cuda_backend.hpp; the kernels'
// contracts are the docstrings of triton_kernels/*.py).
//
// Precision: activations between operations are fp32 (as on the CPU); the
// decode path (steps of up to 8 tokens) computes every product in fp32 from the
// exact bf16/MXFP4 weights (1-2 rows: fp32 gemv; 3-8 rows: the dense products
// take fp32 activations as two bf16 parts on the tensor cores, 16 significant
// bits, fp32 accumulation), so its logits agree with the CPU backend to
// about fp32 rounding; longer steps cast activations to bf16 for the tensor
// cores (fp32 accumulation). The KV cache is bf16 by default (a Context option).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_backend.hpp"
#include "core/check.hpp"
#include "core/profile.hpp"

namespace gon::cuda {

namespace {
constexpr int kMaxGraphTokens = 64;  // steps of up to this many tokens are captured into graphs
constexpr int kMaxGemvTokens = 2;    // up to this many rows use the fp32 gemv kernels
constexpr int kMaxSmallGemmTokens = 32; // up to this many bf16 rows use the 16x64 gemm tiles (linear_gemm_s)
constexpr int kMaxMidGemmTokens = 64;   // up to this many bf16 rows the products with bias use linear_gemm_m
constexpr int kMaxSplitGemmTokens = 8;  // up to this many rows use the split-fp32 gemm (linear_gemm_s_x32)
constexpr int kMaxMoeGemvTokens = 4; // up to this many tokens use the per-token expert kernels
constexpr int kMaxMoeSplit = 4;      // slices of the split one-token mlp2 (its partial-sum scratch)
constexpr int kPrefillAttentionMin = 17;  // eager steps with more tokens use the tiled attention kernel
// The device loop (decode_loop): at most this many steps per launch and tokens (steps x rows) per launch, and
// stop ids checked on the device (triton_kernels/loop.py MAX_STOPS, BLOCK_R = kMaxGraphTokens). Its state:
// [count, budget, stop count, go, stops[kLoopMaxStops], done[kMaxGraphTokens], tokens[kLoopSlots],
// logprobs[kLoopSlots]].
constexpr int kMaxLoopSteps = 256;
constexpr int kLoopSlots = 4096;
constexpr int kLoopMaxStops = 16;
constexpr int kLoopHeader = 4 + kLoopMaxStops + kMaxGraphTokens;
constexpr int kLoopWords = kLoopHeader + 2 * kLoopSlots;
// Steps per decode_loop() call for streaming callers (gon::Generator): GON_CUDA_LOOP_STEPS, 0 for no loop.
constexpr int kDefaultLoopSteps = 16;

// Switches for comparisons and diagnosis (each on unless set to 0):
// GON_CUDA_ONE_ROW (the one-row expert kernels), GON_CUDA_GRAPHS (captured
// graphs), GON_CUDA_SMALL_GEMM (16x64 gemm tiles for decode batches),
// GON_CUDA_ROUTED (the MoE block of one token in three launches: top-k and
// RMSNorm fused into the expert products), GON_CUDA_SPLIT_MLP2 (its mlp2 as
// expert x row tile x slice programs, the last of a tile adding them up),
// GON_CUDA_QKV_ROPE (one or two rows: rope and the KV-cache store done by
// the qkv product's programs, each on rope pairs of one head), GON_CUDA_ROUTE (steps of 2-64
// tokens: RMSNorm, router and top-k in one launch; above 8 tokens the attention
// writes the bf16 input of the out projection itself), GON_CUDA_MMA_MOE (the
// one-token MoE block's expert products on the tensor cores, moe_mma.py; off:
// the fp32 routed kernels), GON_CUDA_GEMM_MMA (the grouped expert products of
// decode batches on the tensor cores, moe_gemm_mma.py; off: moe.py's tl.dot_scaled
// tiles).
bool switch_on(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr || std::strcmp(v, "0") != 0;
}
bool one_row_kernels() {
  static const bool on = switch_on("GON_CUDA_ONE_ROW");
  return on;
}
bool routed_moe() {
  static const bool on = switch_on("GON_CUDA_ROUTED");
  return on;
}
bool split_moe() {
  static const bool on = switch_on("GON_CUDA_SPLIT_MLP2");
  return on;
}
bool mma_moe() {
  static const bool on = switch_on("GON_CUDA_MMA_MOE");
  return on;
}
bool gemm_mma() {
  static const bool on = switch_on("GON_CUDA_GEMM_MMA");
  return on;
}
bool fused_rope() {
  static const bool on = switch_on("GON_CUDA_QKV_ROPE");
  return on;
}
bool fused_route() {
  static const bool on = switch_on("GON_CUDA_ROUTE");
  return on;
}
bool graphs_enabled() {
  static const bool on = switch_on("GON_CUDA_GRAPHS");
  return on;
}
// Decode attention in one launch (attention_decode_direct: one split, normalised in place) instead of split
// partials and a combine launch, wherever a step would take one split anyway, and for caches of up to this many
// keys (the sliding-window layers: 128); GON_CUDA_DIRECT_ATTN_KEYS=N sets it, -1 turns the direct form off.
int direct_attention_keys() {
  static const int n = [] {
    const char* v = std::getenv("GON_CUDA_DIRECT_ATTN_KEYS");
    return v ? std::atoi(v) : 256;
  }();
  return n;
}
int loop_steps() {
  static const int n = [] {
    const char* v = std::getenv("GON_CUDA_LOOP_STEPS");
    const int r = v ? std::atoi(v) : kDefaultLoopSteps;
    return r >= 0 && r <= kMaxLoopSteps ? r : kDefaultLoopSteps;
  }();
  return n;
}
// Dense products of up to this many bf16 rows take the small-tile gemm variants (GON_CUDA_SMALL_GEMM_ROWS; 0 or
// GON_CUDA_SMALL_GEMM=0 for none).
int small_gemm_rows() {
  static const int n = [] {
    if (!switch_on("GON_CUDA_SMALL_GEMM")) return 0;
    const char* v = std::getenv("GON_CUDA_SMALL_GEMM_ROWS");
    const int r = v ? std::atoi(v) : kMaxSmallGemmTokens;
    return r >= 0 && r <= 4096 ? r : kMaxSmallGemmTokens;
  }();
  return n;
}
// GON_CUDA_MOE_TILES=16|128 forces one family of grouped expert kernels (16: moe_gemm_mma.py's products on the
// 16-row tiles, for any number of tokens, unless GON_CUDA_GEMM_MMA=0).
const char* forced_moe_family() {
  static const char* f = [] () -> const char* {
    const char* v = std::getenv("GON_CUDA_MOE_TILES");
    if (v && std::strcmp(v, "16") == 0) return "_m16";
    if (v && std::strcmp(v, "128") == 0) return "_m128";
    return nullptr;
  }();
  return f;
}

// The grouped expert kernels' tile family for P token-expert pairs: 16-row tiles for decode batches (few tokens
// per expert), 128-row tiles for prefill chunks.
std::string moe_family(int P) {
  return forced_moe_family() ? forced_moe_family() : P <= 512 ? "_m16" : "_m128";
}

// GON_CUDA_GEMV_ROWS=N (1..8) sends products of up to N rows to the fp32 gemv
// kernels (default kMaxGemvTokens); 3..8 rows above it take the split gemm.
int gemv_rows() {
  static const int n = [] {
    const char* v = std::getenv("GON_CUDA_GEMV_ROWS");
    const int r = v ? std::atoi(v) : kMaxGemvTokens;
    return r >= 1 && r <= 8 ? r : kMaxGemvTokens;
  }();
  return n;
}

int bucket(int n) {
  int b = 1;
  while (b < n) b *= 2;
  return b;
}
template <typename T>
CUdeviceptr dptr(const T* p) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p));
}
size_t align_up(size_t n) { return (n + 255) / 256 * 256; }
}  // namespace

// Device scratch carved from the executor's workspace, and pinned host buffers.
struct CudaExecutor::Scratch {
  uint16_t* xb = nullptr;        // [T, widest] bf16 activations for the tensor-core products (the xg form for
                                 // moe_gemm_mma.py's)
  float* part_ml = nullptr;      // [T, NQ, S, 2] decode attention partials (T * S <= kMaxPartials)
  float* part_o = nullptr;       // [T, NQ, S, HD]
  float* router_logits = nullptr;  // [T, E]
  float* act = nullptr;          // [P, I] fp32 expert activations (gemv path)
  uint16_t* act_b = nullptr;     // [P, I] bf16 expert activations (grouped path)
  float* y2 = nullptr;           // [P, H] grouped expert outputs
  int32_t* pair_order = nullptr; // [P]
  int32_t* pair_pos = nullptr;   // [P]
  int32_t* moe_tiles = nullptr;  // [max_tiles, 3]
  int32_t* moe_num_tiles = nullptr;  // [1]
  int32_t* attn_tiles = nullptr;     // [T, 4]
  double* sample_work = nullptr; // [R, sampler_work_words] sampling scratch
  float* sample_probs = nullptr; // [R, V]
  float* moe_part = nullptr;     // [k * kMaxMoeSplit, H] partial sums of the split one-token mlp2
  int32_t* moe_count = nullptr;  // [cdiv(H, 16)] its arrival counters (zero between launches)
  int32_t* loop_state = nullptr; // [kLoopWords] the device loop's state (decode_loop)
  uint16_t* xh = nullptr;        // hilo form of the one-token expert input (moe_mma.py)
  uint16_t* act_h = nullptr;     // [k] hilo forms of its expert activations
  int32_t* host_tiles = nullptr; // [T, 4] pinned
  int32_t* host_loop = nullptr;  // [kLoopWords] pinned
  int max_moe_tiles = 0;
};

ExecutorOptions CudaExecutor::internal_options(const ExecutorOptions& o) {
  ExecutorOptions io = o;
  io.num_seqs = o.num_seqs + 1;  // the last slot takes the padding rows of graph buckets
  io.max_tokens = std::max(o.max_tokens, bucket(std::min(o.max_tokens, kMaxGraphTokens)));
  io.max_outputs = std::max(o.max_outputs, bucket(std::min(o.max_outputs, kMaxGraphTokens)));
  io.logits_rows = std::max(o.logits_rows, io.max_outputs);
  return io;
}

namespace {
struct ScratchPlan {
  size_t bytes = 0;
  size_t add(size_t n) {
    const size_t at = bytes;
    bytes += align_up(n);
    return at;
  }
};

// Sampling scratch per row (triton_kernels/sampling.py): WORK eight-byte words
// (3712 + 265 per chunk of 2048 logits), then the row's probabilities.
constexpr int kSampleChunk = 2048;
// The hilo form of a K-vector (triton_kernels/moe_mma.py): 512 bytes per unit of four 32-element blocks.
size_t hilo_bytes(size_t K) { return (K / 32 + 3) / 4 * 512; }

size_t sampler_work_words(int vocab) { return 3712 + 265 * static_cast<size_t>((vocab + kSampleChunk - 1) / kSampleChunk); }

// Decode attention partials hold at most this many (token, split) pairs per query head.
constexpr int kMaxPartials = 64;

size_t scratch_bytes(const ModelConfig& c, const ExecutorOptions& io, size_t* offsets) {
  const size_t T = io.max_tokens, TG = std::min(io.max_tokens, kMaxGraphTokens), H = c.hidden_size;
  const size_t I = c.intermediate_size, E = c.num_experts, P = T * c.experts_per_token;
  const size_t NQ = c.num_heads, HD = c.head_dim;
  const size_t widest = std::max({H, NQ * HD, I});
  const size_t max_tiles = (P + 15) / 16 + E;
  ScratchPlan p;
  size_t i = 0;
  offsets[i++] = p.add(T * widest * 2);
  (void)TG;
  offsets[i++] = p.add(kMaxPartials * NQ * 2 * 4);
  offsets[i++] = p.add(kMaxPartials * NQ * HD * 4);
  offsets[i++] = p.add(T * E * 4);
  offsets[i++] = p.add(P * I * 4);
  offsets[i++] = p.add(P * I * 2);
  offsets[i++] = p.add(P * H * 4);
  offsets[i++] = p.add(P * 4);
  offsets[i++] = p.add(P * 4);
  offsets[i++] = p.add(max_tiles * 3 * 4);
  offsets[i++] = p.add(4);
  offsets[i++] = p.add(T * 4 * 4);
  offsets[i++] = p.add(static_cast<size_t>(io.max_outputs) * sampler_work_words(c.vocab_size) * 8);
  offsets[i++] = p.add(static_cast<size_t>(io.max_outputs) * c.vocab_size * 4);
  offsets[i++] = p.add(static_cast<size_t>(c.experts_per_token) * kMaxMoeSplit * H * 4);
  offsets[i++] = p.add((H + 15) / 16 * 4);
  offsets[i++] = p.add(kLoopWords * 4);
  offsets[i++] = p.add(hilo_bytes(H));
  offsets[i++] = p.add(static_cast<size_t>(c.experts_per_token) * hilo_bytes(I));
  return p.bytes;
}
constexpr int kScratchParts = 19;

// Splits of the cached keys for decode attention: enough (token, kv head,
// split) programs to fill the GPU, few enough that each reads a useful run of
// keys (about 4 for a 128-key window, 16 from 512 keys, 32 from 2k), fewer as
// more tokens share the step.
// GON_CUDA_DECODE_SPLITS=N (1..64, a power of two) sets the splits of every cache size instead.
int forced_decode_splits() {
  static const int n = [] {
    const char* v = std::getenv("GON_CUDA_DECODE_SPLITS");
    const int r = v ? std::atoi(v) : 0;
    return r >= 1 && r <= 64 && (r & (r - 1)) == 0 ? r : 0;
  }();
  return n;
}
int decode_splits(int tokens, int keys) {
  int s = forced_decode_splits() ? forced_decode_splits() : keys <= 256 ? 4 : keys < 2048 ? 16 : 32;
  return std::max(1, std::min(s, kMaxPartials / 2 / std::max(1, bucket(tokens))));
}

}  // namespace

CudaExecutor::CudaExecutor(CudaBackend& backend, const ModelWeights& weights, const ModelConfig& c,
                           const ExecutorOptions& o)
    : ComposedExecutor(backend, weights, c, internal_options(o),
                       [&] {
                         size_t offs[kScratchParts];
                         return scratch_bytes(c, internal_options(o), offs);
                       }(),
                       [&c](int capacity) {
                         return static_cast<int64_t>(c.num_kv_heads) * capacity * c.head_dim;
                       }),
      cuda_(backend),
      k_(backend.kernels()),
      user_options_(o) {
  backend.make_current();
  const Driver& d = driver();
  GON_CU(d.cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING));
  GON_CU(d.cuEventCreate(&done_, CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING));
  GON_CU(d.cuEventCreate(&uploaded_, CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING));
  // The five step-input arrays were planned one after the other in both arenas:
  // when their relative offsets agree, one copy uploads them all.
  auto rel = [](const StepInputs& in, const void* p) {
    return static_cast<const char*>(p) - reinterpret_cast<const char*>(in.tokens);
  };
  inputs_contiguous_ = rel(staging_, staging_.positions) == rel(device_inputs_, device_inputs_.positions) &&
                       rel(staging_, staging_.seqs) == rel(device_inputs_, device_inputs_.seqs) &&
                       rel(staging_, staging_.output_rows) == rel(device_inputs_, device_inputs_.output_rows) &&
                       rel(staging_, staging_.params) == rel(device_inputs_, device_inputs_.params);
  size_t offs[kScratchParts];
  scratch_bytes(c, options_, offs);
  char* base = static_cast<char*>(workspace());
  scratch_ = std::make_unique<Scratch>();
  Scratch& s = *scratch_;
  int i = 0;
  s.xb = reinterpret_cast<uint16_t*>(base + offs[i++]);
  s.part_ml = reinterpret_cast<float*>(base + offs[i++]);
  s.part_o = reinterpret_cast<float*>(base + offs[i++]);
  s.router_logits = reinterpret_cast<float*>(base + offs[i++]);
  s.act = reinterpret_cast<float*>(base + offs[i++]);
  s.act_b = reinterpret_cast<uint16_t*>(base + offs[i++]);
  s.y2 = reinterpret_cast<float*>(base + offs[i++]);
  s.pair_order = reinterpret_cast<int32_t*>(base + offs[i++]);
  s.pair_pos = reinterpret_cast<int32_t*>(base + offs[i++]);
  s.moe_tiles = reinterpret_cast<int32_t*>(base + offs[i++]);
  s.moe_num_tiles = reinterpret_cast<int32_t*>(base + offs[i++]);
  s.attn_tiles = reinterpret_cast<int32_t*>(base + offs[i++]);
  s.sample_work = reinterpret_cast<double*>(base + offs[i++]);
  s.sample_probs = reinterpret_cast<float*>(base + offs[i++]);
  s.moe_part = reinterpret_cast<float*>(base + offs[i++]);
  s.moe_count = reinterpret_cast<int32_t*>(base + offs[i++]);
  GON_CU(d.cuMemsetD8(dptr(s.moe_count), 0, (c.hidden_size + 15) / 16 * 4));
  s.loop_state = reinterpret_cast<int32_t*>(base + offs[i++]);
  // The hilo buffers' padding blocks (past K, up to a multiple of 4 blocks) are never written: cleared once here.
  s.xh = reinterpret_cast<uint16_t*>(base + offs[i++]);
  GON_CU(d.cuMemsetD8(dptr(s.xh), 0, hilo_bytes(c.hidden_size)));
  s.act_h = reinterpret_cast<uint16_t*>(base + offs[i++]);
  GON_CU(d.cuMemsetD8(dptr(s.act_h), 0, static_cast<size_t>(c.experts_per_token) * hilo_bytes(c.intermediate_size)));
  s.max_moe_tiles = static_cast<int>((static_cast<size_t>(options_.max_tokens) * c.experts_per_token + 15) / 16 +
                                     c.num_experts);
  s.host_tiles = static_cast<int32_t*>(backend.allocate(static_cast<size_t>(options_.max_tokens) * 16, true));
  s.host_loop = static_cast<int32_t*>(backend.allocate(kLoopWords * 4, true));
  GON_CU(d.cuMemsetD8(dptr(buf_.mask), 1, c.vocab_size));  // no mask yet: every token allowed
  // Padding rows of graph buckets: token 0 at position 0 of the scratch slot.
  StepInputs& in = staging_;
  for (int t = 0; t < options_.max_tokens; ++t) {
    in.tokens[t] = 0;
    in.positions[t] = 0;
    in.seqs[t] = user_options_.num_seqs;
  }
}

CudaExecutor::~CudaExecutor() {
  cuda_.make_current();
  const Driver& d = driver();
  if (stream_) d.cuStreamSynchronize(stream_);
  if (done_) d.cuEventDestroy(done_);
  if (uploaded_) d.cuEventDestroy(uploaded_);
  for (auto& [key, exec] : graphs_) d.cuGraphExecDestroy(exec);
  for (auto& [key, exec] : loop_graphs_) d.cuGraphExecDestroy(exec);
  for (CUgraph g : graph_sources_) d.cuGraphDestroy(g);
  if (scratch_ && scratch_->host_tiles) cuda_.release(scratch_->host_tiles, true);
  if (scratch_ && scratch_->host_loop) cuda_.release(scratch_->host_loop, true);
  if (stream_) d.cuStreamDestroy(stream_);
}

// ---- stepping -------------------------------------------------------------------

void CudaExecutor::upload_inputs(const StepShape& s) {
  GON_CHECK(s.num_tokens >= 0 && s.num_tokens <= options_.max_tokens, kInternal, "step of ", s.num_tokens,
            " tokens exceeds max_tokens ", options_.max_tokens);
  GON_CHECK(s.num_outputs >= 0 && s.num_outputs <= options_.max_outputs && s.output_offset >= 0 &&
                s.output_offset + s.num_outputs <= options_.logits_rows,
            kInternal, "step outputs exceed the executor's buffers");
  const Driver& d = driver();
  auto up = [&](void* dst, const void* src, size_t bytes) {
    if (bytes) GON_CU(d.cuMemcpyHtoDAsync(dptr(dst), src, bytes, stream_));
  };
  const size_t T = s.num_tokens, R = s.num_outputs;
  if (inputs_contiguous_) {
    const char* begin = reinterpret_cast<const char*>(staging_.tokens);
    const char* end = reinterpret_cast<const char*>(staging_.params + (s.sample ? R : 0));
    if (!s.sample) end = reinterpret_cast<const char*>(staging_.output_rows + R);
    up(device_inputs_.tokens, begin, static_cast<size_t>(end - begin));
  } else {
    up(device_inputs_.tokens, staging_.tokens, T * 4);
    up(device_inputs_.positions, staging_.positions, T * 4);
    up(device_inputs_.seqs, staging_.seqs, T * 4);
    up(device_inputs_.output_rows, staging_.output_rows, R * 4);
    if (s.sample) up(device_inputs_.params, staging_.params, R * sizeof(SampleParams));
  }
  GON_CU(d.cuEventRecord(uploaded_, stream_));
  upload_pending_ = true;
}

StepInputs& CudaExecutor::inputs() {
  if (upload_pending_) {
    cuda_.make_current();
    GON_CU(driver().cuEventSynchronize(uploaded_));
    upload_pending_ = false;
  }
  return staging_;
}

void CudaExecutor::copy_results_async(int offset, int count) {
  // The only data that crosses to the host per decoded token: ids and logprobs.
  const Driver& d = driver();
  GON_CU(d.cuMemcpyDtoHAsync(host_sampled_ + offset, dptr(buf_.sampled + offset), count * sizeof(int32_t), stream_));
  GON_CU(d.cuMemcpyDtoHAsync(host_logprobs_ + offset, dptr(buf_.logprobs + offset), count * sizeof(float), stream_));
}

void CudaExecutor::build_attention_tiles(int count) {
  // Runs of consecutive positions of one sequence, cut into tiles of the
  // prefill kernel's BLOCK_M rows.
  const int block = static_cast<int>(k_.get(prefill_variant(true, false)).constexpr_value("BLOCK_M"));
  int n = 0;
  int32_t* h = scratch_->host_tiles;
  for (int t = 0; t < count;) {
    int len = 1;
    while (t + len < count && len < block && staging_.seqs[t + len] == staging_.seqs[t] &&
           staging_.positions[t + len] == staging_.positions[t] + len)
      ++len;
    h[4 * n + 0] = t;
    h[4 * n + 1] = len;
    h[4 * n + 2] = staging_.seqs[t];
    h[4 * n + 3] = staging_.positions[t];
    ++n;
    t += len;
  }
  GON_CU(driver().cuMemcpyHtoDAsync(dptr(scratch_->attn_tiles), h, static_cast<size_t>(n) * 16, stream_));
  GON_CU(driver().cuEventRecord(uploaded_, stream_));  // host_tiles is reused by the next step
  upload_pending_ = true;
  tiles_ = n;
}

void CudaExecutor::execute(const StepShape& shape, const ForwardFn& forward, int graph_id) {
  cuda_.make_current();
  const Driver& d = driver();
  // Bind the caller's view of sequence slots: rows of real sequences only.
  for (int t = 0; t < shape.num_tokens; ++t)
    GON_CHECK(staging_.seqs[t] >= 0 && staging_.seqs[t] < user_options_.num_seqs, kInternal, "step row ", t,
              " names sequence slot ", staging_.seqs[t]);
  const bool graph = graph_id != 0 && shape.num_tokens <= kMaxGraphTokens && shape.output_offset == 0 &&
                     shape.num_tokens > 0 && !profiling() && graphs_enabled();
  if (!graph) {
    tiles_ = -1;
    if (shape.num_tokens >= kPrefillAttentionMin) {
      if (upload_pending_) GON_CU(d.cuEventSynchronize(uploaded_));  // host_tiles may still be in flight
      build_attention_tiles(shape.num_tokens);
    }
    upload_inputs(shape);
    sample_launches_ = shape.sample ? sample_launches(staging_.params, shape.num_outputs) : 0;
    forward(*this, shape);
    tiles_ = -1;
    sample_launches_ = 0;
  } else {
    StepShape padded = shape;
    padded.num_tokens = bucket(shape.num_tokens);
    padded.num_outputs = shape.num_outputs > 0 ? bucket(shape.num_outputs) : 0;
    for (int t = shape.num_tokens; t < padded.num_tokens; ++t) {
      staging_.tokens[t] = 0;
      staging_.positions[t] = 0;
      staging_.seqs[t] = user_options_.num_seqs;
    }
    for (int r = shape.num_outputs; r < padded.num_outputs; ++r) {
      staging_.output_rows[r] = padded.num_tokens - 1;
      staging_.params[r] = SampleParams{};
      staging_.params[r].temperature = 0.0f;
    }
    upload_inputs(padded);
    sample_launches_ = padded.sample ? sample_launches(staging_.params, padded.num_outputs) : 0;
    const auto key = std::make_tuple(graph_id, padded.num_tokens, padded.num_outputs, padded.sample, sample_launches_);
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      GON_CU(d.cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
      capturing_ = true;
      CUgraph g = nullptr;
      try {
        forward(*this, padded);
      } catch (...) {
        capturing_ = false;
        sample_launches_ = 0;
        d.cuStreamEndCapture(stream_, &g);
        if (g) d.cuGraphDestroy(g);
        throw;
      }
      capturing_ = false;
      GON_CU(d.cuStreamEndCapture(stream_, &g));
      graph_sources_.push_back(g);
      CUgraphExec exec = nullptr;
      GON_CU(d.cuGraphInstantiateWithFlags(&exec, g, 0));
      it = graphs_.emplace(key, exec).first;
    }
    GON_CU(d.cuGraphLaunch(it->second, stream_));
    sample_launches_ = 0;
  }
  if (shape.sample && shape.num_outputs > 0) copy_results_async(shape.output_offset, shape.num_outputs);
  GON_CU(d.cuEventRecord(done_, stream_));
}

int CudaExecutor::decode_loop_steps() const {
  const Driver& d = driver();
  const bool can = d.cuGraphCreate && d.cuGraphConditionalHandleCreate && d.cuGraphAddNode &&
                   d.cuStreamBeginCaptureToGraph && k_.has("decode_loop_step") && k_.has("graph_set_condition") &&
                   graphs_enabled() && !profiling();
  return can ? loop_steps() : 0;
}

int CudaExecutor::decode_loop(const StepShape& shape, const ForwardFn& forward, int graph_id, int max_steps,
                              const int32_t* stop_tokens, int num_stop, int32_t* tokens, float* logprobs) {
  const int R = shape.num_tokens;
  if (decode_loop_steps() == 0 || graph_id == 0 || num_stop < 0 || num_stop > kLoopMaxStops || R < 1 ||
      R > kMaxGraphTokens || R > options_.max_outputs || shape.num_outputs != R || shape.output_offset != 0 ||
      !shape.sample)
    return -1;
  GON_CHECK(max_steps >= 1 && tokens != nullptr && logprobs != nullptr && (num_stop == 0 || stop_tokens != nullptr),
            kInternal, "decode_loop: bad arguments");
  for (int r = 0; r < R; ++r)
    GON_CHECK(staging_.seqs[r] >= 0 && staging_.seqs[r] < user_options_.num_seqs && staging_.output_rows[r] == r,
              kInternal, "decode_loop: row ", r, " (sequence slot ", staging_.seqs[r], ")");
  // Padded to the graph bucket: the padding rows (done from the start) decode in the scratch slot.
  StepShape padded = shape;
  padded.num_tokens = padded.num_outputs = bucket(R);
  const int P = padded.num_tokens;
  max_steps = std::min({max_steps, kMaxLoopSteps, kLoopSlots / P});
  cuda_.make_current();
  const Driver& d = driver();
  Scratch& sc = *scratch_;
  // The loop's state (the pinned buffer is free: the previous call waited for its results).
  int32_t* h = sc.host_loop;
  h[0] = 0;
  h[1] = max_steps;
  h[2] = num_stop;
  h[3] = 1;
  for (int i = 0; i < kLoopMaxStops; ++i) h[4 + i] = i < num_stop ? stop_tokens[i] : -1;
  for (int r = 0; r < kMaxGraphTokens; ++r) h[4 + kLoopMaxStops + r] = r < R ? 0 : 1;
  GON_CU(d.cuMemcpyHtoDAsync(dptr(sc.loop_state), h, kLoopHeader * 4, stream_));
  for (int r = R; r < P; ++r) {
    staging_.tokens[r] = 0;
    staging_.positions[r] = 0;
    staging_.seqs[r] = user_options_.num_seqs;
    staging_.output_rows[r] = r;
    staging_.params[r] = SampleParams{};
    staging_.params[r].temperature = 0.0f;
  }
  upload_inputs(padded);
  sample_launches_ = sample_launches(staging_.params, P);
  const auto key = std::make_tuple(graph_id, P, sample_launches_);
  auto it = loop_graphs_.find(key);
  if (it == loop_graphs_.end()) {
    // A graph of one WHILE node (its value 1 at each launch) whose body is the captured step, then
    // decode_loop_step (results out, next inputs in, go or stop) and graph_set_condition (the node's value).
    CUgraph parent = nullptr;
    GON_CU(d.cuGraphCreate(&parent, 0));
    graph_sources_.push_back(parent);
    CUgraphConditionalHandle handle = 0;
    GON_CU(d.cuGraphConditionalHandleCreate(&handle, parent, cuda_.context(), 1, CU_GRAPH_COND_ASSIGN_DEFAULT));
    CUgraphNodeParams np;
    std::memset(&np, 0, sizeof np);
    np.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    np.conditional.handle = handle;
    np.conditional.type = CU_GRAPH_COND_TYPE_WHILE;
    np.conditional.size = 1;
    np.conditional.ctx = cuda_.context();
    CUgraphNode node = nullptr;
    GON_CU(d.cuGraphAddNode(&node, parent, nullptr, nullptr, 0, &np));
    CUgraph body = np.conditional.phGraph_out[0];
    GON_CU(d.cuStreamBeginCaptureToGraph(stream_, body, nullptr, nullptr, 0, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    capturing_ = true;
    CUgraph captured = nullptr;
    try {
      forward(*this, padded);
      k_.get("decode_loop_step")
          .launch(stream_, {1, 1, 1},
                  {buf_.sampled, buf_.logprobs, device_inputs_.tokens, device_inputs_.positions, device_inputs_.params,
                   sc.loop_state, sc.loop_state + kLoopHeader, sc.loop_state + kLoopHeader + kLoopSlots,
                   static_cast<int32_t>(P)});
      k_.get("graph_set_condition").launch(stream_, {1, 1, 1}, {static_cast<int64_t>(handle), sc.loop_state + 3});
    } catch (...) {
      capturing_ = false;
      sample_launches_ = 0;
      d.cuStreamEndCapture(stream_, &captured);
      throw;
    }
    capturing_ = false;
    GON_CU(d.cuStreamEndCapture(stream_, &captured));
    CUgraphExec exec = nullptr;
    GON_CU(d.cuGraphInstantiateWithFlags(&exec, parent, 0));
    it = loop_graphs_.emplace(key, exec).first;
  }
  GON_CU(d.cuGraphLaunch(it->second, stream_));
  sample_launches_ = 0;
  // The results of at most max_steps steps (the count comes with them).
  const size_t used = static_cast<size_t>(max_steps) * P * 4;
  GON_CU(d.cuMemcpyDtoHAsync(h, dptr(sc.loop_state), 4, stream_));
  GON_CU(d.cuMemcpyDtoHAsync(h + kLoopHeader, dptr(sc.loop_state + kLoopHeader), used, stream_));
  GON_CU(d.cuMemcpyDtoHAsync(h + kLoopHeader + kLoopSlots, dptr(sc.loop_state + kLoopHeader + kLoopSlots), used,
                             stream_));
  GON_CU(d.cuEventRecord(done_, stream_));
  GON_CU(d.cuEventSynchronize(done_));
  const int n = h[0];
  GON_CHECK(n >= 1 && n <= max_steps, kInternal, "decode_loop: the device reports ", n, " steps of ", max_steps);
  for (int i = 0; i < n; ++i) {
    std::memcpy(tokens + static_cast<size_t>(i) * R, h + kLoopHeader + static_cast<size_t>(i) * P,
                static_cast<size_t>(R) * 4);
    std::memcpy(logprobs + static_cast<size_t>(i) * R, h + kLoopHeader + kLoopSlots + static_cast<size_t>(i) * P,
                static_cast<size_t>(R) * 4);
  }
  return n;
}

void CudaExecutor::synchronize() {
  cuda_.make_current();
  const Driver& d = driver();
  GON_CU(d.cuEventRecord(done_, stream_));  // covers work queued outside execute() (fine ops, copies)
  GON_CU(d.cuEventSynchronize(done_));
}

void CudaExecutor::sample_rows(int offset, int count) {
  GON_CHECK(count >= 0 && count <= options_.max_outputs && offset >= 0 && offset + count <= options_.logits_rows,
            kInternal, "sample_rows: rows outside the logits buffer");
  cuda_.make_current();
  GON_CU(driver().cuMemcpyHtoDAsync(dptr(device_inputs_.params), staging_.params, count * sizeof(SampleParams),
                                    stream_));
  GON_CU(driver().cuEventRecord(uploaded_, stream_));
  upload_pending_ = true;
  sample_launches_ = sample_launches(staging_.params, count);
  sample(buf_.logits + static_cast<size_t>(offset) * config_.vocab_size, count, device_inputs_.params,
         mask_set_ ? buf_.mask : nullptr, buf_.sampled + offset, buf_.logprobs + offset);
  sample_launches_ = 0;
  copy_results_async(offset, count);
}

const int32_t* CudaExecutor::sampled_tokens() {
  synchronize();
  return host_sampled_;
}

const float* CudaExecutor::sampled_logprobs() {
  synchronize();
  return host_logprobs_;
}

LogitsView CudaExecutor::logits() { return {buf_.logits, 2, cuda_.device_id()}; }

void CudaExecutor::set_allowed_tokens(const uint8_t* mask) {
  synchronize();  // a step in flight may be reading the mask
  ComposedExecutor::set_allowed_tokens(mask);
  // Without a mask the device buffer allows every token, so rows that ask
  // for the mask (use_mask) sample as if unmasked, as the CPU does.
  if (mask == nullptr) GON_CU(driver().cuMemsetD8(dptr(buf_.mask), 1, config_.vocab_size));
}

// ---- fine operations ---------------------------------------------------------------

void CudaExecutor::embed(const int32_t* tokens, int count, float* x) {
  const Kernel& k = k_.get("embed");
  const int H = config_.hidden_size;
  const unsigned blocks = static_cast<unsigned>((H + k.constexpr_value("BLOCK_H") - 1) / k.constexpr_value("BLOCK_H"));
  k.launch(stream_, {static_cast<unsigned>(count), blocks, 1}, {tokens, weights_.embedding, x, H});
}

void CudaExecutor::rmsnorm(const float* x, const int32_t* rows, int count, int width, const uint16_t* weight,
                           float eps, float* y) {
  const Kernel& k = k_.get(rows ? "rmsnorm_rows" : "rmsnorm");
  k.launch(stream_, {static_cast<unsigned>(count), 1, 1}, {x, rows ? rows : device_inputs_.tokens, weight, y, count,
                                                          width, eps});
}

void CudaExecutor::launch_gemv(const float* x, const int32_t* rows, const uint16_t* norm_w, const BF16Matrix& w,
                               int count, int n_rows, float* y, size_t ldy, bool accumulate) {
  GON_CHECK(count >= 1 && count <= 8, kInternal, "gemv with ", count, " rows");
  std::string flags;
  if (norm_w) flags += "_norm";
  if (rows) flags += "_rows";
  if (w.bias) flags += "_bias";
  if (accumulate) flags += "_acc";
  const void* dummy = w.data;
  const Kernel& k = k_.get("linear_gemv_m" + std::to_string(bucket(count)) + flags);
  const int64_t bn = k.constexpr_value("BLOCK_N");
  const unsigned grid = static_cast<unsigned>((n_rows + bn - 1) / bn);
  k.launch(stream_, {grid, 1, 1},
           {x, rows ? static_cast<const void*>(rows) : dummy, norm_w ? static_cast<const void*>(norm_w) : dummy,
            w.data, w.bias ? static_cast<const void*>(w.bias) : dummy, y, count, n_rows, w.cols,
            static_cast<int32_t>(ldy), config_.rms_norm_eps});
}

void CudaExecutor::linear_matrix(const float* x, const uint16_t* x_bf16, int count, const uint16_t* w,
                                 const uint16_t* bias, int N, int K, float* y, size_t ldy, bool accumulate) {
  if (count <= gemv_rows() && x != nullptr) {
    launch_gemv(x, nullptr, nullptr, BF16Matrix{w, bias, N, K}, count, N, y, ldy, accumulate);
    return;
  }
  if (count <= kMaxSplitGemmTokens && x != nullptr && (bias != nullptr || !accumulate)) {
    // fp32 activations in two bf16 parts through the tensor cores: near-fp32 results, one pass over w.
    std::string name = "linear_gemm_s_x32";
    if (bias) name += "_bias";
    if (accumulate) name += "_acc";
    const Kernel& k = k_.get(name);
    const int64_t bm = k.constexpr_value("BLOCK_M"), bn = k.constexpr_value("BLOCK_N");
    k.launch(stream_, {static_cast<unsigned>((count + bm - 1) / bm), static_cast<unsigned>((N + bn - 1) / bn), 1},
             {x, w, bias ? static_cast<const void*>(bias) : static_cast<const void*>(w), y, count, N, K, K,
              static_cast<int32_t>(ldy)});
    return;
  }
  if (x_bf16 == nullptr) {
    const Kernel& cast = k_.get("cast_bf16");
    const int64_t n = static_cast<int64_t>(count) * K;
    const int64_t block = cast.constexpr_value("BLOCK");
    cast.launch(stream_, {static_cast<unsigned>((n + block - 1) / block), 1, 1}, {x, scratch_->xb, n});
    x_bf16 = scratch_->xb;
  }
  // Decode batches take the small-tile variants: more programs for the same weights (16x64 tiles up to 32 rows,
  // one 64-row tile over narrow weight tiles up to 64 rows where compiled: the products with bias).
  std::string name = count <= small_gemm_rows() ? "linear_gemm_s"
                     : count <= kMaxMidGemmTokens && small_gemm_rows() > 0 && bias ? "linear_gemm_m"
                                                                                    : "linear_gemm";
  if (bias) name += "_bias";
  if (accumulate) name += "_acc";
  const Kernel& k = k_.get(name);
  const int64_t bm = k.constexpr_value("BLOCK_M"), bn = k.constexpr_value("BLOCK_N");
  k.launch(stream_, {static_cast<unsigned>((count + bm - 1) / bm), static_cast<unsigned>((N + bn - 1) / bn), 1},
           {x_bf16, w, bias ? static_cast<const void*>(bias) : static_cast<const void*>(w), y, count, N, K, K,
            static_cast<int32_t>(ldy)});
}

void CudaExecutor::linear(const float* x, int count, const BF16Matrix* mats, int num_mats, float* y, size_t ldy,
                          bool accumulate) {
  if (count <= 0) return;
  // Matrices stored one after the other (q, k, v: see prepare_weights) are one product.
  bool contiguous = true;
  int rows = mats[0].rows;
  for (int i = 1; i < num_mats; ++i) {
    contiguous &= mats[i].data == mats[i - 1].data + static_cast<size_t>(mats[i - 1].rows) * mats[i - 1].cols &&
                  mats[i].cols == mats[0].cols && (mats[i].bias == nullptr) == (mats[0].bias == nullptr) &&
                  (mats[i].bias == nullptr || mats[i].bias == mats[i - 1].bias + mats[i - 1].rows);
    rows += mats[i].rows;
  }
  if (contiguous) {
    linear_matrix(x, nullptr, count, mats[0].data, mats[0].bias, rows, mats[0].cols, y, ldy, accumulate);
    return;
  }
  size_t offset = 0;
  for (int i = 0; i < num_mats; ++i) {
    linear_matrix(x, nullptr, count, mats[i].data, mats[i].bias, mats[i].rows, mats[i].cols, y + offset, ldy,
                  accumulate);
    offset += mats[i].rows;
  }
}

void CudaExecutor::rope_kv_store(float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                                 const KVCacheLayer& cache) {
  const ModelConfig& c = config_;
  const int half = std::max(16, bucket(c.head_dim / 2));
  const bool bf16 = cache.dtype == KVDType::kBF16;
  const Kernel& k = k_.get("rope_kv_store_h" + std::to_string(half) + (bf16 ? "_bf16" : "_f32"));
  k.launch(stream_, {static_cast<unsigned>(count), static_cast<unsigned>(c.num_heads + c.num_kv_heads), 1},
           {qkv, positions, seqs, weights_.rope_inv_freq, cache.k, cache.v, count, c.qkv_rows(), cache.seq_stride,
            cache.capacity, weights_.rope_scaling, c.num_heads, c.num_kv_heads, c.head_dim});
}

std::string CudaExecutor::decode_variant(int splits, bool kv_bf16) const {
  const ModelConfig& c = config_;
  const int64_t stride = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;  // seq_stride is a multiple of this
  const bool a16 = c.head_dim % 16 == 0 && c.qkv_rows() % 16 == 0 && stride % 16 == 0;
  return "attention_decode_s" + std::to_string(splits) + (c.head_dim <= 64 ? "_d64_" : "_d128_") +
         (kv_bf16 ? "bf16" : "f32") + (a16 ? "_a16" : "");
}

std::string CudaExecutor::direct_variant(bool kv_bf16, bool out_bf16) const {
  const ModelConfig& c = config_;
  const int64_t stride = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  const bool a16 = c.head_dim % 16 == 0 && c.qkv_rows() % 16 == 0 && stride % 16 == 0;
  return std::string("attention_decode_direct") + (c.head_dim <= 64 ? "_d64_" : "_d128_") + (kv_bf16 ? "bf16" : "f32") +
         (out_bf16 ? "_obf16" : "_of32") + (a16 ? "_a16" : "");
}

std::string CudaExecutor::prefill_variant(bool kv_bf16, bool out_bf16) const {
  const ModelConfig& c = config_;
  const int64_t stride = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  const int width = c.num_heads * c.head_dim;
  const bool a16 = c.head_dim % 16 == 0 && c.qkv_rows() % 16 == 0 && stride % 16 == 0 && width % 16 == 0;
  return std::string("attention_prefill") + (c.head_dim <= 64 ? "_d64_" : "_d128_") + (kv_bf16 ? "bf16" : "f32") +
         (out_bf16 ? "_obf16" : "_of32") + (a16 ? "_a16" : "");
}

void CudaExecutor::attention_decode(const float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                                    const uint16_t* sinks, const KVCacheLayer& cache, int window, float* out,
                                    bool out_bf16) {
  const ModelConfig& c = config_;
  const bool bf16 = cache.dtype == KVDType::kBF16;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int keys = window > 0 ? std::min(window, user_options_.context_length) : user_options_.context_length;
  const size_t width = static_cast<size_t>(c.num_heads) * c.head_dim;
  for (int t0 = 0; t0 < count; t0 += kMaxPartials / 2) {
    const int n = std::min(kMaxPartials / 2, count - t0);
    const int S = decode_splits(n, keys);
    void* dst = out_bf16 ? static_cast<void*>(reinterpret_cast<uint16_t*>(out) + t0 * width)
                         : static_cast<void*>(out + t0 * width);
    const std::string direct = direct_variant(bf16, out_bf16);
    if (direct_attention_keys() >= 0 && (S == 1 || keys <= direct_attention_keys()) && k_.has(direct)) {
      k_.get(direct).launch(stream_, {static_cast<unsigned>(n), static_cast<unsigned>(c.num_kv_heads), 1},
                            {qkv + static_cast<size_t>(t0) * c.qkv_rows(), positions + t0, seqs + t0, cache.k, cache.v,
                             sinks, dst, n, c.qkv_rows(), static_cast<int32_t>(width), cache.seq_stride,
                             cache.capacity, window, scale, c.num_heads, c.num_kv_heads, c.head_dim});
      continue;
    }
    const Kernel& dec = k_.get(decode_variant(S, bf16));
    const Kernel& comb = k_.get("attention_combine_s" + std::to_string(S) + (out_bf16 ? "_bf16" : "_f32"));
    dec.launch(stream_, {static_cast<unsigned>(n), static_cast<unsigned>(c.num_kv_heads), static_cast<unsigned>(S)},
               {qkv + static_cast<size_t>(t0) * c.qkv_rows(), positions + t0, seqs + t0, cache.k, cache.v,
                scratch_->part_ml, scratch_->part_o, n, c.qkv_rows(), cache.seq_stride, cache.capacity, window, scale,
                c.num_heads, c.num_kv_heads, c.head_dim});
    comb.launch(stream_, {static_cast<unsigned>(n), static_cast<unsigned>(c.num_heads), 1},
                {scratch_->part_ml, scratch_->part_o, sinks, dst, n, c.num_heads, c.head_dim,
                 static_cast<int32_t>(width)});
  }
}

void CudaExecutor::attention(const float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                             const uint16_t* sinks, const KVCacheLayer& cache, int window, float* out) {
  attention_to(qkv, positions, seqs, count, sinks, cache, window, out, false);
}

void CudaExecutor::attention_to(const float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                                const uint16_t* sinks, const KVCacheLayer& cache, int window, void* out,
                                bool out_bf16) {
  const ModelConfig& c = config_;
  if (tiles_ > 0 && count >= kPrefillAttentionMin) {
    const bool bf16 = cache.dtype == KVDType::kBF16;
    const Kernel& k = k_.get(prefill_variant(bf16, out_bf16));
    const int width = c.num_heads * c.head_dim;
    k.launch(stream_, {static_cast<unsigned>(tiles_), static_cast<unsigned>(c.num_heads), 1},
             {qkv, scratch_->attn_tiles, cache.k, cache.v, sinks, out, tiles_, c.qkv_rows(), width, cache.seq_stride,
              cache.capacity, window, 1.0f / std::sqrt(static_cast<float>(c.head_dim)), c.num_heads, c.num_kv_heads,
              c.head_dim});
    return;
  }
  attention_decode(qkv, positions, seqs, count, sinks, cache, window, static_cast<float*>(out), out_bf16);
}

void CudaExecutor::router(const float* x, int count, const BF16Matrix& r, int k, int32_t* ids, float* weights) {
  linear_matrix(x, nullptr, count, r.data, r.bias, r.rows, r.cols, scratch_->router_logits, r.rows, false);
  const int be = r.rows <= 32 ? 32 : r.rows <= 128 ? 128 : 512;
  GON_CHECK(r.rows <= 512, kUnsupportedCheckpoint, "cuda: models with more than 512 experts are not supported");
  k_.get("topk_softmax_e" + std::to_string(be))
      .launch(stream_, {static_cast<unsigned>(count), 1, 1}, {scratch_->router_logits, ids, weights, count, r.rows, k});
}

void CudaExecutor::moe(const float* x, int count, const int32_t* ids, const float* weights, int k,
                       const LayerWeights& L, float* y) {
  moe_experts(x, nullptr, count, ids, weights, k, L, y);
}

void CudaExecutor::moe_experts(const float* x, const uint16_t* xb, int count, const int32_t* ids,
                               const float* weights, int k, const LayerWeights& L, float* y) {
  const ModelConfig& c = config_;
  const int H = c.hidden_size, I = c.intermediate_size, E = c.num_experts;
  Scratch& s = *scratch_;
  if (count <= kMaxMoeGemvTokens) {
    const bool one = count == 1 && one_row_kernels() && k_.has("moe_mlp1_gemv1") && k_.has("moe_mlp2_gemv1");
    const Kernel& m1 = k_.get(one ? "moe_mlp1_gemv1" : "moe_mlp1_gemv");
    const Kernel& m2 = k_.get(one ? "moe_mlp2_gemv1" : "moe_mlp2_gemv");
    const int64_t bn1 = m1.constexpr_value("BLOCK_N"), bn2 = m2.constexpr_value("BLOCK_N");
    m1.launch(stream_, {static_cast<unsigned>(count * k), static_cast<unsigned>((2 * I + bn1 - 1) / bn1), 1},
              {x, ids, L.mlp1.blocks, L.mlp1.scales, L.mlp1.bias, s.act, count, H, I, k, c.swiglu_limit,
               c.swiglu_alpha});
    m2.launch(stream_, {static_cast<unsigned>(count), static_cast<unsigned>((H + bn2 - 1) / bn2), 1},
              {s.act, ids, weights, L.mlp2.blocks, L.mlp2.scales, L.mlp2.bias, y, count, H, I, k});
    return;
  }
  const int P = count * k;
  const std::string family = moe_family(P);
  const bool mma = uses_gemm_mma(family);
  const Kernel& sort = k_.get("moe_sort" + family);
  const Kernel& m1 = k_.get(mma ? std::string("moe_mlp1_gemm_mma") : "moe_mlp1_gemm" + family);
  const Kernel& m2 = k_.get(mma ? std::string("moe_mlp2_gemm_mma") : "moe_mlp2_gemm" + family);
  const Kernel& comb = k_.get("moe_combine");
  sort.launch(stream_, {1, 1, 1}, {ids, P, E, s.pair_order, s.pair_pos, s.moe_tiles, s.moe_num_tiles});
  // The experts read bf16 activations (tensor cores; the xg form for moe_gemm_mma.py): s.xb, filled here unless
  // the caller did.
  if (xb != s.xb) {
    const Kernel& cast = k_.get(mma ? "cast_xg" : "cast_bf16");
    const int64_t n = static_cast<int64_t>(count) * H, cb = cast.constexpr_value("BLOCK");
    cast.launch(stream_, {static_cast<unsigned>((n + cb - 1) / cb), 1, 1}, {x, s.xb, n});
  }
  const int bm = static_cast<int>(sort.constexpr_value("BLOCK_M"));
  const int max_tiles = (P + bm - 1) / bm + E;
  if (mma) {
    // W warps of 16 weight rows per program
    const int64_t w1 = m1.constexpr_value("W"), w2 = m2.constexpr_value("W");
    m1.launch(stream_, {static_cast<unsigned>(max_tiles), static_cast<unsigned>((2 * I / 16 + w1 - 1) / w1), 1},
              {s.xb, s.pair_order, s.moe_tiles, s.moe_num_tiles, L.mlp1.blocks, L.mlp1.scales, L.mlp1.bias, s.act_b,
               H, I, k, c.swiglu_limit, c.swiglu_alpha});
    m2.launch(stream_, {static_cast<unsigned>(max_tiles), static_cast<unsigned>((H / 16 + w2 - 1) / w2), 1},
              {s.act_b, s.moe_tiles, s.moe_num_tiles, L.mlp2.blocks, L.mlp2.scales, L.mlp2.bias, s.y2, H, I});
  } else {
    const int64_t bn1 = m1.constexpr_value("BLOCK_N"), bn2 = m2.constexpr_value("BLOCK_N");
    m1.launch(stream_, {static_cast<unsigned>(max_tiles), static_cast<unsigned>((2 * I + bn1 - 1) / bn1), 1},
              {s.xb, s.pair_order, s.moe_tiles, s.moe_num_tiles, L.mlp1.blocks, L.mlp1.scales, L.mlp1.bias, s.act_b,
               H, I, k, c.swiglu_limit, c.swiglu_alpha});
    m2.launch(stream_, {static_cast<unsigned>(max_tiles), static_cast<unsigned>((H + bn2 - 1) / bn2), 1},
              {s.act_b, s.moe_tiles, s.moe_num_tiles, L.mlp2.blocks, L.mlp2.scales, L.mlp2.bias, s.y2, H, I});
  }
  const int64_t bh = comb.constexpr_value("BLOCK_H");
  comb.launch(stream_, {static_cast<unsigned>(count), static_cast<unsigned>((H + bh - 1) / bh), 1},
              {s.y2, s.pair_pos, weights, y, count, H, k});
}

bool CudaExecutor::uses_gemm_mma(const std::string& family) const {
  const ModelConfig& c = config_;
  return family == "_m16" && gemm_mma() && c.hidden_size <= kernels_mma_k_max() &&
         c.intermediate_size <= kernels_mma_k_max() &&
         k_.has("moe_mlp1_gemm_mma") && k_.has("moe_mlp2_gemm_mma") && k_.has("cast_xg") &&
         k_.has("moe_route_e32_xg");
}

void CudaExecutor::unembed(const float* x, int rows, float* logits) {
  const BF16Matrix& u = weights_.unembedding;
  linear_matrix(x, nullptr, rows, u.data, nullptr, u.rows, u.cols, logits, u.rows, false);
}

void CudaExecutor::sample(const float* logits, int rows, const SampleParams* params, const uint8_t* mask,
                          int32_t* tokens, float* logprobs) {
  if (rows <= 0) return;
  // The sampling kernels in order (triton_kernels/sampling.py); rows finish
  // after sample_probs (greedy), sample_step0 (top_p = 1) or sample_step6, and
  // the sequence stops once every row of this step is known to be done.
  static const char* const kSequence[9] = {"sample_reduce", "sample_probs", "sample_step0",
                                           "sample_step1",  "sample_step2", "sample_step3",
                                           "sample_step4",  "sample_step5", "sample_step6"};
  const int V = config_.vocab_size;
  const unsigned chunks = static_cast<unsigned>((V + kSampleChunk - 1) / kSampleChunk);
  const int launches = sample_launches_ > 0 ? sample_launches_ : 9;
  // Rows without use_mask ignore the mask; the buffer must exist all the same.
  const void* m = mask != nullptr ? static_cast<const void*>(mask) : static_cast<const void*>(buf_.mask);
  for (int i = 0; i < launches; ++i) {
    const Kernel& k = k_.get(kSequence[i]);
    k.launch(stream_, {static_cast<unsigned>(rows), chunks, 1},
             {logits, params, params, params, m, scratch_->sample_work, scratch_->sample_work,
              scratch_->sample_probs, tokens, logprobs, rows, V});
  }
}

int CudaExecutor::sample_launches(const SampleParams* host_params, int rows) {
  int need = 2;
  for (int r = 0; r < rows; ++r) {
    if (host_params[r].temperature == 0.0f) continue;
    need = std::max(need, host_params[r].top_p >= 1.0f ? 3 : 9);
  }
  return need;
}

// ---- fused blocks ----------------------------------------------------------------------

void CudaExecutor::attention_block(int layer, const StepShape& s) {
  const ModelConfig& c = config_;
  const LayerWeights& L = weights_.layers[layer];
  const int T = s.num_tokens, H = c.hidden_size;
  const BF16Matrix qkv{L.q.data, L.q.bias, c.qkv_rows(), H};
  const KVCacheLayer& cache = kv_layer(layer);
  const std::string fused =
      "qkv_rope_gemv_m" + std::to_string(bucket(T)) + (cache.dtype == KVDType::kBF16 ? "_bf16" : "_f32");
  if (T <= 2 && T <= gemv_rows() && fused_rope() && k_.has(fused) &&
      c.head_dim % k_.get(fused).constexpr_value("BLOCK_N") == 0 && k_.get(fused).constexpr_value("BLOCK_N") % 2 == 0) {
    // One launch for the RMSNorm, the qkv product, rope and the KV-cache store (each program's rows are rope
    // pairs of one head, which it rotates and stores).
    const Kernel& k = k_.get(fused);
    k.launch(stream_, {static_cast<unsigned>((c.qkv_rows() + k.constexpr_value("BLOCK_N") - 1) /
                                             k.constexpr_value("BLOCK_N")), 1, 1},
             {buf_.x, L.attn_norm, qkv.data, qkv.bias, buf_.qkv, T, c.qkv_rows(), H, c.rms_norm_eps,
              device_inputs_.positions, device_inputs_.seqs, weights_.rope_inv_freq, cache.k, cache.v,
              cache.seq_stride, cache.capacity, weights_.rope_scaling, c.num_heads, c.num_kv_heads, c.head_dim});
    attention(buf_.qkv, device_inputs_.positions, device_inputs_.seqs, T, L.sinks, cache,
              L.sliding ? c.sliding_window : 0, buf_.attn);
    linear_matrix(buf_.attn, nullptr, T, L.out.data, L.out.bias, H, L.out.cols, buf_.x, H, true);
    return;
  }
  if (T <= gemv_rows()) {
    // rmsnorm fused into the qkv product; out-projection accumulates into x.
    launch_gemv(buf_.x, nullptr, L.attn_norm, qkv, T, c.qkv_rows(), buf_.qkv, c.qkv_rows(), false);
  } else if (T <= kMaxSplitGemmTokens) {
    rmsnorm(buf_.x, nullptr, T, H, L.attn_norm, c.rms_norm_eps, buf_.xn);
    linear_matrix(buf_.xn, nullptr, T, qkv.data, qkv.bias, qkv.rows, H, buf_.qkv, c.qkv_rows(), false);
  } else {
    k_.get("rmsnorm_bf16").launch(stream_, {static_cast<unsigned>(T), 1, 1},
                                  {buf_.x, device_inputs_.tokens, L.attn_norm, scratch_->xb, T, H, c.rms_norm_eps});
    linear_matrix(nullptr, scratch_->xb, T, qkv.data, qkv.bias, qkv.rows, H, buf_.qkv, c.qkv_rows(), false);
  }
  rope_kv_store(buf_.qkv, device_inputs_.positions, device_inputs_.seqs, T, kv_layer(layer));
  if (T > kMaxSplitGemmTokens && fused_route()) {
    // The out projection reads bf16 activations here (tensor cores): the attention writes them so.
    attention_to(buf_.qkv, device_inputs_.positions, device_inputs_.seqs, T, L.sinks, kv_layer(layer),
                 L.sliding ? c.sliding_window : 0, scratch_->xb, true);
    linear_matrix(nullptr, scratch_->xb, T, L.out.data, L.out.bias, H, L.out.cols, buf_.x, H, true);
    return;
  }
  attention(buf_.qkv, device_inputs_.positions, device_inputs_.seqs, T, L.sinks, kv_layer(layer),
            L.sliding ? c.sliding_window : 0, buf_.attn);
  linear_matrix(buf_.attn, nullptr, T, L.out.data, L.out.bias, H, L.out.cols, buf_.x, H, true);
}

void CudaExecutor::moe_block(int layer, const StepShape& s) {
  const ModelConfig& c = config_;
  const LayerWeights& L = weights_.layers[layer];
  const int T = s.num_tokens, k = c.experts_per_token, H = c.hidden_size, I = c.intermediate_size;
  const int E = L.router.rows;
  const int be = E <= 32 ? 32 : 128;
  const std::string m1_name = "moe_mlp1_route_gemv1_e" + std::to_string(be);
  const std::string m2_name = "moe_mlp2_route_gemv1_e" + std::to_string(be);
  const std::string mma1 = "moe_mlp1_route_mma_e" + std::to_string(be);
  const std::string mma2 = "moe_mlp2_route_mma";
  if (T == 1 && E <= 128 && H <= kernels_mma_k_max() && I <= kernels_mma_k_max() && mma_moe() && L.router.bias &&
      k_.has("moe_router_hilo") && k_.has(mma1) && k_.has(mma2)) {
    // One token on the tensor cores (triton_kernels/moe_mma.py): the router product with the RMSNorm fused also
    // writes the normalised x in hilo form; mlp1's programs derive their expert from the logits, write the
    // activations in hilo form and (the first of each expert) the expert and its softmax numerator, which mlp2
    // reads; the last mlp2 program of a 16-row tile adds the experts' rows into x in order.
    Scratch& sc = *scratch_;
    const Kernel& r = k_.get("moe_router_hilo");
    const int64_t bn = r.constexpr_value("BLOCK_N");
    r.launch(stream_, {static_cast<unsigned>((E + bn - 1) / bn), 1, 1},
             {buf_.x, L.mlp_norm, c.rms_norm_eps, L.router.data, L.router.bias, sc.router_logits, sc.xh, E, H});
    const Kernel& k1 = k_.get(mma1);
    const int64_t tiles1 = k1.constexpr_value("W_R") * k1.constexpr_value("RT");  // 16-row tiles per program
    k1.launch(stream_, {static_cast<unsigned>(k), static_cast<unsigned>((2 * I / 16 + tiles1 - 1) / tiles1), 1},
              {sc.xh, sc.router_logits, E, L.mlp1.blocks, L.mlp1.scales, L.mlp1.bias, sc.act_h, buf_.expert_ids,
               buf_.expert_weights, H, I, k, c.swiglu_limit, c.swiglu_alpha});
    const Kernel& k2 = k_.get(mma2);
    const int64_t tiles2 = k2.constexpr_value("W_R") * k2.constexpr_value("RT");
    k2.launch(stream_, {static_cast<unsigned>(k), static_cast<unsigned>((H / 16 + tiles2 - 1) / tiles2), 1},
              {sc.act_h, buf_.expert_ids, buf_.expert_weights, L.mlp2.blocks, L.mlp2.scales, L.mlp2.bias,
               sc.moe_part, sc.moe_count, buf_.x, H, I, k});
    return;
  }
  if (T == 1 && E <= 128 && one_row_kernels() && routed_moe() && k_.has(m1_name) && k_.has(m2_name)) {
    // One token: three launches. The router product with the RMSNorm fused, then the expert products, each
    // deriving the top-k from the router logits itself (mlp1 with the RMSNorm fused as well).
    Scratch& sc = *scratch_;
    launch_gemv(buf_.x, nullptr, L.mlp_norm, L.router, 1, E, sc.router_logits, E, false);
    const Kernel& m1 = k_.get(m1_name);
    const int64_t bn1 = m1.constexpr_value("BLOCK_N");
    m1.launch(stream_, {static_cast<unsigned>(k), static_cast<unsigned>((2 * I + bn1 - 1) / bn1), 1},
              {buf_.x, L.mlp_norm, c.rms_norm_eps, sc.router_logits, E, L.mlp1.blocks, L.mlp1.scales, L.mlp1.bias,
               sc.act, 1, H, I, k, c.swiglu_limit, c.swiglu_alpha});
    const std::string split_name = "moe_mlp2_route_split_e" + std::to_string(be);
    if (split_moe() && k_.has(split_name)) {
      // mlp2 as (expert, row tile, slice) programs; the last of a tile's to finish adds them into x
      const Kernel& m2 = k_.get(split_name);
      const int64_t bn2 = m2.constexpr_value("BLOCK_N"), split = m2.constexpr_value("SPLIT");
      GON_CHECK(split <= kMaxMoeSplit && bn2 >= 16, kInternal, "cuda: ", split_name, " tile exceeds its scratch");
      m2.launch(stream_, {static_cast<unsigned>(k), static_cast<unsigned>((H + bn2 - 1) / bn2),
                          static_cast<unsigned>(split)},
                {sc.act, sc.router_logits, E, L.mlp2.blocks, L.mlp2.scales, L.mlp2.bias, sc.moe_part, sc.moe_count,
                 buf_.x, H, I, k});
      return;
    }
    const Kernel& m2 = k_.get(m2_name);
    const int64_t bn2 = m2.constexpr_value("BLOCK_N");
    m2.launch(stream_, {1, static_cast<unsigned>((H + bn2 - 1) / bn2), 1},
              {sc.act, sc.router_logits, E, L.mlp2.blocks, L.mlp2.scales, L.mlp2.bias, buf_.x, 1, H, I, k});
    return;
  }
  const bool grouped = T > kMaxMoeGemvTokens;
  const std::string route = std::string("moe_route_e32") +
                            (!grouped ? "_f32" : uses_gemm_mma(moe_family(T * k)) ? "_xg" : "_bf16");
  if (T <= kMaxGraphTokens && be == 32 && L.router.bias && fused_route() && k_.has(route)) {
    // Decode batches: the RMSNorm, the router product (fp32) and its top-k in one launch per step, writing the
    // experts' input in the form they read (bf16, or the xg form where uses_gemm_mma, for the grouped products). Up to 32 experts: each program reads
    // the whole router (184 KB for the 20b); with 128 (120b, 737 KB) it made batch-8 and batch-64 steps slower.
    void* xn = grouped ? static_cast<void*>(scratch_->xb) : static_cast<void*>(buf_.xn);
    k_.get(route).launch(stream_, {static_cast<unsigned>(T), 1, 1},
                         {buf_.x, L.mlp_norm, c.rms_norm_eps, L.router.data, L.router.bias, xn, buf_.expert_ids,
                          buf_.expert_weights, H, E, k});
    moe_experts(buf_.xn, grouped ? scratch_->xb : nullptr, T, buf_.expert_ids, buf_.expert_weights, k, L, buf_.x);
    return;
  }
  rmsnorm(buf_.x, nullptr, T, c.hidden_size, L.mlp_norm, c.rms_norm_eps, buf_.xn);
  router(buf_.xn, T, L.router, k, buf_.expert_ids, buf_.expert_weights);
  moe(buf_.xn, T, buf_.expert_ids, buf_.expert_weights, k, L, buf_.x);
}

void CudaExecutor::output_block(const StepShape& s) {
  const ModelConfig& c = config_;
  const int R = s.num_outputs;
  float* logits = buf_.logits + static_cast<size_t>(s.output_offset) * c.vocab_size;
  if (R <= gemv_rows()) {
    // Final norm of the output rows fused into the unembedding.
    launch_gemv(buf_.x, device_inputs_.output_rows, weights_.final_norm, weights_.unembedding, R, c.vocab_size, logits,
                c.vocab_size, false);
  } else {
    rmsnorm(buf_.x, device_inputs_.output_rows, R, c.hidden_size, weights_.final_norm, c.rms_norm_eps, buf_.xn);
    unembed(buf_.xn, R, logits);
  }
  if (s.sample)
    sample(logits, R, device_inputs_.params, mask_set_ ? buf_.mask : nullptr, buf_.sampled + s.output_offset,
           buf_.logprobs + s.output_offset);
}

}  // namespace gon::cuda
