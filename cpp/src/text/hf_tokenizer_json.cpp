// Loads a Hugging Face tokenizer.json of the gpt-oss kind into a BpeTokenizer.
//
// Why it exists: gpt-oss checkpoints carry their vocabulary as tokenizer.json
// (byte-level BPE, 199998 tokens, 446189 merges, 27 MB). Accepted is exactly
// the structure of the gpt-oss file:
//
//   model:         {"type": "BPE", "vocab": {token: id}, "merges": [...], dropout
//                  null, no unk token, no subword prefix/suffix, no byte
//                  fallback}; vocab keys are GPT-2 byte-to-unicode mapped bytes
//   normalizer:    null
//   pre_tokenizer: Sequence[Split(Regex <o200k pattern>, "Isolated", invert
//                  false), ByteLevel(add_prefix_space false, use_regex false)]
//   added_tokens:  special tokens ({"id", "content", "special": true}; lstrip,
//                  rstrip and single_word false)
//
// Anything else is kUnsupportedCheckpoint (another model type, another
// pre-tokeniser, non-special added tokens), a malformed file kCorruptCheckpoint.
// The merges are not used for encoding: tiktoken's rule (merge the adjacent pair
// whose concatenation has the lowest id) gives the same result when the merges
// list, for every token, its splits into two tokens, in the order of the
// merged token's id, which is how tiktoken vocabularies are converted. Each
// merge is checked (its two parts and their concatenation are tokens, the
// concatenation's id does not decrease along the list); that every split is
// listed is not checked.
//
// Parsing the whole document into a gon::Json tree would take ~0.2 s (1.3 M
// values), so the vocab and merges are read by a small streaming reader here;
// every other member is cut out by the reader and parsed (strictly) by
// parse_json. The reader is as strict as parse_json on the parts it reads
// itself (RFC 8259, UTF-8 validated, lone surrogate escapes rejected).
#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "core/check.hpp"
#include "core/json.hpp"
#include "text/bpe_tokenizer.hpp"
#include "text/utf8.hpp"

namespace gon::text {

namespace {

// The o200k_base pattern as the JSON string decodes (single backslashes).
constexpr std::string_view kO200kPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

constexpr int kMaxSkipDepth = 512;
// Ids are bounded so that a hostile file cannot make us allocate per-id tables
// of gigabytes (real vocabularies have well under a million tokens).
constexpr uint64_t kMaxTokenId = (uint64_t{1} << 24) - 1;

// GPT-2's byte-to-unicode map, inverted: code point -> byte, or -1. Bytes
// 0x21..0x7E, 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other 68
// bytes are U+0100.. in increasing byte order.
struct ByteLevelTable {
  int16_t byte_of[256 + 68];
  constexpr ByteLevelTable() : byte_of() {
    for (auto& v : byte_of) v = -1;
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_of[self ? b : next++] = static_cast<int16_t>(b);
    }
  }
};
constexpr ByteLevelTable kByteLevel;

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string quoted(std::string_view s, size_t max_len = 60) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max_len) out += "...";
  return out + "'";
}

// A pull reader over a JSON text: just what tokenizer.json needs.
class Reader {
 public:
  Reader(std::string_view text, std::string_view origin) : s_(text), origin_(origin) {}

  [[noreturn]] void fail(const std::string& why) const { fail_at(pos_, why); }
  [[noreturn]] void fail_at(size_t at, const std::string& why) const {
    GON_THROW(kCorruptCheckpoint, origin_, ": invalid JSON at byte ", at, ": ", why);
  }

  size_t pos() const { return pos_; }
  bool at_end() {
    ws();
    return pos_ >= s_.size();
  }
  int peek() {
    ws();
    return pos_ < s_.size() ? static_cast<unsigned char>(s_[pos_]) : -1;
  }
  void expect(char c) {
    if (peek() != static_cast<unsigned char>(c)) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  // Object members: `first` starts true; returns false after the closing '}'.
  bool next_member(bool& first, std::string& key) {
    const int c = peek();
    if (c == '}') {
      ++pos_;
      return false;
    }
    if (!first) {
      if (c != ',') fail("expected ',' or '}' in an object");
      ++pos_;
    }
    first = false;
    key.clear();
    string([&](uint32_t cp) { append_utf8(key, cp); });
    expect(':');
    return true;
  }
  // Array elements: `first` starts true; returns false after the closing ']'.
  bool next_element(bool& first) {
    const int c = peek();
    if (c == ']') {
      ++pos_;
      return false;
    }
    if (!first) {
      if (c != ',') fail("expected ',' or ']' in an array");
      ++pos_;
      if (peek() == ']') fail("expected a value after ','");
    }
    first = false;
    return true;
  }

  // Reads a string, calling sink(code point) for each character.
  template <typename Sink>
  void string(Sink&& sink) {
    if (peek() != '"') fail("expected a string");
    ++pos_;
    const auto* s = reinterpret_cast<const uint8_t*>(s_.data());
    const size_t n = s_.size();
    for (;;) {
      if (pos_ >= n) fail("unterminated string");
      const uint8_t c = s[pos_];
      if (c == '"') {
        ++pos_;
        return;
      }
      if (c == '\\') {
        sink(escape());
      } else if (c < 0x20) {
        fail("raw control character in a string");
      } else if (c < 0x80) {
        sink(c);
        ++pos_;
      } else {
        const size_t len = utf8_sequence(s + pos_, n - pos_);
        if (len == 0) fail("invalid UTF-8 in a string");
        uint32_t cp;
        utf8_decode(s + pos_, &cp);
        sink(cp);
        pos_ += len;
      }
    }
  }

  // Fast path of byte_level_string(): a string made only of characters that
  // stand for themselves (U+0021..U+007E but '"' and '\\') or of U+00A1..U+0143
  // (two-byte UTF-8 with lead C2..C5), appended to `out` as bytes. Returns false,
  // having consumed and appended nothing, when the string has anything else.
  bool byte_level_fast(std::string& out) {
    if (peek() != '"') return false;
    const auto* s = reinterpret_cast<const uint8_t*>(s_.data());
    const size_t n = s_.size();
    const void* q = std::memchr(s + pos_ + 1, '"', n - pos_ - 1);
    if (!q) return false;
    const size_t end = static_cast<size_t>(static_cast<const uint8_t*>(q) - s);
    const size_t old = out.size();
    out.resize(old + (end - pos_ - 1));
    char* w = out.data() + old;
    for (size_t i = pos_ + 1; i < end;) {
      const uint8_t c = s[i];
      if (c >= 0x21 && c <= 0x7E && c != '\\') {
        *w++ = static_cast<char>(c);
        ++i;
        continue;
      }
      if (c >= 0xC2 && c <= 0xC5 && i + 1 < end && (s[i + 1] & 0xC0) == 0x80) {
        const uint32_t cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
        const int b = cp < 256 + 68 ? kByteLevel.byte_of[cp] : -1;
        if (b >= 0) {
          *w++ = static_cast<char>(b);
          i += 2;
          continue;
        }
      }
      out.resize(old);
      return false;
    }
    out.resize(static_cast<size_t>(w - out.data()));
    pos_ = end + 1;
    return true;
  }

  // A JSON number; returns its value if it is a non-negative integer literal
  // below 2^53, otherwise nullopt (the number is still consumed and checked).
  std::optional<uint64_t> number() {
    ws();
    bool plain = true;
    if (pos_ < s_.size() && s_[pos_] == '-') {
      plain = false;
      ++pos_;
    }
    if (pos_ >= s_.size() || !isdigit(s_[pos_])) fail("expected a value");
    uint64_t v = 0;
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < s_.size() && isdigit(s_[pos_])) {
        if (v > (uint64_t{1} << 53)) plain = false;
        v = v * 10 + static_cast<uint64_t>(s_[pos_] - '0');
        ++pos_;
      }
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      plain = false;
      ++pos_;
      if (pos_ >= s_.size() || !isdigit(s_[pos_])) fail("expected a digit after '.'");
      while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      plain = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !isdigit(s_[pos_])) fail("expected a digit in the exponent");
      while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    }
    if (!plain || v >= (uint64_t{1} << 53)) return std::nullopt;
    return v;
  }

  // Skips one value (any kind) and returns its text; the caller validates it
  // with parse_json. Robust on any input, but only checks nesting.
  std::string_view skip() {
    ws();
    const size_t start = pos_;
    const size_t n = s_.size();
    if (pos_ >= n) fail("expected a value");
    const char c = s_[pos_];
    if (c == '"') {
      skip_string();
    } else if (c == '{' || c == '[') {
      int depth = 0;
      while (pos_ < n) {
        const char d = s_[pos_];
        if (d == '"') {
          skip_string();
          continue;
        }
        ++pos_;
        if (d == '{' || d == '[') {
          if (++depth > kMaxSkipDepth) fail_at(pos_ - 1, "nesting too deep");
        } else if (d == '}' || d == ']') {
          if (--depth == 0) break;
        }
      }
      if (depth != 0) fail("unterminated array or object");
    } else {
      while (pos_ < n && !std::strchr(",}] \t\r\n", s_[pos_])) ++pos_;
      if (pos_ == start) fail("expected a value");
    }
    return s_.substr(start, pos_ - start);
  }

 private:
  static bool isdigit(char c) { return c >= '0' && c <= '9'; }

  void ws() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }
  void skip_string() {
    ++pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') return;
      if (c == '\\') ++pos_;
    }
    fail("unterminated string");
  }
  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else fail("invalid \\u escape");
    }
    pos_ += 4;
    return v;
  }
  uint32_t escape() {
    ++pos_;  // the backslash
    if (pos_ >= s_.size()) fail("unterminated string");
    const char e = s_[pos_++];
    switch (e) {
      case '"': return '"';
      case '\\': return '\\';
      case '/': return '/';
      case 'b': return '\b';
      case 'f': return '\f';
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case 'u': {
        const uint32_t hi = hex4();
        if (hi >= 0xDC00 && hi <= 0xDFFF) fail("lone low surrogate escape");
        if (hi < 0xD800 || hi > 0xDBFF) return hi;
        if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') fail("lone high surrogate escape");
        pos_ += 2;
        const uint32_t lo = hex4();
        if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate escape not followed by a low one");
        return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
      }
      default:
        fail_at(pos_ - 1, "invalid escape");
    }
  }

  std::string_view s_;
  std::string_view origin_;
  size_t pos_ = 0;
};

// What the streaming pass collects from "model".
struct ModelData {
  bool present = false;
  std::string type;
  bool type_seen = false;
  // vocab: byte-level decoded tokens, concatenated; (offset, length, id) each.
  bool vocab_seen = false;
  bool vocab_is_object = false;
  std::string vocab_arena;
  struct Entry {
    uint32_t offset, length, id;
    size_t at;  // byte offset of the key in the file
  };
  std::vector<Entry> vocab;
  // merges: each stored as the bytes of its left part followed by its right part.
  bool merges_seen = false;
  bool merges_is_array = false;
  std::string merge_arena;
  struct Merge {
    uint32_t offset, left, right;
  };
  std::vector<Merge> merges;
  // The first problem that is only an error if the model turns out to be BPE.
  std::string deferred_error;
  // Other members, parsed afterwards.
  std::vector<std::pair<std::string, std::string_view>> others;
};

// Decodes a byte-level string into `out`; records the first character outside
// the byte-level alphabet in *bad (if still empty). `split` (if not null)
// receives the offset in `out` of the first ASCII space (merges "a b").
template <typename R>
void byte_level_string(R& r, std::string& out, std::string* bad, size_t* split) {
  if (!split && r.byte_level_fast(out)) return;
  r.string([&](uint32_t cp) {
    if (cp < 256 + 68 && kByteLevel.byte_of[cp] >= 0) {
      out += static_cast<char>(kByteLevel.byte_of[cp]);
    } else if (cp == ' ' && split && *split == std::string::npos) {
      *split = out.size();
    } else if (bad && bad->empty()) {
      std::string ch;
      append_utf8(ch, cp);
      char buf[16];
      std::snprintf(buf, sizeof buf, "U+%04X", cp);
      *bad = quoted(ch) + " (" + buf + ")";
    }
  });
}

void read_model(Reader& r, std::string_view origin, ModelData& m) {
  m.present = true;
  r.expect('{');
  bool first = true;
  std::string key;
  std::unordered_set<std::string> seen;
  while (r.next_member(first, key)) {
    if (!seen.insert(key).second) r.fail("member 'model." + key + "' appears twice");
    if (key == "type") {
      m.type_seen = true;
      if (r.peek() == '"') {
        r.string([&](uint32_t cp) { append_utf8(m.type, cp); });
      } else {
        r.skip();
        m.type = "(not a string)";
      }
    } else if (key == "vocab") {
      m.vocab_seen = true;
      if (r.peek() != '{') {
        r.skip();
        continue;
      }
      m.vocab_is_object = true;
      r.expect('{');
      bool vfirst = true;
      m.vocab.reserve(1 << 18);
      m.vocab_arena.reserve(1 << 21);
      for (;;) {
        // next_member with a byte-level key, inlined
        const int c = r.peek();
        if (c == '}') {
          r.expect('}');
          break;
        }
        if (!vfirst) r.expect(',');
        vfirst = false;
        const size_t at = r.pos();
        const auto offset = static_cast<uint32_t>(m.vocab_arena.size());
        std::string bad;
        byte_level_string(r, m.vocab_arena, &bad, nullptr);
        const auto length = static_cast<uint32_t>(m.vocab_arena.size() - offset);
        r.expect(':');
        const size_t value_at = r.pos();
        const int v = r.peek();
        const bool is_number = v == '-' || (v >= '0' && v <= '9');
        const auto id = is_number ? r.number() : std::nullopt;
        if (!id) {
          if (!is_number) r.skip();
          if (m.deferred_error.empty())
            m.deferred_error = str_cat(origin, ": model.vocab: the id at byte ", value_at,
                                       " is not a non-negative integer");
          continue;
        }
        if (!bad.empty() && m.deferred_error.empty())
          m.deferred_error = str_cat(origin, ": model.vocab: the token at byte ", at, " contains ", bad,
                                     ", which is not a byte of the byte-level alphabet");
        if (length == 0 && m.deferred_error.empty())
          m.deferred_error = str_cat(origin, ": model.vocab: empty token at byte ", at);
        if (*id > kMaxTokenId && m.deferred_error.empty())
          m.deferred_error = str_cat(origin, ": model.vocab: id ", *id, " at byte ", value_at,
                                     " is too large (at most ", kMaxTokenId, ")");
        m.vocab.push_back({offset, length, static_cast<uint32_t>(std::min<uint64_t>(*id, kMaxTokenId)), at});
      }
    } else if (key == "merges") {
      m.merges_seen = true;
      if (r.peek() != '[') {
        r.skip();
        continue;
      }
      m.merges_is_array = true;
      r.expect('[');
      bool mfirst = true;
      m.merges.reserve(1 << 19);
      m.merge_arena.reserve(1 << 23);
      while (r.next_element(mfirst)) {
        const size_t at = r.pos();
        const auto offset = static_cast<uint32_t>(m.merge_arena.size());
        std::string bad;
        size_t split = std::string::npos;
        uint32_t left = 0, right = 0;
        bool shape_ok = true;
        if (r.peek() == '"') {  // "a b"
          byte_level_string(r, m.merge_arena, &bad, &split);
          if (split == std::string::npos) {
            shape_ok = false;
          } else {
            left = static_cast<uint32_t>(split - offset);
            right = static_cast<uint32_t>(m.merge_arena.size() - split);
          }
        } else if (r.peek() == '[') {  // ["a", "b"]
          r.expect('[');
          bool pfirst = true;
          int count = 0;
          while (r.next_element(pfirst)) {
            if (r.peek() != '"' || count >= 2) {
              r.skip();
              shape_ok = false;
              ++count;
              continue;
            }
            const size_t before = m.merge_arena.size();
            byte_level_string(r, m.merge_arena, &bad, nullptr);
            (count == 0 ? left : right) = static_cast<uint32_t>(m.merge_arena.size() - before);
            ++count;
          }
          if (count != 2) shape_ok = false;
        } else {
          r.skip();
          shape_ok = false;
        }
        if (m.deferred_error.empty()) {
          if (!shape_ok)
            m.deferred_error = str_cat(origin, ": model.merges: the merge at byte ", at,
                                       " is neither \"a b\" nor [\"a\", \"b\"]");
          else if (!bad.empty())
            m.deferred_error = str_cat(origin, ": model.merges: the merge at byte ", at, " contains ", bad,
                                       ", which is not a byte of the byte-level alphabet");
          else if (left == 0 || right == 0)
            m.deferred_error = str_cat(origin, ": model.merges: the merge at byte ", at, " has an empty part");
        }
        m.merges.push_back({offset, left, right});
      }
    } else {
      m.others.emplace_back(key, r.skip());
    }
  }
}

Json parse_member(std::string_view origin, std::string_view name, std::string_view text, size_t at) {
  return parse_json(text, str_cat(origin, " (", name, ", at byte ", at, ")"));
}

[[noreturn]] void unsupported_pretokenizer(std::string_view origin, const std::string& why) {
  GON_THROW(kUnsupportedCheckpoint, origin, ": the pre-tokeniser is not gpt-oss's (", why,
            "); gpt-oss needs Sequence[Split(the o200k regex, Isolated), ByteLevel(add_prefix_space=false, "
            "use_regex=false)]");
}

void check_pretokenizer(std::string_view origin, const Json* pre) {
  if (pre == nullptr || pre->is_null()) unsupported_pretokenizer(origin, "there is none");
  if (!pre->is_object()) unsupported_pretokenizer(origin, "not an object");
  const Json* type = pre->find("type");
  if (!type || !type->is_string() || type->as_string() != "Sequence")
    unsupported_pretokenizer(origin, "not a Sequence");
  const Json* list = pre->find("pretokenizers");
  if (!list || !list->is_array() || list->as_array().size() != 2)
    unsupported_pretokenizer(origin, "a Sequence of other than two steps");
  const Json& split = list->as_array()[0];
  const Json& bytelevel = list->as_array()[1];
  auto str = [](const Json& o, std::string_view k) -> std::string {
    const Json* v = o.is_object() ? o.find(k) : nullptr;
    return v && v->is_string() ? v->as_string() : std::string();
  };
  auto boolean = [](const Json& o, std::string_view k, bool absent) -> int {
    const Json* v = o.is_object() ? o.find(k) : nullptr;
    if (!v) return absent;
    return v->is_bool() ? int(v->as_bool()) : -1;
  };
  if (str(split, "type") != "Split") unsupported_pretokenizer(origin, "its first step is not Split");
  const Json* pattern = split.find("pattern");
  const Json* regex = pattern && pattern->is_object() ? pattern->find("Regex") : nullptr;
  if (!regex || !regex->is_string())
    unsupported_pretokenizer(origin, "Split without a Regex pattern");
  if (regex->as_string() != kO200kPattern)
    unsupported_pretokenizer(origin, "the Split regex is not o200k's: " + quoted(regex->as_string(), 80));
  if (str(split, "behavior") != "Isolated") unsupported_pretokenizer(origin, "Split behavior is not Isolated");
  if (boolean(split, "invert", false) != 0) unsupported_pretokenizer(origin, "Split is inverted");
  if (str(bytelevel, "type") != "ByteLevel") unsupported_pretokenizer(origin, "its second step is not ByteLevel");
  if (boolean(bytelevel, "add_prefix_space", false) != 0)
    unsupported_pretokenizer(origin, "ByteLevel adds a prefix space");
  if (boolean(bytelevel, "use_regex", true) != 0)
    unsupported_pretokenizer(origin, "ByteLevel applies the GPT-2 regex");
}

}  // namespace

std::shared_ptr<const Tokenizer> tokenizer_from_hf_json(std::string_view json, std::string_view origin) {
  Reader r(json, origin);
  ModelData model;
  std::vector<std::pair<std::string, std::pair<std::string_view, size_t>>> members;
  std::unordered_set<std::string> seen;
  r.expect('{');
  bool first = true;
  std::string key;
  while (r.next_member(first, key)) {
    if (!seen.insert(key).second) r.fail("member '" + key + "' appears twice");
    if (key == "model" && r.peek() == '{') {
      read_model(r, origin, model);
    } else {
      const size_t at = r.pos();
      const std::string_view text = r.skip();
      members.emplace_back(key, std::make_pair(text, at));
    }
  }
  if (!r.at_end()) r.fail("unexpected data after the document");

  // Every member that the streaming pass did not read is parsed strictly.
  Json normalizer, pre_tokenizer, added_tokens;
  bool has_pre_tokenizer = false, has_added_tokens = false;
  for (const auto& [name, value] : members) {
    Json j = parse_member(origin, name, value.first, value.second);
    if (name == "model") {
      GON_THROW(kCorruptCheckpoint, origin, ": 'model' is not an object");
    } else if (name == "normalizer") {
      normalizer = std::move(j);
    } else if (name == "pre_tokenizer") {
      pre_tokenizer = std::move(j);
      has_pre_tokenizer = true;
    } else if (name == "added_tokens") {
      added_tokens = std::move(j);
      has_added_tokens = true;
    }
  }
  std::vector<std::pair<std::string, Json>> model_options;
  for (const auto& [name, text] : model.others) {
    model_options.emplace_back(name, parse_json(text, str_cat(origin, " (model.", name, ")")));
  }

  // What kind of tokenizer is it?
  GON_CHECK(model.present, kCorruptCheckpoint, origin, ": no 'model' (not a tokenizer.json?)");
  GON_CHECK(model.type_seen, kCorruptCheckpoint, origin, ": the model has no 'type'");
  if (model.type != "BPE") {
    GON_THROW(kUnsupportedCheckpoint, origin, ": tokenizer.json is a ", model.type,
              " model; gpt-oss needs byte-level BPE");
  }
  if (!normalizer.is_null())
    GON_THROW(kUnsupportedCheckpoint, origin, ": the tokenizer has a normalizer; gpt-oss's has none");
  check_pretokenizer(origin, has_pre_tokenizer ? &pre_tokenizer : nullptr);
  for (const auto& [name, value] : model_options) {
    const bool ok = name == "dropout" || name == "unk_token" ? value.is_null()
                    : name == "continuing_subword_prefix" || name == "end_of_word_suffix"
                        ? value.is_null() || (value.is_string() && value.as_string().empty())
                    : name == "byte_fallback" ? value.is_bool() && !value.as_bool()
                                              : true;  // fuse_unk, ignore_merges: no effect here
    GON_CHECK(ok, kUnsupportedCheckpoint, origin, ": model.", name,
              " is set; gpt-oss's byte-level BPE has no dropout, unknown token, subword affixes or byte fallback");
  }
  GON_CHECK(model.vocab_seen && model.vocab_is_object, kCorruptCheckpoint, origin,
            ": model.vocab is missing or not an object");
  GON_CHECK(model.merges_seen && model.merges_is_array, kCorruptCheckpoint, origin,
            ": model.merges is missing or not an array");
  if (!model.deferred_error.empty()) throw Error(Status::kCorruptCheckpoint, model.deferred_error);

  // Special tokens.
  std::vector<SpecialTokenDef> specials;
  std::unordered_map<int32_t, std::string> special_text_of_id;
  if (has_added_tokens && !added_tokens.is_null()) {
    GON_CHECK(added_tokens.is_array(), kCorruptCheckpoint, origin, ": added_tokens is not an array");
    std::unordered_set<std::string> contents;
    for (const Json& t : added_tokens.as_array()) {
      GON_CHECK(t.is_object(), kCorruptCheckpoint, origin, ": an entry of added_tokens is not an object");
      const Json* id = t.find("id");
      const Json* content = t.find("content");
      GON_CHECK(id && id->is_uint() && id->as_uint() <= kMaxTokenId, kCorruptCheckpoint, origin,
                ": an added token has no valid 'id' (a non-negative integer up to ", kMaxTokenId, ")");
      GON_CHECK(content && content->is_string() && !content->as_string().empty(), kCorruptCheckpoint, origin,
                ": added token ", id->as_uint(), " has no 'content'");
      const std::string& text = content->as_string();
      const Json* special = t.find("special");
      GON_CHECK(special && special->is_bool() && special->as_bool(), kUnsupportedCheckpoint, origin,
                ": added token ", quoted(text), " (id ", id->as_uint(),
                ") is not special; gpt-oss's tokenizer has only special added tokens");
      for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
        const Json* f = t.find(flag);
        GON_CHECK(f == nullptr || (f->is_bool() && !f->as_bool()), kUnsupportedCheckpoint, origin,
                  ": added token ", quoted(text), " sets '", flag, "', which gpt-oss's tokenizer does not use");
      }
      GON_CHECK(contents.insert(text).second, kCorruptCheckpoint, origin, ": added token ", quoted(text),
                " appears twice");
      const auto sid = static_cast<int32_t>(id->as_uint());
      GON_CHECK(special_text_of_id.emplace(sid, text).second, kCorruptCheckpoint, origin, ": added tokens ",
                quoted(special_text_of_id[sid]), " and ", quoted(text), " have the same id ", sid);
      specials.push_back({text, sid});
    }
  }

  // The vocabulary. An id that is also a special token is allowed only when the
  // vocab entry has the same text (some files list specials in both places);
  // it is then a special token only.
  BpeVocab vocab;
  vocab.reserve(model.vocab.size(), model.vocab_arena.size());
  const char* arena = model.vocab_arena.data();
  constexpr size_t kAhead = 8;
  uint64_t ring[kAhead];
  auto start_insert = [&](size_t k) {
    const auto& e = model.vocab[k];
    ring[k % kAhead] = hash_bytes(reinterpret_cast<const uint8_t*>(arena + e.offset), e.length);
    vocab.prefetch(ring[k % kAhead]);
  };
  for (size_t k = 0; k < kAhead && k < model.vocab.size(); ++k) start_insert(k);
  for (size_t k = 0; k < model.vocab.size(); ++k) {
    const auto& e = model.vocab[k];
    const uint64_t hash = ring[k % kAhead];
    if (k + kAhead < model.vocab.size()) start_insert(k + kAhead);
    const std::string_view bytes(arena + e.offset, e.length);
    const auto sit = special_text_of_id.find(static_cast<int32_t>(e.id));
    if (sit != special_text_of_id.end()) {
      GON_CHECK(sit->second == bytes, kCorruptCheckpoint, origin, ": model.vocab: id ", e.id, " (token at byte ",
                e.at, ") is also the id of the added token ", quoted(sit->second));
      continue;
    }
    uint32_t existing = 0;
    switch (vocab.add(bytes, e.id, &existing, hash)) {
      case BpeVocab::Added::kOk:
        break;
      case BpeVocab::Added::kDuplicateBytes:
        GON_THROW(kCorruptCheckpoint, origin, ": model.vocab: the token at byte ", e.at, " (id ", e.id,
                  ") has the same bytes as token ", existing);
      case BpeVocab::Added::kDuplicateId:
        GON_THROW(kCorruptCheckpoint, origin, ": model.vocab: the token at byte ", e.at, " has id ", e.id,
                  ", which another token has already");
      case BpeVocab::Added::kBadLength:
        GON_THROW(kCorruptCheckpoint, origin, ": model.vocab: the token at byte ", e.at, " has ", e.length,
                  " bytes (at most ", BpeVocab::kMaxTokenBytes, ")");
    }
  }
  GON_CHECK(vocab.size() > 0, kCorruptCheckpoint, origin, ": model.vocab is empty");
  for (int b = 0; b < 256; ++b) {
    GON_CHECK(vocab.byte_token(static_cast<uint8_t>(b)) != BpeVocab::kNoToken, kCorruptCheckpoint, origin,
              ": model.vocab has no token for the byte ", b,
              " (a byte-level BPE vocabulary has a token for each of the 256 bytes)");
  }

  // The merges must agree with merging by id.
  // 1.3 million lookups: their hashes are computed and their slots prefetched
  // kAhead merges in advance.
  const char* marena = model.merge_arena.data();
  struct Hashes {
    uint64_t a, b, ab;
  };
  Hashes hring[kAhead];
  auto start_lookup = [&](size_t k) {
    const auto& mg = model.merges[k];
    const auto* p = reinterpret_cast<const uint8_t*>(marena + mg.offset);
    Hashes& h = hring[k % kAhead];
    h = {hash_bytes(p, mg.left), hash_bytes(p + mg.left, mg.right), hash_bytes(p, mg.left + mg.right)};
    vocab.prefetch(h.a);
    vocab.prefetch(h.b);
    vocab.prefetch(h.ab);
  };
  for (size_t k = 0; k < kAhead && k < model.merges.size(); ++k) start_lookup(k);
  uint32_t previous = 0;
  for (size_t k = 0; k < model.merges.size(); ++k) {
    const auto& mg = model.merges[k];
    const auto* p = reinterpret_cast<const uint8_t*>(marena + mg.offset);
    const Hashes h = hring[k % kAhead];
    if (k + kAhead < model.merges.size()) start_lookup(k + kAhead);
    const uint32_t a = vocab.find(p, mg.left, h.a);
    const uint32_t b = vocab.find(p + mg.left, mg.right, h.b);
    const uint32_t ab = vocab.find(p, mg.left + mg.right, h.ab);
    if (a == BpeVocab::kNoToken || b == BpeVocab::kNoToken || ab == BpeVocab::kNoToken) {
      GON_THROW(kCorruptCheckpoint, origin, ": model.merges[", k, "] (",
                quoted(std::string_view(marena + mg.offset, mg.left)), ", ",
                quoted(std::string_view(marena + mg.offset + mg.left, mg.right)), "): ",
                a == BpeVocab::kNoToken ? "its first part" : b == BpeVocab::kNoToken ? "its second part"
                                                                                      : "their concatenation",
                " is not in the vocabulary");
    }
    if (ab < previous) {
      GON_THROW(kUnsupportedCheckpoint, origin, ": model.merges[", k, "] forms token ", ab, " after token ",
                previous, " was formed: the merges are not in the order of the merged tokens' ids, so merging ",
                "by id (tiktoken's rule, which this runtime uses) would not reproduce them");
    }
    previous = ab;
  }
  return std::make_shared<BpeTokenizer>(std::move(vocab), specials);
}

}  // namespace gon::text
