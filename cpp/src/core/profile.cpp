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
  Totals sums;
  ~Table() {
    double total = 0;
    for (double s : sums.seconds) total += s;
    if (total <= 0) return;
    std::fprintf(stderr, "GON_PROFILE: time per operation (all batches)\n");
    for (int i = 0; i < kNumOps; ++i) {
      std::fprintf(stderr, "  %-14s %12.6f s %5.1f%%  %8ld calls  %10ld token-calls\n", kNames[i], sums.seconds[i],
                   100 * sums.seconds[i] / total, sums.calls[i], sums.tokens[i]);
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
  t.sums.seconds[op] += seconds;
  t.sums.calls[op] += 1;
  t.sums.tokens[op] += tokens;
}

const char* op_name(int op) { return op >= 0 && op < kNumOps ? kNames[op] : "?"; }

Totals totals() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  return t.sums;
}

}  // namespace gon::profile
