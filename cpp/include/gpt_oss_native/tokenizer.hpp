// The gpt-oss tokenizer: byte-level BPE with the o200k pre-tokenisation
// pattern and the harmony special tokens (o200k_harmony), exact to tiktoken,
// without a regex engine or a download.
//
//   auto tok = gon::Tokenizer::load("/path/to/gpt-oss-20b");   // its tokenizer.json
//   std::vector<int32_t> ids = tok->encode("Hello", gon::SpecialTokens::none());
//   std::string bytes = tok->decode(ids);
//
// The vocabulary comes from a Hugging Face tokenizer.json (byte-level BPE) or
// a tiktoken rank file ("base64 rank" lines) plus the harmony special tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gon {

// Which special-token strings encode() turns into their ids; every other
// special-token string found in the text is either encoded as ordinary text
// (when `reject_others` is false) or makes encode() throw kInvalidArgument.
struct SpecialTokens {
  bool all = false;                  // every special token is allowed
  std::vector<std::string> allowed;  // or these, by their text ("<|start|>")
  bool reject_others = false;        // tiktoken's default disallowed_special="all"
  static SpecialTokens none() { return {}; }
  static SpecialTokens every() { return {true, {}, false}; }
};

class Tokenizer {
 public:
  // From a checkpoint directory (its tokenizer.json), a tokenizer.json file, or a
  // tiktoken rank file (*.tiktoken; the harmony special tokens are added).
  // Throws gon::Error: kFileNotFound, kCorruptCheckpoint (malformed file),
  // kUnsupportedCheckpoint (another tokenizer type or pre-tokenisation pattern).
  static std::shared_ptr<const Tokenizer> load(const std::string& path);
  // From the bytes of a tiktoken rank file.
  static std::shared_ptr<const Tokenizer> from_tiktoken(std::string_view rank_file, std::string_view origin);
  // From the text of a Hugging Face tokenizer.json (byte-level BPE with the o200k
  // pre-tokeniser; `origin` names it in error messages).
  static std::shared_ptr<const Tokenizer> from_hf_json(std::string_view json, std::string_view origin);

  virtual ~Tokenizer() = default;

  // Ids run from 0 to vocab_size() - 1; some ids may have no token (gaps).
  virtual int vocab_size() const = 0;
  virtual int num_tokens() const = 0;  // ids that have a token

  // Encodes UTF-8 text. Throws kInvalidArgument for invalid UTF-8, and for a
  // disallowed special token when specials.reject_others is set.
  virtual std::vector<int32_t> encode(std::string_view text, const SpecialTokens& specials) const = 0;
  // Encodes arbitrary bytes as tiktoken's byte-level encoder does (invalid
  // UTF-8 included); special tokens are not recognised.
  virtual std::vector<int32_t> encode_bytes(std::string_view bytes) const = 0;

  // Concatenated bytes of the tokens (may be invalid UTF-8 where a character is
  // split across tokens). Throws kTokenOutOfRange for an id with no token.
  virtual std::string decode(std::span<const int32_t> tokens) const = 0;
  // Bytes of one token (a special token's bytes are its text).
  virtual std::string_view token_bytes(int32_t token) const = 0;

  // Whether an id has a token (ids may have gaps). The default asks token_bytes().
  virtual bool has_token(int32_t token) const {
    if (token < 0 || token >= vocab_size()) return false;
    try {
      (void)token_bytes(token);
      return true;
    } catch (...) {
      return false;
    }
  }

  virtual bool is_special(int32_t token) const = 0;
  // Id of a special token by its text ("<|start|>"), if it exists.
  virtual std::optional<int32_t> special_token(std::string_view text) const = 0;
  virtual std::vector<std::pair<std::string, int32_t>> special_tokens() const = 0;
};

// Turns a stream of token ids into text pieces that never split a UTF-8
// character: bytes of an incomplete character are held back until the token
// that completes it arrives. Bytes that can never form a character are emitted
// as U+FFFD, so every piece is valid UTF-8.
class StreamDecoder {
 public:
  explicit StreamDecoder(std::shared_ptr<const Tokenizer> tokenizer);
  // The text that became complete with this token (possibly empty).
  std::string push(int32_t token);
  // Whatever is held back, as U+FFFD replacement characters; resets the decoder.
  std::string flush();
  void reset();

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::string pending_;
};

}  // namespace gon
