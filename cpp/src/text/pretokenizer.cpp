// The o200k pre-tokeniser as a hand-written scanner (see pretokenizer.hpp).
//
// How the regex behaves, alternative by alternative, at a start position with
// first character x0 (fancy-regex backtracks; the first alternative that
// matches wins; within it, the first successful path of the greedy
// quantifiers). Let U = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], W = [\p{Ll}\p{Lm}\p{Lo}\p{M}],
// P = [^\r\n\p{L}\p{N}], Q = [^\s\p{L}\p{N}], C = the contraction group.
//
//  1. P? U* W+ C?   Tried with the prefix consumed (when x0 is in P), then
//     without. For a start s: U* first takes the whole U-run, W+ the whole
//     W-run after it; if that W-run is empty, U* gives back characters until
//     W+ can take one, i.e. the match ends right after the last character of
//     the U-run that is also in W (Lm, Lo or M). It fails only when the U-run
//     holds nothing but Lu/Lt and is followed by no W character. C? is greedy
//     and cannot fail, so it never causes backtracking.
//  2. P? U+ W* C?   Reached only when 1 failed, so the U-run is all Lu/Lt and
//     no W follows: the match is that run (plus C?).
//  3. \p{N}{1,3}
//  4. ' '? Q+ [\r\n/]*   (the optional character is ASCII space only)
//  5. \s* [\r\n]+   \s* takes the whole White_Space run and gives back until
//     [\r\n]+ matches: the match ends after the last \r or \n of the run.
//  6. \s+(?!\S)     the whole run at the end of the text, else the run minus
//     its last character (if that leaves one).
//  7. \s+           a single White_Space character followed by a non-space.
//
// Every character is covered by some alternative (letters by 1/2, numbers by 3,
// White_Space by 5-7, everything else by 4), so matches tile the text. C is
// (?i:'s|'t|'re|'ve|'m|'ll|'d) with an ASCII apostrophe; case-insensitively
// 's' also matches U+017F LATIN SMALL LETTER LONG S (simple case folding), as it
// does in Rust's regex crate.
#include "text/pretokenizer.hpp"

#include <cstdint>

#include "text/utf8.hpp"

namespace gon::text {

namespace {

#include "gon_unicode_tables.inc"

constexpr size_t kNone = ~size_t{0};

constexpr uint8_t bit(int c) { return static_cast<uint8_t>(1u << c); }
constexpr uint8_t kSetU = bit(kClassUpper) | bit(kClassLetter) | bit(kClassMark);  // [Lu Lt Lm Lo M]
constexpr uint8_t kSetW = bit(kClassLower) | bit(kClassLetter) | bit(kClassMark);  // [Ll Lm Lo M]
constexpr uint8_t kSetUW = kSetU & kSetW;                                          // [Lm Lo M]
constexpr uint8_t kSetQ = bit(kClassOther) | bit(kClassMark);                      // [^\s\p{L}\p{N}]

inline bool in(uint8_t set, uint8_t cls) { return (set >> cls) & 1u; }

struct AsciiClasses {
  uint8_t c[128];
  constexpr AsciiClasses() : c() {
    for (int i = 0; i < 128; ++i) {
      uint8_t k = kClassOther;
      if (i >= 'A' && i <= 'Z') k = kClassUpper;
      if (i >= 'a' && i <= 'z') k = kClassLower;
      if (i >= '0' && i <= '9') k = kClassNumber;
      if (i == ' ' || (i >= 0x09 && i <= 0x0D)) k = kClassSpace;
      c[i] = k;
    }
  }
};
constexpr AsciiClasses kAscii;

inline uint8_t table_class(uint32_t cp) {
  return kUnicodeStage2[(static_cast<uint32_t>(kUnicodeStage1[cp >> kUnicodeBlockShift]) << kUnicodeBlockShift) |
                        (cp & ((1u << kUnicodeBlockShift) - 1))];
}

struct Ch {
  uint8_t cls;
  uint8_t len;
};

inline Ch char_at(const uint8_t* s, size_t i) {
  const uint8_t b = s[i];
  if (b < 0x80) return {kAscii.c[b], 1};
  uint32_t cp;
  const int len = utf8_decode(s + i, &cp);
  return {table_class(cp), static_cast<uint8_t>(len)};
}

inline bool ascii_eq_ci(uint8_t b, char lower) { return (b | 0x20) == lower; }

// (?i:'s|'t|'re|'ve|'m|'ll|'d)? at e.
inline size_t contraction(const uint8_t* s, size_t e, size_t end) {
  if (e + 1 >= end || s[e] != '\'') return e;
  const uint8_t c = s[e + 1];
  switch (c) {
    case 's': case 'S': case 't': case 'T': case 'm': case 'M': case 'd': case 'D':
      return e + 2;
    case 0xC5:  // U+017F (C5 BF) folds to 's'
      return (e + 2 < end && s[e + 2] == 0xBF) ? e + 3 : e;
    case 'r': case 'R': case 'v': case 'V':
      return (e + 2 < end && ascii_eq_ci(s[e + 2], 'e')) ? e + 3 : e;
    case 'l': case 'L':
      return (e + 2 < end && ascii_eq_ci(s[e + 2], 'l')) ? e + 3 : e;
    default:
      return e;
  }
}

// Alternative 1 without its prefix, from `start`: U* W+ C?. Returns the end, or
// kNone when it fails; *u_end receives the end of the U-run (for alternative 2).
inline size_t letters(const uint8_t* s, size_t start, size_t end, size_t* u_end) {
  size_t p = start, last_uw = kNone;
  while (p < end) {
    const Ch c = char_at(s, p);
    if (!in(kSetU, c.cls)) break;
    p += c.len;
    if (in(kSetUW, c.cls)) last_uw = p;
  }
  *u_end = p;
  size_t q = p;
  while (q < end) {
    const Ch c = char_at(s, q);
    if (!in(kSetW, c.cls)) break;
    q += c.len;
  }
  if (q > p) return contraction(s, q, end);
  if (last_uw != kNone) return contraction(s, last_uw, end);
  return kNone;
}

}  // namespace

CharClass char_class(uint32_t cp) {
  if (cp >= 0x110000) return kClassOther;
  return static_cast<CharClass>(table_class(cp));
}

const char* unicode_tables_version() { return GON_UNICODE_VERSION; }

size_t o200k_piece_end(const uint8_t* s, size_t pos, size_t end) {
  const uint8_t b0 = s[pos];
  const Ch c0 = char_at(s, pos);
  const size_t after0 = pos + c0.len;
  size_t u_end;

  switch (c0.cls) {
    case kClassUpper:
    case kClassLower:
    case kClassLetter: {  // alternatives 1, then 2, without the prefix
      const size_t e = letters(s, pos, end, &u_end);
      if (e != kNone) return e;
      return contraction(s, u_end, end);
    }
    case kClassNumber: {  // alternative 3
      size_t p = after0;
      for (int k = 1; k < 3 && p < end; ++k) {
        const Ch c = char_at(s, p);
        if (c.cls != kClassNumber) break;
        p += c.len;
      }
      return p;
    }
    default:
      break;
  }

  // x0 is a mark, White_Space or something else.
  if (b0 != '\r' && b0 != '\n') {  // x0 is in [^\r\n\p{L}\p{N}]: try 1 and 2 with it as the prefix
    const size_t e = letters(s, after0, end, &u_end);
    if (e != kNone) return e;
    if (c0.cls == kClassMark) return letters(s, pos, end, &u_end);  // 1 without the prefix: succeeds
    if (u_end > after0) return contraction(s, u_end, end);         // 2 with the prefix
  }

  // Alternative 4: ' '? Q+ [\r\n/]*
  size_t q = kNone;
  if (c0.cls == kClassOther) {
    q = pos;
  } else if (b0 == ' ' && after0 < end && in(kSetQ, char_at(s, after0).cls)) {
    q = after0;
  }
  if (q != kNone) {
    while (q < end) {
      const Ch c = char_at(s, q);
      if (!in(kSetQ, c.cls)) break;
      q += c.len;
    }
    while (q < end && (s[q] == '\r' || s[q] == '\n' || s[q] == '/')) ++q;
    return q;
  }

  // Alternatives 5-7 (x0 is White_Space).
  size_t p = pos, last_newline_end = kNone, last_start = pos;
  while (p < end) {
    const Ch c = char_at(s, p);
    if (c.cls != kClassSpace) break;
    if (s[p] == '\r' || s[p] == '\n') last_newline_end = p + 1;
    last_start = p;
    p += c.len;
  }
  if (last_newline_end != kNone) return last_newline_end;  // 5
  if (p == end) return p;                                  // 6 at the end of the text
  if (last_start > pos) return last_start;                 // 6: the run minus its last character
  return p;                                                // 7
}

std::vector<std::string_view> o200k_split(std::string_view text) {
  std::vector<std::string_view> pieces;
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t e = o200k_piece_end(s, pos, text.size());
    pieces.push_back(text.substr(pos, e - pos));
    pos = e;
  }
  return pieces;
}

}  // namespace gon::text
