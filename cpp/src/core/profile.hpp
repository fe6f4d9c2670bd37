// Optional per-operation timing of the forward pass, for finding where time
// goes: set GON_PROFILE=1 and a table of time per operation is printed to
// stderr when the process exits. Off, it costs one predictable branch per op.
// Timings are host wall time around each backend call, so they are exact for
// the CPU backend and measure only enqueueing for backends that queue work.
#pragma once

#include <chrono>

namespace gon::profile {

enum Op { kEmbed, kRmsnorm, kQkv, kRopeKv, kAttention, kOut, kRouter, kMoe, kUnembed, kSample, kNumOps };

bool enabled();
void add(Op op, double seconds, int tokens);

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
