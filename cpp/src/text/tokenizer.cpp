// gon::Tokenizer: encoding with special tokens, decoding, the tiktoken rank
// file loader, Tokenizer::load, and StreamDecoder.
//
// Why it exists: this is where tiktoken's semantics live. encode() finds
// allowed special tokens first (leftmost occurrence), encodes the text between
// them piece by piece (o200k pre-tokeniser, then BPE), and, like tiktoken's
// disallowed_special="all", can refuse text that contains other special
// tokens. encode_bytes() reproduces tiktoken's Encoding._encode_bytes for
// bytes that are not valid UTF-8.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/check.hpp"
#include "core/mapped_file.hpp"
#include "gpt_oss_native/tokenizer.hpp"
#include "text/bpe_tokenizer.hpp"
#include "text/pretokenizer.hpp"
#include "text/utf8.hpp"

namespace gon {

namespace text {

namespace {

constexpr int32_t kHarmonyFirstSpecial = 199998;
constexpr int32_t kHarmonyVocabSize = 201088;

// Token bytes for an error message: printable ASCII as is, the rest as \xNN.
std::string printable(std::string_view bytes, size_t max_len = 64) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < max_len; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  if (bytes.size() > max_len) out += "...";
  return out;
}

std::string hex_byte(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", b);
  return buf;
}

bool all_space(std::string_view bytes) {
  for (const char c : bytes)
    if (c != ' ' && c != '\n' && c != '\t') return false;
  return true;
}

}  // namespace

std::vector<SpecialTokenDef> harmony_special_tokens() {
  std::vector<SpecialTokenDef> s = {
      {"<|startoftext|>", 199998}, {"<|endoftext|>", 199999},      {"<|reserved_200000|>", 200000},
      {"<|reserved_200001|>", 200001}, {"<|return|>", 200002},     {"<|constrain|>", 200003},
      {"<|reserved_200004|>", 200004}, {"<|channel|>", 200005},    {"<|start|>", 200006},
      {"<|end|>", 200007},             {"<|message|>", 200008},    {"<|reserved_200009|>", 200009},
      {"<|reserved_200010|>", 200010}, {"<|reserved_200011|>", 200011}, {"<|call|>", 200012},
  };
  for (int32_t id = 200013; id < kHarmonyVocabSize; ++id) {
    if (id == 200018) s.push_back({"<|endofprompt|>", id});
    s.push_back({"<|reserved_" + std::to_string(id) + "|>", id});
  }
  return s;
}

// ---- BpeTokenizer -------------------------------------------------------------

BpeTokenizer::BpeTokenizer(BpeVocab vocab, const std::vector<SpecialTokenDef>& specials)
    : vocab_(std::move(vocab)), specials_(specials) {
  int32_t max_id = static_cast<int32_t>(vocab_.id_limit()) - 1;
  num_tokens_ = static_cast<int>(vocab_.size());
  special_prefix_bits_.assign(65536 / 64, 0);
  if (!specials_.empty()) {
    special_base_ = specials_[0].id;
    int32_t special_max = specials_[0].id;
    for (const auto& sp : specials_) {
      special_base_ = std::min(special_base_, sp.id);
      special_max = std::max(special_max, sp.id);
    }
    special_of_id_.assign(static_cast<size_t>(special_max - special_base_) + 1, -1);
    max_id = std::max(max_id, special_max);
    std::vector<uint32_t> lengths;
    special_single_first_byte_ = static_cast<unsigned char>(specials_[0].text[0]);
    for (size_t i = 0; i < specials_.size(); ++i) {
      const auto& sp = specials_[i];
      GON_CHECK(!sp.text.empty() && sp.id >= 0 && !vocab_.has(static_cast<uint32_t>(sp.id)), kInternal,
                "tokenizer: bad special token ", sp.text);
      GON_CHECK(special_index_.emplace(std::string_view(specials_[i].text), static_cast<uint32_t>(i)).second,
                kInternal, "tokenizer: special token ", sp.text, " listed twice");
      int32_t& slot = special_of_id_[static_cast<size_t>(sp.id - special_base_)];
      if (slot < 0) {
        slot = static_cast<int32_t>(i);
        ++num_tokens_;
      }
      lengths.push_back(static_cast<uint32_t>(sp.text.size()));
      const auto b0 = static_cast<unsigned char>(sp.text[0]);
      special_first_byte_[b0] = true;
      if (b0 != special_single_first_byte_) special_single_first_byte_ = -1;
      if (sp.text.size() == 1) {
        special_has_length_one_ = true;
      } else {
        const uint32_t pair = (uint32_t{b0} << 8) | static_cast<unsigned char>(sp.text[1]);
        special_prefix_bits_[pair >> 6] |= uint64_t{1} << (pair & 63);
      }
    }
    std::sort(lengths.begin(), lengths.end(), std::greater<>());
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
    special_lengths_ = std::move(lengths);
  }
  vocab_size_ = max_id + 1;
}

void BpeTokenizer::encode_ordinary(const uint8_t* s, size_t n, std::vector<int32_t>& out,
                                   size_t* last_piece_tokens) const {
  // Software pipelined: the hash-table slot of a piece is prefetched while the
  // next piece is scanned, so the lookup rarely waits for memory.
  size_t last = 0;
  if (n > 0) {
    size_t start = 0, end = o200k_piece_end(s, 0, n);
    uint64_t hash = end - start > 2 ? hash_bytes(s, end - start) : 0;
    vocab_.prefetch(hash);
    for (;;) {
      size_t next_end = end;
      uint64_t next_hash = 0;
      if (end < n) {
        next_end = o200k_piece_end(s, end, n);
        if (next_end - end > 2) {
          next_hash = hash_bytes(s + end, next_end - end);
          vocab_.prefetch(next_hash);
        }
      }
      const size_t before = out.size();
      vocab_.encode_piece(s + start, end - start, out, hash);
      last = out.size() - before;
      if (end >= n) break;
      start = end;
      end = next_end;
      hash = next_hash;
    }
  }
  if (last_piece_tokens) *last_piece_tokens = last;
}

size_t BpeTokenizer::find_special(const uint8_t* s, size_t from, size_t n, const std::vector<uint8_t>* wanted,
                                  uint32_t* index) const {
  if (specials_.empty()) return kNotFound;
  for (size_t p = from; p < n; ++p) {
    if (special_single_first_byte_ >= 0) {
      const void* hit = std::memchr(s + p, special_single_first_byte_, n - p);
      if (!hit) return kNotFound;
      p = static_cast<size_t>(static_cast<const uint8_t*>(hit) - s);
    } else if (!special_first_byte_[s[p]]) {
      continue;
    }
    if (!special_has_length_one_) {
      if (p + 1 >= n) return kNotFound;
      const uint32_t pair = (uint32_t{s[p]} << 8) | s[p + 1];
      if (!((special_prefix_bits_[pair >> 6] >> (pair & 63)) & 1)) continue;
    }
    for (const uint32_t len : special_lengths_) {
      if (len > n - p) continue;
      const auto it = special_index_.find(std::string_view(reinterpret_cast<const char*>(s + p), len));
      if (it != special_index_.end() && (!wanted || (*wanted)[it->second])) {
        *index = it->second;
        return p;
      }
    }
  }
  return kNotFound;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, const SpecialTokens& specials) const {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  const size_t valid = utf8_valid_prefix(s, n);
  if (valid != n) {
    GON_THROW(kInvalidArgument, "encode: the text is not valid UTF-8: byte ",
              hex_byte(static_cast<unsigned char>(text[valid])), " at byte offset ", valid,
              " (encode_bytes accepts arbitrary bytes)");
  }
  // Which special tokens (by index in specials_) become their ids.
  std::vector<uint8_t> allowed;
  bool any_allowed = false;
  if (specials.all) {
    any_allowed = !specials_.empty();
  } else if (!specials.allowed.empty()) {
    allowed.assign(specials_.size(), 0);
    for (const auto& name : specials.allowed) {
      const auto it = special_index_.find(name);
      GON_CHECK(it != special_index_.end(), kInvalidArgument, "encode: '", printable(name),
                "' is not a special token of this tokenizer");
      allowed[it->second] = 1;
      any_allowed = true;
    }
  }
  if (specials.reject_others && !specials.all) {
    std::vector<uint8_t> others(specials_.size(), 1);
    for (size_t i = 0; i < allowed.size(); ++i) others[i] = !allowed[i];
    uint32_t index;
    const size_t at = find_special(s, 0, n, &others, &index);
    if (at != kNotFound) {
      GON_THROW(kInvalidArgument, "encode: the text contains the special token ", specials_[index].text,
                " (at byte ", at, "), which is not allowed: allow it to encode it as its id, or let special ",
                "tokens be encoded as ordinary text");
    }
  }
  std::vector<int32_t> out;
  out.reserve(n / 4 + 8);
  if (!any_allowed) {
    encode_ordinary(s, n, out);
    return out;
  }
  const std::vector<uint8_t>* wanted = specials.all ? nullptr : &allowed;
  size_t pos = 0;
  for (;;) {
    uint32_t index = 0;
    const size_t at = find_special(s, pos, n, wanted, &index);
    const size_t stop = at == kNotFound ? n : at;
    encode_ordinary(s + pos, stop - pos, out);
    if (at == kNotFound) break;
    out.push_back(specials_[index].id);
    pos = at + specials_[index].text.size();
  }
  return out;
}

// tiktoken's _encode_bytes: valid UTF-8 is encoded as text. Otherwise the valid
// prefix is encoded as text; then the tokens of its last piece (extended back
// over preceding tokens made only of ' ', '\n' and '\t' when that piece starts
// with such a token) are dropped, and their bytes plus everything from the
// first invalid byte on are byte-pair merged as one piece (a whole-piece token
// if there is one), without pre-tokenisation.
std::vector<int32_t> BpeTokenizer::encode_bytes(std::string_view bytes) const {
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  const size_t valid = utf8_valid_prefix(s, n);
  std::vector<int32_t> out;
  out.reserve(n / 4 + 8);
  size_t last = 0;
  encode_ordinary(s, valid, out, &last);
  if (valid == n) return out;
  if (last > 0 && all_space(vocab_.bytes(static_cast<uint32_t>(out[out.size() - last])))) {
    while (last < out.size() && all_space(vocab_.bytes(static_cast<uint32_t>(out[out.size() - last - 1])))) ++last;
  }
  std::string unstable;
  if (!out.empty() && last > 0) {
    for (size_t i = out.size() - last; i < out.size(); ++i) unstable += vocab_.bytes(static_cast<uint32_t>(out[i]));
    out.resize(out.size() - last);
  }
  unstable.append(bytes.substr(valid));
  vocab_.encode_piece(reinterpret_cast<const uint8_t*>(unstable.data()), unstable.size(), out);
  return out;
}

void BpeTokenizer::bad_token(int32_t token) const {
  if (token < 0 || token >= vocab_size_)
    GON_THROW(kTokenOutOfRange, "token id ", token, " is out of range (the vocabulary has ids 0..", vocab_size_ - 1,
              ")");
  GON_THROW(kTokenOutOfRange, "token id ", token, " has no token in this vocabulary (ids 0..", vocab_size_ - 1,
            " have ", num_tokens_, " tokens)");
}

std::string_view BpeTokenizer::token_bytes(int32_t token) const {
  if (token >= 0) {
    const auto id = static_cast<uint32_t>(token);
    if (vocab_.has(id)) return vocab_.bytes(id);
    const int64_t k = int64_t{token} - special_base_;
    if (k >= 0 && k < static_cast<int64_t>(special_of_id_.size()) && special_of_id_[static_cast<size_t>(k)] >= 0)
      return specials_[static_cast<size_t>(special_of_id_[static_cast<size_t>(k)])].text;
  }
  bad_token(token);
}

bool BpeTokenizer::has_token(int32_t token) const {
  if (token < 0) return false;
  if (vocab_.has(static_cast<uint32_t>(token))) return true;
  const int64_t k = int64_t{token} - special_base_;
  return k >= 0 && k < static_cast<int64_t>(special_of_id_.size()) && special_of_id_[static_cast<size_t>(k)] >= 0;
}

void BpeTokenizer::append_bytes(int32_t token, std::string& out) const { out.append(token_bytes(token)); }

std::string BpeTokenizer::decode(std::span<const int32_t> tokens) const {
  std::string out;
  out.reserve(tokens.size() * 4);
  for (const int32_t t : tokens) append_bytes(t, out);
  return out;
}

bool BpeTokenizer::is_special(int32_t token) const {
  const int64_t k = int64_t{token} - special_base_;
  return k >= 0 && k < static_cast<int64_t>(special_of_id_.size()) && special_of_id_[static_cast<size_t>(k)] >= 0;
}

std::optional<int32_t> BpeTokenizer::special_token(std::string_view text) const {
  const auto it = special_index_.find(text);
  if (it == special_index_.end()) return std::nullopt;
  return specials_[it->second].id;
}

std::vector<std::pair<std::string, int32_t>> BpeTokenizer::special_tokens() const {
  std::vector<std::pair<std::string, int32_t>> out;
  out.reserve(specials_.size());
  for (const auto& sp : specials_) out.emplace_back(sp.text, sp.id);
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  return out;
}

// ---- tiktoken rank files ------------------------------------------------------

namespace {

struct Base64Table {
  int8_t value[256];
  constexpr Base64Table() : value() {
    for (auto& v : value) v = -1;
    for (int i = 0; i < 26; ++i) {
      value['A' + i] = static_cast<int8_t>(i);
      value['a' + i] = static_cast<int8_t>(26 + i);
    }
    for (int i = 0; i < 10; ++i) value['0' + i] = static_cast<int8_t>(52 + i);
    value[static_cast<unsigned char>('+')] = 62;
    value[static_cast<unsigned char>('/')] = 63;
  }
};
constexpr Base64Table kBase64;

// Strict standard base64 (RFC 4648 section 4, padded; '=' only as the last one
// or two characters). Sets *error and returns false on failure.
bool base64_decode(std::string_view in, std::string& out, const char** error) {
  if (in.empty()) {
    *error = "empty token";
    return false;
  }
  if (in.size() % 4 != 0) {
    *error = "length is not a multiple of 4";
    return false;
  }
  out.resize(in.size() / 4 * 3);
  char* w = out.data();
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const int pad = last ? (p[i + 3] == '=') + (p[i + 2] == '=' && p[i + 3] == '=') : 0;
    int v[4];
    for (int k = 0; k < 4 - pad; ++k) {
      v[k] = kBase64.value[p[i + k]];
      if (v[k] < 0) {
        *error = p[i + k] == '=' ? "'=' in the middle" : "character outside the base64 alphabet";
        return false;
      }
    }
    for (int k = 4 - pad; k < 4; ++k) v[k] = 0;
    const uint32_t word = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    *w++ = static_cast<char>(word >> 16);
    if (pad < 2) *w++ = static_cast<char>((word >> 8) & 0xFF);
    if (pad < 1) *w++ = static_cast<char>(word & 0xFF);
  }
  out.resize(static_cast<size_t>(w - out.data()));
  return true;
}

}  // namespace

std::shared_ptr<const Tokenizer> tokenizer_from_tiktoken(std::string_view file, std::string_view origin) {
  // Pass 1: parse and check every line, decoding the tokens into one arena.
  struct Entry {
    uint32_t offset, length, rank, line;
  };
  std::vector<Entry> entries;
  std::string arena;
  entries.reserve(static_cast<size_t>(std::count(file.begin(), file.end(), '\n')) + 1);
  arena.reserve(file.size() * 3 / 4);
  std::string token;
  uint32_t max_rank = 0;
  size_t pos = 0, line_no = 0;
  while (pos < file.size()) {
    ++line_no;
    const void* nl = std::memchr(file.data() + pos, '\n', file.size() - pos);
    const size_t eol = nl ? static_cast<size_t>(static_cast<const char*>(nl) - file.data()) : file.size();
    std::string_view line = file.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;  // tiktoken skips blank lines too
    const size_t space = line.find(' ');
    GON_CHECK(space != std::string_view::npos, kCorruptCheckpoint, origin, ": line ", line_no,
              ": expected 'base64-token rank', got '", printable(line), "'");
    const std::string_view b64 = line.substr(0, space), rank_text = line.substr(space + 1);
    const char* why = nullptr;
    if (!base64_decode(b64, token, &why))
      GON_THROW(kCorruptCheckpoint, origin, ": line ", line_no, ": invalid base64 token '", printable(b64), "' (", why,
                ")");
    uint64_t rank = 0;
    bool ok = !rank_text.empty() && rank_text.size() <= 10 && (rank_text.size() == 1 || rank_text[0] != '0');
    for (const char c : rank_text) {
      if (c < '0' || c > '9') ok = false;
      rank = rank * 10 + static_cast<uint64_t>(c - '0');
    }
    GON_CHECK(ok, kCorruptCheckpoint, origin, ": line ", line_no, ": invalid rank '", printable(rank_text),
              "' (expected a non-negative decimal integer)");
    GON_CHECK(rank < static_cast<uint64_t>(kHarmonyFirstSpecial), kCorruptCheckpoint, origin, ": line ", line_no,
              ": rank ", rank, " collides with the harmony special tokens (ids ", kHarmonyFirstSpecial, "..",
              kHarmonyVocabSize - 1, ")");
    entries.push_back({static_cast<uint32_t>(arena.size()), static_cast<uint32_t>(token.size()),
                       static_cast<uint32_t>(rank), static_cast<uint32_t>(line_no)});
    arena += token;
    max_rank = std::max(max_rank, static_cast<uint32_t>(rank));
  }
  GON_CHECK(!entries.empty(), kCorruptCheckpoint, origin, ": no tokens (an empty tiktoken rank file)");

  // Pass 2: insert, hashing and prefetching a few entries ahead.
  BpeVocab vocab;
  vocab.reserve(entries.size(), arena.size());
  std::vector<uint32_t> line_of_rank(size_t{max_rank} + 1, 0);
  constexpr size_t kAhead = 8;
  uint64_t ring[kAhead];
  auto bytes_of = [&](const Entry& e) { return std::string_view(arena.data() + e.offset, e.length); };
  auto start = [&](size_t k) {
    const std::string_view b = bytes_of(entries[k]);
    ring[k % kAhead] = hash_bytes(reinterpret_cast<const uint8_t*>(b.data()), b.size());
    vocab.prefetch(ring[k % kAhead]);
  };
  for (size_t k = 0; k < kAhead && k < entries.size(); ++k) start(k);
  for (size_t k = 0; k < entries.size(); ++k) {
    const Entry& e = entries[k];
    const uint64_t h = ring[k % kAhead];
    if (k + kAhead < entries.size()) start(k + kAhead);
    uint32_t existing = 0;
    switch (vocab.add(bytes_of(e), e.rank, &existing, h)) {
      case BpeVocab::Added::kOk:
        break;
      case BpeVocab::Added::kDuplicateBytes:
        GON_THROW(kCorruptCheckpoint, origin, ": line ", e.line, ": token '", printable(bytes_of(e)), "' (rank ",
                  e.rank, ") already appears on line ", line_of_rank[existing], " (rank ", existing, ")");
      case BpeVocab::Added::kDuplicateId:
        GON_THROW(kCorruptCheckpoint, origin, ": line ", e.line, ": rank ", e.rank, " already appears on line ",
                  line_of_rank[existing]);
      case BpeVocab::Added::kBadLength:
        GON_THROW(kCorruptCheckpoint, origin, ": line ", e.line, ": a token of ", e.length, " bytes (at most ",
                  BpeVocab::kMaxTokenBytes, ")");
    }
    line_of_rank[e.rank] = e.line;
  }
  for (int b = 0; b < 256; ++b) {
    GON_CHECK(vocab.byte_token(static_cast<uint8_t>(b)) != BpeVocab::kNoToken, kCorruptCheckpoint, origin,
              ": no token for the byte ", hex_byte(static_cast<unsigned char>(b)),
              " (a byte-level BPE vocabulary has a token for each of the 256 bytes)");
  }
  return std::make_shared<BpeTokenizer>(std::move(vocab), harmony_special_tokens());
}

}  // namespace text

// ---- public entry points -----------------------------------------------------------

std::shared_ptr<const Tokenizer> Tokenizer::from_tiktoken(std::string_view rank_file, std::string_view origin) {
  return text::tokenizer_from_tiktoken(rank_file, origin);
}

std::shared_ptr<const Tokenizer> Tokenizer::from_hf_json(std::string_view json, std::string_view origin) {
  return text::tokenizer_from_hf_json(json, origin);
}

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& path) {
  std::string file = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    file = path + (path.empty() || path.back() == '/' ? "" : "/") + "tokenizer.json";
    struct stat fst {};
    GON_CHECK(::stat(file.c_str(), &fst) == 0, kFileNotFound, path,
              ": no tokenizer.json in this directory (expected ", file, ")");
  }
  const auto mapped = MappedFile::open(file);
  const std::string_view bytes(reinterpret_cast<const char*>(mapped->data()), mapped->size());
  const bool json = file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0;
  return json ? text::tokenizer_from_hf_json(bytes, file) : text::tokenizer_from_tiktoken(bytes, file);
}

// ---- StreamDecoder -------------------------------------------------------------------

StreamDecoder::StreamDecoder(std::shared_ptr<const Tokenizer> tokenizer) : tokenizer_(std::move(tokenizer)) {
  GON_CHECK(tokenizer_ != nullptr, kInvalidArgument, "StreamDecoder: the tokenizer is null");
}

std::string StreamDecoder::push(int32_t token) {
  const std::string_view bytes = tokenizer_->token_bytes(token);  // throws before anything changes
  std::string out;
  if (pending_.empty()) {
    const size_t used =
        text::utf8_append_replacing(out, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), false);
    pending_.assign(bytes.substr(used));
    return out;
  }
  pending_.append(bytes);
  const size_t used =
      text::utf8_append_replacing(out, reinterpret_cast<const uint8_t*>(pending_.data()), pending_.size(), false);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  text::utf8_append_replacing(out, reinterpret_cast<const uint8_t*>(pending_.data()), pending_.size(), true);
  pending_.clear();
  return out;
}

void StreamDecoder::reset() { pending_.clear(); }

}  // namespace gon
