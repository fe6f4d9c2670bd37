// A main() for the fuzz targets when libFuzzer is not available (gcc builds).
//
// clang builds link the fuzz_*.cpp targets with -fsanitize=fuzzer; with gcc
// CMake links them with this file instead, so the same targets still run: each
// corpus input once, then random mutations of the corpus for a given time.
// There is no coverage feedback, so the mutations are aimed at our formats:
// besides bit flips, byte inserts/deletes and splices, they write interesting
// integers into the 8-byte safetensors length and into the digits of the JSON,
// insert JSON/safetensors tokens, and mutate the JSON of a safetensors file
// while keeping its length field consistent. Built with -fsanitize=address,
// undefined (GON_SANITIZE=ON) it finds memory errors and UB.
//
//   fuzz_x [-seconds=N] [-seed=S] [-runs=N] [-max_len=N] [-timeout=S]
//          [-artifact_prefix=P] [corpus_dir_or_file ...]
//
// -seconds (alias -max_total_time, as libFuzzer spells it) defaults to 0: only
// the given inputs are run, so `fuzz_x crash-1234` replays a finding. On a
// finding (crash, sanitizer report, exception escaping the target, an input
// running longer than -timeout seconds) the input is written to
// <artifact_prefix>crash-<hash> (or timeout-<hash>) and the exit status is non-zero.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));
// Provided by the sanitizer runtimes; null when built without sanitizers.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

// ---- what the crash paths need (kept async-signal-safe) ----------------------------

const uint8_t* volatile g_input = nullptr;
volatile size_t g_input_size = 0;
char g_artifact_prefix[3072] = "./";
std::atomic<bool> g_dumped{false};
std::atomic<int64_t> g_run_started_ns{0};  // 0 while no input is running

void write_stderr(const char* s) { (void)!::write(2, s, std::strlen(s)); }

// Writes the running input to <prefix><kind>-<hash>. Signal-safe: no allocation.
void dump_input(const char* kind) {
  if (g_dumped.exchange(true)) return;
  const uint8_t* data = g_input;
  const size_t size = g_input_size;
  if (data == nullptr && size != 0) return;
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  char path[4096];
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s && n + 1 < sizeof path) path[n++] = *s++;
  };
  put(g_artifact_prefix);
  put(kind);
  put("-");
  for (int i = 15; i >= 0; --i) {
    if (n + 1 < sizeof path) path[n++] = "0123456789abcdef"[(h >> (4 * i)) & 15];
  }
  path[n] = '\0';
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    size_t done = 0;
    while (done < size) {
      const ssize_t w = ::write(fd, data + done, size - done);
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
    ::close(fd);
    write_stderr("==fuzz driver== the failing input was written to ");
    write_stderr(path);
    write_stderr("\n");
  } else {
    write_stderr("==fuzz driver== could not write the failing input to ");
    write_stderr(path);
    write_stderr("\n");
  }
}

void on_sanitizer_death() { dump_input("crash"); }

}  // namespace

// gcc's UBSan runtime is separate from ASan's and does not run the death
// callback; making it abort after a report lets the SIGABRT handler save the
// input. (UBSAN_OPTIONS in the environment still takes precedence.)
extern "C" const char* __ubsan_default_options() { return "abort_on_error=1:print_stacktrace=1"; }

namespace {

void on_signal(int sig) {
  write_stderr("==fuzz driver== deadly signal\n");
  dump_input("crash");
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// ---- running one input ---------------------------------------------------------------

// Runs the target on an exact-size heap copy of `input` (so that ASan flags any
// read past its end). Returns false on an exception escaping the target.
bool run_one(const Bytes& input) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[input.size()]);
  if (!input.empty()) std::memcpy(copy.get(), input.data(), input.size());
  g_input = copy.get();
  g_input_size = input.size();
  g_run_started_ns.store(now_ns(), std::memory_order_relaxed);
  bool ok = true;
  try {
    LLVMFuzzerTestOneInput(copy.get(), input.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "==fuzz driver== uncaught exception from the target: %s\n", e.what());
    ok = false;
  } catch (...) {
    std::fprintf(stderr, "==fuzz driver== uncaught non-standard exception from the target\n");
    ok = false;
  }
  g_run_started_ns.store(0, std::memory_order_relaxed);
  if (!ok) dump_input("crash");
  g_input = nullptr;
  g_input_size = 0;
  return ok;
}

// ---- mutations -------------------------------------------------------------------------

const char* const kInterestingNumbers[] = {
    "0", "1", "-1", "-0", "2", "7", "8", "16", "255", "256", "65535", "65536", "2147483647", "2147483648",
    "4294967295", "4294967296", "4611686018427387904", "9007199254740993", "9223372036854775807",
    "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "18446744073709551615",
    "18446744073709551616", "99999999999999999999999999", "1e308", "1e309", "-1e400", "1e-400", "1.5", "0.0",
    "4.0", "1e2", "1E+2", "2.5e-1", "00", "01", "-", "1.", ".5", "1e", "0x10"};

const char* const kTokens[] = {
    "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "\"F32\"", "\"BF16\"", "\"U8\"", "\"I64\"",
    "\"F8_E4M3\"", "\"F4\"", "\"BOOL\"", "null", "true", "false", "[]", "{}", "[0,0]", "[1]", "\\u0000", "\\ud800",
    "\\udc00", "\\ud83d\\ude00", "\\u00e9", "\\\"", "\\\\", "\\/", "\\x", "\xC3\xA9", "\xED\xA0\x80",
    "\xF4\x90\x80\x80", "\xC0\x80", "\xEF\xBB\xBF", ",", ":", "\"", "[", "{", "]", "}", " ", "\n", "\t", "1e999",
    "-0", "\"\":", "{\"a\":", "[[[[[[[[", "]]]]]]]]"};

const uint8_t kInterestingBytes[] = {0x00, 0x01, 0x1F, 0x20, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4,
                                     0xFF, '"', '\\', '{', '}', '[', ']', ',', ':', '0', '9', '-', '.', 'e', 'u'};

class Mutator {
 public:
  Mutator(uint64_t seed, const std::vector<Bytes>& corpus, size_t max_len)
      : rng_(seed), corpus_(corpus), max_len_(max_len) {}

  Bytes next() {
    Bytes d = corpus_.empty() ? Bytes{} : corpus_[rng_() % corpus_.size()];
    const int rounds = 1 + static_cast<int>(geometric());
    uint64_t n = 0;
    if (d.size() >= 10 && (rng_() & 1) && (n = read_u64(d)) >= 2 && n <= d.size() - 8) {
      // A safetensors file: mutate its header JSON (and sometimes its data),
      // then keep the length field consistent most of the time.
      Bytes json(d.begin() + 8, d.begin() + 8 + static_cast<std::ptrdiff_t>(n));
      Bytes rest(d.begin() + 8 + static_cast<std::ptrdiff_t>(n), d.end());
      for (int i = 0; i < rounds; ++i) mutate(json);
      if (rng_() % 8 == 0) mutate(rest);
      Bytes out(8);
      write_u64(out, rng_() % 16 == 0 ? n : json.size());
      out.insert(out.end(), json.begin(), json.end());
      out.insert(out.end(), rest.begin(), rest.end());
      d = std::move(out);
    } else {
      for (int i = 0; i < rounds; ++i) mutate(d);
    }
    if (d.size() > max_len_) d.resize(max_len_);
    return d;
  }

 private:
  size_t geometric() {
    size_t k = 0;
    while (k < 8 && (rng_() & 1)) ++k;
    return k;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }

  static uint64_t read_u64(const Bytes& d) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | d[static_cast<size_t>(i)];
    return n;
  }
  static void write_u64(Bytes& d, uint64_t v, size_t at = 0) {
    for (size_t i = 0; i < 8 && at + i < d.size(); ++i) d[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }

  void insert(Bytes& d, size_t pos, std::string_view s) {
    d.insert(d.begin() + static_cast<std::ptrdiff_t>(std::min(pos, d.size())), s.begin(), s.end());
  }

  uint64_t interesting_u64(size_t size) {
    const uint64_t v[] = {0,
                          1,
                          2,
                          7,
                          8,
                          size,
                          size - 7,
                          size - 8,
                          size - 9,
                          0x7FFFFFFF,
                          0x80000000,
                          0xFFFFFFFF,
                          0x100000000,
                          0x7FFFFFFFFFFFFFFF,
                          0x8000000000000000,
                          ~uint64_t{0},
                          100'000'000,
                          100'000'001,
                          rng_(),
                          rng_() % 256};
    return v[below(std::size(v))];
  }

  void mutate(Bytes& d) {
    switch (below(13)) {
      case 0:  // flip a bit
        if (!d.empty()) d[below(d.size())] ^= static_cast<uint8_t>(1u << below(8));
        return;
      case 1:  // random byte
        if (!d.empty()) d[below(d.size())] = static_cast<uint8_t>(rng_());
        return;
      case 2:  // interesting byte
        if (!d.empty()) d[below(d.size())] = kInterestingBytes[below(std::size(kInterestingBytes))];
        return;
      case 3: {  // insert a few bytes
        const size_t pos = below(d.size() + 1);
        const size_t n = 1 + below(4);
        for (size_t i = 0; i < n; ++i)
          d.insert(d.begin() + static_cast<std::ptrdiff_t>(pos),
                   (rng_() & 1) ? static_cast<uint8_t>(rng_()) : kInterestingBytes[below(std::size(kInterestingBytes))]);
        return;
      }
      case 4: {  // delete a range
        if (d.empty()) return;
        const size_t pos = below(d.size());
        const size_t n = 1 + below(std::min<size_t>(16, d.size() - pos));
        d.erase(d.begin() + static_cast<std::ptrdiff_t>(pos), d.begin() + static_cast<std::ptrdiff_t>(pos + n));
        return;
      }
      case 5: {  // copy a range of the input elsewhere (insert or overwrite)
        if (d.size() < 2) return;
        const size_t from = below(d.size());
        const size_t n = 1 + below(std::min<size_t>(32, d.size() - from));
        const Bytes chunk(d.begin() + static_cast<std::ptrdiff_t>(from), d.begin() + static_cast<std::ptrdiff_t>(from + n));
        const size_t to = below(d.size() + 1);
        if (rng_() & 1) {
          d.insert(d.begin() + static_cast<std::ptrdiff_t>(to), chunk.begin(), chunk.end());
        } else {
          for (size_t i = 0; i < n && to + i < d.size(); ++i) d[to + i] = chunk[i];
        }
        return;
      }
      case 6: {  // splice with another corpus input
        if (corpus_.empty()) return;
        const Bytes& o = corpus_[below(corpus_.size())];
        if (o.empty()) return;
        const size_t from = below(o.size());
        const size_t n = 1 + below(std::min<size_t>(64, o.size() - from));
        const size_t to = below(d.size() + 1);
        if (rng_() & 1) {
          d.insert(d.begin() + static_cast<std::ptrdiff_t>(to), o.begin() + static_cast<std::ptrdiff_t>(from),
                   o.begin() + static_cast<std::ptrdiff_t>(from + n));
        } else {  // this input's head, the other's tail
          d.resize(to);
          d.insert(d.end(), o.begin() + static_cast<std::ptrdiff_t>(from), o.end());
        }
        return;
      }
      case 7:  // interesting integer into the 8-byte length field (or anywhere)
        if (d.size() >= 8) write_u64(d, interesting_u64(d.size()), (rng_() % 4) ? 0 : below(d.size() - 7));
        return;
      case 8:
      case 9: {  // replace a run of digits with an interesting number
        std::vector<size_t> starts;
        for (size_t i = 0; i < d.size(); ++i)
          if (d[i] >= '0' && d[i] <= '9' && (i == 0 || d[i - 1] < '0' || d[i - 1] > '9')) starts.push_back(i);
        if (starts.empty()) return;
        size_t b = starts[below(starts.size())], e = b;
        while (e < d.size() && d[e] >= '0' && d[e] <= '9') ++e;
        if (b > 0 && d[b - 1] == '-') --b;
        std::string repl;
        switch (below(4)) {
          case 0: {  // the number +- a little
            uint64_t v = 0;
            for (size_t i = b; i < e; ++i)
              if (d[i] != '-') v = v * 10 + (d[i] - '0');
            repl = std::to_string(v + below(5) - 2);
            break;
          }
          case 1: repl = std::to_string(rng_() >> below(64)); break;
          default: repl = kInterestingNumbers[below(std::size(kInterestingNumbers))]; break;
        }
        d.erase(d.begin() + static_cast<std::ptrdiff_t>(b), d.begin() + static_cast<std::ptrdiff_t>(e));
        insert(d, b, repl);
        return;
      }
      case 10:  // insert a token
        insert(d, below(d.size() + 1), kTokens[below(std::size(kTokens))]);
        return;
      case 11: {  // point the length field at a '}' (a plausible end of the header)
        std::vector<size_t> ends;
        for (size_t i = 9; i < d.size(); ++i)
          if (d[i] == '}') ends.push_back(i);
        if (!ends.empty()) write_u64(d, ends[below(ends.size())] + 1 - 8);
        return;
      }
      default: {  // swap two bytes
        if (d.size() < 2) return;
        std::swap(d[below(d.size())], d[below(d.size())]);
        return;
      }
    }
  }

  std::mt19937_64 rng_;
  const std::vector<Bytes>& corpus_;
  size_t max_len_;
};

// ---- command line ------------------------------------------------------------------------

bool read_file(const std::filesystem::path& p, Bytes& out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

bool flag(const char* arg, const char* name, std::string& value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);

  double seconds = 0;
  uint64_t seed = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
  long long max_runs = -1;
  size_t max_len = 0;
  double timeout = 20;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    const char* a = argv[i];
    if (flag(a, "-seconds", v) || flag(a, "-max_total_time", v)) seconds = std::atof(v.c_str());
    else if (flag(a, "-seed", v)) seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag(a, "-runs", v)) max_runs = std::atoll(v.c_str());
    else if (flag(a, "-max_len", v)) max_len = static_cast<size_t>(std::atoll(v.c_str()));
    else if (flag(a, "-timeout", v)) timeout = std::atof(v.c_str());
    else if (flag(a, "-artifact_prefix", v)) std::snprintf(g_artifact_prefix, sizeof g_artifact_prefix, "%s", v.c_str());
    else if (a[0] == '-') std::fprintf(stderr, "fuzz driver: ignoring unknown flag %s\n", a);
    else paths.emplace_back(a);
  }

  // The corpus: every regular file under each directory, plus files named directly.
  std::vector<Bytes> corpus;
  for (const auto& p : paths) {
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p, ec))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
    } else {
      files.emplace_back(p);
    }
    for (const auto& f : files) {
      Bytes b;
      if (!read_file(f, b)) {
        std::fprintf(stderr, "fuzz driver: cannot read %s\n", f.c_str());
        return 2;
      }
      corpus.push_back(std::move(b));
    }
  }
  size_t largest = 0;
  for (const auto& c : corpus) largest = std::max(largest, c.size());
  if (max_len == 0) max_len = std::max<size_t>(4096, 2 * largest);

  if (__sanitizer_set_death_callback) {
    __sanitizer_set_death_callback(on_sanitizer_death);
  } else {
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE}) ::signal(sig, on_signal);
  }
  ::signal(SIGABRT, on_signal);

  // Watchdog: an input running longer than `timeout` seconds is a finding.
  if (timeout > 0) {
    std::thread([timeout] {
      for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const int64_t started = g_run_started_ns.load(std::memory_order_relaxed);
        if (started != 0 && static_cast<double>(now_ns() - started) > timeout * 1e9) {
          write_stderr("==fuzz driver== an input ran longer than the timeout\n");
          dump_input("timeout");
          std::_Exit(70);
        }
      }
    }).detach();
  }

  std::printf("fuzz driver: seed %llu, %zu corpus inputs, max_len %zu, fuzzing for %g s\n",
              static_cast<unsigned long long>(seed), corpus.size(), max_len, seconds);
  std::fflush(stdout);

  const auto t0 = Clock::now();
  for (const auto& c : corpus)
    if (!run_one(c)) return 1;
  const size_t corpus_inputs = corpus.size();
  std::printf("fuzz driver: ran %zu corpus inputs\n", corpus_inputs);
  std::fflush(stdout);

  if (corpus.empty()) corpus = {Bytes{}, Bytes{'{', '}'}, Bytes{'[', ']'}, Bytes{'0'}};
  Mutator mutator(seed, corpus, max_len);
  long long iterations = 0;
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto next_report = t0 + std::chrono::seconds(10);
  while (max_runs < 0 || iterations < max_runs) {
    if ((iterations & 63) == 0) {
      const auto now = Clock::now();
      if (max_runs < 0 && now >= deadline) break;
      if (now >= next_report) {
        const double el = std::chrono::duration<double>(now - t0).count();
        std::printf("#%lld  %.0f s  %.0f exec/s\n", iterations, el, iterations / el);
        std::fflush(stdout);
        next_report += std::chrono::seconds(10);
      }
    }
    if (!run_one(mutator.next())) return 1;
    ++iterations;
  }
  const double el = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("fuzz driver: done, %zu corpus inputs + %lld mutated inputs in %.1f s (%.0f exec/s), no failures\n",
              corpus_inputs, iterations, el, el > 0 ? iterations / el : 0.0);
  return 0;
}
