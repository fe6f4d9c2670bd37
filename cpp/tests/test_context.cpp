// Runtime behaviour of Model and Context on small random checkpoints: chunked
// prefill, decode and rewinding agree with each other bit for bit; nothing is
// allocated while processing or sampling; bad input raises gon::Error.
// (Agreement with an independent reference, transformers, is tested from
// Python in tests/test_oracle.py.)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gpt_oss_native/gpt_oss_native.hpp"
#include "test_util.hpp"
#include "tiny_checkpoint.hpp"

// ---- allocation counting: every operator new in this binary ----------------
static std::atomic<bool> g_counting{false};
static std::atomic<long> g_allocations{0};

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using gon_test::TempDir;
using gon_test::TinySpec;

std::shared_ptr<gon::Model> load_tiny(const TempDir& dir, TinySpec spec, int threads = 2) {
  gon_test::write_tiny_checkpoint(dir.path, spec);
  gon::LoadOptions o;
  o.threads = threads;
  return gon::Model::load(dir.str(), o);
}

std::vector<int32_t> random_tokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(rng);
  return t;
}

// Logits of every position of `tokens` processed in chunks of `batch`.
std::vector<float> all_logits(std::shared_ptr<gon::Model> model, const std::vector<int32_t>& tokens, int batch) {
  gon::ContextOptions o;
  o.context_length = 256;
  o.max_batch_tokens = batch;
  o.logits_capacity = static_cast<int>(tokens.size());
  gon::Context ctx(model, o);
  ctx.append(tokens.data(), tokens.size());
  ctx.process(gon::LogitsMode::kAll);
  const int V = ctx.vocab_size();
  CHECK(ctx.logits_rows() == static_cast<int>(tokens.size()));
  return std::vector<float>(ctx.logits(), ctx.logits() + size_t(ctx.logits_rows()) * V);
}

bool all_finite(const float* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

}  // namespace

TEST(prefill_chunking_and_decode_agree_bitwise) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed();
  auto model = load_tiny(dir, spec);
  auto tokens = random_tokens(37, spec.vocab, gon_test::seed() + 1);
  const int V = spec.vocab;
  auto whole = all_logits(model, tokens, 64);
  CHECK(all_finite(whole.data(), whole.size()));
  for (int batch : {1, 3, 7, 16}) {
    auto chunked = all_logits(model, tokens, batch);
    CHECK(chunked == whole);
  }
  // Prefill 10, then decode one token at a time with logits of the last token.
  gon::ContextOptions o;
  o.context_length = 64;
  o.max_batch_tokens = 8;
  gon::Context ctx(model, o);
  ctx.append(tokens.data(), 10);
  ctx.process(gon::LogitsMode::kLast);
  CHECK(std::equal(ctx.logits(), ctx.logits() + V, whole.begin() + size_t(9) * V));
  for (size_t i = 10; i < tokens.size(); ++i) {
    ctx.append(&tokens[i], 1);
    ctx.process(gon::LogitsMode::kLast);
    CHECK(ctx.logits_rows() == 1);
    CHECK(std::equal(ctx.logits(), ctx.logits() + V, whole.begin() + i * V));
  }
}

TEST(rewind_within_and_beyond_the_ring) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 7;
  spec.window = 3;
  auto model = load_tiny(dir, spec);
  auto tokens = random_tokens(60, spec.vocab, gon_test::seed() + 2);
  const int V = spec.vocab;
  auto whole = all_logits(model, tokens, 64);

  gon::ContextOptions o;
  o.context_length = 128;
  o.max_batch_tokens = 4;
  o.rewind_window = 8;
  gon::Context ctx(model, o);
  // The ring (window 3 + 8) is rounded up to whole blocks of the backend's
  // cache layout (16 positions on the CPU), which leaves 16 - 3 to rewind.
  CHECK(ctx.options().rewind_window == 16 - 3);
  ctx.append(tokens.data(), 50);
  ctx.process(gon::LogitsMode::kNone);
  // Within the rewind window: the cache is kept.
  ctx.rewind(44);
  CHECK(ctx.num_processed() == 44);
  ctx.append(&tokens[44], 6);
  ctx.process(gon::LogitsMode::kLast);
  CHECK(std::equal(ctx.logits(), ctx.logits() + V, whole.begin() + size_t(49) * V));
  // Far beyond it: recomputed from the start, same logits.
  ctx.rewind(20);
  CHECK(ctx.num_processed() == 0);
  ctx.process(gon::LogitsMode::kLast);
  CHECK(ctx.num_processed() == 20);
  CHECK(std::equal(ctx.logits(), ctx.logits() + V, whole.begin() + size_t(19) * V));
  ctx.append(&tokens[20], 40);
  ctx.process(gon::LogitsMode::kLast);
  CHECK(std::equal(ctx.logits(), ctx.logits() + V, whole.begin() + size_t(59) * V));
  // reset and rebuild.
  ctx.reset();
  CHECK(ctx.num_tokens() == 0 && ctx.num_processed() == 0);
  ctx.append(tokens.data(), 5);
  ctx.process(gon::LogitsMode::kLast);
  CHECK(std::equal(ctx.logits(), ctx.logits() + V, whole.begin() + size_t(4) * V));
}

TEST(no_allocation_while_processing_or_sampling) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 11;
  auto model = load_tiny(dir, spec);
  auto tokens = random_tokens(40, spec.vocab, gon_test::seed() + 3);
  gon::ContextOptions o;
  o.context_length = 128;
  o.max_batch_tokens = 16;
  gon::Context ctx(model, o);
  ctx.append(tokens.data(), 8);
  ctx.process(gon::LogitsMode::kLast);  // warm-up
  const auto blocks_at_creation = ctx.memory_stats().arena_allocations;
  g_allocations = 0;
  g_counting = true;
  ctx.append(tokens.data() + 8, 32);
  ctx.process(gon::LogitsMode::kLast);
  for (int i = 0; i < 10; ++i) {
    (void)ctx.sample({0.8f, 0.9f, 1234});
    (void)ctx.sample({0.0f, 1.0f, std::nullopt});
  }
  ctx.rewind(20);
  ctx.process(gon::LogitsMode::kAll);
  g_counting = false;
  CHECK(g_allocations.load() == 0);
  auto stats = ctx.memory_stats();
  CHECK(stats.late_allocations == 0);
  CHECK(stats.arena_allocations == blocks_at_creation && blocks_at_creation >= 1);
  CHECK(stats.kv_cache_bytes > 0 && stats.device_bytes > stats.kv_cache_bytes);
}

TEST(engine_steps_allocate_nothing_and_match_contexts) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 17;
  auto model = load_tiny(dir, spec);
  // One step per step(), then loops of 5 steps per step() (the host's decode_loop; a device loop on a GPU).
  for (int loop_steps : {0, 5}) {
    gon::EngineOptions eo;
    eo.decode_loop_steps = loop_steps;
    eo.max_sequences = 3;
    eo.context_length = 96;
    eo.max_batch_tokens = 12;
    eo.text = false;
    gon::Engine engine(model, eo);
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 3; ++i) prompts.push_back(random_tokens(5 + 9 * i, spec.vocab, gon_test::seed() + 20 + i));
    gon::RequestOptions ro;
    ro.max_tokens = 40;
    ro.default_stop_tokens = false;
    std::vector<gon::RequestId> ids;
    for (int i = 0; i < 3; ++i) {
      ro.sampling = {0.9f, i == 1 ? 0.8f : 1.0f, uint64_t(100 + i)};
      ids.push_back(engine.submit(prompts[i].data(), prompts[i].size(), ro));
    }
    std::vector<std::vector<int32_t>> got(3);
    for (auto& g : got) g.reserve(64);  // the test's own bookkeeping must not count
    auto take = [&](const std::vector<gon::EngineEvent>& events) {
      for (const auto& e : events) {
        for (int i = 0; i < 3; ++i)
          if (e.id == ids[i] && e.token >= 0) got[i].push_back(e.token);
      }
    };
    // Until every prompt is prefilled (admission allocates the requests' state).
    while (got[0].empty() || got[1].empty() || got[2].empty()) take(engine.step());
    const auto blocks = engine.memory_stats().arena_allocations;
    // Steady-state decoding of three sequences: no allocation at all.
    const auto steps_before = engine.stats().steps;
    g_allocations = 0;
    g_counting = true;
    for (int s = 0; s < 5; ++s) take(engine.step());
    g_counting = false;
    CHECK(g_allocations.load() == 0);
    // Five step() calls: five forward passes, or loops of five each (all three requests have budget left).
    CHECK(engine.stats().steps - steps_before == (loop_steps > 1 ? 25u : 5u));
    while (engine.has_work()) take(engine.step());
    CHECK(engine.memory_stats().late_allocations == 0 && engine.memory_stats().arena_allocations == blocks);
    // Each request gives the tokens it gives alone in a Context with the same seed.
    for (int i = 0; i < 3; ++i) {
      gon::ContextOptions o;
      o.context_length = 96;
      gon::Context ctx(model, o);
      ctx.append(prompts[i].data(), prompts[i].size());
      std::vector<int32_t> alone;
      for (int n = 0; n < 40; ++n) alone.push_back(ctx.sample({0.9f, i == 1 ? 0.8f : 1.0f, uint64_t(100 + i)}).token);
      CHECK(got[i] == alone);
    }
  }
}

TEST(sampling_is_reproducible_and_valid) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 13;
  auto model = load_tiny(dir, spec);
  auto tokens = random_tokens(6, spec.vocab, gon_test::seed() + 4);
  auto run = [&](float temperature, float top_p, uint64_t seed) {
    gon::ContextOptions o;
    o.context_length = 64;
    gon::Context ctx(model, o);
    ctx.append(tokens.data(), tokens.size());
    std::vector<int32_t> out;
    for (int i = 0; i < 12; ++i) {
      auto r = ctx.sample({temperature, top_p, seed});
      CHECK(r.token >= 0 && r.token < spec.vocab);
      CHECK(r.logprob <= 0.0f && std::isfinite(r.logprob));
      out.push_back(r.token);
    }
    CHECK(ctx.num_tokens() == static_cast<int>(tokens.size()) + 12);
    return out;
  };
  CHECK(run(0.0f, 1.0f, 1) == run(0.0f, 1.0f, 2));  // greedy ignores the seed
  CHECK(run(1.0f, 0.9f, 42) == run(1.0f, 0.9f, 42));
  CHECK(run(1.5f, 1.0f, 7) == run(1.5f, 1.0f, 7));
  CHECK(run(5.0f, 1.0f, 7) != run(5.0f, 1.0f, 8));

  // Greedy picks the argmax of the logits and reports its log-softmax.
  gon::Context ctx(model, {});
  ctx.append(tokens.data(), tokens.size());
  ctx.process(gon::LogitsMode::kLast);
  std::vector<float> row(ctx.logits(), ctx.logits() + spec.vocab);
  auto r = ctx.sample({0.0f, 1.0f, std::nullopt});
  int best = int(std::max_element(row.begin(), row.end()) - row.begin());
  double mx = row[best], sum = 0;
  for (float v : row) sum += std::exp(double(v) - mx);
  CHECK(r.token == best);
  CHECK_NEAR(r.logprob, -std::log(sum), 1e-5);
}

TEST(sample_many_and_sampling_ahead_match_single_samples) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 17;
  auto model = load_tiny(dir, spec);
  auto prompt = random_tokens(5, spec.vocab, gon_test::seed() + 5);
  gon::ContextOptions o;
  o.context_length = 64;
  const gon::SampleOptions so{0.9f, 0.95f, uint64_t(gon_test::seed() + 99)};
  gon::Context ref(model, o);
  ref.append(prompt.data(), prompt.size());
  std::vector<gon::SampleResult> want;
  for (int i = 0; i < 30; ++i) want.push_back(ref.sample(so));
  auto same = [](const gon::SampleResult& a, const gon::SampleResult& b) {
    return a.token == b.token && a.logprob == b.logprob;
  };

  // sample_many: the tokens of single samples; a stop token ends it (included); the context's end too.
  gon::Context ctx(model, o);
  ctx.append(prompt.data(), prompt.size());
  std::vector<gon::SampleResult> got(30);
  CHECK(ctx.sample_many(so, 30, nullptr, 0, got.data()) == 30);
  for (int i = 0; i < 30; ++i) CHECK(same(got[i], want[i]));
  CHECK(std::equal(ctx.tokens(), ctx.tokens() + ctx.num_tokens(), ref.tokens()));
  const int32_t stop[2] = {spec.vocab - 1, want[11].token};
  int first = 0;
  while (want[first].token != stop[1] && want[first].token != stop[0]) ++first;
  ctx.rewind(static_cast<int>(prompt.size()));
  CHECK(ctx.sample_many(so, 30, stop, 2, got.data()) == static_cast<size_t>(first + 1));
  for (int i = 0; i <= first; ++i) CHECK(same(got[i], want[i]));
  gon::ContextOptions small = o;
  small.context_length = static_cast<int>(prompt.size()) + 7;
  gon::Context tight(model, small);
  tight.append(prompt.data(), prompt.size());
  CHECK(tight.sample_many(so, 30, nullptr, 0, got.data()) == 7);
  CHECK_THROWS_STATUS(tight.sample_many(so, 1, nullptr, 0, got.data()), kContextOverflow);
  const int32_t bad = spec.vocab;
  CHECK_THROWS_STATUS(ctx.sample_many(so, 1, &bad, 1, got.data()), kTokenOutOfRange);

  // sample_ahead: nothing joins the context until accepted; accepted tokens are those of single samples and the
  // next sample() goes on as if they had come one by one; any other change drops what is still ahead.
  gon::Context ahead(model, o);
  ahead.append(prompt.data(), prompt.size());
  CHECK(ahead.sample_ahead(so, 12, nullptr, 0, got.data()) == 12);
  for (int i = 0; i < 12; ++i) CHECK(same(got[i], want[i]));
  CHECK(ahead.num_tokens() == static_cast<int>(prompt.size()) && ahead.tokens_ahead() == 12);
  ahead.accept_ahead(1);
  ahead.accept_ahead(4);
  CHECK(ahead.num_tokens() == static_cast<int>(prompt.size()) + 5 && ahead.tokens_ahead() == 7);
  CHECK(std::equal(ahead.tokens(), ahead.tokens() + ahead.num_tokens(), ref.tokens()));
  CHECK_THROWS_STATUS(ahead.accept_ahead(8), kInvalidArgument);
  CHECK(same(ahead.sample(so), want[5]));  // drops the 6 still ahead
  CHECK(ahead.tokens_ahead() == 0);
  CHECK(ahead.sample_ahead(so, 3, nullptr, 0, got.data()) == 3);
  for (int i = 0; i < 3; ++i) CHECK(same(got[i], want[6 + i]));
  ahead.accept_ahead(3);
  CHECK(same(ahead.sample(so), want[9]));
  CHECK(ahead.sample_ahead(so, 3, nullptr, 0, got.data()) == 3);
  ahead.rewind(ahead.num_tokens());
  CHECK(ahead.tokens_ahead() == 0);
  CHECK_THROWS_STATUS(ahead.accept_ahead(1), kInvalidArgument);
  CHECK(same(ahead.sample(so), want[10]));
  CHECK(std::equal(ahead.tokens(), ahead.tokens() + ahead.num_tokens(), ref.tokens()));
  CHECK(ref.preferred_sample_chunk() == 1);  // the CPU samples one step at a time anyway
}

TEST(bad_arguments_raise_errors) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 17;
  auto model = load_tiny(dir, spec);
  gon::ContextOptions o;
  o.context_length = 8;
  o.max_batch_tokens = 4;
  gon::Context ctx(model, o);
  int32_t bad[] = {1, spec.vocab};
  CHECK_THROWS_STATUS(ctx.append(bad, 2), kTokenOutOfRange);
  CHECK(ctx.num_tokens() == 0);
  int64_t neg[] = {-1};
  CHECK_THROWS_STATUS(ctx.append(neg, 1), kTokenOutOfRange);
  int64_t huge[] = {int64_t{1} << 40};
  CHECK_THROWS_STATUS(ctx.append(huge, 1), kTokenOutOfRange);
  CHECK_THROWS_STATUS(ctx.sample({0.0f, 1.0f, std::nullopt}), kInvalidArgument);  // empty
  std::vector<int32_t> nine(9, 1);
  CHECK_THROWS_STATUS(ctx.append(nine.data(), nine.size()), kContextOverflow);
  CHECK(ctx.num_tokens() == 0);
  ctx.append(nine.data(), 8);
  CHECK_THROWS_STATUS(ctx.sample({0.0f, 1.0f, std::nullopt}), kContextOverflow);
  CHECK_THROWS_STATUS(ctx.process(gon::LogitsMode::kAll), kInvalidArgument);  // 8 pending > capacity 4
  ctx.rewind(3);
  CHECK_THROWS_STATUS(ctx.sample({-1.0f, 1.0f, std::nullopt}), kInvalidArgument);
  CHECK_THROWS_STATUS(ctx.sample({NAN, 1.0f, std::nullopt}), kInvalidArgument);
  CHECK_THROWS_STATUS(ctx.sample({1.0f, 0.0f, std::nullopt}), kInvalidArgument);
  CHECK_THROWS_STATUS(ctx.sample({1.0f, 1.5f, std::nullopt}), kInvalidArgument);
  CHECK_THROWS_STATUS(ctx.rewind(4), kInvalidArgument);
  CHECK_THROWS_STATUS(ctx.rewind(-1), kInvalidArgument);
  gon::ContextOptions bad_o;
  bad_o.context_length = 0;
  CHECK_THROWS_STATUS(gon::Context(model, bad_o), kInvalidArgument);
  bad_o.context_length = 1 << 30;
  CHECK_THROWS_STATUS(gon::Context(model, bad_o), kInvalidArgument);
  bad_o.context_length = 16;
  bad_o.max_batch_tokens = -1;
  CHECK_THROWS_STATUS(gon::Context(model, bad_o), kInvalidArgument);
  {
    // 0: the backend's choice (128 on the CPU, clamped to the context), and logits for 128 rows.
    gon::ContextOptions d;
    d.context_length = 1000;
    gon::Context c(model, d);
    CHECK(c.options().max_batch_tokens == 128 && c.options().logits_capacity == 128);
    d.context_length = 16;
    gon::Context small(model, d);
    CHECK(small.options().max_batch_tokens == 16 && small.options().logits_capacity == 16);
    d.max_batch_tokens = 40;
    d.context_length = 1000;
    gon::Context given(model, d);
    CHECK(given.options().max_batch_tokens == 40 && given.options().logits_capacity == 40);
  }
  gon::LoadOptions lo;
  lo.device = "cuda";
  CHECK_THROWS_STATUS(gon::Model::load(dir.str(), lo), kBackendUnavailable);
  lo.device = "tpu";
  CHECK_THROWS_STATUS(gon::Model::load(dir.str(), lo), kInvalidArgument);
}

TEST(checkpoint_errors) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 19;
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "missing").string()), kFileNotFound);
  CHECK_THROWS_STATUS(gon::Model::load(dir.str()), kFileNotFound);  // empty directory

  // Unknown quantisation.
  TinySpec q = spec;
  q.quant_method = "gptq";
  gon_test::write_tiny_checkpoint(dir.path / "q", q);
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "q").string()), kUnsupportedCheckpoint);

  // Wrong shape: config says more layers than the file holds.
  gon_test::write_tiny_checkpoint(dir.path / "s", spec);
  TinySpec more = spec;
  more.layers = 3;
  gon_test::write_text(dir.path / "s" / "config.json", gon_test::tiny_config_json(more));
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "s").string()), kCorruptCheckpoint);
  TinySpec wider = spec;
  wider.hidden = 96;
  gon_test::write_text(dir.path / "s" / "config.json", gon_test::tiny_config_json(wider));
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "s").string()), kCorruptCheckpoint);

  // Truncated weights and a corrupted header.
  gon_test::write_tiny_checkpoint(dir.path / "t", spec);
  auto file = dir.path / "t" / "model.safetensors";
  auto size = std::filesystem::file_size(file);
  std::filesystem::resize_file(file, size - 100);
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "t").string()), kCorruptCheckpoint);
  std::filesystem::resize_file(file, 5);
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "t").string()), kCorruptCheckpoint);
  gon_test::write_tiny_checkpoint(dir.path / "h", spec);
  {
    std::fstream f(dir.path / "h" / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(12);
    f.write("\x01\x02garbage", 9);
  }
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "h").string()), kCorruptCheckpoint);

  // Broken config.json.
  gon_test::write_tiny_checkpoint(dir.path / "c", spec);
  gon_test::write_text(dir.path / "c" / "config.json", "{\"model_type\": \"gpt_oss\", ");
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "c").string()), kCorruptCheckpoint);
  gon_test::write_text(dir.path / "c" / "config.json", "{\"model_type\": \"llama\"}");
  CHECK_THROWS_STATUS(gon::Model::load((dir.path / "c").string()), kUnsupportedCheckpoint);
}

namespace {
// A tiktoken rank file of the 256 bytes (the harmony special tokens are added
// above the tiny vocabulary, so generation samples bytes only).
std::shared_ptr<const gon::Tokenizer> byte_tokenizer() {
  static const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string f;
  for (int b = 0; b < 256; ++b) {
    const unsigned v = static_cast<unsigned>(b) << 16;
    f += std::string{kB64[(v >> 18) & 63], kB64[(v >> 12) & 63], '=', '='} + " " + std::to_string(b) + "\n";
  }
  return gon::Tokenizer::from_tiktoken(f, "bytes.tiktoken");
}

// Runs `fn` on another thread once it has started, cancels `ctx` after `delay`
// and returns the status it ended with (0: it finished without an error).
template <typename Fn>
int cancel_while_running(gon::Context& ctx, Fn fn, std::chrono::milliseconds delay) {
  std::atomic<bool> started{false};
  std::atomic<int> status{-1};
  std::thread t([&] {
    started = true;
    try {
      fn();
      status = 0;
    } catch (const gon::Error& e) {
      status = static_cast<int>(e.status());
    }
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(delay);
  ctx.cancel();
  t.join();
  return status;
}
}  // namespace

TEST(cancel_stops_process_and_generation_from_another_thread) {
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 29;
  auto model = load_tiny(dir, spec);
  const int n = 4000;
  const auto tokens = random_tokens(n, spec.vocab, gon_test::seed() + 3);
  gon::ContextOptions o;
  o.context_length = 8192;
  o.max_batch_tokens = 1;  // thousands of forward passes: a prefill long enough to cancel in its middle
  gon::Context ctx(model, o);
  ctx.append(tokens.data(), tokens.size());

  // With nothing running, a cancel stops the next call; clear_cancel() withdraws it.
  ctx.cancel();
  CHECK(ctx.clear_cancel());
  CHECK(!ctx.clear_cancel());
  ctx.cancel();
  CHECK_THROWS_STATUS(ctx.process(), kCancelled);
  CHECK(ctx.num_processed() == 0);

  // During a prefill: it stops between chunks and keeps what it processed.
  const int st = cancel_while_running(ctx, [&] { ctx.process(); }, std::chrono::milliseconds(5));
  CHECK(st == static_cast<int>(gon::Status::kCancelled));
  const int done = ctx.num_processed();
  CHECK(done < n);
  CHECK(!ctx.clear_cancel());  // consumed by the call it stopped
  ctx.process();               // goes on from there
  CHECK(ctx.num_processed() == n);
  gon::ContextOptions ro = o;
  ro.max_batch_tokens = 128;
  gon::Context ref(model, ro);
  ref.append(tokens.data(), tokens.size());
  ref.process();
  const int V = ctx.vocab_size();
  CHECK(std::vector<float>(ctx.logits(), ctx.logits() + V) == std::vector<float>(ref.logits(), ref.logits() + V));

  // During a generation: next() throws kCancelled, the generator ends with
  // kCancelled, and the context goes on with the tokens sampled so far.
  gon::GenerateOptions go;
  go.max_tokens = 1 << 20;
  go.sampling.temperature = 0.0f;
  go.default_stop_tokens = false;
  gon::Generator gen(ctx, byte_tokenizer(), go);
  int pieces = 0;
  const int gst = cancel_while_running(ctx, [&] {
    for (gon::GeneratedPiece piece; gen.next(piece);) ++pieces;
  }, std::chrono::milliseconds(20));
  CHECK(gst == static_cast<int>(gon::Status::kCancelled));
  CHECK(gen.finish_reason() == gon::FinishReason::kCancelled);
  CHECK(gen.tokens_generated() == pieces && pieces > 0 && ctx.num_tokens() == n + pieces);
  for (gon::GeneratedPiece piece; gen.next(piece);) CHECK(piece.token == -1);  // only held-back text, then done
  CHECK(!ctx.clear_cancel());
  // The same greedy tokens as a context that was never interrupted (sampling, like the
  // generator, only ids the tokenizer has text for: the bytes).
  std::vector<uint8_t> bytes(V, 0);
  std::fill(bytes.begin(), bytes.begin() + 256, uint8_t{1});
  const gon::SampleOptions greedy{0.0f, 1.0f, std::nullopt, bytes.data()};
  std::vector<int32_t> sampled(ctx.tokens() + n, ctx.tokens() + n + pieces);
  const auto next = ctx.sample(greedy);
  for (int32_t t : sampled) CHECK(ref.sample(greedy).token == t);
  CHECK(ref.sample(greedy).token == next.token);
}

GON_TEST_MAIN()

TEST(generation_in_chunks_sampled_ahead_gives_the_same_pieces) {
  // The Generator samples sample_chunk tokens per Context call (Context::sample_ahead: on a GPU one device loop)
  // and accepts them one piece at a time: the pieces, the finish and the context's tokens are those of one token
  // per call, for stop strings that end in the middle of a chunk too.
  TempDir dir;
  TinySpec spec;
  spec.seed = gon_test::seed() + 31;
  auto model = load_tiny(dir, spec);
  const auto prompt = random_tokens(7, 200, gon_test::seed() + 8);
  auto run = [&](int chunk, const std::vector<std::string>& stop, int max_tokens, std::vector<int32_t>* ctx_tokens) {
    gon::ContextOptions o;
    o.context_length = 96;
    gon::Context ctx(model, o);
    ctx.append(prompt.data(), prompt.size());
    gon::GenerateOptions go;
    go.max_tokens = max_tokens;
    go.sampling = {0.9f, 0.95f, uint64_t(gon_test::seed() + 77)};
    go.stop = stop;
    go.default_stop_tokens = false;
    go.sample_chunk = chunk;
    gon::Generator gen(ctx, byte_tokenizer(), go);
    std::vector<std::tuple<std::string, int32_t, float>> pieces;
    for (gon::GeneratedPiece p; gen.next(p);) pieces.emplace_back(p.text, p.token, p.logprob);
    if (ctx_tokens) ctx_tokens->assign(ctx.tokens(), ctx.tokens() + ctx.num_tokens());
    CHECK(ctx.tokens_ahead() == 0 || chunk > 1);
    return std::make_pair(pieces, static_cast<int>(gen.finish_reason()));
  };
  std::vector<int32_t> want_tokens, got_tokens;
  const auto want = run(1, {}, 60, &want_tokens);
  CHECK(want.first.size() >= 60 && want.second == static_cast<int>(gon::FinishReason::kLength));
  std::string text;
  for (auto& p : want.first) text += std::get<0>(p);
  for (int chunk : {4, 7, 64}) {
    CHECK(run(chunk, {}, 60, &got_tokens) == want);
    CHECK(got_tokens == want_tokens);
    // a stop string that ends inside a chunk, taken from the text (a few bytes at about the 23rd token)
    std::string upto;
    for (int i = 0; i < 23; ++i) upto += std::get<0>(want.first[i]);
    if (upto.size() < 3) continue;
    const std::vector<std::string> stop = {upto.substr(upto.size() - 3)};
    std::vector<int32_t> a, b;
    const auto ref = run(1, stop, 60, &a);
    CHECK(ref.second == static_cast<int>(gon::FinishReason::kStopString));
    CHECK(run(chunk, stop, 60, &b) == ref);
    CHECK(a == b);
  }
  // Context full in the middle of a chunk.
  std::vector<int32_t> a, b;
  const auto full = run(1, {}, 1000, &a);
  CHECK(full.second == static_cast<int>(gon::FinishReason::kContextFull));
  CHECK(run(16, {}, 1000, &b) == full);
  CHECK(a == b);

  // A cancel() between pieces ends the generation at the next piece, and the context holds the pieces taken.
  gon::ContextOptions o;
  o.context_length = 96;
  gon::Context ctx(model, o);
  ctx.append(prompt.data(), prompt.size());
  gon::GenerateOptions go;
  go.max_tokens = 60;
  go.sampling.temperature = 0.0f;
  go.default_stop_tokens = false;
  go.sample_chunk = 8;
  gon::Generator gen(ctx, byte_tokenizer(), go);
  gon::GeneratedPiece p;
  for (int i = 0; i < 3; ++i) CHECK(gen.next(p));
  CHECK(ctx.num_tokens() == static_cast<int>(prompt.size()) + 3 && ctx.tokens_ahead() == 5);
  ctx.cancel();
  CHECK_THROWS_STATUS(gen.next(p), kCancelled);
  CHECK(gen.finish_reason() == gon::FinishReason::kCancelled);
  CHECK(ctx.num_tokens() == static_cast<int>(prompt.size()) + 3);
  CHECK(!ctx.clear_cancel());
  go.sample_chunk = -1;
  CHECK_THROWS_STATUS(gon::Generator(ctx, byte_tokenizer(), go), kInvalidArgument);
}
