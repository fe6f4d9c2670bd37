// The one implementation of gon::Tokenizer: byte-level BPE (BpeVocab) over the
// o200k pre-tokeniser, plus special tokens matched in the text.
//
// Why a separate internal header: the loaders (tiktoken rank files,
// tokenizer.json) build a BpeTokenizer from a vocabulary and a list of special
// tokens, and tests reach the internals (encode_ordinary, the last-piece
// bookkeeping of encode_bytes) through it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gpt_oss_native/tokenizer.hpp"
#include "text/bpe.hpp"

namespace gon::text {

struct SpecialTokenDef {
  std::string text;  // non-empty, valid UTF-8
  int32_t id;
};

// The o200k_harmony special tokens, as tiktoken defines them: the list of
// tokenizer.md, plus o200k_base's "<|endofprompt|>" at 200018, which tiktoken
// keeps beside "<|reserved_200018|>" (both encode to 200018; it decodes to
// "<|endofprompt|>", as in the gpt-oss tokenizer.json).
std::vector<SpecialTokenDef> harmony_special_tokens();

class BpeTokenizer final : public Tokenizer {
 public:
  // `specials`: several texts may share an id; the first one listed is what the
  // id decodes to. Special ids must not be ids of `vocab`. Every byte must have
  // a token in `vocab` (checked by the loaders).
  BpeTokenizer(BpeVocab vocab, const std::vector<SpecialTokenDef>& specials);

  int vocab_size() const override { return vocab_size_; }
  int num_tokens() const override { return num_tokens_; }
  std::vector<int32_t> encode(std::string_view text, const SpecialTokens& specials) const override;
  std::vector<int32_t> encode_bytes(std::string_view bytes) const override;
  std::string decode(std::span<const int32_t> tokens) const override;
  std::string_view token_bytes(int32_t token) const override;
  bool has_token(int32_t token) const override;
  bool is_special(int32_t token) const override;
  std::optional<int32_t> special_token(std::string_view text) const override;
  std::vector<std::pair<std::string, int32_t>> special_tokens() const override;

  // Appends the tokens of valid UTF-8 s[0..n), special-token text being
  // ordinary text. *last_piece_tokens (if given) receives how many tokens the
  // last pre-tokenised piece produced (0 for empty input).
  void encode_ordinary(const uint8_t* s, size_t n, std::vector<int32_t>& out,
                       size_t* last_piece_tokens = nullptr) const;

  const BpeVocab& vocab() const { return vocab_; }

 private:
  static constexpr size_t kNotFound = ~size_t{0};
  // Leftmost special token in s[from..n) whose index satisfies `wanted` (a
  // per-index flag; nullptr: any); the longest one where several start at the
  // same byte. Returns its start (kNotFound if none) and *index.
  size_t find_special(const uint8_t* s, size_t from, size_t n, const std::vector<uint8_t>* wanted,
                      uint32_t* index) const;
  void append_bytes(int32_t token, std::string& out) const;
  [[noreturn]] void bad_token(int32_t token) const;

  BpeVocab vocab_;
  std::vector<SpecialTokenDef> specials_;                       // as given
  std::unordered_map<std::string_view, uint32_t> special_index_;  // text -> index in specials_
  std::vector<uint32_t> special_lengths_;                        // distinct lengths, longest first
  std::vector<uint64_t> special_prefix_bits_;                    // bit (b0 << 8 | b1) of every special's first two bytes
  bool special_first_byte_[256] = {};
  int special_single_first_byte_ = -1;  // the first byte of every special when they all share one, else -1
  bool special_has_length_one_ = false;
  int32_t special_base_ = 0;                 // smallest special id
  std::vector<int32_t> special_of_id_;       // id - special_base_ -> index in specials_ (-1: none)
  int vocab_size_ = 0;
  int num_tokens_ = 0;
};

// Builds a tokenizer from a tiktoken rank file plus the harmony special tokens
// (see tokenizer.cpp).
std::shared_ptr<const Tokenizer> tokenizer_from_tiktoken(std::string_view file, std::string_view origin);
// Builds a tokenizer from a tokenizer.json document (see hf_tokenizer_json.cpp).
std::shared_ptr<const Tokenizer> tokenizer_from_hf_json(std::string_view json, std::string_view origin);

}  // namespace gon::text
