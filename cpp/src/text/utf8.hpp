// UTF-8 helpers of the tokenizer: validation, decoding, and replacement of
// invalid bytes with U+FFFD exactly as Python's bytes.decode("utf-8",
// errors="replace") does.
//
// Why these exist: encode() must reject invalid UTF-8 naming the byte offset,
// encode_bytes() needs the longest valid prefix (Rust's Utf8Error::valid_up_to,
// as tiktoken uses it), the pre-tokeniser decodes code points of validated
// text, and the stream decoder must emit the same U+FFFD characters as a
// Python decode of the whole byte string would.
//
// Well-formed UTF-8 (Unicode Table 3-7): the second byte of E0 is A0..BF, of ED
// 80..9F (no surrogates), of F0 90..BF, of F4 80..8F; C0, C1 and F5..FF never
// occur. Replacement follows the "maximal subpart" practice (one U+FFFD per
// maximal prefix of a well-formed sequence, one per other invalid byte), which
// is what CPython implements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace gon::text {

// Range of the second byte after lead byte `b` of a multi-byte sequence, and
// the sequence length; length 0 for a byte that cannot start a sequence.
struct Utf8Lead {
  uint8_t length;
  uint8_t lo, hi;  // allowed range of the second byte
};

inline Utf8Lead utf8_lead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Length of the well-formed sequence at s[0..n) (n >= 1), or 0 if the bytes at
// s do not start one (invalid or truncated). `*prefix` (if given) receives the
// length of the maximal subpart: how many bytes form a valid but incomplete
// prefix (at least 1: an invalid lone byte is a subpart of length 1).
inline size_t utf8_sequence(const uint8_t* s, size_t n, size_t* prefix = nullptr) {
  const Utf8Lead lead = utf8_lead(s[0]);
  if (lead.length == 1) return 1;
  size_t k = 1;
  if (lead.length != 0 && n > 1 && s[1] >= lead.lo && s[1] <= lead.hi) {
    k = 2;
    while (k < lead.length && k < n && (s[k] & 0xC0) == 0x80) ++k;
    if (k == lead.length) return k;
  }
  if (prefix) *prefix = k;
  return 0;
}

// Length of the longest valid UTF-8 prefix of s[0..n): n when all of it is
// valid, else the offset of the first byte of the first invalid or truncated
// sequence (Rust's Utf8Error::valid_up_to).
inline size_t utf8_valid_prefix(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    // Eight ASCII bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const size_t len = utf8_sequence(s + i, n - i);
    if (len == 0) return i;
    i += len;
  }
  return n;
}

// Decodes the code point at s (valid UTF-8 assumed); returns its byte length.
inline int utf8_decode(const uint8_t* s, uint32_t* cp) {
  const uint8_t b = s[0];
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  if (b < 0xE0) {
    *cp = ((b & 0x1Fu) << 6) | (s[1] & 0x3Fu);
    return 2;
  }
  if (b < 0xF0) {
    *cp = ((b & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    return 3;
  }
  *cp = ((b & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
  return 4;
}

inline constexpr char kReplacementCharacter[] = "\xEF\xBF\xBD";  // U+FFFD

// Appends s[0..n) to `out` with every invalid sequence replaced by U+FFFD, the
// way Python's errors="replace" does. When `final` is false, a valid but
// incomplete sequence at the very end is not consumed (more bytes may complete
// it); the return value is the number of bytes consumed.
inline size_t utf8_append_replacing(std::string& out, const uint8_t* s, size_t n, bool final) {
  size_t i = 0;
  while (i < n) {
    size_t start = i;
    while (i < n && s[i] < 0x80) ++i;
    if (i > start) out.append(reinterpret_cast<const char*>(s + start), i - start);
    if (i >= n) break;
    size_t prefix = 1;
    const size_t len = utf8_sequence(s + i, n - i, &prefix);
    if (len != 0) {
      out.append(reinterpret_cast<const char*>(s + i), len);
      i += len;
      continue;
    }
    // Invalid: either the maximal subpart runs into the end of the input (it
    // may still be completed) or it is followed by a byte that breaks it.
    if (!final && i + prefix == n && prefix < utf8_lead(s[i]).length) return i;
    out.append(kReplacementCharacter, 3);
    i += prefix;
  }
  return n;
}

}  // namespace gon::text
