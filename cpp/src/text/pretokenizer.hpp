// The o200k pre-tokeniser: splits text into the pieces that BPE then encodes
// one by one, exactly as tiktoken's regex does, without a regex engine.
//
// Why it exists: tiktoken runs the o200k_base pattern
//
//   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//  |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//  |\p{N}{1,3}
//  | ?[^\s\p{L}\p{N}]+[\r\n/]*
//  |\s*[\r\n]+
//  |\s+(?!\S)
//  |\s+
//
// with fancy-regex (backtracking, leftmost-first alternation, greedy
// quantifiers). Every position of a text starts a match of some alternative, so
// the matches tile the text; o200k_piece_end() returns where the match that
// starts at a given position ends, reproducing the backtracking decisions in
// closed form (see pretokenizer.cpp). The character classes come from tables
// generated at build time (gen_unicode_tables.py, Unicode 16.0.0 like the regex
// crate inside tiktoken 0.14).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gon::text {

// What the pattern distinguishes about a code point (see gen_unicode_tables.py).
enum CharClass : uint8_t {
  kClassOther = 0,   // not a letter, mark, number or White_Space
  kClassUpper = 1,   // Lu, Lt
  kClassLower = 2,   // Ll
  kClassLetter = 3,  // Lm, Lo
  kClassMark = 4,    // Mn, Mc, Me
  kClassNumber = 5,  // Nd, Nl, No
  kClassSpace = 6,   // White_Space (Rust regex's \s)
};

// The class of a code point (any value; above U+10FFFF is kClassOther).
CharClass char_class(uint32_t cp);

// The Unicode version of the tables ("16.0.0").
const char* unicode_tables_version();

// End (byte offset) of the o200k piece starting at `pos` in s[0..end), where
// pos < end and s[pos..end) is valid UTF-8. The pattern's lookahead sees `end`
// as the end of the text.
size_t o200k_piece_end(const uint8_t* s, size_t pos, size_t end);

// The pieces of valid UTF-8 `text`, for tests and diagnostics.
std::vector<std::string_view> o200k_split(std::string_view text);

}  // namespace gon::text
