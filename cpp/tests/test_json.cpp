// Tests of the JSON parser (core/json.hpp): what RFC 8259 accepts is accepted
// with exact values, everything else is rejected with kCorruptCheckpoint, and
// hostile input (deep nesting, truncation, random bytes) never crashes.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/json.hpp"
#include "test_util.hpp"

using gon::Json;
using gon::parse_json;

namespace {

Json parse(std::string_view s) { return parse_json(s, "test.json"); }

// True when `text` parses; false when it throws kCorruptCheckpoint. Any other
// outcome is a test failure.
bool parses(std::string_view text) {
  try {
    (void)parse(text);
    return true;
  } catch (const gon::Error& e) {
    if (e.status() != gon::Status::kCorruptCheckpoint) {
      std::printf("  wrong status %s for input of %zu bytes: %s\n", gon::status_name(e.status()), text.size(), e.what());
      ++gon_test::failures();
    }
    return false;
  }
}

std::string error_of(std::string_view text) {
  try {
    (void)parse(text);
  } catch (const gon::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string u_escape(uint32_t cp) {
  char buf[16];
  if (cp < 0x10000) {
    std::snprintf(buf, sizeof buf, "\\u%04x", cp);
    return buf;
  }
  cp -= 0x10000;
  std::snprintf(buf, sizeof buf, "\\u%04X\\u%04X", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
  return buf;
}

}  // namespace

TEST(literals_and_whitespace) {
  CHECK(parse("null").is_null());
  CHECK(parse("true").as_bool() == true);
  CHECK(parse("false").as_bool() == false);
  CHECK(parse(" \t\r\n true \n\r\t ").as_bool());
  CHECK(parse("[]").as_array().empty());
  CHECK(parse("{}").as_object().empty());
  CHECK(parse("[ ]").as_array().empty());
  CHECK(parse("{ \n}").as_object().empty());
  CHECK(parse("\"\"").as_string().empty());
  for (const char* bad : {"", " ", "tru", "truee", "nul", "nulll", "True", "NULL", "falsy", "t", "undefined", "\f1",
                          "1\v", "\xEF\xBB\xBF{}"}) {
    CHECK_THROWS_STATUS(parse(bad), kCorruptCheckpoint);
  }
}

TEST(numbers_values) {
  CHECK(parse("0").as_int() == 0);
  CHECK(parse("-0").as_int() == 0);
  CHECK(parse("-0").as_uint() == 0);
  CHECK(std::signbit(parse("-0").as_number()));
  CHECK(parse("42").as_int() == 42);
  CHECK(parse("-17").as_int() == -17);
  CHECK(parse("1.5").as_number() == 1.5);
  CHECK(parse("-2.25e2").as_number() == -225.0);
  CHECK(parse("1E3").as_number() == 1000.0);
  CHECK(parse("1e+3").as_number() == 1000.0);
  CHECK(parse("1e-3").as_number() == 0.001);
  CHECK(parse("0.1").as_number() == 0.1);
  CHECK(parse("3.141592653589793").as_number() == 3.141592653589793);
  CHECK(parse("2.2250738585072014e-308").as_number() == 2.2250738585072014e-308);
  CHECK(parse("4.9406564584124654e-324").as_number() == std::numeric_limits<double>::denorm_min());
  CHECK(parse("1.7976931348623157e308").as_number() == std::numeric_limits<double>::max());
  // Huge exponents: overflow to infinity, underflow to zero, never an error.
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(parse("1e400").as_number() == inf);
  CHECK(parse("-1e400").as_number() == -inf);
  CHECK(parse("1e-400").as_number() == 0.0);
  CHECK(std::signbit(parse("-1e-400").as_number()));
  CHECK(parse("1e99999999999999999999999999999999").as_number() == inf);
  CHECK(parse("1E-99999999999999999999999999999999").as_number() == 0.0);
  CHECK(parse("0e99999999999999999999999999999999").as_number() == 0.0);
  CHECK(parse("0.00000000001e-999999999999999999").as_number() == 0.0);
  CHECK(parse("100000000000000000000000000000e-330").as_number() == 1e-301);
  CHECK(parse("0.0000000000000000000000000001e330").as_number() == 1e302);
  CHECK(!parse("1e400").is_integer());
  CHECK(parse("1e19").is_uint() && parse("1e19").as_uint() == 10000000000000000000ull);
  CHECK(!parse("1e20").is_uint());
  CHECK_THROWS_STATUS(parse("1e20").as_uint(), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse("1e400").as_int(), kCorruptCheckpoint);
  // A long mantissa is rounded correctly.
  CHECK(parse("0.1000000000000000055511151231257827021181583404541015625").as_number() == 0.1);
  CHECK(parse("-" + std::string(400, '9')).as_number() == -inf);
  CHECK(parse(std::string(300, '9')).as_number() == 1e300);
}

TEST(numbers_exact_integers) {
  const Json umax = parse("18446744073709551615");
  CHECK(umax.is_uint());
  CHECK(umax.as_uint() == 18446744073709551615ull);
  CHECK(!umax.is_integer());
  CHECK(umax.is_integer_literal());
  CHECK_THROWS_STATUS(umax.as_int(), kCorruptCheckpoint);

  const Json imin = parse("-9223372036854775808");
  CHECK(imin.is_integer());
  CHECK(imin.as_int() == std::numeric_limits<int64_t>::min());
  CHECK(!imin.is_uint());
  CHECK_THROWS_STATUS(imin.as_uint(), kCorruptCheckpoint);

  CHECK(parse("9223372036854775807").as_int() == std::numeric_limits<int64_t>::max());
  CHECK(!parse("9223372036854775808").is_integer());
  CHECK(parse("9223372036854775808").as_uint() == 9223372036854775808ull);
  CHECK(!parse("-9223372036854775809").is_integer());
  CHECK_THROWS_STATUS(parse("-9223372036854775809").as_int(), kCorruptCheckpoint);
  CHECK(!parse("18446744073709551616").is_uint());
  CHECK_THROWS_STATUS(parse("18446744073709551616").as_uint(), kCorruptCheckpoint);
  CHECK(parse("18446744073709551616").as_number() == 18446744073709551616.0);
  // Integers not representable as doubles stay exact.
  CHECK(parse("9007199254740993").as_int() == 9007199254740993LL);
  CHECK(parse("-9007199254740993").as_int() == -9007199254740993LL);
  CHECK(parse("18446744073709551557").as_uint() == 18446744073709551557ull);

  // Integral values written with a fraction or exponent are integers, exactly.
  CHECK(parse("1e3").is_integer() && parse("1e3").as_int() == 1000);
  CHECK(!parse("1e3").is_integer_literal());
  CHECK(parse("2.50e1").as_int() == 25);
  CHECK(parse("1.0").as_int() == 1);
  CHECK(parse("-0.0").as_int() == 0);
  CHECK(parse("0.000e5").as_uint() == 0);
  CHECK(parse("18446744073709551615.000").as_uint() == 18446744073709551615ull);
  CHECK(parse("1844674407370955161.5e1").as_uint() == 18446744073709551615ull);
  CHECK(parse("-9223372036854775808.0").as_int() == std::numeric_limits<int64_t>::min());
  CHECK(!parse("-9223372036854775809.0").is_integer());  // its double would round to -2^63
  CHECK(!parse("1.0000000000000000001").is_integer());   // its double is 1.0
  CHECK(!parse("1.5").is_integer());
  CHECK(!parse("1e-1").is_integer());
  CHECK(!parse("10e-2").is_integer());
  CHECK(parse("10e-1").as_int() == 1);
  CHECK_THROWS_STATUS(parse("1.5").as_int(), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse("-1").as_uint(), kCorruptCheckpoint);
  CHECK(contains(error_of("x"), "test.json"));

  // Random int64 / uint64 values round-trip exactly.
  std::mt19937_64 rng(gon_test::seed());
  for (int i = 0; i < 2000; ++i) {
    const auto v = static_cast<int64_t>(rng() >> (rng() % 64));
    const int64_t s = (rng() & 1) ? v : (v == std::numeric_limits<int64_t>::min() ? v : -v);
    const Json j = parse(std::to_string(s));
    CHECK(j.is_integer() && j.as_int() == s);
    CHECK(j.as_number() == static_cast<double>(s));
    const uint64_t u = rng() >> (rng() % 64);
    const Json ju = parse(std::to_string(u));
    CHECK(ju.is_uint() && ju.as_uint() == u);
  }
}

TEST(numbers_invalid) {
  for (const char* bad : {"01", "-01", "00", "-", "--1", "+1", "1.", ".5", "-.5", "1.e5", "1e", "1e+", "1e-", "1E+-1",
                          "0x10", "NaN", "-NaN", "Infinity", "-Infinity", "inf", "1 2", "1,", "1.5.5", "1e5e5",
                          "١", "1_000", "1f", "0.0.", "- 1", "1e 5"}) {
    CHECK_THROWS_STATUS(parse(bad), kCorruptCheckpoint);
  }
  CHECK(contains(error_of("01"), "leading zeros"));
}

TEST(strings_and_escapes) {
  CHECK(parse(R"("abc")").as_string() == "abc");
  CHECK(parse(R"("a\"b\\c\/d\be\ff\ng\rh\ti")").as_string() == "a\"b\\c/d\be\ff\ng\rh\ti");
  CHECK(parse(R"("\u0041\u00e9\u20AC")").as_string() == "A\xC3\xA9\xE2\x82\xAC");
  CHECK(parse(R"("\ud83d\ude00")").as_string() == "\xF0\x9F\x98\x80");
  CHECK(parse(R"("\uD800\uDC00")").as_string() == utf8(0x10000));
  CHECK(parse(R"("\uDBFF\uDFFF")").as_string() == utf8(0x10FFFF));
  CHECK(parse(R"("\u0000")").as_string() == std::string(1, '\0'));
  CHECK(parse("\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF\x7F\"").as_string() ==
        "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF\x7F");
  const std::string long_s(100000, 'x');
  CHECK(parse("\"" + long_s + "\"").as_string() == long_s);
}

TEST(strings_invalid) {
  const char* bad[] = {
      "\"abc",          // unterminated
      "\"abc\\",        // unterminated escape
      "\"\\x41\"",      // invalid escapes
      "\"\\'\"",
      "\"\\U0041\"",
      "\"\\u12\"",      // short \u
      "\"\\u12G4\"",
      "\"\\u\"",
      "\"\\ud800\"",    // lone surrogates
      "\"\\udc00\"",
      "\"\\ud800\\u0041\"",
      "\"\\ud800x\"",
      "\"\\ud800\\\"",
      "\"\\ud800\\n\"",
      "\"\\udbff\\udbff\"",
      "\"a\tb\"",       // raw control characters
      "\"a\nb\"",
      "\"\x01\"",
      "\"\x1F\"",
      "'single'",
  };
  for (const char* s : bad) CHECK_THROWS_STATUS(parse(s), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse(std::string("\"a\0b\"", 5)), kCorruptCheckpoint);
  // Ill-formed UTF-8: overlongs, encoded surrogates, beyond U+10FFFF, stray
  // continuation bytes, truncated sequences, invalid lead bytes.
  const char* bad_utf8[] = {"\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xE0\x9F\xBF", "\xF0\x80\x80\x80", "\xF0\x8F\xBF\xBF",
                            "\xED\xA0\x80", "\xED\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", "\xFE",
                            "\x80", "\xBF", "\xC2", "\xE2\x82", "\xF0\x9F\x98", "\xC2\x41", "\xE2\x28\xA1",
                            "\xF8\x88\x80\x80\x80"};
  for (const char* b : bad_utf8) {
    CHECK_THROWS_STATUS(parse(std::string("\"") + b + "\""), kCorruptCheckpoint);
    CHECK(contains(error_of(std::string("\"") + b + "\""), "UTF-8"));
  }
  // Non-ASCII outside strings is rejected too.
  CHECK_THROWS_STATUS(parse("[1,\xC2\xA0 2]"), kCorruptCheckpoint);
}

TEST(strings_random_unicode) {
  std::mt19937_64 rng(gon_test::seed() + 1);
  for (int iter = 0; iter < 300; ++iter) {
    std::string expected, raw = "\"", escaped = "\"", mixed = "\"";
    const int len = static_cast<int>(rng() % 40);
    for (int i = 0; i < len; ++i) {
      uint32_t cp;
      switch (rng() % 4) {
        case 0: cp = 0x20 + rng() % 0x60; break;
        case 1: cp = 0x80 + rng() % 0x780; break;
        case 2: cp = 0x800 + rng() % 0xF800; break;
        default: cp = 0x10000 + rng() % 0x100000; break;
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      expected += utf8(cp);
      const bool needs_escape = cp == '"' || cp == '\\';
      raw += needs_escape ? u_escape(cp) : utf8(cp);
      escaped += u_escape(cp);
      mixed += (needs_escape || (rng() & 1)) ? u_escape(cp) : utf8(cp);
    }
    raw += "\"";
    escaped += "\"";
    mixed += "\"";
    CHECK(parse(raw).as_string() == expected);
    CHECK(parse(escaped).as_string() == expected);
    CHECK(parse(mixed).as_string() == expected);
  }
  // Random byte strings inside quotes: accepted exactly when they are valid
  // UTF-8 without controls, quotes or backslashes (checked by an independent
  // decoder here).
  for (int iter = 0; iter < 5000; ++iter) {
    std::string body;
    const int len = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < len; ++i) {
      switch (rng() % 4) {
        case 0:
        case 1: body += static_cast<char>(0x80 + rng() % 0x80); break;  // anything high
        case 2: body += static_cast<char>(0xC0 + rng() % 0x38); break;  // a lead byte
        default: body += static_cast<char>(0x20 + rng() % 0x5F); break; // printable ASCII
      }
      if (body.back() == '\\') body.back() = 'x';  // escapes are tested elsewhere
    }
    // Independent check: the textbook decoder.
    bool valid = true;
    for (size_t i = 0; i < body.size() && valid;) {
      const auto c = static_cast<unsigned char>(body[i]);
      if (c < 0x80) {
        valid = c >= 0x20 && c != '"' && c != '\\';
        ++i;
        continue;
      }
      const int n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
      if (n < 0 || i + static_cast<size_t>(n) >= body.size()) {
        valid = false;
        break;
      }
      uint32_t cp = c & (0x3Fu >> n);
      for (int k = 1; k <= n; ++k) {
        const auto cc = static_cast<unsigned char>(body[i + k]);
        if ((cc & 0xC0) != 0x80) valid = false;
        cp = (cp << 6) | (cc & 0x3F);
      }
      const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
      if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) valid = false;
      i += static_cast<size_t>(n) + 1;
    }
    const std::string doc = "\"" + body + "\"";
    const bool ok = parses(doc);
    if (ok != valid) {
      std::printf("  disagreement (parser %d, reference %d) on:", ok, valid);
      for (const char c : body) std::printf(" %02X", static_cast<unsigned char>(c));
      std::printf("\n");
    }
    CHECK(ok == valid);
    if (ok && valid) CHECK(parse(doc).as_string() == body);
  }
}

TEST(arrays_and_objects) {
  const Json j = parse(R"( {"a": [1, 2.5, "x", true, false, null, {"b": []}], "c": {"d": {"e": "f"}}, "": 0} )");
  CHECK(j.is_object());
  const auto& obj = j.as_object();
  CHECK(obj.size() == 3);
  CHECK(obj[0].first == "a" && obj[1].first == "c" && obj[2].first == "");
  const auto& a = j.find("a")->as_array();
  CHECK(a.size() == 7);
  CHECK(a[0].as_int() == 1 && a[1].as_number() == 2.5 && a[2].as_string() == "x");
  CHECK(a[3].as_bool() && !a[4].as_bool() && a[5].is_null());
  CHECK(a[6].find("b")->as_array().empty());
  CHECK(j.find("c")->find("d")->find("e")->as_string() == "f");
  CHECK(j.find("")->as_int() == 0);
  CHECK(j.find("zz") == nullptr);
  CHECK(a[0].find("a") == nullptr);  // not an object
  // Keys are compared after unescaping.
  CHECK(parse(R"({"\u0061b": 1})").find("ab")->as_int() == 1);
  // Duplicate keys: both kept in order, find() returns the first.
  const Json d = parse(R"({"k": 1, "x": 0, "k": 2})");
  CHECK(d.as_object().size() == 3);
  CHECK(d.find("k")->as_int() == 1);
  CHECK(d.as_object()[2].second.as_int() == 2);
  // Order of members is document order, not sorted.
  const Json o = parse(R"({"z": 1, "a": 2, "m": 3})");
  CHECK(o.as_object()[0].first == "z" && o.as_object()[1].first == "a" && o.as_object()[2].first == "m");
}

TEST(structure_invalid) {
  for (const char* bad : {"[", "]", "{", "}", "[1,]", "[,1]", "[1 2]", "[1,,2]", "{,}", "{\"a\"}", "{\"a\":}",
                          "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{1:2}", "{'a':1}", "{\"a\":1 \"b\":2}", "[]]", "{}}",
                          "[}", "{]", "[1}", "{\"a\":1]", "[] []", "{} x", "1 2", "\"a\" \"b\"", "[\"a\":1]",
                          "{\"a\"::1}", "{\"a\":1,,\"b\":2}", "[/*c*/1]", "[1]//", "#", "nul1", "[true false]"}) {
    CHECK_THROWS_STATUS(parse(bad), kCorruptCheckpoint);
  }
  CHECK_THROWS_STATUS(parse(std::string("[1]\0", 4)), kCorruptCheckpoint);
}

TEST(error_messages) {
  const std::string e1 = error_of("[1, 2,, 3]");
  CHECK(contains(e1, "test.json: invalid JSON at byte 6:"));
  CHECK(contains(e1, "','"));
  const std::string e2 = error_of("{\"a\": 1} x");
  CHECK(contains(e2, "at byte 9:"));
  const std::string e3 = error_of("\"ab");
  CHECK(contains(e3, "unterminated string"));
  CHECK(contains(error_of("[\x01]"), "0x01"));
  CHECK(contains(error_of("[1"), "end of input"));
  try {
    (void)parse("\"s\"").as_array();
    CHECK(false);
  } catch (const gon::Error& e) {
    CHECK(e.status() == gon::Status::kCorruptCheckpoint);
    CHECK(contains(e.what(), "expected an array, got string"));
  }
  CHECK_THROWS_STATUS(parse("1").as_string(), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse("1").as_bool(), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse("1").as_object(), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse("null").as_number(), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse("\"1\"").as_int(), kCorruptCheckpoint);
  CHECK_THROWS_STATUS(parse("true").as_uint(), kCorruptCheckpoint);
  CHECK(!parse("\"1\"").is_integer() && !parse("\"1\"").is_uint() && !parse("\"1\"").is_integer_literal());
  CHECK(std::string(Json::kind_name(Json::Kind::kObject)) == "object");
}

TEST(depth_limit) {
  const int max = gon::kJsonMaxDepth;
  CHECK(parses(std::string(max, '[') + std::string(max, ']')));
  CHECK(!parses(std::string(max + 1, '[') + std::string(max + 1, ']')));
  CHECK(contains(error_of(std::string(max + 1, '[') + std::string(max + 1, ']')), "nested deeper"));
  std::string objs;
  for (int i = 0; i < max; ++i) objs += "{\"a\":";
  objs += "1";
  for (int i = 0; i < max; ++i) objs += "}";
  CHECK(parses(objs));
  CHECK(!parses("[" + objs + "]"));
  // Depth bombs fail fast and without exhausting the stack.
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(!parses(std::string(1000000, '[')));
  std::string bomb;
  for (int i = 0; i < 200000; ++i) bomb += "{\"a\":[";
  CHECK(!parses(bomb));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(secs < 5.0);
}

TEST(prefixes_and_mutations_never_crash) {
  const std::string doc =
      R"({"architectures": ["GptOssForCausalLM"], "hidden_size": 2880, "rope_theta": 150000.0,)"
      R"( "eos_token_id": [200002, 199999], "x": {"s": "caf\u00e9 \ud83d\ude00 \"q\"", "n": -1.5e-3, "t": true, "z": null}})";
  CHECK(parses(doc));
  // Every strict prefix is invalid (the document is an object).
  for (size_t n = 0; n < doc.size(); ++n) {
    const std::string prefix = doc.substr(0, n);  // an exact-size heap copy, so ASan sees overreads
    CHECK(!parses(prefix));
  }
  std::mt19937_64 rng(gon_test::seed() + 2);
  const char interesting[] = "{}[]\":,\\0-.eEu \x01\x80\xC3\xFF";
  for (int iter = 0; iter < 20000; ++iter) {
    std::string m = doc;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[pos] = static_cast<char>(rng()); break;
        case 1: m[pos] = interesting[rng() % (sizeof interesting - 1)]; break;
        case 2: m.erase(pos, 1 + rng() % 3); break;
        default: m.insert(pos, 1, interesting[rng() % (sizeof interesting - 1)]); break;
      }
      if (m.empty()) m = "x";
    }
    (void)parses(m);
  }
}

namespace {

// A random JSON document together with the checks its parse must pass.
struct Gen {
  std::mt19937_64 rng;
  std::string ws() {
    static const char* kWs[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    return kWs[rng() % 7];
  }
  // Writes a random value to `out`; returns a checker for the parsed value.
  std::function<bool(const Json&)> value(std::string& out, int depth) {
    const int kind = static_cast<int>(rng() % (depth < 6 ? 8 : 5));
    switch (kind) {
      case 0: out += "null"; return [](const Json& j) { return j.is_null(); };
      case 1: {
        const bool b = rng() & 1;
        out += b ? "true" : "false";
        return [b](const Json& j) { return j.is_bool() && j.as_bool() == b; };
      }
      case 2: {
        const auto v = static_cast<int64_t>(rng());
        const int64_t s = v >> (rng() % 64);
        out += std::to_string(s);
        return [s](const Json& j) { return j.is_integer() && j.as_int() == s; };
      }
      case 3: {
        double d;
        do {
          const uint64_t bits = rng();
          std::memcpy(&d, &bits, sizeof d);
        } while (!std::isfinite(d));
        char buf[40];
        std::snprintf(buf, sizeof buf, "%.17g", d);
        out += buf;
        return [d](const Json& j) {
          return j.is_number() && j.as_number() == d && std::signbit(j.as_number()) == std::signbit(d);
        };
      }
      case 4: {
        std::string expected;
        out += '"';
        const int len = static_cast<int>(rng() % 12);
        for (int i = 0; i < len; ++i) {
          uint32_t cp = static_cast<uint32_t>(rng() % 4 == 0 ? rng() % 0x110000 : rng() % 0x80);
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
          expected += utf8(cp);
          if (cp < 0x20 || cp == '"' || cp == '\\' || (rng() & 1)) out += u_escape(cp);
          else out += utf8(cp);
        }
        out += '"';
        return [expected](const Json& j) { return j.is_string() && j.as_string() == expected; };
      }
      case 5:
      case 6: {
        out += '[';
        const int n = static_cast<int>(rng() % 5);
        std::vector<std::function<bool(const Json&)>> checks;
        for (int i = 0; i < n; ++i) {
          if (i) out += ',';
          out += ws();
          checks.push_back(value(out, depth + 1));
          out += ws();
        }
        out += ']';
        return [checks](const Json& j) {
          if (!j.is_array() || j.as_array().size() != checks.size()) return false;
          for (size_t i = 0; i < checks.size(); ++i)
            if (!checks[i](j.as_array()[i])) return false;
          return true;
        };
      }
      default: {
        out += '{';
        const int n = static_cast<int>(rng() % 5);
        std::vector<std::pair<std::string, std::function<bool(const Json&)>>> checks;
        for (int i = 0; i < n; ++i) {
          if (i) out += ',';
          const std::string key = "k" + std::to_string(i) + "\xC3\xA9";
          out += ws() + "\"" + key + "\"" + ws() + ":" + ws();
          checks.emplace_back(key, value(out, depth + 1));
          out += ws();
        }
        out += '}';
        return [checks](const Json& j) {
          if (!j.is_object() || j.as_object().size() != checks.size()) return false;
          for (size_t i = 0; i < checks.size(); ++i) {
            if (j.as_object()[i].first != checks[i].first) return false;
            if (!checks[i].second(j.as_object()[i].second)) return false;
            if (j.find(checks[i].first) != &j.as_object()[i].second) return false;
          }
          return true;
        };
      }
    }
  }
};

}  // namespace

TEST(random_documents) {
  Gen g{std::mt19937_64(gon_test::seed() + 3)};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string doc = g.ws();
    const auto check = g.value(doc, 0);
    doc += g.ws();
    bool ok = false;
    try {
      ok = check(parse(doc));
    } catch (const gon::Error& e) {
      std::printf("  %s\n", e.what());
    }
    if (!ok) std::printf("  document failed: %.300s\n", doc.c_str());
    CHECK(ok);
  }
}

TEST(large_documents_parse_in_linear_time) {
  // A safetensors-like header of ~1 MB and a flat array of 200k numbers.
  std::string doc = "{";
  for (int i = 0; i < 8000; ++i) {
    if (i) doc += ",";
    doc += "\"model.layers." + std::to_string(i) + ".mlp.experts.gate_up_proj_blocks\":{\"dtype\":\"U8\",\"shape\":[32,5760,90,16],"
           "\"data_offsets\":[" + std::to_string(i * 1000ull) + "," + std::to_string(i * 1000ull + 1000) + "]}";
  }
  doc += "}";
  std::string arr = "[";
  for (int i = 0; i < 200000; ++i) arr += (i ? ",-" : "-") + std::to_string(i) + ".5e-3";
  arr += "]";
  const auto t0 = std::chrono::steady_clock::now();
  const Json j = parse(doc);
  const Json a = parse(arr);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(j.as_object().size() == 8000);
  CHECK(a.as_array().size() == 200000);
  CHECK(a.as_array()[3].as_number() == -3.5e-3);
  std::printf("  parsed %zu + %zu bytes in %.3f s\n", doc.size(), arr.size(), secs);
  CHECK(secs < 10.0);  // generous: sanitizer builds are slow
}

GON_TEST_MAIN()
