// GON_PROFILE accumulation and the report printed at exit (see profile.hpp).
#include "core/profile.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace gon::profile {

namespace {
const char* const kNames[kNumOps] = {"embed", "rmsnorm", "linear(qkv)", "rope_kv_store", "attention",
                                     "linear(out)", "router", "moe", "unembed", "sample"};

struct Table {
  std::mutex mutex;
  double seconds[kNumOps] = {};
  long calls[kNumOps] = {};
  long tokens[kNumOps] = {};
  ~Table() {
    double total = 0;
    for (double s : seconds) total += s;
    if (total <= 0) return;
    std::fprintf(stderr, "GON_PROFILE: time per operation (all batches)\n");
    for (int i = 0; i < kNumOps; ++i) {
      std::fprintf(stderr, "  %-14s %9.3f s %5.1f%%  %8ld calls  %10ld token-calls\n", kNames[i], seconds[i],
                   100 * seconds[i] / total, calls[i], tokens[i]);
    }
  }
};

Table& table() {
  static Table t;
  return t;
}
}  // namespace

bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("GON_PROFILE");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}

void add(Op op, double seconds, int tokens) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.seconds[op] += seconds;
  t.calls[op] += 1;
  t.tokens[op] += tokens;
}

}  // namespace gon::profile
