// The byte-level BPE vocabulary and merge loop of the tokenizer.
//
// Why it exists: encoding is a hash lookup of every pre-tokenised piece (most
// pieces are whole tokens) and, for the others, tiktoken's byte-pair merge: start
// from single bytes and repeatedly join the adjacent pair whose concatenation
// is the token of lowest rank (rank = token id), leftmost first on ties, until
// no adjacent pair forms a token. The lookups dominate, so the vocabulary is one
// byte arena plus an open-addressing hash table whose 16-byte slots hold the
// first 8 bytes of the token, its length, a hash tag and its id: a lookup of
// up to 8 bytes (most of them) reads one cache line and never the arena. In
// front of it, a bit per hash value (256 KB for o200k, cache-resident) answers
// most lookups of byte strings that are not tokens, which a merge does as
// often as the others; two-byte tokens have a direct table. The pre-tokeniser
// loop prefetches each piece's slot while it scans the next piece. Building all
// this for the 200k tokens of o200k takes about 15 ms and no per-token
// allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gon::text {

// Hash of a byte string (the vocabulary's hash function).
uint64_t hash_bytes(const uint8_t* p, size_t n);

class BpeVocab {
 public:
  static constexpr uint32_t kNoToken = 0xFFFFFFFFu;
  static constexpr size_t kMaxTokenBytes = 0xFFFF;

  BpeVocab();

  // Prepares for about `expected` tokens of about `arena_bytes` bytes in all
  // (hints only).
  void reserve(size_t expected, size_t arena_bytes);

  enum class Added { kOk, kDuplicateBytes, kDuplicateId, kBadLength };
  // Adds a token, unless its bytes or its id are already present (then
  // *existing, if given, receives the id that has these bytes or this id) or
  // it is empty or longer than kMaxTokenBytes. Ids must be below 2^31.
  Added add(std::string_view bytes, uint32_t id, uint32_t* existing = nullptr) {
    return add(bytes, id, existing, hash_bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  // The same with the bytes' hash_bytes() given (bulk inserts prefetch() it).
  Added add(std::string_view bytes, uint32_t id, uint32_t* existing, uint64_t hash);

  // Id of the token with exactly these bytes, or kNoToken.
  uint32_t find(const uint8_t* p, size_t n) const;
  // The same with hash_bytes(p, n) computed by the caller, who may have
  // prefetch()ed its slot some lookups earlier (bulk lookups).
  uint32_t find(const uint8_t* p, size_t n, uint64_t hash) const;
  void prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash & mask_]); }
  uint32_t find(std::string_view s) const {
    return find(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  // Id of the token of a single byte (kNoToken if none).
  uint32_t byte_token(uint8_t b) const { return byte_token_[b]; }

  size_t size() const { return count_; }
  // One past the largest id added.
  uint32_t id_limit() const { return id_limit_; }
  bool has(uint32_t id) const { return id < spans_.size() && spans_[id].offset != kNoToken; }
  // Bytes of a token (has(id) must hold).
  std::string_view bytes(uint32_t id) const {
    return std::string_view(arena_.data() + spans_[id].offset, spans_[id].length);
  }

  // Appends the tokens of `piece` (non-empty) to `out`: the whole piece when it
  // is a token, else the byte-pair merge. Every byte must have a token.
  void encode_piece(const uint8_t* piece, size_t n, std::vector<int32_t>& out) const {
    encode_piece(piece, n, out, n > 2 ? hash_bytes(piece, n) : 0);
  }
  // The same with hash_bytes(piece, n) given when n > 2 (the caller may have
  // prefetch()ed its slot while scanning the next piece).
  void encode_piece(const uint8_t* piece, size_t n, std::vector<int32_t>& out, uint64_t hash) const;
  // The byte-pair merge alone (no whole-piece lookup), n >= 1.
  void byte_pair_merge(const uint8_t* piece, size_t n, std::vector<int32_t>& out) const;

 private:
  void merge_small(const uint8_t* piece, size_t n, std::vector<int32_t>& out) const;
  void merge_large(const uint8_t* piece, size_t n, std::vector<int32_t>& out) const;
  uint32_t pair_rank(const uint8_t* p) const { return pair_token_[(uint32_t(p[0]) << 8) | p[1]]; }
  void rehash(size_t capacity);

  std::string arena_;
  struct Span {
    uint32_t offset;  // in arena_; kNoToken where an id has no token
    uint32_t length;
  };
  std::vector<Span> spans_;  // per id (may extend past id_limit_)
  struct Slot {
    uint64_t head;  // the first min(length, 8) bytes, little-endian, zero-padded
    uint32_t id;    // kNoToken: empty
    uint32_t meta;  // length | (hash tag << 16)
  };
  std::vector<Slot> slots_;
  // A bit per value of hash bits 24.. (4 bits per slot, so at least 8 per
  // token): a clear bit means "not a token" without touching slots_.
  std::vector<uint64_t> filter_;
  uint64_t filter_mask_ = 0;
  void set_filter(uint64_t h) {
    const uint64_t b = (h >> 24) & filter_mask_;
    filter_[b >> 6] |= uint64_t{1} << (b & 63);
  }
  bool in_filter(uint64_t h) const {
    const uint64_t b = (h >> 24) & filter_mask_;
    return (filter_[b >> 6] >> (b & 63)) & 1;
  }
  uint64_t mask_ = 0;
  size_t count_ = 0;
  uint32_t id_limit_ = 0;
  uint32_t byte_token_[256];
  std::vector<uint32_t> pair_token_;  // 65536 entries: the token of two bytes
};

}  // namespace gon::text
