// A small, strict JSON parser for checkpoint headers and config files.
//
// Safetensors headers and the model's config.json come from files we did not
// write, so the parser is written to be safe on hostile input: it implements
// RFC 8259 exactly (no comments, no trailing commas, no NaN/Infinity), runs in
// time linear in the input, bounds nesting depth so it cannot overflow the
// stack, and reports every error as gon::Error(kCorruptCheckpoint) naming the
// origin and the byte offset. No third-party code.
//
// Decisions (documented here because RFC 8259 leaves them open):
//  * Strings: the input must be valid UTF-8 (no overlong forms, no encoded
//    surrogates, nothing above U+10FFFF); raw control characters (< 0x20) are
//    rejected; \uXXXX escapes are decoded to UTF-8, surrogate pairs are
//    combined, and a lone (unpaired) surrogate escape is REJECTED, since it has
//    no UTF-8 encoding. "\u0000" is accepted and yields a NUL byte.
//  * Duplicate object keys are KEPT: as_object() returns every member in
//    document order, find() returns the FIRST one. Consumers to whom
//    duplicates matter (the safetensors parser) check for them themselves.
//  * Numbers: as_number() is the correctly rounded double; magnitudes beyond
//    the double range become +-infinity, tiny ones +-0 (as Python's json does).
//    Integer values are tracked exactly from the decimal text, not through the
//    double: "18446744073709551615", "-9223372036854775808", "1e3" and "2.50e1"
//    are exact integers; "1.5" and "1e-1" are not.
//  * Nesting deeper than kJsonMaxDepth arrays/objects is rejected.
//  * A UTF-8 byte-order mark is not accepted; leading/trailing whitespace
//    (space, tab, CR, LF) is; anything else after the value is an error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gpt_oss_native/error.hpp"

namespace gon {

// The deepest nesting of arrays/objects parse_json accepts ("[[1]]" is depth 2).
inline constexpr int kJsonMaxDepth = 128;

class Json {
 public:
  enum class Kind : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;  // null

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  // True for a number whose value is an integer in [-2^63, 2^63-1], in any notation.
  bool is_integer() const;
  // True for a number whose value is an integer in [0, 2^64-1], in any notation.
  bool is_uint() const;
  // True for a number written without fraction or exponent ("12", "-0"), whatever its size.
  bool is_integer_literal() const { return kind_ == Kind::kNumber && literal_int_; }

  // Accessors throw gon::Error(kCorruptCheckpoint) on the wrong kind (naming the
  // expected and the actual kind) or, for as_int/as_uint, on a value that is not
  // an integer in range.
  bool as_bool() const;
  double as_number() const;
  int64_t as_int() const;
  uint64_t as_uint() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // The first member named `key`; nullptr when absent or when this is not an object.
  // Linear in the number of members.
  const Json* find(std::string_view key) const;

  static const char* kind_name(Kind kind);

 private:
  friend class JsonParser;

  void require(Kind kind) const;
  // A short human-readable rendering of a number for error messages.
  std::string describe_number() const;

  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  // Numbers: the double value; whether the decimal value is an integer
  // (integral_); when it also fits in uint64 magnitude (exact_int_), its sign
  // and magnitude.
  bool literal_int_ = false;
  bool integral_ = false;
  bool exact_int_ = false;
  bool negative_ = false;
  uint64_t magnitude_ = 0;
  double number_ = 0.0;
  std::string string_;
  Array array_;
  Object object_;
};

// Parses one JSON document. Throws gon::Error(Status::kCorruptCheckpoint,
// "<origin>: invalid JSON at byte N: <reason>"), N being the 0-based offset in
// `text` where the problem was found.
Json parse_json(std::string_view text, std::string_view origin);

}  // namespace gon
