// Fuzz target for the JSON parser (parse_json).
//
// Any input must either parse or throw gon::Error(kCorruptCheckpoint). A parsed
// document is checked for consistency (strings are valid UTF-8, integer
// accessors agree with the double value) and round-tripped: serialised again
// and re-parsed, it must give an equal tree. Crashes, sanitizer reports, other
// exceptions and failed checks are findings (we abort on them).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/json.hpp"

namespace {

using gon::Json;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_json: %s\n", what);
  std::abort();
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    const int n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
    if (n < 0 || i + static_cast<size_t>(n) >= s.size()) return false;
    uint32_t cp = c & (0x3Fu >> n);
    for (int k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

void write_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\' || c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
}

// Serialises `v`, checking its internal consistency on the way.
void write(std::string& out, const Json& v) {
  switch (v.kind()) {
    case Json::Kind::kNull: out += "null"; return;
    case Json::Kind::kBool: out += v.as_bool() ? "true" : "false"; return;
    case Json::Kind::kNumber: {
      const double d = v.as_number();
      if (std::isnan(d)) finding("NaN from the parser");
      if (v.is_integer()) {
        const int64_t i = v.as_int();
        if (static_cast<double>(i) != d) finding("as_int disagrees with as_number");
        out += std::to_string(i);
      } else if (v.is_uint()) {
        const uint64_t u = v.as_uint();
        if (static_cast<double>(u) != d) finding("as_uint disagrees with as_number");
        out += std::to_string(u);
      } else if (std::isinf(d)) {
        out += d > 0 ? "1e999" : "-1e999";
      } else {
        char buf[40];
        std::snprintf(buf, sizeof buf, "%.17g", d);
        out += buf;
      }
      return;
    }
    case Json::Kind::kString:
      if (!valid_utf8(v.as_string())) finding("invalid UTF-8 in a parsed string");
      write_string(out, v.as_string());
      return;
    case Json::Kind::kArray: {
      out += '[';
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        write(out, e);
      }
      out += ']';
      return;
    }
    case Json::Kind::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        if (v.find(k) == nullptr) finding("find() misses a member");
        if (!valid_utf8(k)) finding("invalid UTF-8 in a parsed key");
        write_string(out, k);
        out += ':';
        write(out, e);
      }
      out += '}';
      return;
    }
  }
  finding("unknown kind");
}

bool same(const Json& a, const Json& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Json::Kind::kNull: return true;
    case Json::Kind::kBool: return a.as_bool() == b.as_bool();
    case Json::Kind::kNumber:
      // Exact integers must stay exact; a non-integer whose double happens to
      // be integral may come back as an integer, which is fine.
      if (a.is_integer() && (!b.is_integer() || a.as_int() != b.as_int())) return false;
      if (a.is_uint() && (!b.is_uint() || a.as_uint() != b.as_uint())) return false;
      // -0.0 == 0.0 is fine: integers print without a sign for zero.
      return a.as_number() == b.as_number();
    case Json::Kind::kString: return a.as_string() == b.as_string();
    case Json::Kind::kArray: {
      const auto &x = a.as_array(), &y = b.as_array();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!same(x[i], y[i])) return false;
      return true;
    }
    case Json::Kind::kObject: {
      const auto &x = a.as_object(), &y = b.as_object();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (x[i].first != y[i].first || !same(x[i].second, y[i].second)) return false;
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Json doc;
  try {
    doc = gon::parse_json(text, "fuzz.json");
  } catch (const gon::Error& e) {
    if (e.status() != gon::Status::kCorruptCheckpoint) finding("unexpected status");
    if (std::string_view(e.what()).substr(0, 25) != "fuzz.json: invalid JSON a") finding("message without origin");
    return 0;
  }
  std::string again;
  write(again, doc);
  Json reparsed;
  try {
    reparsed = gon::parse_json(again, "roundtrip");
  } catch (const gon::Error& e) {
    std::fprintf(stderr, "re-parse failed: %s\n", e.what());
    finding("serialised document does not parse");
  }
  if (!same(doc, reparsed)) finding("round trip changed the document");
  return 0;
}
