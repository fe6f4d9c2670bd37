// Tests of the tokenizer (cpp/src/text): the o200k pre-tokeniser on strings
// with known splits, the Unicode classes, the BPE merge (against a naive
// reference, small and large pieces), special tokens, encode_bytes, decoding,
// the stream decoder (against an independent replacement decoder), and the
// two loaders with their errors. No network and no Python: the vocabularies
// are small synthetic ones written here. Exactness against tiktoken on the
// real vocabulary is tested in tests/test_tokenizer.py.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gpt_oss_native/tokenizer.hpp"
#include "test_util.hpp"
#include "text/bpe.hpp"
#include "text/bpe_tokenizer.hpp"
#include "text/pretokenizer.hpp"
#include "text/utf8.hpp"

namespace {

using gon::SpecialTokens;
using gon::Tokenizer;
using Ids = std::vector<int32_t>;

std::string b64(std::string_view in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t w = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += a[w >> 18];
    out += a[(w >> 12) & 63];
    out += a[(w >> 6) & 63];
    out += a[w & 63];
  }
  if (in.size() - i == 1) {
    const uint32_t w = uint8_t(in[i]) << 16;
    out += a[w >> 18];
    out += a[(w >> 12) & 63];
    out += "==";
  } else if (in.size() - i == 2) {
    const uint32_t w = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += a[w >> 18];
    out += a[(w >> 12) & 63];
    out += a[(w >> 6) & 63];
    out += '=';
  }
  return out;
}

// A small vocabulary: the 256 bytes (rank = byte), then these merges in order.
const std::vector<std::string> kMerges = {
    "ab", "cd", "abcd", "he", "ll", "llo", "hello", " h", " hello", "wor", "ld", "world", " world",
    "aa", "aaaa", "\xC3\xA9", "\xE6\x97", "\xE6\x97\xA5", "\xE6\x9C\xAC", "  ", "\n\n", "12", "123", "<|", "|>"};

std::vector<std::pair<std::string, int>> small_vocab() {
  std::vector<std::pair<std::string, int>> v;
  for (int b = 0; b < 256; ++b) v.emplace_back(std::string(1, static_cast<char>(b)), b);
  for (size_t i = 0; i < kMerges.size(); ++i) v.emplace_back(kMerges[i], 256 + static_cast<int>(i));
  v.emplace_back("xyz", 400);  // a token no merge path reaches (no "xy" or "yz")
  return v;
}

std::string rank_file(const std::vector<std::pair<std::string, int>>& vocab) {
  std::string f;
  for (const auto& [bytes, rank] : vocab) f += b64(bytes) + " " + std::to_string(rank) + "\n";
  return f;
}

std::shared_ptr<const Tokenizer> small_tokenizer() {
  static auto tok = Tokenizer::from_tiktoken(rank_file(small_vocab()), "small.tiktoken");
  return tok;
}

int32_t id_of(std::string_view bytes) {
  for (const auto& [b, r] : small_vocab())
    if (b == bytes) return r;
  return -1;
}

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : gon::text::o200k_split(s)) out.emplace_back(p);
  return out;
}

// Python's bytes.decode("utf-8", errors="replace"), written independently of
// utf8.hpp: decode code point by code point with explicit bounds per lead byte.
std::string reference_replace(const std::string& in) {
  std::string out;
  size_t i = 0;
  const auto at = [&](size_t k) { return static_cast<uint8_t>(in[k]); };
  while (i < in.size()) {
    const uint8_t b = at(i);
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    size_t j = i + 1;
    int got = 0;
    while (got < need && j < in.size()) {
      const uint8_t c = at(j);
      const bool ok = got == 0 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
      if (!ok) break;
      ++j;
      ++got;
    }
    if (got == need) {
      out.append(in, i, j - i);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i = j;
  }
  return out;
}

// tiktoken's byte-pair merge, written naively over std::strings.
Ids reference_merge(const std::map<std::string, int>& ranks, const std::string& piece) {
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  for (;;) {
    int best = -1;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const auto it = ranks.find(parts[i] + parts[i + 1]);
      if (it != ranks.end() && (best < 0 || it->second < best)) {
        best = it->second;
        bi = i;
      }
    }
    if (best < 0) break;
    parts[bi] += parts[bi + 1];
    parts.erase(parts.begin() + static_cast<long>(bi) + 1);
  }
  Ids out;
  for (const auto& p : parts) out.push_back(ranks.at(p));
  return out;
}

std::string temp_dir() {
  char tmpl[] = "/tmp/gon_test_tokenizer_XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "/tmp";
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

// GPT-2's byte-to-unicode map as UTF-8 strings.
std::string byte_level(std::string_view bytes) {
  std::string out;
  for (const char ch : bytes) {
    const auto b = static_cast<uint8_t>(ch);
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
      int n = 0;
      for (int k = 0; k < b; ++k)
        if (!((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE)) ++n;
      cp = 256 + n;
    }
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

const char* kPatternJson =
    R"("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")";

struct JsonOptions {
  std::string model_type = "BPE";
  std::string pattern = kPatternJson;
  bool merges_as_pairs = true;
  bool reverse_merges = false;
  std::string extra_merge;
  std::string added = R"([{"id": 500, "content": "<|start|>", "special": true}, {"id": 501, "content": "<|end|>", "special": true, "lstrip": false}])";
  std::string normalizer = "null";
};

// A tokenizer.json for small_vocab() in the structure of gpt-oss's.
std::string small_json(const JsonOptions& o = {}) {
  std::string vocab = "{";
  bool first = true;
  for (const auto& [bytes, id] : small_vocab()) {
    if (!first) vocab += ", ";
    first = false;
    vocab += json_string(byte_level(bytes)) + ": " + std::to_string(id);
  }
  vocab += "}";
  std::vector<std::string> merges;
  for (const std::string& m : kMerges) {
    // every split into two tokens, like transformers' TikTokenConverter
    for (size_t k = 1; k < m.size(); ++k) {
      const std::string a = m.substr(0, k), b = m.substr(k);
      if (id_of(a) >= 0 && id_of(b) >= 0) {
        merges.push_back(o.merges_as_pairs ? "[" + json_string(byte_level(a)) + ", " + json_string(byte_level(b)) + "]"
                                           : json_string(byte_level(a) + " " + byte_level(b)));
      }
    }
  }
  if (o.reverse_merges) std::reverse(merges.begin(), merges.end());
  if (!o.extra_merge.empty()) merges.push_back(o.extra_merge);
  std::string ml = "[";
  for (size_t i = 0; i < merges.size(); ++i) ml += (i ? ", " : "") + merges[i];
  ml += "]";
  return std::string(R"({"version": "1.0", "truncation": null, "padding": null, "added_tokens": )") + o.added +
         R"(, "normalizer": )" + o.normalizer +
         R"(, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": )" +
         o.pattern +
         R"(}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}, "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}, "model": {"type": )" +
         json_string(o.model_type) +
         R"(, "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": true, "vocab": )" +
         vocab + R"(, "merges": )" + ml + "}}";
}

bool message_contains(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
  } catch (const gon::Error& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return true;
    std::printf("  message was: %s\n", e.what());
    return false;
  }
  std::printf("  did not throw\n");
  return false;
}

}  // namespace

// ---- pre-tokeniser -------------------------------------------------------------------

TEST(pretokenizer_known_splits) {
  // Each agrees with the o200k regex (checked with Python's regex module and tiktoken).
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"Hello world", {"Hello", " world"}},
      {"HELLO World", {"HELLO", " World"}},
      {"DON'T we'Ll they're I'M you'VE it'd", {"DON'T", " we'Ll", " they're", " I'M", " you'VE", " it'd"}},
      {"can't've", {"can't", "'ve"}},
      {"ABCdef", {"ABCdef"}},
      {"  leading spaces", {" ", " leading", " spaces"}},
      {"trailing   ", {"trailing", "   "}},
      {"a\n\nb", {"a", "\n\n", "b"}},
      {"a \n b", {"a", " \n", " b"}},
      {"x  \t y", {"x", "  \t", " y"}},
      {"1234567", {"123", "456", "7"}},
      {" 12", {" ", "12"}},
      {"3.14159", {"3", ".", "141", "59"}},
      {"foo.bar/baz\n/x", {"foo", ".bar", "/baz", "\n", "/x"}},
      {"!!!\n\n", {"!!!\n\n"}},
      {" ?!", {" ?!"}},
      {"\t\tword", {"\t", "\tword"}},
      {"\xC2\xA0word", {"\xC2\xA0word"}},                                     // NBSP is a prefix
      {"\xE3\x80\x80\xE6\x97\xA5\xE6\x9C\xAC", {"\xE3\x80\x80\xE6\x97\xA5\xE6\x9C\xAC"}},  // U+3000 + CJK
      {"e\xCC\x81" "cole", {"e\xCC\x81" "cole"}},                             // combining acute
      {"\xCC\x81" "abc", {"\xCC\x81" "abc"}},                                 // a leading mark is the prefix
      {"\xCC\x81\xCC\x81", {"\xCC\x81\xCC\x81"}},
      {"Ab\xCC\x81" "C", {"Ab\xCC\x81", "C"}},
      {"ABC\xCA\xB0" "DEF", {"ABC\xCA\xB0", "DEF"}},  // U+02B0 (Lm) ends the upper-case run
      {"\r\n\r\n", {"\r\n\r\n"}},
      {"a\r\nb", {"a", "\r\n", "b"}},
      {"x = [1, 2];  // c", {"x", " =", " [", "1", ",", " ", "2", "];", " ", " //", " c"}},
      {"<|start|>user", {"<|", "start", "|>", "user"}},
      {"it'\xC5\xBF", {"it'\xC5\xBF"}},  // 'ſ folds to 's
      {"\xE2\x80\xA8x", {"\xE2\x80\xA8x"}},  // U+2028 is White_Space, not \r\n
      {"a\x1C" "b", {"a", "\x1C" "b"}},      // U+001C is not White_Space
      {"  \n", {"  \n"}},
      {"\xE2\x85\xAB number", {"\xE2\x85\xAB", " number"}},  // Ⅻ (Nl)
  };
  for (const auto& [text, expected] : cases) {
    const auto got = split(text);
    if (got != expected) {
      std::printf("  split of '%s':", text.c_str());
      for (const auto& p : got) std::printf(" [%s]", p.c_str());
      std::printf("\n");
    }
    CHECK(got == expected);
  }
}

TEST(pretokenizer_tiles_random_text) {
  std::mt19937_64 rng(gon_test::seed());
  const std::vector<std::string> atoms = {"a", "B", "\xC3\xA9", "\xC3\x89", " ", "\t", "\n", "\r", "'", "s", "T",
                                          "1", "\xD9\xA3", "!", "/", "\xCC\x81", "\xE6\x97\xA5", "\xE3\x80\x80",
                                          "\xC5\xBF", "\xF0\x9F\x98\x80", "ll", "re", "\xC2\x85"};
  for (int it = 0; it < 3000; ++it) {
    std::string s;
    const int n = static_cast<int>(rng() % 24);
    for (int k = 0; k < n; ++k) s += atoms[rng() % atoms.size()];
    std::string joined;
    for (const auto& p : split(s)) {
      CHECK(!p.empty());
      joined += p;
    }
    CHECK(joined == s);
  }
}

TEST(unicode_classes) {
  using namespace gon::text;
  CHECK(std::string(unicode_tables_version()) == "16.0.0");
  CHECK(char_class('A') == kClassUpper);
  CHECK(char_class('z') == kClassLower);
  CHECK(char_class('7') == kClassNumber);
  CHECK(char_class(0x01C5) == kClassUpper);   // ǅ Lt
  CHECK(char_class(0x02B0) == kClassLetter);  // ʰ Lm
  CHECK(char_class(0x4E00) == kClassLetter);  // 一 Lo
  CHECK(char_class(0x0301) == kClassMark);
  CHECK(char_class(0x0663) == kClassNumber);  // Arabic-Indic three
  CHECK(char_class(0x2160) == kClassNumber);  // Ⅰ Nl
  CHECK(char_class(0x00BD) == kClassNumber);  // ½ No
  for (uint32_t cp : {0x09u, 0x0Au, 0x0Bu, 0x0Cu, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au, 0x2028u,
                      0x2029u, 0x202Fu, 0x205Fu, 0x3000u})
    CHECK(char_class(cp) == kClassSpace);
  for (uint32_t cp : {0x1Cu, 0x1Fu, 0x180Eu, 0x200Bu, 0xFEFFu, 0x2060u}) CHECK(char_class(cp) == kClassOther);
  CHECK(char_class(0x1C89) == kClassUpper);   // assigned in Unicode 16.0
  CHECK(char_class(0x31350) == kClassLetter);  // CJK extension H, Unicode 15.0
  CHECK(char_class(0x2EBF0) == kClassLetter);  // CJK extension I, Unicode 15.1
  CHECK(char_class(0xE0000) == kClassOther);   // unassigned
  CHECK(char_class(0x10FFFF) == kClassOther);
  CHECK(char_class(0x110000) == kClassOther);
}

// ---- BPE ---------------------------------------------------------------------------

TEST(bpe_merges_by_rank) {
  const auto tok = small_tokenizer();
  auto enc = [&](const std::string& s) { return tok->encode(s, SpecialTokens::none()); };
  CHECK(enc("abcd") == Ids{id_of("abcd")});
  CHECK(enc("hello") == Ids{id_of("hello")});
  CHECK(enc(" hello world") == (Ids{id_of(" hello"), id_of(" world")}));
  CHECK(enc("aaa") == (Ids{id_of("aa"), 'a'}));  // leftmost first on equal ranks
  CHECK(enc("aaaaa") == (Ids{id_of("aaaa"), 'a'}));
  CHECK(enc("abab") == (Ids{id_of("ab"), id_of("ab")}));
  CHECK(enc("xyz") == Ids{400});  // a whole piece in the vocabulary wins over merging
  const gon::text::BpeVocab& v = dynamic_cast<const gon::text::BpeTokenizer&>(*tok).vocab();
  Ids merged;
  v.byte_pair_merge(reinterpret_cast<const uint8_t*>("xyz"), 3, merged);
  CHECK(merged == (Ids{'x', 'y', 'z'}));
  // "日本" is one piece; 本 has a token but no merge path from its bytes (no "\xE6\x9C").
  CHECK(enc("\xE6\x97\xA5\xE6\x9C\xAC") == (Ids{id_of("\xE6\x97\xA5"), 0xE6, 0x9C, 0xAC}));
  CHECK(enc("\xE6\x9C\xAC") == Ids{id_of("\xE6\x9C\xAC")});
  CHECK(enc("") == Ids{});
}

TEST(bpe_matches_reference_small_and_large_pieces) {
  // A random vocabulary over a 4-letter alphabet, built by random merges, and
  // pieces up to 600 bytes (beyond the array loop's limit, into the heap path).
  std::mt19937_64 rng(gon_test::seed() + 1);
  std::map<std::string, int> ranks;
  gon::text::BpeVocab vocab;
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) {
    const std::string t(1, static_cast<char>(b));
    ranks[t] = b;
    vocab.add(t, static_cast<uint32_t>(b));
    if (b >= 'a' && b <= 'd') tokens.push_back(t);
  }
  int next = 256;
  while (next < 700) {
    const std::string t = tokens[rng() % tokens.size()] + tokens[rng() % tokens.size()];
    if (t.size() > 12 || ranks.count(t)) continue;
    ranks[t] = next;
    CHECK(vocab.add(t, static_cast<uint32_t>(next)) == gon::text::BpeVocab::Added::kOk);
    tokens.push_back(t);
    ++next;
  }
  for (int it = 0; it < 400; ++it) {
    const size_t n = 1 + rng() % (it < 300 ? 140 : 600);
    std::string piece;
    for (size_t k = 0; k < n; ++k) piece += static_cast<char>('a' + rng() % 4);
    Ids got;
    vocab.byte_pair_merge(reinterpret_cast<const uint8_t*>(piece.data()), piece.size(), got);
    const Ids want = reference_merge(ranks, piece);
    if (got != want) std::printf("  piece of %zu bytes differs\n", n);
    CHECK(got == want);
  }
}

TEST(bpe_long_runs_match_reference) {
  // Runs of one byte with tokens of every length up to 40 make many stale heap
  // entries (the heap path's buffer compaction) and long merge chains.
  std::map<std::string, int> ranks;
  gon::text::BpeVocab vocab;
  for (int b = 0; b < 256; ++b) {
    ranks[std::string(1, static_cast<char>(b))] = b;
    vocab.add(std::string(1, static_cast<char>(b)), static_cast<uint32_t>(b));
  }
  for (int k = 2; k <= 40; ++k) {
    ranks[std::string(k, 'a')] = 300 + k;
    vocab.add(std::string(k, 'a'), static_cast<uint32_t>(300 + k));
  }
  for (size_t n : {2, 15, 16, 17, 100, 511, 512, 513, 777, 1500}) {
    const std::string piece(n, 'a');
    Ids got;
    vocab.byte_pair_merge(reinterpret_cast<const uint8_t*>(piece.data()), n, got);
    CHECK(got == reference_merge(ranks, piece));
  }
}

TEST(vocab_rejects_duplicates) {
  gon::text::BpeVocab v;
  uint32_t existing = 0;
  CHECK(v.add("ab", 5) == gon::text::BpeVocab::Added::kOk);
  CHECK(v.add("ab", 6, &existing) == gon::text::BpeVocab::Added::kDuplicateBytes && existing == 5);
  CHECK(v.add("cd", 5, &existing) == gon::text::BpeVocab::Added::kDuplicateId && existing == 5);
  for (int i = 0; i < 5000; ++i) CHECK(v.add("t" + std::to_string(i), static_cast<uint32_t>(100 + i)) == gon::text::BpeVocab::Added::kOk);
  for (int i = 0; i < 5000; i += 97) CHECK(v.find("t" + std::to_string(i)) == static_cast<uint32_t>(100 + i));
  CHECK(v.find("t5000") == gon::text::BpeVocab::kNoToken);
  CHECK(v.find("ab") == 5);
}

// ---- special tokens ----------------------------------------------------------------

TEST(special_tokens) {
  const auto tok = small_tokenizer();
  CHECK(tok->vocab_size() == 201088);
  CHECK(tok->special_token("<|start|>") == 200006);
  CHECK(tok->special_token("<|endofprompt|>") == 200018);
  CHECK(tok->special_token("<|reserved_200018|>") == 200018);
  CHECK(tok->special_token("<|reserved_201087|>") == 201087);
  CHECK(!tok->special_token("<|reserved_201088|>").has_value());
  CHECK(tok->token_bytes(200018) == "<|endofprompt|>");
  CHECK(tok->is_special(199998) && tok->is_special(201087) && !tok->is_special(5) && !tok->is_special(201088));
  CHECK(tok->special_tokens().size() == 1091);

  const std::string text = "<|start|>user<|message|>hi<|end|>";
  const Ids all = tok->encode(text, SpecialTokens::every());
  const size_t user = tok->encode("user", SpecialTokens::none()).size(), hi = tok->encode("hi", SpecialTokens::none()).size();
  CHECK(all.size() == 3 + user + hi);
  CHECK(all.front() == 200006 && all[1 + user] == 200008 && all.back() == 200007);
  CHECK(tok->decode(all) == text);
  // Not allowed: ordinary text.
  const Ids none = tok->encode(text, SpecialTokens::none());
  CHECK(none[0] == id_of("<|"));
  CHECK(tok->decode(none) == text);
  // Some allowed.
  SpecialTokens some;
  some.allowed = {"<|message|>"};
  const Ids s = tok->encode(text, some);
  CHECK(std::count(s.begin(), s.end(), 200008) == 1 && std::count(s.begin(), s.end(), 200006) == 0);
  CHECK(tok->decode(s) == text);
  // Others rejected.
  some.reject_others = true;
  CHECK_THROWS_STATUS(tok->encode(text, some), kInvalidArgument);
  CHECK(message_contains([&] { tok->encode(text, some); }, "<|start|>"));
  CHECK(tok->encode("<|message|> only", some).front() == 200008);
  SpecialTokens reject;
  reject.reject_others = true;
  CHECK(tok->encode("no specials <|x|>", reject) == tok->encode("no specials <|x|>", SpecialTokens::none()));
  CHECK(message_contains([&] { tok->encode("ab <|endofprompt|>", reject); }, "at byte 3"));
  // Unknown names are errors.
  SpecialTokens unknown;
  unknown.allowed = {"<|nope|>"};
  CHECK_THROWS_STATUS(tok->encode("x", unknown), kInvalidArgument);
  // Both texts of id 200018.
  CHECK(tok->encode("<|reserved_200018|><|endofprompt|>", SpecialTokens::every()) == (Ids{200018, 200018}));
  // Adjacent and truncated.
  CHECK(tok->encode("<|end|><|end|><|end", SpecialTokens::every()).size() == 2 + tok->encode("<|end", SpecialTokens::none()).size());
}

// ---- UTF-8 --------------------------------------------------------------------------

TEST(invalid_utf8_is_rejected_with_offset) {
  const auto tok = small_tokenizer();
  for (const std::string bad : {std::string("ab\xFF"), std::string("ab\xC3"), std::string("\xED\xA0\x80"),
                                std::string("ok \xC0\xAF"), std::string("\xF4\x90\x80\x80")}) {
    CHECK_THROWS_STATUS(tok->encode(bad, SpecialTokens::none()), kInvalidArgument);
  }
  CHECK(message_contains([&] { tok->encode("abc \xE6\x97", SpecialTokens::none()); }, "byte offset 4"));
  CHECK(tok->encode("\xF0\x9F\x98\x80", SpecialTokens::none()).size() == 4);
}

TEST(utf8_helpers) {
  using gon::text::utf8_valid_prefix;
  auto vp = [](const std::string& s) { return utf8_valid_prefix(reinterpret_cast<const uint8_t*>(s.data()), s.size()); };
  CHECK(vp("") == 0);
  const std::string ascii = "plain ascii text, long enough for the 8-byte loop";
  CHECK(vp(ascii) == ascii.size());
  CHECK(vp("ab\xC3\xA9") == 4);
  CHECK(vp("ab\xC3") == 2);
  CHECK(vp("abcdefgh\xE0\x80\x80") == 8);  // overlong
  CHECK(vp("\xED\x9F\xBF\xED\xA0\x80") == 3);  // U+D7FF ok, then a surrogate
  CHECK(vp("\xF4\x8F\xBF\xBF\xF4\x90\x80\x80") == 4);
}

TEST(encode_bytes) {
  const auto tok = small_tokenizer();
  // Valid UTF-8: like encode() without specials.
  CHECK(tok->encode_bytes("hello <|end|>") == tok->encode("hello <|end|>", SpecialTokens::none()));
  // The last piece ("llo"... here "hello") and the invalid tail are merged as one piece.
  const Ids a = tok->encode_bytes("ab hello\xFF");
  CHECK((a == Ids{id_of("ab"), id_of(" hello"), 0xFF}));
  // A last piece starting with whitespace-only tokens pulls in earlier ones.
  const Ids b = tok->encode_bytes(std::string("ab\n\n  \xE6\x97"));
  CHECK(tok->decode(b) == "ab\n\n  \xE6\x97");
  CHECK(b.back() == id_of("\xE6\x97"));
  // Only invalid bytes.
  CHECK(tok->encode_bytes("\xFF\xFE") == (Ids{0xFF, 0xFE}));
  CHECK(tok->encode_bytes(std::string("\xE6\x97", 2)) == Ids{id_of("\xE6\x97")});
  // Round trip on random bytes.
  std::mt19937_64 rng(gon_test::seed() + 2);
  for (int it = 0; it < 2000; ++it) {
    std::string s;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) s += static_cast<char>(rng() % 4 == 0 ? rng() % 256 : "ab l\xC3\xA9\n"[rng() % 8]);
    CHECK(tok->decode(tok->encode_bytes(s)) == s);
  }
}

// ---- decoding ----------------------------------------------------------------------

TEST(decode_and_ranges) {
  const auto tok = small_tokenizer();
  CHECK(tok->decode(Ids{id_of("hello"), ' ', 200006}) == "hello <|start|>");
  CHECK(tok->token_bytes(id_of("abcd")) == "abcd");
  CHECK_THROWS_STATUS(tok->decode(Ids{-1}), kTokenOutOfRange);
  CHECK_THROWS_STATUS(tok->decode(Ids{201088}), kTokenOutOfRange);
  CHECK_THROWS_STATUS(tok->decode(Ids{1000}), kTokenOutOfRange);  // a gap: no token has this rank
  CHECK_THROWS_STATUS(tok->token_bytes(150000), kTokenOutOfRange);
  CHECK(tok->num_tokens() == static_cast<int>(small_vocab().size()) + 1090);
}

TEST(stream_decoder_matches_replacement_decoding) {
  const auto tok = small_tokenizer();
  // Hand-picked byte sequences, one token per byte.
  const std::vector<std::string> cases = {
      "\xE6\x97\xA5",     "\xE6\x97" "a", "\xF0\x9F", "\xED\xA0\x80", "\xC3\xA9", "\xF4\x90\x80\x80",
      "\xE0\x80\xAF",     "\xC0\xAF",     "\xFF",     "a\xF0\x9F\x98\x80z", "\xF0\x9F\x98", "\xE1\x80\xE1\x80\x80"};
  for (const std::string& c : cases) {
    gon::StreamDecoder d(tok);
    std::string out;
    for (const char ch : c) {
      const std::string piece = d.push(static_cast<uint8_t>(ch));
      CHECK(gon::text::utf8_valid_prefix(reinterpret_cast<const uint8_t*>(piece.data()), piece.size()) == piece.size());
      out += piece;
    }
    out += d.flush();
    if (out != reference_replace(c)) std::printf("  stream decode of %zu bytes differs\n", c.size());
    CHECK(out == reference_replace(c));
  }
  // Random streams of tokens, including ones that cut characters.
  std::mt19937_64 rng(gon_test::seed() + 3);
  const Ids pool = {id_of("\xE6\x97"), id_of("\xE6\x97\xA5"), id_of("\xC3\xA9"), 0xC3, 0xA9, 0xE6, 0x97, 0xA5, 0xF0,
                    0x9F, 0x98, 0x80, 0xED, 0xFF, 'a', id_of("hello"), 200006};
  for (int it = 0; it < 3000; ++it) {
    Ids ids;
    const int n = static_cast<int>(rng() % 16);
    for (int k = 0; k < n; ++k) ids.push_back(pool[rng() % pool.size()]);
    gon::StreamDecoder d(tok);
    std::string out;
    for (const int32_t t : ids) out += d.push(t);
    out += d.flush();
    CHECK(out == reference_replace(tok->decode(ids)));
  }
  gon::StreamDecoder d(tok);
  CHECK(d.push(0xE6).empty());
  d.reset();
  CHECK(d.flush().empty());
  CHECK_THROWS_STATUS(d.push(-5), kTokenOutOfRange);
  CHECK_THROWS_STATUS(gon::StreamDecoder(nullptr), kInvalidArgument);
}

// ---- loaders ----------------------------------------------------------------------

TEST(tiktoken_loader_errors) {
  const std::string good = rank_file(small_vocab());
  auto load = [](const std::string& f) { return Tokenizer::from_tiktoken(f, "bad.tiktoken"); };
  CHECK(load(good)->encode("hello", SpecialTokens::none()) == Ids{id_of("hello")});
  CHECK(load(good + "\n\n")->num_tokens() == load(good)->num_tokens());  // blank lines are skipped
  CHECK(message_contains([&] { load(good + "!!!! 999\n"); }, "line 283: invalid base64"));
  CHECK(message_contains([&] { load(good + "YWI 999\n"); }, "not a multiple of 4"));
  CHECK(message_contains([&] { load(good + "YQ=a 999\n"); }, "line 283"));
  CHECK(message_contains([&] { load(good + b64("ab") + " 999\n"); }, "already appears on line 257"));
  CHECK(message_contains([&] { load(good + b64("qq") + " 256\n"); }, "rank 256 already appears on line 257"));
  CHECK(message_contains([&] { load(good + b64("qq") + " 12x\n"); }, "invalid rank"));
  CHECK(message_contains([&] { load(good + b64("qq") + " -1\n"); }, "invalid rank"));
  CHECK(message_contains([&] { load(good + b64("qq") + " 199998\n"); }, "collides with the harmony special tokens"));
  CHECK(message_contains([&] { load(good + b64("qq") + "\n"); }, "expected 'base64-token rank'"));
  CHECK(message_contains([&] { load(""); }, "no tokens"));
  CHECK(message_contains([&] { load(b64("a") + " 0\n"); }, "no token for the byte 0x00"));
  CHECK_THROWS_STATUS(load(good + "=== 1\n"), kCorruptCheckpoint);
}

TEST(load_paths) {
  const std::string dir = temp_dir();
  write_file(dir + "/small.tiktoken", rank_file(small_vocab()));
  CHECK(Tokenizer::load(dir + "/small.tiktoken")->encode("hello", SpecialTokens::none()) == Ids{id_of("hello")});
  CHECK_THROWS_STATUS(Tokenizer::load(dir + "/missing.tiktoken"), kFileNotFound);
  CHECK_THROWS_STATUS(Tokenizer::load(dir), kFileNotFound);  // a directory without tokenizer.json
  write_file(dir + "/tokenizer.json", small_json());
  const auto from_dir = Tokenizer::load(dir);
  CHECK(from_dir->encode("hello world", SpecialTokens::none()) == (Ids{id_of("hello"), id_of(" world")}));
  CHECK(Tokenizer::load(dir + "/tokenizer.json")->vocab_size() == 502);
  std::remove((dir + "/small.tiktoken").c_str());
  std::remove((dir + "/tokenizer.json").c_str());
  rmdir(dir.c_str());
}

TEST(hf_json_matches_rank_file) {
  const auto hf = Tokenizer::from_hf_json(small_json(), "tokenizer.json");
  const auto tt = small_tokenizer();
  CHECK(hf->vocab_size() == 502);
  CHECK(hf->num_tokens() == static_cast<int>(small_vocab().size()) + 2);
  CHECK(hf->special_token("<|start|>") == 500);
  CHECK(hf->is_special(501) && !hf->is_special(400));
  CHECK_THROWS_STATUS(hf->decode(Ids{450}), kTokenOutOfRange);
  std::mt19937_64 rng(gon_test::seed() + 4);
  const std::vector<std::string> atoms = {"a", "b", "c", "d", "hello", " world", "\xC3\xA9", "\xE6\x97\xA5", " ", "\n",
                                          "12", "3", "ll", "xyz", "<|", "|>"};
  for (int it = 0; it < 500; ++it) {
    std::string s;
    const int n = static_cast<int>(rng() % 20);
    for (int k = 0; k < n; ++k) s += atoms[rng() % atoms.size()];
    CHECK(hf->encode(s, SpecialTokens::none()) == tt->encode(s, SpecialTokens::none()));
  }
  SpecialTokens all = SpecialTokens::every();
  CHECK(hf->encode("<|start|>ab<|end|>", all) == (Ids{500, id_of("ab"), 501}));
  // Merges written as "a b" strings are accepted too.
  JsonOptions o;
  o.merges_as_pairs = false;
  CHECK(Tokenizer::from_hf_json(small_json(o), "t.json")->encode("hello", SpecialTokens::none()) == Ids{id_of("hello")});
}

TEST(hf_json_errors) {
  auto load = [](const std::string& j) { return Tokenizer::from_hf_json(j, "tokenizer.json"); };
  JsonOptions o;
  o.model_type = "Unigram";
  CHECK_THROWS_STATUS(load(small_json(o)), kUnsupportedCheckpoint);
  CHECK(message_contains([&] { load(small_json(o)); }, "is a Unigram model; gpt-oss needs byte-level BPE"));
  // A WordPiece file whose vocab is not byte-level: still reported by type.
  CHECK(message_contains(
      [&] {
        load(R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "日本": 1, "##s": 2}}})");
      },
      "is a WordPiece model"));
  CHECK(message_contains([&] { load(R"({"model": {"type": "Unigram", "vocab": [["a", -1.0]]}})"); }, "Unigram"));
  o = {};
  o.pattern = R"("\\s+")";
  CHECK(message_contains([&] { load(small_json(o)); }, "not o200k's"));
  o = {};
  o.normalizer = R"({"type": "NFC"})";
  CHECK_THROWS_STATUS(load(small_json(o)), kUnsupportedCheckpoint);
  o = {};
  o.added = R"([{"id": 500, "content": "<|x|>", "special": false}])";
  CHECK(message_contains([&] { load(small_json(o)); }, "is not special"));
  o = {};
  o.added = R"([{"id": 500, "content": "<|x|>", "special": true, "lstrip": true}])";
  CHECK_THROWS_STATUS(load(small_json(o)), kUnsupportedCheckpoint);
  o = {};
  o.added = R"([{"id": 97, "content": "<|x|>", "special": true}])";  // the id of "a"
  CHECK_THROWS_STATUS(load(small_json(o)), kCorruptCheckpoint);
  o = {};
  o.reverse_merges = true;
  CHECK(message_contains([&] { load(small_json(o)); }, "not in the order"));
  o = {};
  o.extra_merge = R"(["q", "\u00e6"])";  // "q" + byte 0xE6: not a token
  CHECK(message_contains([&] { load(small_json(o)); }, "their concatenation is not in the vocabulary"));
  o = {};
  o.extra_merge = R"(["q", "\u4e00"])";  // not a byte-level character
  CHECK(message_contains([&] { load(small_json(o)); }, "byte-level alphabet"));
  o = {};
  o.extra_merge = R"("q")";
  CHECK_THROWS_STATUS(load(small_json(o)), kCorruptCheckpoint);
  // Malformed JSON anywhere.
  const std::string good = small_json();
  CHECK_THROWS_STATUS(load(good.substr(0, good.size() - 1)), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(load(good.substr(0, good.size() / 2)), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(load(good + "x"), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(load("[]"), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(load(""), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(load(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "model": {}})"), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(load(R"({"model": {"type": "BPE", "vocab": {"\ud800": 0}, "merges": []}})"), kCorruptCheckpoint);
  auto with_entry = [&](const std::string& entry) {
    std::string j = small_json();
    j.replace(j.find("\"vocab\": {") + 10, 0, entry + ", ");
    return j;
  };
  CHECK(message_contains([&] { load(with_entry(R"("zz": 1.5)")); }, "not a non-negative integer"));
  CHECK(message_contains([&] { load(with_entry(R"("zz": -1)")); }, "not a non-negative integer"));
  CHECK(message_contains([&] { load(with_entry(R"("zz": 99999999999)")); }, "too large"));
  CHECK(message_contains([&] { load(with_entry(R"("": 700)")); }, "empty token"));
  CHECK_THROWS_STATUS(load(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}, "pre_tokenizer": null})"),
                      kUnsupportedCheckpoint);  // the pre-tokeniser is checked before the vocabulary
  CHECK(message_contains([&] { load(with_entry(R"("a": 600)")); }, "same bytes"));
  CHECK(message_contains([&] { load(with_entry(R"("zz": 97)")); }, "which another token has already"));
  CHECK(message_contains([&] { load(R"({"version": "1.0"})"); }, "no 'model'"));
}

GON_TEST_MAIN()
