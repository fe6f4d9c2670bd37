// Optional per-operation timing of the forward pass, for finding where time
// goes: set GON_PROFILE=1 and a table of time per operation is printed to
// stderr when the process exits (and totals() reads the running sums, so a
// tool can take the difference over a stretch of decoding in one process).
// Off, it costs one predictable branch per op.
// Timings are host wall time around each backend call, so they are exact for
// the CPU backend and measure only enqueueing for backends that queue work.
#pragma once

#include <chrono>

namespace gon::profile {

enum Op { kEmbed, kRmsnorm, kQkv, kRopeKv, kAttention, kOut, kRouter, kMoe, kUnembed, kSample, kNumOps };

bool enabled();
void add(Op op, double seconds, int tokens);

// Name of an operation in the table ("linear(qkv)", "moe", ...).
const char* op_name(int op);

// The sums so far, per operation, since the process started.
struct Totals {
  double seconds[kNumOps] = {};
  long calls[kNumOps] = {};
  long tokens[kNumOps] = {};
};
Totals totals();

class Scope {
 public:
  Scope(Op op, int tokens) : op_(op), tokens_(tokens), on_(enabled()) {
    if (on_) start_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (on_) add(op_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(), tokens_);
  }

 private:
  Op op_;
  int tokens_;
  bool on_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace gon::profile
