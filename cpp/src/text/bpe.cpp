// BpeVocab: the token hash table and the byte-pair merge (see bpe.hpp).
#include "text/bpe.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

namespace gon::text {

namespace {

constexpr uint64_t kK0 = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kK1 = 0xD6E8FEB86659FD93ull;
constexpr uint64_t kK2 = 0xC2B2AE3D27D4EB4Full;

// Pieces up to this many bytes are merged with the array loop (quadratic, but
// the fastest for short pieces); longer ones with a heap (n log n), which wins
// from about 16 bytes on (measured on o200k: CJK text makes long pieces).
constexpr size_t kSmallPiece = 16;
// The heap loop works in stack buffers up to this many bytes.
constexpr size_t kStackPiece = 512;

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
// The first min(n, 8) bytes of p, little-endian, zero-padded.
inline uint64_t load_head(const uint8_t* p, size_t n) {
  if (n >= 8) return load64(p);
  if (n >= 4) return load32(p) | (load32(p + n - 4) << ((n - 4) * 8));
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}
// 64x64 -> 128-bit multiply, folded back to 64 bits.
inline uint64_t mul_fold(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
// A slot's meta: the length, and the top 16 bits of the hash as a tag (the
// index comes from the low bits).
inline uint32_t slot_meta(size_t n, uint64_t h) {
  return static_cast<uint32_t>(n) | static_cast<uint32_t>(h >> 48 << 16);
}

}  // namespace

uint64_t hash_bytes(const uint8_t* p, size_t n) {
  // Up to 16 bytes, (a, b, n) determine the string; longer strings are folded
  // 16 bytes at a time and end with their last 16 bytes.
  uint64_t a, b;
  if (n <= 8) {
    a = load_head(p, n);
    b = 0;
  } else if (n <= 16) {
    a = load64(p);
    b = load64(p + n - 8);
  } else {
    uint64_t h = kK0 ^ n;
    for (size_t i = 0; i + 16 < n; i += 16) h = mul_fold(load64(p + i) ^ kK1, load64(p + i + 8) ^ h);
    a = load64(p + n - 16) ^ h;
    b = load64(p + n - 8);
  }
  return mul_fold(a ^ kK1, b ^ kK2 ^ (static_cast<uint64_t>(n) * kK0));
}

BpeVocab::BpeVocab() : pair_token_(65536, kNoToken) {
  std::fill(std::begin(byte_token_), std::end(byte_token_), kNoToken);
  rehash(1024);
}

void BpeVocab::reserve(size_t expected, size_t arena_bytes) {
  arena_.reserve(arena_bytes);
  size_t cap = slots_.size();
  while (cap < 2 * expected + 2) cap *= 2;
  if (cap > slots_.size()) rehash(cap);
}

void BpeVocab::rehash(size_t capacity) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(capacity, Slot{0, kNoToken, 0});
  mask_ = slots_.size() - 1;
  filter_.assign(capacity / 16, 0);  // 4 bits per slot: 8 per token or more
  filter_mask_ = filter_.size() * 64 - 1;
  for (const Slot& s : old) {
    if (s.id == kNoToken) continue;
    const Span span = spans_[s.id];
    const uint64_t h = hash_bytes(reinterpret_cast<const uint8_t*>(arena_.data()) + span.offset, span.length);
    size_t i = h & mask_;
    while (slots_[i].id != kNoToken) i = (i + 1) & mask_;
    slots_[i] = s;
    set_filter(h);
  }
}

BpeVocab::Added BpeVocab::add(std::string_view bytes, uint32_t id, uint32_t* existing, uint64_t h) {
  if (bytes.empty() || bytes.size() > kMaxTokenBytes) return Added::kBadLength;
  if (has(id)) {
    if (existing) *existing = id;
    return Added::kDuplicateId;
  }
  if ((count_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  // One probe sequence: either the same bytes are found, or the free slot.
  const uint64_t head = load_head(p, n);
  const uint32_t meta = slot_meta(n, h);
  size_t i = h & mask_;
  for (; slots_[i].id != kNoToken; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.head == head && s.meta == meta &&
        (n <= 8 || std::memcmp(arena_.data() + spans_[s.id].offset + 8, p + 8, n - 8) == 0)) {
      if (existing) *existing = s.id;
      return Added::kDuplicateBytes;
    }
  }
  slots_[i] = Slot{head, id, meta};
  set_filter(h);
  if (id >= spans_.size()) spans_.resize(std::max<size_t>(size_t{id} + 1, spans_.size() * 3 / 2), Span{kNoToken, 0});
  spans_[id] = {static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(n)};
  arena_.append(bytes);
  ++count_;
  if (id >= id_limit_) id_limit_ = id + 1;
  if (n == 1) byte_token_[p[0]] = id;
  if (n == 2) pair_token_[(uint32_t{p[0]} << 8) | p[1]] = id;
  return Added::kOk;
}

uint32_t BpeVocab::find(const uint8_t* p, size_t n, uint64_t h) const {
  if (n > kMaxTokenBytes || !in_filter(h)) return kNoToken;
  const uint64_t head = load_head(p, n);
  const uint32_t meta = slot_meta(n, h);
  size_t i = h & mask_;
  for (;;) {
    const Slot& s = slots_[i];
    if (s.id == kNoToken) return kNoToken;
    // Up to 8 bytes, head and length are the whole key; longer keys compare the rest.
    if (s.head == head && s.meta == meta &&
        (n <= 8 || std::memcmp(arena_.data() + spans_[s.id].offset + 8, p + 8, n - 8) == 0))
      return s.id;
    i = (i + 1) & mask_;
  }
}

uint32_t BpeVocab::find(const uint8_t* p, size_t n) const { return find(p, n, hash_bytes(p, n)); }

void BpeVocab::encode_piece(const uint8_t* piece, size_t n, std::vector<int32_t>& out, uint64_t hash) const {
  if (n == 1) {
    out.push_back(static_cast<int32_t>(byte_token_[piece[0]]));
    return;
  }
  const uint32_t id = n == 2 ? pair_rank(piece) : find(piece, n, hash);
  if (id != kNoToken) {
    out.push_back(static_cast<int32_t>(id));
    return;
  }
  byte_pair_merge(piece, n, out);
}

void BpeVocab::byte_pair_merge(const uint8_t* piece, size_t n, std::vector<int32_t>& out) const {
  if (n == 1) {
    out.push_back(static_cast<int32_t>(byte_token_[piece[0]]));
  } else if (n <= kSmallPiece) {
    merge_small(piece, n, out);
  } else {
    merge_large(piece, n, out);
  }
}

// Parts are kept in arrays: start[i] (part i is piece[start[i], start[i+1])),
// its token id[i], and rank[i], the token formed by parts i and i+1 (kNoToken
// if none). Each step merges the pair of lowest rank (the leftmost of equals),
// removes one entry and recomputes the two ranks that involve the new part.
void BpeVocab::merge_small(const uint8_t* piece, size_t n, std::vector<int32_t>& out) const {
  uint32_t start[kSmallPiece + 1];
  uint32_t id[kSmallPiece];
  uint32_t rank[kSmallPiece];
  for (size_t i = 0; i < n; ++i) {
    start[i] = static_cast<uint32_t>(i);
    id[i] = byte_token_[piece[i]];
  }
  start[n] = static_cast<uint32_t>(n);
  for (size_t i = 0; i + 1 < n; ++i) rank[i] = pair_rank(piece + i);
  rank[n - 1] = kNoToken;
  size_t m = n;  // number of parts
  for (;;) {
    uint32_t best = kNoToken;
    size_t b = 0;
    for (size_t i = 0; i + 1 < m; ++i) {
      if (rank[i] < best) {
        best = rank[i];
        b = i;
      }
    }
    if (best == kNoToken) break;
    id[b] = best;
    for (size_t k = b + 1; k + 1 < m; ++k) {  // remove part b + 1
      start[k] = start[k + 1];
      id[k] = id[k + 1];
      rank[k] = rank[k + 1];
    }
    start[m - 1] = start[m];
    --m;
    rank[b] = b + 1 < m ? find(piece + start[b], start[b + 2] - start[b]) : kNoToken;
    if (b > 0) rank[b - 1] = find(piece + start[b - 1], start[b + 1] - start[b - 1]);
  }
  for (size_t i = 0; i < m; ++i) out.push_back(static_cast<int32_t>(id[i]));
}

// The same merge order with a min-heap of (rank, start) and a linked list of
// parts indexed by their first byte; heap entries whose rank no longer matches
// the part's current right-hand rank are stale and skipped.
void BpeVocab::merge_large(const uint8_t* piece, size_t n, std::vector<int32_t>& out) const {
  struct Part {
    uint32_t end;   // start of the next part (n for the last)
    uint32_t prev;  // start of the previous part
    uint32_t id;    // token of this part
    uint32_t rank;  // token formed with the next part, or kNoToken (also for removed parts)
  };
  Part parts_stack[kStackPiece];
  uint64_t heap_stack[kStackPiece];
  std::vector<Part> parts_heap;
  std::vector<uint64_t> heap_heap;
  Part* parts = parts_stack;
  uint64_t* heap = heap_stack;
  if (n > kStackPiece) {
    parts_heap.resize(n);
    heap_heap.resize(2 * n);  // each merge pops one entry and pushes at most two
    parts = parts_heap.data();
    heap = heap_heap.data();
  }
  // A min-heap of (rank << 32 | start) in heap[0, size).
  size_t size = 0;
  for (size_t i = 0; i < n; ++i) {
    Part& p = parts[i];
    p.end = static_cast<uint32_t>(i + 1);
    p.prev = static_cast<uint32_t>(i - 1);
    p.id = byte_token_[piece[i]];
    p.rank = i + 1 < n ? pair_rank(piece + i) : kNoToken;
    if (p.rank != kNoToken) heap[size++] = (uint64_t{p.rank} << 32) | i;
  }
  const auto later = std::greater<uint64_t>();
  std::make_heap(heap, heap + size, later);
  const size_t capacity = n > kStackPiece ? 2 * n : kStackPiece;
  auto set_rank = [&](uint32_t i) {
    Part& p = parts[i];
    p.rank = p.end < n ? find(piece + i, parts[p.end].end - i) : kNoToken;
    if (p.rank != kNoToken) {
      if (size == capacity) {  // only stale entries can fill it: drop them
        size_t k = 0;
        for (size_t j = 0; j < size; ++j) {
          const auto s = static_cast<uint32_t>(heap[j]);
          if (parts[s].rank == static_cast<uint32_t>(heap[j] >> 32)) heap[k++] = heap[j];
        }
        size = k;
        std::make_heap(heap, heap + size, later);
      }
      heap[size++] = (uint64_t{p.rank} << 32) | i;
      std::push_heap(heap, heap + size, later);
    }
  };
  while (size > 0) {
    std::pop_heap(heap, heap + size, later);
    const uint64_t top = heap[--size];
    const auto i = static_cast<uint32_t>(top);
    const auto rank = static_cast<uint32_t>(top >> 32);
    Part& left = parts[i];
    if (left.rank != rank) continue;  // stale
    Part& right = parts[left.end];
    left.id = rank;
    left.end = right.end;
    right.rank = kNoToken;  // removed
    if (left.end < n) parts[left.end].prev = i;
    set_rank(i);
    if (i > 0) set_rank(left.prev);
  }
  for (size_t i = 0; i < n; i = parts[i].end) out.push_back(static_cast<int32_t>(parts[i].id));
}

}  // namespace gon::text
