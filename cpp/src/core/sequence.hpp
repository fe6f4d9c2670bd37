// The bookkeeping of one sequence in a KV cache slot: its tokens, how many of
// them have their keys and values in the cache, and what a rewind keeps.
//
// Sliding-window layers keep a ring of `ring_capacity` positions, so a rewind
// to n keeps the cache only while every sliding layer still holds positions
// n - W + 1 .. n - 1, i.e. high_water - n <= ring_capacity - W (high_water:
// the highest position written since the cache was last rebuilt); otherwise
// the cache is rebuilt from the start on the next step. Used by Context (one
// sequence) and Engine (one per slot).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace gon {

class Sequence {
 public:
  // Allocates the token buffer once (context_length ids).
  void init(int context_length, int ring_capacity, int sliding_window) {
    tokens_.assign(static_cast<size_t>(context_length), 0);
    context_length_ = context_length;
    ring_capacity_ = ring_capacity;
    sliding_window_ = sliding_window;
    clear();
  }

  int context_length() const { return context_length_; }
  int num_tokens() const { return num_tokens_; }
  int num_processed() const { return num_processed_; }
  int pending() const { return num_tokens_ - num_processed_; }
  const int32_t* tokens() const { return tokens_.data(); }
  int32_t token(int i) const { return tokens_[static_cast<size_t>(i)]; }
  bool has_ring() const { return ring_capacity_ < context_length_; }
  // Tokens a rewind may go back behind the furthest processed one, keeping the cache.
  int rewind_window() const { return has_ring() ? ring_capacity_ - sliding_window_ : context_length_; }

  // Appends ids already validated by the caller (they fit).
  template <typename T>
  void append(const T* ids, size_t count) {
    for (size_t i = 0; i < count; ++i) tokens_[num_tokens_ + i] = static_cast<int32_t>(ids[i]);
    num_tokens_ += static_cast<int>(count);
  }
  void push(int32_t id) { tokens_[num_tokens_++] = id; }

  // `count` more tokens have their KV in the cache.
  void processed(int count) {
    num_processed_ += count;
    high_water_ = std::max(high_water_, num_processed_ - 1);
  }
  // The cache was written at `position` (past the tokens kept: a device loop
  // that went on after the sequence ended), so a later rewind accounts for it.
  void wrote(int position) { high_water_ = std::max(high_water_, position); }
  // Makes the last processed token pending again, so that the next step
  // recomputes its logits and rewrites its cache entries with the same values.
  // That step reads the window before that token, which the ring may no longer
  // hold: rewind() keeps the cache when the ring holds what the next new token
  // reads, one position less than this, so after a rewind by exactly
  // rewind_window() the oldest position needed is gone. Then the cache is
  // dropped and every token becomes pending.
  void unprocess_last() {
    if (has_ring() && high_water_ - (num_processed_ - 1) > ring_capacity_ - sliding_window_) {
      num_processed_ = 0;
      high_water_ = -1;
      return;
    }
    num_processed_ -= 1;
  }

  // Keeps the first n tokens (0 <= n <= num_tokens). Returns true when the
  // cache of the kept tokens stays usable: always without a ring; with one,
  // when nothing written since (the furthest position written, high water)
  // has wrapped over the window the next token reads. That includes writes
  // past the processed tokens (a decode loop that went on after its sequence
  // ended: wrote()), so the check applies for n >= num_processed too.
  bool rewind(int n) {
    num_tokens_ = n;
    const int keep = std::min(n, num_processed_);
    if (!has_ring() || high_water_ - keep <= ring_capacity_ - sliding_window_) {
      num_processed_ = keep;
      return true;
    }
    num_processed_ = 0;
    high_water_ = -1;
    return false;
  }

  // Length of the common prefix of the sequence's tokens and ids[0..count).
  template <typename T>
  int common_prefix(const T* ids, size_t count) const {
    const int n = static_cast<int>(std::min<size_t>(count, static_cast<size_t>(num_tokens_)));
    int i = 0;
    while (i < n && tokens_[i] == static_cast<int32_t>(ids[i])) ++i;
    return i;
  }
  // Processed tokens of the prefix of length n that a rewind to n keeps.
  int reusable(int n) const {
    n = std::min(n, num_processed_);
    if (!has_ring() || high_water_ - n <= ring_capacity_ - sliding_window_) return n;
    return 0;
  }

  void clear() {
    num_tokens_ = 0;
    num_processed_ = 0;
    high_water_ = -1;
  }

 private:
  std::vector<int32_t> tokens_;
  int context_length_ = 0;
  int ring_capacity_ = 0;
  int sliding_window_ = 0;
  int num_tokens_ = 0;
  int num_processed_ = 0;
  int high_water_ = -1;
};

// The ring capacity of sliding-window layers: the window, plus room for a whole
// step of new keys, plus the rewind headroom, rounded up to whole blocks of the
// backend's cache layout; never more than the context.
inline int ring_capacity_for(int sliding_window, int context_length, int rewind_window, int max_step_tokens,
                             int block_positions) {
  if (sliding_window <= 0) return context_length;
  int64_t ring = int64_t{sliding_window} + std::max<int64_t>(rewind_window, max_step_tokens - 1);
  ring = (ring + block_positions - 1) / block_positions * block_positions;
  return static_cast<int>(std::min<int64_t>(ring, context_length));
}

}  // namespace gon
