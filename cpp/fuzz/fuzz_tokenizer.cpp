// Fuzz target for the tokenizer (cpp/src/text).
//
// Why it exists: the tokenizer encodes untrusted text and bytes, decodes
// untrusted token ids and parses vocabulary files we did not write. For every
// input, against a small fixed vocabulary (256 bytes, some merges, UTF-8
// fragments, the harmony special tokens):
//   * encode_bytes() never fails and decode(encode_bytes(x)) == x;
//   * valid UTF-8 x: encode() equals encode_bytes(), round-trips with and
//     without special tokens, the pre-tokeniser's pieces tile x; with
//     reject_others it throws kInvalidArgument exactly when x contains a
//     special token's text ("<|...|>" here);
//   * invalid UTF-8 x: encode() throws kInvalidArgument;
//   * the input read as token ids through a StreamDecoder: every piece is valid
//     UTF-8, invalid ids throw kTokenOutOfRange and change nothing, and the
//     pieces equal the replacement decoding (Python's errors="replace") of the
//     valid ids' bytes, computed here independently;
//   * the input as a tiktoken rank file and as a tokenizer.json: either loads
//     or throws kCorruptCheckpoint / kUnsupportedCheckpoint.
// Anything else (crash, sanitizer report, other exception, failed check) is a
// finding: we abort.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gpt_oss_native/error.hpp"
#include "gpt_oss_native/tokenizer.hpp"
#include "text/pretokenizer.hpp"
#include "text/utf8.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
  std::abort();
}

std::string b64(std::string_view in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t w = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) w |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) w |= static_cast<uint8_t>(in[i + 2]);
    out += a[w >> 18];
    out += a[(w >> 12) & 63];
    out += i + 1 < in.size() ? a[(w >> 6) & 63] : '=';
    out += i + 2 < in.size() ? a[w & 63] : '=';
  }
  return out;
}

const std::shared_ptr<const gon::Tokenizer>& vocab() {
  static const std::shared_ptr<const gon::Tokenizer> tok = [] {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    for (const char* t : {"ab", "cd", "abcd", "he", "ll", "llo", "hello", " h", " hello", "  ", "    ", "\n\n", " \n",
                          "12", "123", "<|", "|>", "\xC3\xA9", "\xE6\x97", "\xE6\x97\xA5", "\xF0\x9F", "\xF0\x9F\x98",
                          "\xF0\x9F\x98\x80", "'s", "'t", " the", "the", "th", " t", "in", "ing", "\xCC\x81",
                          "e\xCC\x81", "\xE3\x80\x80", ".\n", "//", " //"})
      tokens.emplace_back(t);
    std::string file;
    for (size_t i = 0; i < tokens.size(); ++i) file += b64(tokens[i]) + " " + std::to_string(i) + "\n";
    return gon::Tokenizer::from_tiktoken(file, "fuzz.tiktoken");
  }();
  return tok;
}

// Python's bytes.decode("utf-8", errors="replace"), written out per lead byte.
std::string replace_decode(const std::string& in) {
  std::string out;
  size_t i = 0;
  while (i < in.size()) {
    const auto b = static_cast<uint8_t>(in[i]);
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    int need = b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2 : b >= 0xF0 && b <= 0xF4 ? 3 : 0;
    const uint8_t lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
    const uint8_t hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
    size_t j = i + 1;
    int got = 0;
    while (got < need && j < in.size()) {
      const auto c = static_cast<uint8_t>(in[j]);
      if (got == 0 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
      ++j;
      ++got;
    }
    if (need > 0 && got == need) {
      out.append(in, i, j - i);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i = need > 0 ? j : i + 1;
  }
  return out;
}

bool valid_utf8(const std::string& s) {
  return gon::text::utf8_valid_prefix(reinterpret_cast<const uint8_t*>(s.data()), s.size()) == s.size();
}

void check_loaders(std::string_view data) {
  try {
    (void)gon::Tokenizer::from_tiktoken(data, "fuzz.tiktoken");
  } catch (const gon::Error& e) {
    if (e.status() != gon::Status::kCorruptCheckpoint) finding("rank file: unexpected status");
  }
  try {
    (void)gon::Tokenizer::from_hf_json(data, "fuzz.json");
  } catch (const gon::Error& e) {
    if (e.status() != gon::Status::kCorruptCheckpoint && e.status() != gon::Status::kUnsupportedCheckpoint)
      finding("tokenizer.json: unexpected status");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gon::Tokenizer& tok = *vocab();
  const std::string input(reinterpret_cast<const char*>(data), size);

  // Bytes.
  const std::vector<int32_t> from_bytes = tok.encode_bytes(input);
  if (tok.decode(from_bytes) != input) finding("decode(encode_bytes(x)) != x");

  // Text.
  if (valid_utf8(input)) {
    if (tok.encode(input, gon::SpecialTokens::none()) != from_bytes) finding("encode != encode_bytes on valid UTF-8");
    // Special tokens decode to their text; the one id with two texts decodes to "<|endofprompt|>".
    std::string expected = input;
    for (size_t p = expected.find("<|reserved_200018|>"); p != std::string::npos;
         p = expected.find("<|reserved_200018|>", p))
      expected.replace(p, 19, "<|endofprompt|>");
    if (tok.decode(tok.encode(input, gon::SpecialTokens::every())) != expected) finding("round trip with specials");
    std::string joined;
    for (const std::string_view piece : gon::text::o200k_split(input)) {
      if (piece.empty()) finding("empty piece");
      joined += piece;
    }
    if (joined != input) finding("pieces do not tile the text");
    gon::SpecialTokens reject;
    reject.reject_others = true;
    bool has_special = false;
    for (size_t p = input.find("<|"); p != std::string::npos && !has_special; p = input.find("<|", p + 1)) {
      const size_t q = input.find("|>", p + 2);
      if (q != std::string::npos && tok.special_token(std::string_view(input).substr(p, q + 2 - p))) has_special = true;
    }
    try {
      if (tok.encode(input, reject) != from_bytes) finding("reject_others changed the encoding");
      if (has_special) finding("reject_others accepted a special token");
    } catch (const gon::Error& e) {
      if (e.status() != gon::Status::kInvalidArgument || !has_special) finding("reject_others threw wrongly");
    }
  } else {
    try {
      (void)tok.encode(input, gon::SpecialTokens::none());
      finding("encode accepted invalid UTF-8");
    } catch (const gon::Error& e) {
      if (e.status() != gon::Status::kInvalidArgument) finding("invalid UTF-8: unexpected status");
    }
  }

  // Token ids (two bytes each, over a range a little larger than the vocabulary's).
  gon::StreamDecoder stream(vocab());
  std::string streamed, bytes;
  for (size_t i = 0; i + 1 < size; i += 2) {
    int32_t id = data[i] | (data[i + 1] << 8);
    if (id >= 60000) id = 199990 + (id - 60000) % 1200;  // reach the special tokens and beyond
    try {
      const std::string piece = stream.push(id);
      if (!valid_utf8(piece)) finding("stream piece is not valid UTF-8");
      streamed += piece;
      bytes += tok.token_bytes(id);
    } catch (const gon::Error& e) {
      if (e.status() != gon::Status::kTokenOutOfRange) finding("stream: unexpected status");
    }
  }
  streamed += stream.flush();
  if (streamed != replace_decode(bytes)) finding("stream decoding differs from replacement decoding");

  check_loaders(std::string_view(input));
  return 0;
}
