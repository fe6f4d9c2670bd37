// The op harness: every fine operation of ComposedExecutor (embed, rmsnorm,
// linear, rope_kv_store, attention, router, moe, unembed, sample) and every
// block of Executor (attention_block, moe_block, output_block, and a whole
// forward step) on every backend this binary can run, against float64
// references written here from the model's definition (gpt-oss-model.md: the
// formulas, not the runtime's code), in the manner of ggml's test-backend-ops.
//
// Backends: the CPU backend with each kernel set this machine runs ("generic"
// always, "avx2" and "avx512bf16" where the CPU has them) and CUDA when it is built and a
// usable GPU is present. Several small model configurations with odd shapes
// (head_dim 40, 20 and 16, 1 to 8 query heads per kv head, intermediate != hidden,
// 4 to 8 experts, top-k 1 to 4, windows 3 to 8, vocabularies that are not a
// multiple of 16), random weights at realistic scales, executors with one and
// three sequence slots, fp32 and bf16 KV caches and rings smaller than the
// context so positions wrap. Inputs are fresh random values (never zeros),
// moved to backend memory with Backend::allocate + copy_to_device; outputs are
// poisoned with NaN first, so an element left unwritten fails.
//
// Error measure: max |got - ref| / max |ref| over an output (for operations
// that add into their output, over the added part, so a large old value cannot
// hide an error). Each tolerance is stated with its reason where it is defined.
//
// Sampling is checked token for token against the previous implementation of
// the rule (copied below), allowing a different token only where the draw lies
// within 1e-9 (relative) of a running-sum boundary; such rows are counted.
//
// `test_ops --time` (not run by ctest) times each operation and block on every
// backend at gpt-oss-20b shapes with synthetic weights and prints a table
// (op_timing.hpp). The references live in op_reference.hpp, the backend
// plumbing in op_harness.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/composed.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "backend/registry.hpp"
#include "core/bf16.hpp"
#include "core/checkpoint.hpp"
#include "core/forward.hpp"
#include "core/sampler.hpp"
#include "op_harness.hpp"
#include "op_reference.hpp"
#include "op_timing.hpp"
#include "test_util.hpp"

namespace {

using namespace gon_test::ops;
using gon::BF16Matrix;
using gon::Backend;
using gon::ComposedExecutor;
using gon::Executor;
using gon::ExecutorOptions;
using gon::KVCacheLayer;
using gon::KVDType;
using gon::LayerWeights;
using gon::ModelConfig;
using gon::ModelWeights;
using gon::SampleParams;
using gon::StepInputs;
using gon::StepShape;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int kThreads = 2;  // > 1 so that work is split across threads

// ---- tolerances (max |delta| / max |ref|) -------------------------------------
// Exact: embed converts bf16 to fp32, which is exact.
constexpr double kTolExact = 0.0;
// fp32 products and reductions of length <= a few hundred from bf16/MXFP4
// weights, fp32 rotations, fp32 softmax: a few fp32 roundings per element (the
// CPU kernels' contract is about 1e-5 relative to an fp32 reference,
// matmul.hpp).
constexpr double kTolF32 = 1e-5;
// A block chains several fp32 operations (rmsnorm, a product, rope, attention,
// a product), each within the above: their errors add.
constexpr double kTolBlockF32 = 5e-5;
// A bf16 KV cache: the reference rounds what it stores to bf16 as the cache
// does, but a key or value whose fp32 value lies within fp32 error of a bf16
// rounding boundary may round the other way in the backend: that element is
// off by 2^-8 relative, which moves an output by up to a few 1e-3.
constexpr double kTolBF16KV = 1e-2;
// A 2-layer forward pass: about ten fp32 operations in sequence, the residual
// stream growing through the experts (large MXFP4 scales); with a bf16 cache,
// the rounding flips above on top.
constexpr double kTolForwardF32 = 1e-4;
constexpr double kTolForwardBF16 = 1e-2;
// CUDA runs products of more than 8 rows (experts: more than 4 tokens) on the
// tensor cores with bf16 activations and fp32 accumulation: each activation
// rounded to 8 significant bits (2^-9 relative) moves a product by up to a few
// 1e-3 of its scale (seen: 2e-3 for the dense products, 7e-3 through both
// expert products), and router logits likewise, so near ties within that
// margin may pick either expert.
constexpr double kTolTensorCores = 2e-2;
constexpr double kRouterNearTieTensorCores = 1e-2;
// A whole 2-layer forward step on the tensor cores (seen: up to 3.1e-2).
constexpr double kTolForwardTensorCores = 5e-2;
bool tensor_cores(const std::string& backend, int rows, int threshold) { return backend == "cuda" && rows > threshold; }
double tol_products(const std::string& backend, int rows, int threshold = 8) {
  return tensor_cores(backend, rows, threshold) ? kTolTensorCores : kTolF32;
}
double tol_block(const std::string& backend, int rows, int threshold = 8) {
  return tensor_cores(backend, rows, threshold) ? kTolTensorCores : kTolBlockF32;
}
// Router choices whose k-th and (k+1)-th logits are closer than this (relative
// to the row's largest |logit|) may legitimately differ in fp32: those tokens
// are counted and left out of the id comparison.
constexpr double kRouterNearTie = 2e-5;
// With a bf16 KV cache, keys or values that round the other way (see
// kTolBF16KV) move the residual stream by up to about 1e-4 (relative) before
// the next router.
constexpr double kRouterNearTieBF16 = 3e-4;
// Sampling: a different token is accepted only where the draw lies within this
// (relative) of a running-sum boundary of the previous rule.
constexpr double kDrawBoundary = 1e-9;
// Logprobs are computed in double and rounded to float.
constexpr double kTolLogprob = 1e-5;

// ---- results, for the checks and the summary table ---------------------------
struct OpRecord {
  double worst = 0.0;  // largest error / tolerance ratio seen (error itself in `err`)
  double err = 0.0;
  double tol = 0.0;
  int checks = 0;
  int failed = 0;
  bool measured = false;  // some check had a tolerance (else all were exact comparisons)
};
std::map<std::pair<std::string, std::string>, OpRecord>& records() {
  static std::map<std::pair<std::string, std::string>, OpRecord> r;
  return r;
}

// Error statistics of one output against its reference.
struct ErrStat {
  double max_abs = 0.0;
  double max_ref = 0.0;
  size_t not_finite = 0;  // got NaN/inf where the reference is finite (e.g. unwritten)
  size_t n = 0;
  // `scale`: the magnitude this element contributes to the denominator (the
  // reference value, or the added part for accumulating operations).
  void add(double got, double ref, double scale) {
    ++n;
    if (!std::isfinite(got)) {
      ++not_finite;
      return;
    }
    max_abs = std::max(max_abs, std::fabs(got - ref));
    max_ref = std::max(max_ref, std::fabs(scale));
  }
  void add(double got, double ref) { add(got, ref, ref); }
  double rel() const {
    if (not_finite > 0) return kInf;
    if (max_abs == 0.0) return 0.0;
    return max_abs / std::max(max_ref, 1e-300);
  }
};

void check_err(const std::string& op, const std::string& backend, const std::string& where, const ErrStat& e,
               double tol) {
  OpRecord& r = records()[{op, backend}];
  const double rel = e.rel();
  ++r.checks;
  const double ratio = tol > 0 ? rel / tol : (rel > 0 ? kInf : 0.0);
  if (ratio >= r.worst || !r.measured) {
    r.measured = true;
    r.worst = ratio;
    r.err = rel;
    r.tol = tol;
  }
  if (e.n == 0) {
    std::printf("  %s on %s (%s): nothing compared\n", op.c_str(), backend.c_str(), where.c_str());
    ++r.failed;
    ++gon_test::failures();
    return;
  }
  if (!(rel <= tol)) {
    std::printf("  FAIL %s on %s (%s): max|delta|/max|ref| = %.3g (tolerance %.3g; %zu of %zu elements not finite)\n",
                op.c_str(), backend.c_str(), where.c_str(), rel, tol, e.not_finite, e.n);
    ++r.failed;
    ++gon_test::failures();
  }
}

// A check of exact agreement (ids, tokens, bits), recorded under `op`.
void check_true(const std::string& op, const std::string& backend, const std::string& where, bool ok,
                const std::string& detail = "") {
  OpRecord& r = records()[{op, backend}];
  ++r.checks;
  if (!ok) {
    std::printf("  FAIL %s on %s (%s)%s%s\n", op.c_str(), backend.c_str(), where.c_str(), detail.empty() ? "" : ": ",
                detail.c_str());
    ++r.failed;
    ++gon_test::failures();
  }
}

// Odd shapes on purpose (see the top of the file). Layer 0 slides, layer 1 sees everything.
const Spec kSpecs[] = {
    {"H64 I96 hd16 q4/kv4 E4 k1 W3 V301", 64, 96, 16, 4, 4, 4, 1, 3, 301, 2},
    {"H96 I160 hd40 q8/kv1 E8 k4 W8 V997", 96, 160, 40, 8, 1, 8, 4, 8, 997, 2},
    {"H64 I128 hd16 q8/kv2 E6 k2 W5 V517", 64, 128, 16, 8, 2, 6, 2, 5, 517, 2},
    {"H96 I64 hd40 q4/kv2 E5 k3 W6 V613", 96, 64, 40, 4, 2, 5, 3, 6, 613, 2},
    {"H64 I32 hd16 q40/kv1 E7 k2 W4 V1000", 64, 32, 16, 40, 1, 7, 2, 4, 1000, 2},
    {"H64 I96 hd20 q8/kv2 E4 k2 W5 V333", 64, 96, 20, 8, 2, 4, 2, 5, 333, 2},  // a head_dim not a multiple of 8
};

std::vector<std::unique_ptr<HostModel>>& models() {
  static std::vector<std::unique_ptr<HostModel>> v = [] {
    std::vector<std::unique_ptr<HostModel>> r;
    uint64_t salt = 100;
    for (const Spec& s : kSpecs) r.push_back(make_model(s, gon_test::seed() + salt++));
    return r;
  }();
  return v;
}

// A model prepared for one backend, with the weights in its memory.
struct Prepared {
  const HostModel* host;
  std::unique_ptr<ModelWeights> w;
};
Prepared prepare(Backend& be, const HostModel& m) { return {&m, be.prepare_weights(m.w, m.c, {})}; }

// Executor options: rings smaller than the context so positions wrap; the ring
// holds the window plus a whole step of new keys (as Context sizes it).
ExecutorOptions exec_options(const Backend& be, const ModelConfig& c, int num_seqs, KVDType kv, int max_tokens = 24) {
  ExecutorOptions o;
  o.max_tokens = max_tokens;
  o.max_outputs = 24;
  o.logits_rows = 30;
  o.num_seqs = num_seqs;
  o.context_length = 83;  // full layers: a capacity that is not a whole number of KV blocks
  const int block = be.kv_block_positions();
  o.ring_capacity = std::min(o.context_length, (c.sliding_window + o.max_tokens - 1 + block - 1) / block * block);
  o.kv_dtype = kv;
  return o;
}

struct Variant {
  int num_seqs;
  KVDType kv;
};
const Variant kVariants[] = {{1, KVDType::kF32}, {3, KVDType::kF32}, {3, KVDType::kBF16}};

std::string variant_name(const Variant& v) {
  return fmt("%d seq%s, %s KV", v.num_seqs, v.num_seqs > 1 ? "s" : "", gon::kv_dtype_name(v.kv));
}

// Fills a KV cache layer (every sequence slot) with NaN, so that a read of a
// position never written shows.
void poison_kv(Backend& be, const KVCacheLayer& L, int num_seqs) {
  const size_t n = static_cast<size_t>(L.seq_stride) * num_seqs;
  if (L.dtype == KVDType::kBF16) {
    std::vector<uint16_t> nan(n, 0x7fc0);
    be.copy_to_device(L.k, nan.data(), n * 2);
    be.copy_to_device(L.v, nan.data(), n * 2);
  } else {
    std::vector<float> nan(n, kNaN);
    be.copy_to_device(L.k, nan.data(), n * 4);
    be.copy_to_device(L.v, nan.data(), n * 4);
  }
}

// Compares sampled tokens and logprobs of `rows` rows with the previous rule.
// Returns the number of rows whose tokens differ within the draw boundary.
int check_sampled(const std::string& op, const std::string& backend, const std::string& where, const float* logits,
                  int rows, int V, const SampleParams* params, const uint8_t* mask, const int32_t* tokens,
                  const float* logprobs) {
  int boundary = 0;
  for (int r = 0; r < rows; ++r) {
    const float* l = logits + size_t(r) * V;
    const RuleResult ref = rule_sample(l, V, params[r], mask);
    const SampleParams& p = params[r];
    const std::string row = fmt("%s, row %d (T %.2f, top_p %.2f, mask %d, seed %llu, counter %llu)", where.c_str(), r,
                                p.temperature, p.top_p, p.use_mask, (unsigned long long)p.seed,
                                (unsigned long long)p.counter);
    if (tokens[r] != ref.token) {
      const double margin = (tokens[r] >= 0 && tokens[r] < V) ? draw_margin(l, V, p, mask, ref.token) : kInf;
      if (margin <= kDrawBoundary) {
        ++boundary;
        std::printf("  note: %s on %s: %s: token %d vs previous rule %d, the draw %.2g (relative) from a boundary\n",
                    op.c_str(), backend.c_str(), row.c_str(), tokens[r], ref.token, margin);
        continue;
      }
      check_true(op, backend, row, false,
                 fmt("token %d, previous rule %d (draw margin %.3g)", tokens[r], ref.token, margin));
      continue;
    }
    const bool both_nan = std::isnan(ref.logprob) && std::isnan(logprobs[r]);
    const bool lp_ok = both_nan || std::fabs(double(logprobs[r]) - ref.logprob) <=
                                       kTolLogprob * std::max(1.0, std::fabs(double(ref.logprob)));
    check_true(op, backend, row, lp_ok, fmt("logprob %.9g, previous rule %.9g", logprobs[r], ref.logprob));
  }
  return boundary;
}

// ---- executors -----------------------------------------------------------------
struct Setup {
  BackendUnderTest* be;
  Prepared prepared;
  std::unique_ptr<Executor> ex;
  // The executor's fine operations, or nullptr (said once per backend) when
  // it does not expose them: then only its blocks are tested.
  ComposedExecutor* composed() const {
    auto* ce = dynamic_cast<ComposedExecutor*>(ex.get());
    static std::set<std::string> said;
    if (ce == nullptr && said.insert(be->name).second)
      std::printf("  note: %s's executor has no fine operations (not a ComposedExecutor): blocks only\n",
                  be->name.c_str());
    return ce;
  }
};

Setup make_setup(BackendUnderTest& b, const HostModel& m, const ExecutorOptions& o) {
  Setup s{&b, prepare(*b.backend, m), nullptr};
  s.ex = b.backend->create_executor(*s.prepared.w, m.c, o);
  return s;
}

// Steps over `num_seqs` sequence slots that cover: a 17-token prefill, decode of
// one token, one token per slot, 17 tokens of three sequences interleaved in
// the batch, an odd step with slots in reverse order, and a 17-token chunk that
// takes a sequence past the ring's capacity (positions wrap); every step reads
// keys stored by earlier steps. Per step and sequence at most 17 tokens, so the
// ring (window + 23, rounded up) never drops a key a token of the step needs.
std::vector<Step> schedule(int num_seqs) {
  std::vector<int> next(num_seqs, 0);
  std::vector<Step> steps;
  auto take = [&](Step& s, int seq, int n) {
    for (int i = 0; i < n; ++i) s.push_back({seq, next[seq]++});
  };
  if (num_seqs == 1) {
    for (int n : {17, 1, 3, 17, 5, 17, 1}) {
      Step s;
      take(s, 0, n);
      steps.push_back(s);
    }
    return steps;
  }
  Step s;
  take(s, 0, 10);
  take(s, 1, 7);
  steps.push_back(s);
  s.clear();
  take(s, 0, 1);
  steps.push_back(s);
  s.clear();
  for (int q = 0; q < 3; ++q) take(s, q, 1);
  steps.push_back(s);
  s.clear();
  for (int i = 0; i < 6; ++i) {  // interleaved: 2, 0, 1, 2, 0, 1, ...
    take(s, 2, 1);
    take(s, 0, 1);
    if (i < 5) take(s, 1, 1);
  }
  steps.push_back(s);
  s.clear();
  take(s, 1, 2);
  take(s, 0, 3);
  steps.push_back(s);
  s.clear();
  take(s, 0, 17);
  steps.push_back(s);
  s.clear();
  take(s, 2, 1);
  take(s, 1, 1);
  take(s, 0, 1);
  steps.push_back(s);
  return steps;
}

std::vector<int32_t> step_positions(const Step& s) {
  std::vector<int32_t> v;
  for (auto& [q, p] : s) v.push_back(p);
  return v;
}
std::vector<int32_t> step_seqs(const Step& s) {
  std::vector<int32_t> v;
  for (auto& [q, p] : s) v.push_back(q);
  return v;
}

// Fills an executor's step inputs for a step.
void fill_inputs(Executor& ex, const std::vector<int32_t>& tokens, const Step& step) {
  StepInputs& in = ex.inputs();
  for (size_t t = 0; t < step.size(); ++t) {
    in.tokens[t] = tokens[t];
    in.seqs[t] = step[t].first;
    in.positions[t] = step[t].second;
  }
}

std::vector<BackendUnderTest>& backends() {
  static std::vector<BackendUnderTest> list = usable_backends(kThreads);
  return list;
}

}  // namespace

// =====================================================================================
TEST(backends_under_test) {
  int cpu = 0;
  for (auto& b : backends()) {
    std::printf("  backend %s: %s (%s)\n", b.name.c_str(), b.backend->description().c_str(),
                b.backend->host_addressable() ? "host memory" : "device memory");
    cpu += b.backend->name() == "cpu";
  }
  std::printf("  built: %s\n", gon::built_backends().c_str());
  CHECK(cpu >= 1);
  CHECK(gon::cpu::matmul_kernels("generic") != nullptr);
}

// The runtime's YaRN frequencies (core/checkpoint.cpp, fp32 steps) agree with
// the definition computed here in double, which the op references use.
TEST(rope_frequencies_match_the_definition) {
  for (int hd : {16, 40, 64}) {
    ModelConfig c;
    c.head_dim = hd;
    std::vector<double> ref;
    double conc = 0;
    yarn(c, ref, conc);
    std::vector<float> got;
    float factor = 0;
    gon::compute_rope(c, got, factor);
    CHECK(got.size() == ref.size());
    for (size_t i = 0; i < ref.size() && i < got.size(); ++i) CHECK_NEAR(got[i] / ref[i], 1.0, 2e-6);
    CHECK_NEAR(factor, conc, 1e-6);
  }
}

// The counter-based draw is the previous one.
TEST(uniform_draw_unchanged) {
  std::mt19937_64 rng(gon_test::seed() + 5);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t s = rng(), c = rng() % 100000;
    if (gon::uniform_from(s, c) != previous_rule::uniform_from(s, c)) {
      CHECK(gon::uniform_from(s, c) == previous_rule::uniform_from(s, c));
      break;
    }
  }
}

TEST(op_embed) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Setup s = make_setup(b, *m, exec_options(*b.backend, m->c, 1, KVDType::kF32));
      ComposedExecutor* ce = s.composed();
      if (!ce) continue;
      Backend& be = *b.backend;
      const int H = m->c.hidden_size, V = m->c.vocab_size;
      std::mt19937_64 rng(gon_test::seed() + 11);
      for (int T : {1, 3, 17}) {
        auto tokens = random_tokens(rng, T, V);
        tokens[0] = V - 1;  // the last row too
        auto dt = to_device(be, tokens);
        auto dx = to_device(be, std::vector<float>(size_t(T) * H, kNaN));
        ce->embed(dt->as<int32_t>(), T, dx->as<float>());
        ce->synchronize();
        auto x = dx->download<float>(size_t(T) * H);
        ErrStat e;
        for (int t = 0; t < T; ++t)
          for (int i = 0; i < H; ++i) e.add(x[size_t(t) * H + i], bf(m->embedding[size_t(tokens[t]) * H + i]));
        check_err("embed", b.name, fmt("%s, T=%d", m->name.c_str(), T), e, kTolExact);
      }
    }
}

TEST(op_rmsnorm) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Setup s = make_setup(b, *m, exec_options(*b.backend, m->c, 1, KVDType::kF32));
      ComposedExecutor* ce = s.composed();
      if (!ce) continue;
      Backend& be = *b.backend;
      const int H = m->c.hidden_size;
      std::mt19937_64 rng(gon_test::seed() + 12);
      for (int T : {1, 3, 17}) {
        for (bool with_rows : {false, true}) {
          // Rows of x, scaled differently per row (residual streams grow).
          const int X = with_rows ? T + 4 : T;
          auto x = randn(rng, size_t(X) * H, 1.0f);
          for (int r = 0; r < X; ++r)
            for (int i = 0; i < H; ++i) x[size_t(r) * H + i] *= std::pow(4.0f, float(r % 5) - 2.0f);
          std::vector<int32_t> rows(T);
          std::uniform_int_distribution<int> pick(0, X - 1);
          for (auto& r : rows) r = pick(rng);  // any order, repeats allowed
          auto dx = to_device(be, x);
          auto dr = to_device(be, rows);
          auto dy = to_device(be, std::vector<float>(size_t(T) * H, kNaN));
          const uint16_t* w = s.prepared.w->layers[0].attn_norm;
          ce->rmsnorm(dx->as<float>(), with_rows ? dr->as<int32_t>() : nullptr, T, H, w, m->c.rms_norm_eps,
                      dy->as<float>());
          ce->synchronize();
          auto y = dy->download<float>(size_t(T) * H);
          ErrStat e;
          std::vector<double> ref(H);
          for (int t = 0; t < T; ++t) {
            const int r = with_rows ? rows[t] : t;
            ref_rmsnorm(&x[size_t(r) * H], H, m->layers[0].attn_norm.data(), m->c.rms_norm_eps, ref.data());
            ErrStat row;  // rows differ in scale: each row against its own magnitude
            for (int i = 0; i < H; ++i) row.add(y[size_t(t) * H + i], ref[i]);
            for (int i = 0; i < H; ++i) e.add(y[size_t(t) * H + i], ref[i]);
            check_err("rmsnorm", b.name,
                      fmt("%s, T=%d, %s, row %d", m->name.c_str(), T, with_rows ? "rows" : "no rows", t),
                      row, kTolF32);
          }
        }
      }
    }
}

TEST(op_linear) {
  for (auto& m : models())
    for (auto& b : backends()) {
      // 45 rows: the decode batches of 33-64 rows (CUDA: their own tile shapes)
      Setup s = make_setup(b, *m, exec_options(*b.backend, m->c, 1, KVDType::kF32, 48));
      ComposedExecutor* ce = s.composed();
      if (!ce) continue;
      Backend& be = *b.backend;
      const ModelConfig& c = m->c;
      const int H = c.hidden_size, Q = c.num_heads * c.head_dim, width = c.qkv_rows();
      std::mt19937_64 rng(gon_test::seed() + 13);
      for (int l = 0; l < c.num_layers; ++l) {
        const LayerWeights& W = s.prepared.w->layers[l];
        const LayerWeights& HW = m->w.layers[l];
        for (int T : {1, 3, 17, 45}) {
          // q, k, v into one row of stride width + 3 (padding columns must stay untouched);
          // the k matrix without its bias.
          const size_t ldy = width + 3;
          BF16Matrix mats[3] = {W.q, W.k, W.v};
          mats[1].bias = nullptr;
          auto x = randn(rng, size_t(T) * H, 1.0f);
          auto dx = to_device(be, x);
          auto dy = to_device(be, std::vector<float>(size_t(T) * ldy, kNaN));
          ce->linear(dx->as<float>(), T, mats, 3, dy->as<float>(), ldy, false);
          ce->synchronize();
          auto y = dy->download<float>(size_t(T) * ldy);
          ErrStat e;
          bool pad_ok = true;
          std::vector<double> ref(width);
          for (int t = 0; t < T; ++t) {
            const float* xt = &x[size_t(t) * H];
            ref_matvec(HW.q.data, HW.q.bias, HW.q.rows, H, xt, ref.data());
            ref_matvec(HW.k.data, nullptr, HW.k.rows, H, xt, ref.data() + HW.q.rows);
            ref_matvec(HW.v.data, HW.v.bias, HW.v.rows, H, xt, ref.data() + HW.q.rows + HW.k.rows);
            for (int i = 0; i < width; ++i) e.add(y[t * ldy + i], ref[i]);
            for (size_t i = width; i < ldy; ++i) pad_ok &= std::isnan(y[t * ldy + i]);
          }
          const std::string where = fmt("%s, layer %d, T=%d", m->name.c_str(), l, T);
          check_err("linear", b.name, where + ", qkv", e, tol_products(b.name, T));
          check_true("linear", b.name, where + ", qkv", pad_ok, "wrote outside its columns (row stride ldy)");

          // out, accumulating into y (the residual stream).
          auto a = randn(rng, size_t(T) * Q, 1.0f);
          auto y0 = randn(rng, size_t(T) * H, 1.0f);
          auto da = to_device(be, a);
          auto dy2 = to_device(be, y0);
          ce->linear(da->as<float>(), T, &W.out, 1, dy2->as<float>(), H, true);
          ce->synchronize();
          auto y2 = dy2->download<float>(size_t(T) * H);
          ErrStat e2;
          std::vector<double> r2(H);
          for (int t = 0; t < T; ++t) {
            ref_matvec(HW.out.data, HW.out.bias, H, Q, &a[size_t(t) * Q], r2.data());
            for (int i = 0; i < H; ++i) e2.add(y2[size_t(t) * H + i], y0[size_t(t) * H + i] + r2[i], r2[i]);
          }
          check_err("linear", b.name, where + ", out (accumulate)", e2, tol_products(b.name, T));
        }
      }
    }
}

// rope_kv_store and attention together (the cache layout is the backend's):
// every step of the schedule stores its keys and attends over keys stored by
// this and earlier steps, on a sliding layer (ring) and a full layer (with and
// without a window).
TEST(op_rope_kv_store_and_attention) {
  for (auto& m : models())
    for (const Variant& v : kVariants)
      for (auto& b : backends()) {
        Backend& be = *b.backend;
        const ModelConfig& c = m->c;
        Setup s = make_setup(b, *m, exec_options(be, c, v.num_seqs, v.kv));
        ComposedExecutor* ce = s.composed();
        if (!ce) continue;
        const int width = c.qkv_rows(), hd = c.head_dim, nq = c.num_heads, nkv = c.num_kv_heads;
        const double tol_att = v.kv == KVDType::kBF16 ? kTolBF16KV : kTolF32;
        std::vector<RefKV> ref_kv(c.num_layers);
      for (RefKV& r : ref_kv) r.bf16 = v.kv == KVDType::kBF16;
        for (RefKV& r : ref_kv) r.bf16 = v.kv == KVDType::kBF16;
        for (int l = 0; l < c.num_layers; ++l) poison_kv(be, ce->kv_layer(l), v.num_seqs);
        std::mt19937_64 rng(gon_test::seed() + 14);
        const auto steps = schedule(v.num_seqs);
        for (size_t si = 0; si < steps.size(); ++si) {
          const Step& step = steps[si];
          const int T = static_cast<int>(step.size());
          auto pos = step_positions(step), seqs = step_seqs(step);
          auto dpos = to_device(be, pos);
          auto dseq = to_device(be, seqs);
          for (int l = 0; l < c.num_layers; ++l) {
            const std::string where = fmt("%s, %s, step %zu (T=%d), layer %d", m->name.c_str(), variant_name(v).c_str(),
                                          si, T, l);
            auto qkv = randn(rng, size_t(T) * width, 1.0f);
            auto dqkv = to_device(be, qkv);
            ce->rope_kv_store(dqkv->as<float>(), dpos->as<int32_t>(), dseq->as<int32_t>(), T, ce->kv_layer(l));
            ce->synchronize();
            auto got = dqkv->download<float>(size_t(T) * width);
            std::vector<double> roped(size_t(T) * width);
            ErrStat e;
            bool v_kept = true;
            for (int t = 0; t < T; ++t) {
              double* r = &roped[size_t(t) * width];
              ref_rope(*m, &qkv[size_t(t) * width], pos[t], r);
              ref_kv[l].store(*m, seqs[t], pos[t], r);
              for (int i = 0; i < (nq + nkv) * hd; ++i) e.add(got[size_t(t) * width + i], r[i]);
              for (int i = (nq + nkv) * hd; i < width; ++i)
                v_kept &= std::memcmp(&got[size_t(t) * width + i], &qkv[size_t(t) * width + i], 4) == 0;
            }
            check_err(v.kv == KVDType::kBF16 ? "rope_kv_store bf16KV" : "rope_kv_store", b.name, where, e, kTolF32);
            check_true("rope_kv_store", b.name, where, v_kept, "changed the v part of qkv");

            // Attention: the layer's own window; a full layer also with a window of 5.
            std::vector<int> windows = {c.layer_is_sliding[l] ? c.sliding_window : 0};
            if (!c.layer_is_sliding[l]) windows.push_back(5);
            for (int window : windows) {
              auto dout = to_device(be, std::vector<float>(size_t(T) * nq * hd, kNaN));
              ce->attention(dqkv->as<float>(), dpos->as<int32_t>(), dseq->as<int32_t>(), T,
                            s.prepared.w->layers[l].sinks,
                            ce->kv_layer(l), window, dout->as<float>());
              ce->synchronize();
              auto out = dout->download<float>(size_t(T) * nq * hd);
              ErrStat ea;
              std::vector<double> ref(size_t(nq) * hd);
              for (int t = 0; t < T; ++t) {
                ref_attention(*m, &roped[size_t(t) * width], seqs[t], pos[t], ref_kv[l], m->layers[l].sinks.data(),
                              window, ref.data());
                for (int i = 0; i < nq * hd; ++i) ea.add(out[size_t(t) * nq * hd + i], ref[i]);
              }
              check_err(v.kv == KVDType::kBF16 ? "attention bf16KV" : "attention", b.name,
                        where + fmt(", window %d", window), ea, tol_att);
            }
          }
        }
      }
}

// Positions near the largest context (131072): large rotation angles, and
// keys in the sliding layer's ring at position % capacity.
TEST(op_rope_kv_store_and_attention_far_positions) {
  for (auto& m : models())
    for (KVDType kv : {KVDType::kF32, KVDType::kBF16})
      for (auto& b : backends()) {
        Backend& be = *b.backend;
        const ModelConfig& c = m->c;
        ExecutorOptions o = exec_options(be, c, 1, kv);
        o.context_length = c.max_context;
        Setup s = make_setup(b, *m, o);
        ComposedExecutor* ce = s.composed();
        if (!ce) continue;
        const int l = 0, W = c.sliding_window, width = c.qkv_rows(), nq = c.num_heads, hd = c.head_dim;
        const int first = c.max_context - 40;
        poison_kv(be, ce->kv_layer(l), 1);
        RefKV ref_kv;
        ref_kv.bf16 = kv == KVDType::kBF16;
        std::mt19937_64 rng(gon_test::seed() + 25);
        int next = first;
        for (int T : {17, 1, 5, 17}) {
          std::vector<int32_t> pos(T), seqs(T, 0);
          std::iota(pos.begin(), pos.end(), next);
          next += T;
          auto qkv = randn(rng, size_t(T) * width, 1.0f);
          auto dq = to_device(be, qkv);
          auto dp = to_device(be, pos);
          auto ds = to_device(be, seqs);
          auto dout = to_device(be, std::vector<float>(size_t(T) * nq * hd, kNaN));
          ce->rope_kv_store(dq->as<float>(), dp->as<int32_t>(), ds->as<int32_t>(), T, ce->kv_layer(l));
          ce->attention(dq->as<float>(), dp->as<int32_t>(), ds->as<int32_t>(), T, s.prepared.w->layers[l].sinks,
                        ce->kv_layer(l), W, dout->as<float>());
          ce->synchronize();
          auto roped_got = dq->download<float>(size_t(T) * width);
          auto out = dout->download<float>(size_t(T) * nq * hd);
          std::vector<double> roped(size_t(T) * width), ref(size_t(nq) * hd);
          ErrStat er, ea;
          for (int t = 0; t < T; ++t) {
            ref_rope(*m, &qkv[size_t(t) * width], pos[t], &roped[size_t(t) * width]);
            ref_kv.store(*m, 0, pos[t], &roped[size_t(t) * width]);
            for (int i = 0; i < (c.num_heads + c.num_kv_heads) * hd; ++i)
              er.add(roped_got[size_t(t) * width + i], roped[size_t(t) * width + i]);
          }
          for (int t = 0; t < T; ++t) {
            if (pos[t] - W + 1 < first) continue;  // its window reaches before the first stored key
            ref_attention(*m, &roped[size_t(t) * width], 0, pos[t], ref_kv, m->layers[l].sinks.data(), W, ref.data());
            for (int i = 0; i < nq * hd; ++i) ea.add(out[size_t(t) * nq * hd + i], ref[i]);
          }
          const bool bf16 = kv == KVDType::kBF16;
          const std::string where = fmt("%s, %s KV, positions %d..%d", m->name.c_str(), gon::kv_dtype_name(kv), pos[0],
                                        pos[T - 1]);
          check_err(bf16 ? "rope_kv_store bf16KV" : "rope_kv_store", b.name, where, er, kTolF32);
          if (ea.n > 0)
            check_err(bf16 ? "attention bf16KV" : "attention", b.name, where, ea, bf16 ? kTolBF16KV : kTolF32);
        }
      }
}

// Decode attention of a full layer over hundreds of keys: the backend splits the
// keys (on CUDA attention_decode + attention_combine, 4 to 16 splits), for steps
// of 1, 2, 3 and 5 tokens of two sequences at different lengths. The other
// attention tests run at context 83, where CUDA takes the one-launch direct form.
TEST(op_attention_split_keys) {
  for (auto& m : models())
    for (KVDType kv : {KVDType::kF32, KVDType::kBF16})
      for (auto& b : backends()) {
        Backend& be = *b.backend;
        const ModelConfig& c = m->c;
        ExecutorOptions o = exec_options(be, c, 2, kv);
        o.context_length = 700;
        Setup s = make_setup(b, *m, o);
        ComposedExecutor* ce = s.composed();
        if (!ce) continue;
        int l = 0;
        while (l < c.num_layers && c.layer_is_sliding[l]) ++l;
        if (l == c.num_layers) continue;
        const int width = c.qkv_rows(), nq = c.num_heads, hd = c.head_dim;
        const bool bf16 = kv == KVDType::kBF16;
        poison_kv(be, ce->kv_layer(l), 2);
        RefKV ref_kv;
        ref_kv.bf16 = bf16;
        std::mt19937_64 rng(gon_test::seed() + 27);
        int next[2] = {0, 0};
        // (sequence of each token) per step: first the two prompts in steps of 24 tokens (not checked), then
        // decode steps
        std::vector<std::vector<int>> steps;
        for (int seq : {0, 1})
          for (int n = seq == 0 ? 600 : 290; n > 0; n -= 24) steps.push_back(std::vector<int>(std::min(n, 24), seq));
        const size_t prompts = steps.size();
        for (const auto& st : std::vector<std::vector<int>>{{0}, {1, 0}, {0, 1, 1}, {1, 0, 0, 1, 1}, {1}})
          steps.push_back(st);
        for (size_t si = 0; si < steps.size(); ++si) {
          const int T = static_cast<int>(steps[si].size());
          std::vector<int32_t> pos(T), seqs(steps[si].begin(), steps[si].end());
          for (int t = 0; t < T; ++t) pos[t] = next[seqs[t]]++;
          auto qkv = randn(rng, size_t(T) * width, 1.0f);
          auto dq = to_device(be, qkv);
          auto dp = to_device(be, pos);
          auto ds = to_device(be, seqs);
          auto dout = to_device(be, std::vector<float>(size_t(T) * nq * hd, kNaN));
          ce->rope_kv_store(dq->as<float>(), dp->as<int32_t>(), ds->as<int32_t>(), T, ce->kv_layer(l));
          std::vector<double> roped(size_t(T) * width), ref(size_t(nq) * hd);
          for (int t = 0; t < T; ++t) {
            ref_rope(*m, &qkv[size_t(t) * width], pos[t], &roped[size_t(t) * width]);
            ref_kv.store(*m, seqs[t], pos[t], &roped[size_t(t) * width]);
          }
          if (si < prompts) {
            ce->synchronize();  // before the step's device buffers go
            continue;
          }
          ce->attention(dq->as<float>(), dp->as<int32_t>(), ds->as<int32_t>(), T, s.prepared.w->layers[l].sinks,
                        ce->kv_layer(l), 0, dout->as<float>());
          ce->synchronize();
          auto out = dout->download<float>(size_t(T) * nq * hd);
          ErrStat ea;
          for (int t = 0; t < T; ++t) {
            ref_attention(*m, &roped[size_t(t) * width], seqs[t], pos[t], ref_kv, m->layers[l].sinks.data(), 0,
                          ref.data());
            for (int i = 0; i < nq * hd; ++i) ea.add(out[size_t(t) * nq * hd + i], ref[i]);
          }
          check_err(bf16 ? "attention bf16KV" : "attention", b.name,
                    fmt("%s, %s KV, layer %d, step of %d tokens at %d..%d keys", m->name.c_str(),
                        gon::kv_dtype_name(kv), l, T, pos[0] + 1, pos[T - 1] + 1),
                    ea, bf16 ? kTolBF16KV : kTolF32);
        }
      }
}

TEST(op_router) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Backend& be = *b.backend;
      const ModelConfig& c = m->c;
      Setup s = make_setup(b, *m, exec_options(be, c, 1, KVDType::kF32));
      ComposedExecutor* ce = s.composed();
      if (!ce) continue;
      const int H = c.hidden_size, E = c.num_experts;
      std::mt19937_64 rng(gon_test::seed() + 15);
      // The layer's router, and one whose experts 1 and E-1 have identical rows
      // and biases: exact ties, which must go to the lower id.
      const HostLayer& L = m->layers[0];
      std::vector<uint16_t> tw = L.router, tb = L.router_bias;
      std::copy_n(&tw[size_t(1) * H], H, &tw[size_t(E - 1) * H]);
      tb[E - 1] = tb[1];
      auto dtw = to_device(be, tw);
      auto dtb = to_device(be, tb);
      const BF16Matrix tied{dtw->as<uint16_t>(), dtb->as<uint16_t>(), E, H};
      const BF16Matrix tied_host{tw.data(), tb.data(), E, H};
      int near_ties = 0, exact_ties = 0;
      for (int variant = 0; variant < 2; ++variant) {
        const BF16Matrix& R = variant == 0 ? s.prepared.w->layers[0].router : tied;
        const BF16Matrix& RH = variant == 0 ? m->w.layers[0].router : tied_host;
        for (int k = 1; k <= std::min(E, 4); ++k)
          for (int T : {1, 3, 17}) {
            auto x = randn(rng, size_t(T) * H, 1.0f);
            auto dx = to_device(be, x);
            auto dids = to_device(be, std::vector<int32_t>(size_t(T) * k, -7));
            auto dw = to_device(be, std::vector<float>(size_t(T) * k, kNaN));
            ce->router(dx->as<float>(), T, R, k, dids->as<int32_t>(), dw->as<float>());
            ce->synchronize();
            auto ids = dids->download<int32_t>(size_t(T) * k);
            auto wts = dw->download<float>(size_t(T) * k);
            const std::string where = fmt("%s, %s, k=%d, T=%d", m->name.c_str(), variant ? "tied experts" : "layer 0",
                                          k, T);
            ErrStat e;
            bool ids_ok = true;
            std::string detail;
            std::vector<int> rid(k);
            std::vector<double> rw(k);
            for (int t = 0; t < T; ++t) {
              bool exact = false;
              const bool near = ref_router(RH, &x[size_t(t) * H], k, rid.data(), rw.data(), &exact,
                                           tensor_cores(b.name, T, 8) ? kRouterNearTieTensorCores : kRouterNearTie);
              exact_ties += exact;
              if (near) {  // either choice is right; the output must still be a valid one
                ++near_ties;
                for (int j = 0; j < k; ++j) {
                  const int id = ids[size_t(t) * k + j];
                  const float wt = wts[size_t(t) * k + j];
                  if (id < 0 || id >= E || !(wt >= 0.0f && wt <= 1.0f)) {
                    if (ids_ok) detail = fmt("token %d (near tie): expert %d, weight %g", t, id, wt);
                    ids_ok = false;
                  }
                }
                continue;
              }
              // The k experts as a set with their weights (the order of the k is not part of the contract).
              std::vector<std::pair<int, double>> want, got;
              for (int j = 0; j < k; ++j) {
                want.push_back({rid[j], rw[j]});
                got.push_back({ids[size_t(t) * k + j], wts[size_t(t) * k + j]});
              }
              std::sort(want.begin(), want.end());
              std::sort(got.begin(), got.end());
              for (int j = 0; j < k; ++j) {
                if (want[j].first != got[j].first) {
                  if (ids_ok) detail = fmt("token %d: expert %d, reference %d", t, got[j].first, want[j].first);
                  ids_ok = false;
                  continue;
                }
                e.add(got[j].second, want[j].second);
              }
            }
            check_true("router", b.name, where + ", ids", ids_ok, detail);
            if (e.n > 0) check_err("router", b.name, where + ", weights", e, tol_products(b.name, T));
          }
      }
      std::printf("  router on %s, %s: %d exact ties checked, %d near ties left out\n", b.name.c_str(), m->name.c_str(),
                  exact_ties, near_ties);
    }
}

TEST(op_moe) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Backend& be = *b.backend;
      const ModelConfig& c = m->c;
      Setup s = make_setup(b, *m, exec_options(be, c, 1, KVDType::kF32));
      ComposedExecutor* ce = s.composed();
      if (!ce) continue;
      const int H = c.hidden_size, E = c.num_experts, k = c.experts_per_token;
      std::mt19937_64 rng(gon_test::seed() + 16);
      for (int l = 0; l < c.num_layers; ++l)
        for (int T : {1, 3, 17}) {
          auto x = randn(rng, size_t(T) * H, 1.0f);
          auto y0 = randn(rng, size_t(T) * H, 10.0f);
          std::vector<int32_t> ids(size_t(T) * k);
          std::vector<float> wts(size_t(T) * k);
          std::vector<int> perm(E);
          std::iota(perm.begin(), perm.end(), 0);
          for (int t = 0; t < T; ++t) {
            std::shuffle(perm.begin(), perm.end(), rng);  // k distinct experts, as the router gives
            auto z = randn(rng, k, 1.0f);
            double sum = 0;
            for (int j = 0; j < k; ++j) sum += std::exp(z[j]);
            for (int j = 0; j < k; ++j) {
              ids[size_t(t) * k + j] = perm[j];
              wts[size_t(t) * k + j] = static_cast<float>(std::exp(z[j]) / sum);
            }
          }
          auto dx = to_device(be, x);
          auto dids = to_device(be, ids);
          auto dw = to_device(be, wts);
          auto dy = to_device(be, y0);
          ce->moe(dx->as<float>(), T, dids->as<int32_t>(), dw->as<float>(), k, s.prepared.w->layers[l],
                  dy->as<float>());
          ce->synchronize();
          auto y = dy->download<float>(size_t(T) * H);
          ErrStat e;
          std::vector<double> add(H), ye(H);
          for (int t = 0; t < T; ++t) {
            std::fill(add.begin(), add.end(), 0.0);
            for (int j = 0; j < k; ++j) {
              ref_expert(*m, m->layers[l], ids[size_t(t) * k + j], &x[size_t(t) * H], ye.data());
              for (int i = 0; i < H; ++i) add[i] += double(wts[size_t(t) * k + j]) * ye[i];
            }
            for (int i = 0; i < H; ++i) e.add(y[size_t(t) * H + i], y0[size_t(t) * H + i] + add[i], add[i]);
          }
          check_err("moe", b.name, fmt("%s, layer %d, T=%d", m->name.c_str(), l, T), e, tol_products(b.name, T, 4));
        }
    }
}

TEST(op_unembed) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Backend& be = *b.backend;
      const ModelConfig& c = m->c;
      Setup s = make_setup(b, *m, exec_options(be, c, 1, KVDType::kF32));
      ComposedExecutor* ce = s.composed();
      if (!ce) continue;
      const int H = c.hidden_size, V = c.vocab_size;
      std::mt19937_64 rng(gon_test::seed() + 17);
      for (int R : {1, 3, 17}) {
        auto x = randn(rng, size_t(R) * H, 1.0f);
        auto dx = to_device(be, x);
        auto dl = to_device(be, std::vector<float>(size_t(R) * V, kNaN));
        ce->unembed(dx->as<float>(), R, dl->as<float>());
        ce->synchronize();
        auto got = dl->download<float>(size_t(R) * V);
        ErrStat e;
        std::vector<double> ref(V);
        for (int r = 0; r < R; ++r) {
          ref_matvec(m->unembedding.data(), nullptr, V, H, &x[size_t(r) * H], ref.data());
          for (int i = 0; i < V; ++i) e.add(got[size_t(r) * V + i], ref[i]);
        }
        check_err("unembed", b.name, fmt("%s, rows=%d", m->name.c_str(), R), e, tol_products(b.name, R));
      }
    }
}

namespace {
// Rows of logits of several shapes: gaussian (narrow and wide), quantised to
// quarter steps (many exact ties), one dominant token, a few -inf.
std::vector<float> logits_row(std::mt19937_64& rng, int V, int shape) {
  std::vector<float> l;
  switch (shape % 5) {
    case 0: l = randn(rng, V, 1.0f); break;
    case 1: l = randn(rng, V, 4.0f); break;
    case 2:
      l = randn(rng, V, 2.0f);
      for (float& x : l) x = std::round(x * 4.0f) / 4.0f;
      break;
    case 3: {
      l = randn(rng, V, 1.5f);
      l[std::uniform_int_distribution<int>(0, V - 1)(rng)] += 12.0f;
      break;
    }
    default: {
      l = randn(rng, V, 3.0f);
      for (int i = 0; i < 5; ++i) l[std::uniform_int_distribution<int>(0, V - 1)(rng)] = -kInf;
      break;
    }
  }
  return l;
}

// Runs the sample op on `rows` rows (in chunks of the executor's max_outputs)
// and compares with the previous rule. Returns rows at a draw boundary.
int sample_and_check(ComposedExecutor& ce, Backend& be, const std::string& backend, const std::string& where,
                     const std::vector<float>& logits, const std::vector<SampleParams>& params,
                     const std::vector<uint8_t>* mask, int V) {
  const int rows = static_cast<int>(params.size());
  const int chunk = ce.options().max_outputs;
  int boundary = 0;
  std::unique_ptr<DeviceBuffer> dmask;
  if (mask) dmask = to_device(be, *mask);
  for (int r0 = 0; r0 < rows; r0 += chunk) {
    const int n = std::min(chunk, rows - r0);
    std::vector<float> l(logits.begin() + size_t(r0) * V, logits.begin() + size_t(r0 + n) * V);
    std::vector<SampleParams> p(params.begin() + r0, params.begin() + r0 + n);
    auto dl = to_device(be, l);
    auto dp = to_device(be, p);
    auto dt = to_device(be, std::vector<int32_t>(n, -7));
    auto dlp = to_device(be, std::vector<float>(n, kNaN));
    ce.sample(dl->as<float>(), n, dp->as<SampleParams>(), dmask ? dmask->as<uint8_t>() : nullptr, dt->as<int32_t>(),
              dlp->as<float>());
    ce.synchronize();
    auto tok = dt->download<int32_t>(n);
    auto lp = dlp->download<float>(n);
    boundary += check_sampled("sample", backend, where + fmt(", rows %d..", r0), l.data(), n, V, p.data(),
                              mask ? mask->data() : nullptr, tok.data(), lp.data());
  }
  return boundary;
}
}  // namespace

// The sample op against the previous rule on many random rows: temperature 0,
// 0.7, 1.3 with top_p 1, 0.9, 0.5, with and without a mask, rows with NaN, a
// mask that allows one token or none, a first allowed token whose logit is NaN.
TEST(op_sample) {
  // The small models' vocabularies and one of gpt-oss's size (a model used only for sampling).
  std::vector<const HostModel*> ms;
  for (auto& m : models()) ms.push_back(m.get());
  static std::unique_ptr<HostModel> big;
  if (!big) big = make_model({"H32 V201088 (sampling)", 32, 32, 16, 2, 1, 2, 1, 4, 201088, 1}, gon_test::seed() + 99);
  ms.push_back(big.get());
  for (const HostModel* m : ms)
    for (auto& b : backends()) {
      Backend& be = *b.backend;
      const int V = m->c.vocab_size;
      const bool large = V > 100000;
      Setup s = make_setup(b, *m, exec_options(be, m->c, 1, KVDType::kF32));
      ComposedExecutor* ce = s.composed();
      if (!ce) continue;
      std::mt19937_64 rng(gon_test::seed() + 18);
      std::vector<float> logits;
      std::vector<SampleParams> params;
      auto add_row = [&](const std::vector<float>& l, float temp, float top_p, int use_mask) {
        logits.insert(logits.end(), l.begin(), l.end());
        SampleParams p;
        p.temperature = temp;
        p.top_p = top_p;
        p.seed = rng();
        p.counter = rng() % 4096;
        p.use_mask = use_mask;
        params.push_back(p);
      };
      // A mask allowing about half the vocabulary.
      std::vector<uint8_t> mask(V);
      for (auto& x : mask) x = rng() % 2;
      int shape = 0;
      for (float temp : {0.0f, 0.7f, 1.3f})
        for (float top_p : {1.0f, 0.9f, 0.5f})
          for (int use_mask : {0, 1})
            for (int rep = 0; rep < (large ? 1 : 3); ++rep) add_row(logits_row(rng, V, shape++), temp, top_p, use_mask);
      // NaN rows: a few NaN logits, with and without the mask; every logit NaN.
      for (int use_mask : {0, 1})
        for (float temp : {0.0f, 0.7f}) {
          auto l = logits_row(rng, V, 0);
          for (int i = 0; i < 7; ++i) l[rng() % V] = kNaN;
          add_row(l, temp, 0.9f, use_mask);
        }
      add_row(std::vector<float>(V, kNaN), 1.0f, 1.0f, 0);
      int boundary = sample_and_check(*ce, be, b.name, m->name + ", mixed rows", logits, params, &mask, V);

      // A mask allowing one token; a mask allowing none (the unrestricted
      // argmax); a mask whose first allowed token has a NaN logit.
      for (int kind = 0; kind < 3; ++kind) {
        logits.clear();
        params.clear();
        std::vector<uint8_t> m2(V, 0);
        const int first = static_cast<int>(rng() % (V / 2));
        if (kind == 0) m2[rng() % V] = 1;
        if (kind == 2)
          for (int i = first; i < V; i += 3) m2[i] = 1;
        for (float temp : {0.0f, 1.3f})
          for (float top_p : {1.0f, 0.5f}) {
            auto l = logits_row(rng, V, 1);
            if (kind == 2) l[first] = kNaN;
            add_row(l, temp, top_p, 1);
          }
        const char* what = kind == 0 ? ", one allowed" : kind == 1 ? ", none allowed" : ", first allowed NaN";
        boundary += sample_and_check(*ce, be, b.name, m->name + what, logits, params, &m2, V);
      }
      std::printf("  sample on %s, V=%d: %d row(s) at a draw boundary\n", b.name.c_str(), V, boundary);
    }
}

// embed_block: x[t] = embedding[tokens[t]] into the residual stream.
TEST(block_embed) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Backend& be = *b.backend;
      const ModelConfig& c = m->c;
      Setup s = make_setup(b, *m, exec_options(be, c, 3, KVDType::kF32));
      const int H = c.hidden_size;
      std::mt19937_64 rng(gon_test::seed() + 24);
      for (int T : {1, 3, 17, 24}) {
        Step step;
        for (int t = 0; t < T; ++t) step.push_back({t % 3, t / 3});
        const auto tokens = random_tokens(rng, T, c.vocab_size);
        fill_inputs(*s.ex, tokens, step);
        set_residual(be, *s.ex, std::vector<float>(size_t(T) * H, kNaN));
        StepShape shape;
        shape.num_tokens = T;
        s.ex->execute(shape, [](Executor& e, const StepShape& sh) { e.embed_block(sh); });
        auto got = get_residual(be, *s.ex, size_t(T) * H);
        ErrStat e;
        for (int t = 0; t < T; ++t)
          for (int i = 0; i < H; ++i) e.add(got[size_t(t) * H + i], bf(m->embedding[size_t(tokens[t]) * H + i]));
        check_err("embed_block", b.name, fmt("%s, T=%d", m->name.c_str(), T), e, kTolExact);
      }
    }
}

// attention_block through Executor::execute: x += out(attention(rope(qkv(rmsnorm(x))))),
// over the schedule's steps, on the sliding and the full layer.
TEST(block_attention) {
  for (auto& m : models())
    for (const Variant& v : kVariants)
      for (auto& b : backends()) {
        Backend& be = *b.backend;
        const ModelConfig& c = m->c;
        Setup s = make_setup(b, *m, exec_options(be, c, v.num_seqs, v.kv));
        if (ComposedExecutor* ce = s.composed())
          for (int l = 0; l < c.num_layers; ++l) poison_kv(be, ce->kv_layer(l), v.num_seqs);
        const int H = c.hidden_size;
        const double tol = v.kv == KVDType::kBF16 ? kTolBF16KV : kTolBlockF32;
        std::vector<RefKV> ref_kv(c.num_layers);
        for (RefKV& r : ref_kv) r.bf16 = v.kv == KVDType::kBF16;
        std::mt19937_64 rng(gon_test::seed() + 19);
        const auto steps = schedule(v.num_seqs);
        // Keys and values a tensor-core step stored carry its bf16 rounding into
        // the later steps that read them.
        bool tensor_core_keys = false;
        for (size_t si = 0; si < steps.size(); ++si) {
          const Step& step = steps[si];
          const int T = static_cast<int>(step.size());
          tensor_core_keys |= tensor_cores(b.name, T, 8);
          std::vector<int> pos, seqs;
          for (auto& [q, p] : step) {
            seqs.push_back(q);
            pos.push_back(p);
          }
          for (int l = 0; l < c.num_layers; ++l) {
            fill_inputs(*s.ex, random_tokens(rng, T, c.vocab_size), step);
            auto x = randn(rng, size_t(T) * H, 2.0f);
            set_residual(be, *s.ex, x);
            StepShape shape;
            shape.num_tokens = T;
            s.ex->execute(shape, [l](Executor& e, const StepShape& sh) { e.attention_block(l, sh); });
            auto got = get_residual(be, *s.ex, size_t(T) * H);
            std::vector<double> ref(x.begin(), x.end());
            ref_attention_block(*m, l, ref, pos, seqs, ref_kv[l]);
            ErrStat e;
            for (size_t i = 0; i < ref.size(); ++i) e.add(got[i], ref[i], ref[i] - x[i]);
            check_err(v.kv == KVDType::kBF16 ? "attention_block bf16KV" : "attention_block", b.name,
                      fmt("%s, %s, step %zu (T=%d), layer %d", m->name.c_str(), variant_name(v).c_str(), si, T, l), e,
                      tensor_core_keys ? std::max(tol, kTolTensorCores) : tol);
          }
        }
      }
}

// moe_block: x += sum over the top-k experts of weight * expert(rmsnorm(x)).
TEST(block_moe) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Backend& be = *b.backend;
      const ModelConfig& c = m->c;
      Setup s = make_setup(b, *m, exec_options(be, c, 1, KVDType::kF32));
      const int H = c.hidden_size;
      std::mt19937_64 rng(gon_test::seed() + 20);
      int near = 0;
      for (int l = 0; l < c.num_layers; ++l)
        for (int T : {1, 3, 17, 24}) {
          Step step;
          for (int t = 0; t < T; ++t) step.push_back({0, t});
          fill_inputs(*s.ex, random_tokens(rng, T, c.vocab_size), step);
          auto x = randn(rng, size_t(T) * H, 2.0f);
          set_residual(be, *s.ex, x);
          StepShape shape;
          shape.num_tokens = T;
          s.ex->execute(shape, [l](Executor& e, const StepShape& sh) { e.moe_block(l, sh); });
          auto got = get_residual(be, *s.ex, size_t(T) * H);
          std::vector<double> ref(x.begin(), x.end());
          std::vector<char> tie;
          ref_moe_block(*m, l, ref, &tie, tensor_cores(b.name, T, 4) ? kRouterNearTieTensorCores : kRouterNearTie);
          ErrStat e;
          bool tie_rows_finite = true;
          for (int t = 0; t < T; ++t) {
            if (tie[t]) {  // either expert choice is right: only check the row was written
              ++near;
              for (int i = 0; i < H; ++i) tie_rows_finite &= std::isfinite(got[size_t(t) * H + i]);
              continue;
            }
            for (int i = 0; i < H; ++i) {
              const size_t at = size_t(t) * H + i;
              e.add(got[at], ref[at], ref[at] - x[at]);
            }
          }
          const std::string where = fmt("%s, layer %d, T=%d", m->name.c_str(), l, T);
          if (e.n > 0) check_err("moe_block", b.name, where, e, tol_block(b.name, T, 4));
          check_true("moe_block", b.name, where, tie_rows_finite, "a near-tied token's row is not finite");
        }
      if (near)
        std::printf("  moe_block on %s, %s: %d token(s) with near-tied experts left out\n", b.name.c_str(),
                    m->name.c_str(), near);
    }
}

// output_block: logits of the output rows (in any order, at an offset) and,
// with sampling, the sampled tokens (the previous rule on the backend's own
// logits), with and without the allowed-token mask; then sample_rows.
TEST(block_output) {
  for (auto& m : models())
    for (auto& b : backends()) {
      Backend& be = *b.backend;
      const ModelConfig& c = m->c;
      const ExecutorOptions o = exec_options(be, c, 1, KVDType::kF32);
      Setup s = make_setup(b, *m, o);
      const int H = c.hidden_size, V = c.vocab_size;
      std::mt19937_64 rng(gon_test::seed() + 21);
      std::vector<uint8_t> mask(V);
      for (auto& x : mask) x = rng() % 3 != 0;
      struct Case {
        int T, R, offset;
        bool sample, use_mask;
        bool mask_set = true;  // false: rows ask for the mask but none is set (they sample from everything)
      };
      const Case cases[] = {{1, 1, 0, false, false}, {3, 2, 5, true, false},  {17, 17, 0, true, true},
                            {24, 7, 23, true, true},  {5, 5, 1, true, false},  {6, 4, 2, true, true, false}};
      for (const Case& k : cases) {
        Step step;
        for (int t = 0; t < k.T; ++t) step.push_back({0, t});
        fill_inputs(*s.ex, random_tokens(rng, k.T, V), step);
        StepInputs& in = s.ex->inputs();
        std::vector<int32_t> rows(k.R);
        for (int r = 0; r < k.R; ++r) rows[r] = static_cast<int32_t>(rng() % k.T);  // any rows, any order
        if (k.R == k.T) std::iota(rows.begin(), rows.end(), 0);
        std::vector<SampleParams> params(k.R);
        const float temps[] = {0.0f, 0.7f, 1.3f}, tops[] = {1.0f, 0.9f, 0.5f};
        for (int r = 0; r < k.R; ++r) {
          in.output_rows[r] = rows[r];
          params[r].temperature = temps[rng() % 3];
          params[r].top_p = tops[rng() % 3];
          params[r].seed = rng();
          params[r].counter = rng() % 1000;
          params[r].use_mask = k.use_mask && (r % 2 == 0);
          in.params[r] = params[r];
        }
        const bool masked = k.use_mask && k.mask_set;
        s.ex->set_allowed_tokens(masked ? mask.data() : nullptr);
        auto x = randn(rng, size_t(k.T) * H, 3.0f);
        set_residual(be, *s.ex, x);
        // Poison every logits row: the rows outside [offset, offset + R) must keep it.
        s.ex->synchronize();
        {
          std::vector<float> nan(size_t(o.logits_rows) * V, kNaN);
          be.copy_to_device(const_cast<float*>(s.ex->logits().data), nan.data(), nan.size() * sizeof(float));
        }
        StepShape shape;
        shape.num_tokens = k.T;
        shape.num_outputs = k.R;
        shape.output_offset = k.offset;
        shape.sample = k.sample;
        s.ex->execute(shape, [](Executor& e, const StepShape& sh) { e.output_block(sh); });
        std::vector<float> all(size_t(o.logits_rows) * V);
        s.ex->copy_logits(0, o.logits_rows, all.data());
        const std::string where = fmt("%s, T=%d, R=%d, offset %d%s", m->name.c_str(), k.T, k.R, k.offset,
                                      masked ? ", mask" : k.use_mask ? ", use_mask without a mask" : "");
        ErrStat e;
        std::vector<double> ref(V);
        for (int r = 0; r < k.R; ++r) {
          ref_logits(*m, &x[size_t(rows[r]) * H], ref.data());
          for (int i = 0; i < V; ++i) e.add(all[size_t(k.offset + r) * V + i], ref[i]);
        }
        check_err("output_block", b.name, where + ", logits", e, tol_block(b.name, k.R));
        bool others_kept = true;
        for (int r = 0; r < o.logits_rows; ++r)
          if (r < k.offset || r >= k.offset + k.R)
            for (int i = 0; i < V; ++i) others_kept &= std::isnan(all[size_t(r) * V + i]);
        check_true("output_block", b.name, where, others_kept, "wrote logits rows outside [offset, offset + R)");
        if (!k.sample) continue;
        const float* L = &all[size_t(k.offset) * V];
        const int32_t* tok = s.ex->sampled_tokens() + k.offset;
        const float* lp = s.ex->sampled_logprobs() + k.offset;
        std::vector<int32_t> t(tok, tok + k.R);
        std::vector<float> p(lp, lp + k.R);
        check_sampled("output_block", b.name, where + ", sampled", L, k.R, V, params.data(),
                      masked ? mask.data() : nullptr, t.data(), p.data());
        // Sampling the same rows again with other parameters.
        for (int r = 0; r < k.R; ++r) {
          params[r].temperature = temps[rng() % 3];
          params[r].top_p = tops[rng() % 3];
          params[r].seed = rng();
          in.params[r] = params[r];
        }
        s.ex->sample_rows(k.offset, k.R);
        tok = s.ex->sampled_tokens() + k.offset;
        lp = s.ex->sampled_logprobs() + k.offset;
        t.assign(tok, tok + k.R);
        p.assign(lp, lp + k.R);
        check_sampled("output_block", b.name, where + ", sample_rows", L, k.R, V, params.data(),
                      masked ? mask.data() : nullptr, t.data(), p.data());
      }
      s.ex->set_allowed_tokens(nullptr);
    }
}


// A whole forward step (core/forward.hpp run_step) of the 2-layer models over
// the schedule: the logits of every row against the float64 model, and equal
// across backends within tolerance. A near-tied expert choice may go either
// way, and then changes the keys its sequence's later tokens read: from that
// token on, the sequence's rows are only checked for being finite.
TEST(forward_step) {
  for (auto& m : models())
    for (const Variant& v : kVariants) {
      const ModelConfig& c = m->c;
      const int V = c.vocab_size;
      const bool bf16 = v.kv == KVDType::kBF16;
      const double tol = bf16 ? kTolForwardBF16 : kTolForwardF32;
      const std::string op = bf16 ? "forward_step bf16KV" : "forward_step";
      std::vector<Setup> setups;
      for (auto& b : backends()) setups.push_back(make_setup(b, *m, exec_options(*b.backend, c, v.num_seqs, v.kv)));
      // Per setup: a tensor-core step has run (its keys and values feed the later steps).
      std::vector<char> tensor_core_keys(setups.size(), 0);
      std::vector<RefKV> ref_kv(c.num_layers);
      for (RefKV& r : ref_kv) r.bf16 = bf16;
      std::mt19937_64 rng(gon_test::seed() + 22);
      std::map<int, int> diverged;  // sequence -> first position after a near tie
      int rows_left_out = 0;
      const auto steps = schedule(v.num_seqs);
      for (size_t si = 0; si < steps.size(); ++si) {
        const Step& step = steps[si];
        const int T = static_cast<int>(step.size());
        const auto tokens = random_tokens(rng, T, V);
        std::vector<char> tie;
        // With CUDA among the backends, its tensor-core steps set the margin of a near tie.
        bool has_cuda = false;
        for (const Setup& su : setups) has_cuda |= su.be->name == "cuda";
        const double near_tie = has_cuda && T > 4 ? kRouterNearTieTensorCores
                                : bf16              ? kRouterNearTieBF16
                                                    : kRouterNearTie;
        const auto ref = ref_forward(*m, ref_kv, tokens, step, near_tie, &tie);
        for (int t = 0; t < T; ++t)
          if (tie[t]) {
            auto [it, fresh] = diverged.insert({step[t].first, step[t].second});
            if (!fresh) it->second = std::min(it->second, step[t].second);
          }
        std::vector<char> compare(T, 1);
        for (int t = 0; t < T; ++t) {
          auto it = diverged.find(step[t].first);
          if (it != diverged.end() && step[t].second >= it->second) {
            compare[t] = 0;
            ++rows_left_out;
          }
        }
        std::vector<std::vector<float>> got;
        for (size_t si_setup = 0; si_setup < setups.size(); ++si_setup) {
          Setup& s = setups[si_setup];
          tensor_core_keys[si_setup] |= tensor_cores(s.be->name, T, 4);
          fill_inputs(*s.ex, tokens, step);
          for (int t = 0; t < T; ++t) s.ex->inputs().output_rows[t] = t;
          StepShape shape;
          shape.num_tokens = T;
          shape.num_outputs = T;
          gon::run_step(*s.ex, c, shape);
          std::vector<float> l(size_t(T) * V);
          s.ex->copy_logits(0, T, l.data());
          const std::string where = fmt("%s, %s, step %zu (T=%d)", m->name.c_str(), variant_name(v).c_str(), si, T);
          ErrStat e, x;
          bool finite = true;
          // On the tensor cores a router choice can flip even outside the reference's near-tie margin
          // (bf16 activations through several operations); such a token's row, and the later rows of its
          // sequence, then differ by a large fraction. Up to a tenth of the rows may do so; they are counted.
          const bool flips_allowed = tensor_core_keys[si_setup] != 0;
          int flipped = 0;
          double max_ref_step = 0.0;
          for (int t = 0; t < T; ++t)
            for (int i = 0; i < V; ++i) max_ref_step = std::max(max_ref_step, std::fabs(ref[size_t(t) * V + i]));
          for (int t = 0; t < T; ++t) {
            if (flips_allowed && compare[t]) {
              double row = 0.0;
              for (int i = 0; i < V; ++i) row = std::max(row, std::fabs(l[size_t(t) * V + i] - ref[size_t(t) * V + i]));
              if (row > kTolForwardTensorCores * max_ref_step && flipped < std::max(1, T / 10)) {
                ++flipped;
                for (int i = 0; i < V; ++i) finite &= std::isfinite(l[size_t(t) * V + i]);
                continue;
              }
            }
            for (int i = 0; i < V; ++i) {
              const size_t at = size_t(t) * V + i;
              if (!compare[t]) {
                finite &= std::isfinite(l[at]);
                continue;
              }
              e.add(l[at], ref[at]);
              if (!got.empty()) x.add(l[at], got[0][at]);
            }
          }
          if (flipped)
            std::printf("  forward_step on %s, %s: %d row(s) beyond tolerance left out as router flips\n",
                        s.be->name.c_str(), where.c_str(), flipped);
          check_true(op, s.be->name, where, finite, "logits of rows after a near tie are not finite");
          const double tol_b = tensor_core_keys[si_setup] ? std::max(tol, kTolForwardTensorCores) : tol;
          if (e.n > 0) check_err(op, s.be->name, where, e, tol_b);
          if (x.n > 0) check_err(op, s.be->name, where + ", against " + setups[0].be->name, x, tol_b);
          got.push_back(std::move(l));
        }
      }
      if (rows_left_out)
        std::printf("  forward_step, %s, %s: %d row(s) after a near tie checked for finite logits only\n",
                    m->name.c_str(), variant_name(v).c_str(), rows_left_out);
    }
}

// An executor whose ring capacity is not a multiple of the backend's KV block
// (kv_block_positions) must refuse it or attend correctly once positions wrap:
// nothing in ExecutorOptions says the caller must round it.
TEST(ring_capacity_off_the_block_grid) {
  const HostModel& m = *models()[1];  // window 8
  const ModelConfig& c = m.c;
  for (auto& b : backends()) {
    Backend& be = *b.backend;
    ExecutorOptions o = exec_options(be, c, 1, KVDType::kF32);
    o.ring_capacity = be.kv_block_positions() + 4;
    std::unique_ptr<ModelWeights> w = be.prepare_weights(m.w, c, {});
    std::unique_ptr<Executor> ex;
    try {
      ex = be.create_executor(*w, c, o);
    } catch (const gon::Error& e) {
      check_true("ring_capacity", b.name, "refused", e.status() == gon::Status::kInvalidArgument, e.what());
      continue;
    }
    auto* ce = dynamic_cast<ComposedExecutor*>(ex.get());
    if (!ce) continue;
    poison_kv(be, ce->kv_layer(0), 1);
    RefKV ref_kv;
    std::mt19937_64 rng(gon_test::seed() + 23);
    const int width = c.qkv_rows(), nq = c.num_heads, hd = c.head_dim;
    ErrStat e;
    int p0 = 0, first_wrong = -1;
    while (p0 < 3 * o.ring_capacity) {
      const int T = std::min(o.ring_capacity - c.sliding_window + 1, 5);
      std::vector<int32_t> pos(T), seqs(T, 0);
      std::iota(pos.begin(), pos.end(), p0);
      p0 += T;
      auto qkv = randn(rng, size_t(T) * width, 1.0f);
      auto dq = to_device(be, qkv);
      auto dp = to_device(be, pos);
      auto ds = to_device(be, seqs);
      auto dout = to_device(be, std::vector<float>(size_t(T) * nq * hd, kNaN));
      ce->rope_kv_store(dq->as<float>(), dp->as<int32_t>(), ds->as<int32_t>(), T, ce->kv_layer(0));
      ce->attention(dq->as<float>(), dp->as<int32_t>(), ds->as<int32_t>(), T, w->layers[0].sinks, ce->kv_layer(0),
                    c.sliding_window, dout->as<float>());
      ce->synchronize();
      auto out = dout->download<float>(size_t(T) * nq * hd);
      std::vector<double> r(width), ref(size_t(nq) * hd);
      for (int t = 0; t < T; ++t) {
        ref_rope(m, &qkv[size_t(t) * width], pos[t], r.data());
        ref_kv.store(m, 0, pos[t], r.data());
      }
      for (int t = 0; t < T; ++t) {
        ref_rope(m, &qkv[size_t(t) * width], pos[t], r.data());
        ref_attention(m, r.data(), 0, pos[t], ref_kv, m.layers[0].sinks.data(), c.sliding_window, ref.data());
        ErrStat row;
        for (int i = 0; i < nq * hd; ++i) {
          e.add(out[size_t(t) * nq * hd + i], ref[i]);
          row.add(out[size_t(t) * nq * hd + i], ref[i]);
        }
        if (first_wrong < 0 && !(row.rel() <= kTolF32)) first_wrong = pos[t];
      }
    }
    if (first_wrong >= 0)
      std::printf("  %s accepted ring_capacity %d (kv_block_positions %d); attention goes wrong from position %d\n",
                  b.name.c_str(), o.ring_capacity, be.kv_block_positions(), first_wrong);
    check_err("ring_capacity", b.name,
              fmt("ring %d, window %d, positions 0..%d", o.ring_capacity, c.sliding_window, p0 - 1),
              e, kTolF32);
  }
}

TEST(summary) {
  std::printf("  %-22s %-16s %7s %11s %9s\n", "op", "backend", "checks", "worst err", "tol");
  for (auto& [key, r] : records()) {
    const std::string err = r.measured ? fmt("%11.3g %9.3g", r.err, r.tol) : fmt("%11s %9s", "exact", "-");
    std::printf("  %-22s %-16s %7d %s%s\n", key.first.c_str(), key.second.c_str(), r.checks, err.c_str(),
                r.failed ? fmt("  %d FAILED", r.failed).c_str() : "");
  }
}

// test_ops: the checks (ctest). test_ops --time [--threads N]: the timing
// table (N CPU threads; 0, the default, is one per core).
int main(int argc, char** argv) {
  bool time = false;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--time") == 0) {
      time = true;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else {
      std::printf("usage: %s [--time [--threads N]]\n", argv[0]);
      return 2;
    }
  }
  return time ? run_timing(threads) : gon_test::run_all();
}
