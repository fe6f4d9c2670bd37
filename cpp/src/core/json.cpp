// The JSON parser behind parse_json (see json.hpp for the accepted language
// and the decisions RFC 8259 leaves open). A single forward pass over the
// input, recursive descent with a depth bound; every failure throws
// gon::Error(kCorruptCheckpoint) with the origin and byte offset.
#include "core/json.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <system_error>

// Floating-point std::from_chars where the standard library has it (libstdc++
// 11+, MSVC); otherwise strtod_l in the "C" locale (older libc++, e.g. macOS).
// GON_JSON_USE_STRTOD forces the fallback, to test it.
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L && !defined(GON_JSON_USE_STRTOD)
#define GON_JSON_FROM_CHARS 1
#else
#define GON_JSON_FROM_CHARS 0
#include <clocale>
#include <locale.h>
#if defined(__APPLE__)
#include <xlocale.h>
#endif
#endif

#include "core/check.hpp"

namespace gon {

namespace {

constexpr uint64_t kTwoPow63 = uint64_t{1} << 63;
// Exponents are saturated at this magnitude while parsing: any larger one
// means the same thing (overflow to infinity or underflow to zero).
constexpr int64_t kExponentCap = 1'000'000'000'000;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Length of the well-formed UTF-8 sequence (Unicode 15, table 3-7) starting at
// p[0] >= 0x80 with `avail` bytes available, or 0 when it is not well formed.
size_t utf8_sequence_length(const unsigned char* p, size_t avail) {
  auto cont = [&](size_t i, unsigned char lo, unsigned char hi) {
    return i < avail && p[i] >= lo && p[i] <= hi;
  };
  const unsigned char c = p[0];
  if (c >= 0xC2 && c <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
    return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;  // no surrogates
  if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3)
    return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  return 0;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Correctly rounded decimal-to-double conversion of a grammar-checked JSON
// number. Returns false when the value is outside the double range (the
// caller then decides between infinity and zero).
bool decimal_to_double(std::string_view text, double& out) {
#if GON_JSON_FROM_CHARS
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  if (r.ec == std::errc::result_out_of_range) return false;
  if (r.ec != std::errc() || r.ptr != text.data() + text.size())
    GON_THROW(kInternal, "JSON: number conversion failed for a grammar-checked number");
  return true;
#else
  // Standard libraries without floating-point from_chars: strtod in the "C" locale.
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(0));
  std::string copy(text);
  errno = 0;
  out = strtod_l(copy.c_str(), nullptr, c_locale);
  return !(errno == ERANGE && (out == 0.0 || std::isinf(out)));
#endif
}

}  // namespace

// ---- the parser --------------------------------------------------------------

class JsonParser {
 public:
  JsonParser(std::string_view text, std::string_view origin) : s_(text), origin_(origin) {}

  Json parse_document() {
    Json root;
    skip_ws();
    parse_value(root, 0);
    skip_ws();
    if (pos_ != s_.size()) fail(pos_, str_cat("unexpected ", found(pos_), " after the JSON value"));
    return root;
  }

 private:
  [[noreturn]] void fail(size_t at, std::string_view reason) const {
    GON_THROW(kCorruptCheckpoint, origin_, ": invalid JSON at byte ", at, ": ", reason);
  }

  // Describes the input at `at` for an error message.
  std::string found(size_t at) const {
    if (at >= s_.size()) return "end of input";
    const unsigned char c = static_cast<unsigned char>(s_[at]);
    if (c > 0x20 && c < 0x7F) return str_cat("'", static_cast<char>(c), "'");
    char buf[16];
    std::snprintf(buf, sizeof buf, "byte 0x%02X", c);
    return buf;
  }

  void skip_ws() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void parse_value(Json& out, int depth) {
    if (pos_ >= s_.size()) fail(pos_, "expected a value, found end of input");
    switch (s_[pos_]) {
      case '{': parse_object(out, depth + 1); return;
      case '[': parse_array(out, depth + 1); return;
      case '"':
        out.kind_ = Json::Kind::kString;
        parse_string(out.string_);
        return;
      case 't':
        parse_literal("true");
        out.kind_ = Json::Kind::kBool;
        out.bool_ = true;
        return;
      case 'f':
        parse_literal("false");
        out.kind_ = Json::Kind::kBool;
        out.bool_ = false;
        return;
      case 'n':
        parse_literal("null");
        out.kind_ = Json::Kind::kNull;
        return;
      default:
        if (s_[pos_] == '-' || is_digit(s_[pos_])) {
          parse_number(out);
          return;
        }
        fail(pos_, str_cat("expected a value (object, array, string, number, true, false or null), found ",
                           found(pos_)));
    }
  }

  void check_depth(int depth) const {
    if (depth > kJsonMaxDepth)
      fail(pos_, str_cat("arrays/objects nested deeper than ", kJsonMaxDepth, " levels"));
  }

  void parse_array(Json& out, int depth) {
    check_depth(depth);
    out.kind_ = Json::Kind::kArray;
    ++pos_;  // '['
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      out.array_.emplace_back();
      parse_value(out.array_.back(), depth);
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        skip_ws();
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return;
      }
      fail(pos_, str_cat("expected ',' or ']' after an array element, found ", found(pos_)));
    }
  }

  void parse_object(Json& out, int depth) {
    check_depth(depth);
    out.kind_ = Json::Kind::kObject;
    ++pos_;  // '{'
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return;
    }
    for (;;) {
      if (pos_ >= s_.size() || s_[pos_] != '"')
        fail(pos_, str_cat("expected a string key, found ", found(pos_)));
      out.object_.emplace_back();
      auto& member = out.object_.back();
      parse_string(member.first);
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':')
        fail(pos_, str_cat("expected ':' after an object key, found ", found(pos_)));
      ++pos_;
      skip_ws();
      parse_value(member.second, depth);
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        skip_ws();
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return;
      }
      fail(pos_, str_cat("expected ',' or '}' after an object member, found ", found(pos_)));
    }
  }

  void parse_literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word)
      fail(pos_, str_cat("invalid literal (expected '", word, "')"));
    pos_ += word.size();
  }

  // Reads the 4 hex digits of a \u escape at pos_; `at` is where the escape began.
  uint32_t parse_hex4(size_t at) {
    if (s_.size() - pos_ < 4) fail(at, "\\u escape needs 4 hex digits");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex_value(s_[pos_ + i]);
      if (h < 0) fail(at, "\\u escape needs 4 hex digits");
      v = v * 16 + static_cast<uint32_t>(h);
    }
    pos_ += 4;
    return v;
  }

  void parse_escape(std::string& out) {
    const size_t at = pos_;  // the backslash
    if (s_.size() - pos_ < 2) fail(at, "unterminated escape sequence");
    const char e = s_[pos_ + 1];
    pos_ += 2;
    switch (e) {
      case '"': out.push_back('"'); return;
      case '\\': out.push_back('\\'); return;
      case '/': out.push_back('/'); return;
      case 'b': out.push_back('\b'); return;
      case 'f': out.push_back('\f'); return;
      case 'n': out.push_back('\n'); return;
      case 'r': out.push_back('\r'); return;
      case 't': out.push_back('\t'); return;
      case 'u': {
        uint32_t cp = parse_hex4(at);
        if (cp >= 0xDC00 && cp <= 0xDFFF)
          fail(at, "unpaired low surrogate in \\u escape (lone surrogates are not accepted)");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (s_.size() - pos_ < 2 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
            fail(at, "high surrogate \\u escape not followed by a low surrogate escape "
                     "(lone surrogates are not accepted)");
          const size_t at2 = pos_;
          pos_ += 2;
          const uint32_t lo = parse_hex4(at2);
          if (lo < 0xDC00 || lo > 0xDFFF)
            fail(at, "high surrogate \\u escape not followed by a low surrogate escape "
                     "(lone surrogates are not accepted)");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        append_utf8(out, cp);
        return;
      }
      default:
        fail(at, str_cat("invalid escape sequence '\\", found(at + 1), "'"));
    }
  }

  void parse_string(std::string& out) {
    const size_t open = pos_;
    ++pos_;  // '"'
    const auto* p = reinterpret_cast<const unsigned char*>(s_.data());
    const size_t n = s_.size();
    for (;;) {
      // Copy the longest run of bytes that need no attention in one go.
      const size_t run = pos_;
      while (pos_ < n) {
        const unsigned char c = p[pos_];
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
        ++pos_;
      }
      out.append(s_.data() + run, pos_ - run);
      if (pos_ >= n) fail(open, "unterminated string");
      const unsigned char c = p[pos_];
      if (c == '"') {
        ++pos_;
        return;
      }
      if (c == '\\') {
        parse_escape(out);
      } else if (c < 0x20) {
        char buf[80];
        std::snprintf(buf, sizeof buf, "raw control character 0x%02X in a string (it must be escaped)", c);
        fail(pos_, buf);
      } else {
        const size_t len = utf8_sequence_length(p + pos_, n - pos_);
        if (len == 0) fail(pos_, "invalid UTF-8 in a string");
        out.append(s_.data() + pos_, len);
        pos_ += len;
      }
    }
  }

  void parse_number(Json& out) {
    const size_t n = s_.size();
    const size_t start = pos_;
    const bool negative = s_[pos_] == '-';
    if (negative) ++pos_;
    const size_t int_begin = pos_;
    if (pos_ < n && s_[pos_] == '0') {
      ++pos_;
      if (pos_ < n && is_digit(s_[pos_])) fail(int_begin, "leading zeros are not allowed in numbers");
    } else if (pos_ < n && is_digit(s_[pos_])) {
      while (pos_ < n && is_digit(s_[pos_])) ++pos_;
    } else {
      fail(pos_, str_cat("expected a digit in a number, found ", found(pos_)));
    }
    const size_t int_end = pos_;
    size_t frac_begin = pos_, frac_end = pos_;
    if (pos_ < n && s_[pos_] == '.') {
      ++pos_;
      if (pos_ >= n || !is_digit(s_[pos_]))
        fail(pos_, str_cat("expected a digit after the decimal point, found ", found(pos_)));
      frac_begin = pos_;
      while (pos_ < n && is_digit(s_[pos_])) ++pos_;
      frac_end = pos_;
    }
    int64_t exponent = 0;
    bool has_exponent = false;
    if (pos_ < n && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      has_exponent = true;
      ++pos_;
      bool exp_negative = false;
      if (pos_ < n && (s_[pos_] == '+' || s_[pos_] == '-')) {
        exp_negative = s_[pos_] == '-';
        ++pos_;
      }
      if (pos_ >= n || !is_digit(s_[pos_]))
        fail(pos_, str_cat("expected a digit in the exponent, found ", found(pos_)));
      while (pos_ < n && is_digit(s_[pos_])) {
        if (exponent < kExponentCap) exponent = exponent * 10 + (s_[pos_] - '0');
        ++pos_;
      }
      if (exponent > kExponentCap) exponent = kExponentCap;
      if (exp_negative) exponent = -exponent;
    }

    out.kind_ = Json::Kind::kNumber;
    out.literal_int_ = frac_begin == frac_end && !has_exponent;
    out.negative_ = negative;

    // Exact integer analysis on the decimal digits: value = D * 10^e, D being
    // the significant digits (first to last non-zero one).
    const size_t int_len = int_end - int_begin;
    const size_t frac_len = frac_end - frac_begin;
    const size_t total = int_len + frac_len;
    auto digit = [&](size_t k) -> int {
      return (k < int_len ? s_[int_begin + k] : s_[frac_begin + (k - int_len)]) - '0';
    };
    size_t first = 0;
    while (first < total && digit(first) == 0) ++first;
    if (first == total) {  // zero, in any notation
      out.integral_ = true;
      out.exact_int_ = true;
      out.magnitude_ = 0;
      out.number_ = negative ? -0.0 : 0.0;
      return;
    }
    size_t last = total - 1;
    while (digit(last) == 0) --last;
    const int64_t sig_digits = static_cast<int64_t>(last - first + 1);
    // Exponent of the last significant digit.
    const int64_t e = exponent - static_cast<int64_t>(frac_len) + static_cast<int64_t>(total - 1 - last);
    out.integral_ = e >= 0;
    out.exact_int_ = false;
    if (e >= 0 && sig_digits + e <= 20) {
      uint64_t mag = 0;
      bool ok = true;
      for (size_t k = first; k <= last && ok; ++k) {
        const uint64_t d = static_cast<uint64_t>(digit(k));
        if (mag > (std::numeric_limits<uint64_t>::max() - d) / 10) ok = false;
        else mag = mag * 10 + d;
      }
      for (int64_t i = 0; i < e && ok; ++i) {
        if (mag > std::numeric_limits<uint64_t>::max() / 10) ok = false;
        else mag *= 10;
      }
      if (ok) {
        out.exact_int_ = true;
        out.magnitude_ = mag;
      }
    }

    if (out.exact_int_ && out.magnitude_ <= (uint64_t{1} << 53)) {
      const double m = static_cast<double>(out.magnitude_);  // exact
      out.number_ = negative ? -m : m;
    } else if (!decimal_to_double(s_.substr(start, pos_ - start), out.number_)) {
      // Out of the double range: decimal order of magnitude decides.
      const int64_t order = sig_digits - 1 + e;
      const double v = order > 0 ? std::numeric_limits<double>::infinity() : 0.0;
      out.number_ = negative ? -v : v;
    }
  }

  std::string_view s_;
  std::string_view origin_;
  size_t pos_ = 0;
};

Json parse_json(std::string_view text, std::string_view origin) {
  return JsonParser(text, origin).parse_document();
}

// ---- Json accessors ------------------------------------------------------------

const char* Json::kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNull: return "null";
    case Kind::kBool: return "bool";
    case Kind::kNumber: return "number";
    case Kind::kString: return "string";
    case Kind::kArray: return "array";
    case Kind::kObject: return "object";
  }
  return "unknown";
}

void Json::require(Kind kind) const {
  if (kind_ != kind)
    GON_THROW(kCorruptCheckpoint, "JSON: expected ", kind == Kind::kArray || kind == Kind::kObject ? "an " : "a ",
              kind_name(kind), ", got ", kind_name(kind_));
}

std::string Json::describe_number() const {
  if (exact_int_) return str_cat(negative_ && magnitude_ != 0 ? "-" : "", magnitude_);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", number_);
  return buf;
}

bool Json::is_integer() const {
  return kind_ == Kind::kNumber && exact_int_ &&
         (negative_ ? magnitude_ <= kTwoPow63 : magnitude_ < kTwoPow63);
}

bool Json::is_uint() const {
  return kind_ == Kind::kNumber && exact_int_ && (!negative_ || magnitude_ == 0);
}

bool Json::as_bool() const {
  require(Kind::kBool);
  return bool_;
}

double Json::as_number() const {
  require(Kind::kNumber);
  return number_;
}

int64_t Json::as_int() const {
  require(Kind::kNumber);
  if (!integral_) GON_THROW(kCorruptCheckpoint, "JSON: expected an integer, got ", describe_number());
  if (!is_integer()) GON_THROW(kCorruptCheckpoint, "JSON: integer ", describe_number(), " is out of the int64 range");
  if (!negative_) return static_cast<int64_t>(magnitude_);
  // -magnitude in two's complement without overflowing for -2^63.
  return static_cast<int64_t>(~magnitude_ + 1);
}

uint64_t Json::as_uint() const {
  require(Kind::kNumber);
  if (!integral_) GON_THROW(kCorruptCheckpoint, "JSON: expected an integer, got ", describe_number());
  if (!is_uint())
    GON_THROW(kCorruptCheckpoint, "JSON: integer ", describe_number(),
              negative_ ? " is negative, expected an unsigned integer" : " is out of the uint64 range");
  return magnitude_;
}

const std::string& Json::as_string() const {
  require(Kind::kString);
  return string_;
}

const Json::Array& Json::as_array() const {
  require(Kind::kArray);
  return array_;
}

const Json::Object& Json::as_object() const {
  require(Kind::kObject);
  return object_;
}

const Json* Json::find(std::string_view key) const {
  if (kind_ != Kind::kObject) return nullptr;
  for (const auto& [k, v] : object_)
    if (k == key) return &v;
  return nullptr;
}

}  // namespace gon
