// The harmony chat format (see gpt_oss_native/harmony.hpp): rendering of
// messages, system/developer texts and JSON-schema tool signatures exactly as
// openai-harmony renders them, and the recovering streaming parser.
//
// Where the reference's behaviour is odd it is reproduced on purpose (and
// commented), since gpt-oss was trained on what the reference renders and
// callers compare our output with it token for token.
#include "gpt_oss_native/harmony.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <utility>

#include "core/check.hpp"
#include "core/json.hpp"

namespace gon::harmony {

namespace {

constexpr std::string_view kChannelMarker = "<|channel|>";
constexpr std::string_view kConstrainMarker = "<|constrain|>";
constexpr std::string_view kMessageMarker = "<|message|>";
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// ---- UTF-8 helpers -----------------------------------------------------------

// Length of the well-formed UTF-8 sequence at s[i] (1 for ASCII), 0 if it is
// not well formed (Unicode table 3-7: no overlong forms, no surrogates).
size_t utf8_len(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  const size_t avail = s.size() - i;
  auto cont = [&](size_t k, unsigned char lo, unsigned char hi) { return k < avail && p[k] >= lo && p[k] <= hi; };
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3)
    return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  return 0;
}

// Number of bytes of the maximal prefix of an ill-formed sequence at s[i]
// (what one U+FFFD replaces, as Rust's from_utf8_lossy and Python do).
size_t utf8_bad_len(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  const size_t avail = s.size() - i;
  const unsigned char c = p[0];
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
  else if (c == 0xED) need = 2, hi = 0x9F;
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) need = 3, hi = 0x8F;
  else return 1;
  size_t k = 1;
  for (; k <= need && k < avail; ++k) {
    const unsigned char b = p[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  return k;
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// `s` with every ill-formed sequence replaced by U+FFFD.
std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append(kReplacement);
      i += utf8_bad_len(s, i);
    }
  }
  return out;
}

// Code point of the well-formed sequence of length n at s[i].
uint32_t utf8_code_point(std::string_view s, size_t i, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  if (n == 1) return p[0];
  if (n == 2) return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
  if (n == 3) return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
  return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
}

// Unicode White_Space, as Rust's char::is_whitespace.
bool is_unicode_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Rust's u8::is_ascii_whitespace (no vertical tab).
bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\x0C' || c == '\r'; }

// Rust's str::trim (Unicode White_Space at both ends) of valid UTF-8.
std::string_view trim_unicode(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const size_t n = utf8_len(s, begin);
    if (n == 0 || !is_unicode_space(utf8_code_point(s, begin, n))) break;
    begin += n;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    const size_t n = utf8_len(s, start);
    if (n == 0 || start + n != end || !is_unicode_space(utf8_code_point(s, start, n))) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

std::vector<std::string> split_ascii_whitespace(std::string_view s) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_ascii_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_ascii_space(s[j])) ++j;
    if (j > i) parts.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return parts;
}

// Rust's str::lines: split at '\n', drop one trailing '\r' per line, no empty
// last line for a trailing '\n', no lines for "".
std::vector<std::string_view> rust_lines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find('\n', i);
    std::string_view line = s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (j == std::string_view::npos) break;
    i = j + 1;
  }
  return lines;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out.append(sep);
    out.append(parts[i]);
  }
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// ---- JSON, as serde_json (with preserve_order) sees and prints it -----------

// The member `key` of an object; with duplicate keys the last one (serde_json
// keeps the last value). nullptr when absent or not an object.
const Json* get(const Json& v, std::string_view key) {
  if (!v.is_object()) return nullptr;
  const Json* found = nullptr;
  for (const auto& [k, val] : v.as_object())
    if (k == key) found = &val;
  return found;
}

const std::string* get_string(const Json& v, std::string_view key) {
  const Json* m = get(v, key);
  return m && m->is_string() ? &m->as_string() : nullptr;
}

// A finite double as Rust's ryu prints it (shortest round trip; "1.0", "1e20", "1e-7").
std::string format_f64(double d) {
  if (!std::isfinite(d)) return "null";  // serde_json serialises non-finite numbers as null
  if (d == 0.0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  std::string out;
  if (sci.front() == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits.push_back(c);
  const int exp10 = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  const int len = static_cast<int>(digits.size());
  const int k = exp10 - (len - 1);  // value = digits * 10^k
  const int kk = len + k;           // position of the decimal point
  if (k >= 0 && kk <= 16) {
    out += digits;
    out.append(static_cast<size_t>(k), '0');
    out += ".0";
  } else if (kk > 0 && kk <= 16) {
    out += digits.substr(0, static_cast<size_t>(kk));
    out += '.';
    out += digits.substr(static_cast<size_t>(kk));
  } else if (kk > -5 && kk <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-kk), '0');
    out += digits;
  } else {
    out += digits[0];
    if (len > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += std::to_string(kk - 1);
  }
  return out;
}

void write_json_string(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 15]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

// Compact JSON as serde_json's Display prints a Value.
void write_json(std::string& out, const Json& v) {
  switch (v.kind()) {
    case Json::Kind::kNull: out += "null"; break;
    case Json::Kind::kBool: out += v.as_bool() ? "true" : "false"; break;
    case Json::Kind::kNumber: {
      // serde_json keeps an integer literal that fits u64 (or i64 when negative)
      // as an integer; everything else (and "-0") is an f64.
      const bool neg_zero = v.as_number() == 0.0 && std::signbit(v.as_number());
      if (v.is_integer_literal() && v.is_uint() && !neg_zero) {
        out += std::to_string(v.as_uint());
      } else if (v.is_integer_literal() && v.is_integer() && !neg_zero) {
        out += std::to_string(v.as_int());
      } else {
        out += format_f64(v.as_number());
      }
      break;
    }
    case Json::Kind::kString: write_json_string(out, v.as_string()); break;
    case Json::Kind::kArray: {
      out.push_back('[');
      bool first = true;
      for (const Json& e : v.as_array()) {
        if (!first) out.push_back(',');
        first = false;
        write_json(out, e);
      }
      out.push_back(']');
      break;
    }
    case Json::Kind::kObject: {
      out.push_back('{');
      bool first = true;
      std::vector<std::string_view> seen;
      for (const auto& [k, val] : v.as_object()) {
        if (std::find(seen.begin(), seen.end(), std::string_view(k)) != seen.end()) continue;
        seen.push_back(k);
        if (!first) out.push_back(',');
        first = false;
        write_json_string(out, k);
        out.push_back(':');
        write_json(out, *get(v, k));
      }
      out.push_back('}');
      break;
    }
  }
}

std::string json_text(const Json& v) {
  std::string out;
  write_json(out, v);
  return out;
}

// ---- JSON schema -> TypeScript-like type ---------------------------------------

bool is_enum(const Json& schema) {
  const Json* e = get(schema, "enum");
  return e && e->is_array() && !e->as_array().empty();
}

bool is_nullable(const Json& schema) {
  const Json* n = get(schema, "nullable");
  return n && n->is_bool() && n->as_bool();
}

// The comment text for a default value: a string is quoted unless the schema
// is an enum; anything else is compact JSON.
std::string default_comment(const Json& schema, const Json& def) {
  if (def.is_string()) return is_enum(schema) ? def.as_string() : "\"" + def.as_string() + "\"";
  return json_text(def);
}

std::string schema_to_ts(const Json& schema, const std::string& indent);

// One variant of a oneOf, with " | null" for a nullable variant.
std::string variant_type(const Json& variant, const std::string& indent) {
  std::string t = schema_to_ts(variant, indent + "   ");
  if (is_nullable(variant) && t.find("null") == std::string::npos) t += " | null";
  return t;
}

// The members of an object in serde_json's order: first occurrence, last value.
std::vector<std::pair<std::string_view, const Json*>> members(const Json& obj) {
  std::vector<std::pair<std::string_view, const Json*>> out;
  for (const auto& [k, val] : obj.as_object()) {
    bool dup = false;
    for (auto& m : out)
      if (m.first == k) dup = true;
    if (!dup) out.emplace_back(k, get(obj, k));
  }
  return out;
}

std::string object_to_ts(const Json& schema, const std::string& indent) {
  std::string out;
  if (const std::string* desc = get_string(schema, "description")) out += indent + "// " + *desc + "\n";
  out += "{\n";
  const Json* props = get(schema, "properties");
  if (props && props->is_object()) {
    std::vector<std::string> required;
    if (const Json* req = get(schema, "required"); req && req->is_array())
      for (const Json& r : req->as_array())
        if (r.is_string()) required.push_back(r.as_string());
    for (const auto& [key, valp] : members(*props)) {
      const Json& val = *valp;
      const char* optional_mark =
          std::find(required.begin(), required.end(), key) != required.end() ? "" : "?";
      if (const std::string* title = get_string(val, "title")) out += indent + "// " + *title + "\n" + indent + "//\n";
      const Json* one_of = get(val, "oneOf");
      if (!one_of) {
        if (const std::string* desc = get_string(val, "description")) out += indent + "// " + *desc + "\n";
      }
      if (const Json* ex = get(val, "examples"); ex && ex->is_array() && !ex->as_array().empty()) {
        out += indent + "// Examples:\n";
        for (const Json& e : ex->as_array())
          if (e.is_string()) out += indent + "// - \"" + e.as_string() + "\"\n";
      }
      if (one_of && one_of->is_array()) {
        // A union property: its comments above the name, one variant per line.
        const std::string* prop_desc = get_string(val, "description");
        const auto& variants = one_of->as_array();
        bool skip_prop_desc = false;
        if (prop_desc && !variants.empty()) {
          const std::string* first_desc = get_string(variants.front(), "description");
          skip_prop_desc = first_desc && *first_desc == *prop_desc;
        }
        bool desc_above = false;
        if (!skip_prop_desc && prop_desc) {
          out += indent + "// " + *prop_desc + "\n";
          desc_above = true;
        }
        if (const Json* def = get(val, "default")) out += indent + "// default: " + default_comment(val, *def) + "\n";
        out += indent + std::string(key) + optional_mark + ":\n";
        for (size_t i = 0; i < variants.size(); ++i) {
          const Json& variant = variants[i];
          out += indent + " | " + variant_type(variant, indent);
          std::vector<std::string> trailing;
          if (!(i == 0 && desc_above)) {
            const std::string* vd = get_string(variant, "description");
            if (vd && !(prop_desc && *vd == *prop_desc)) trailing.push_back(*vd);
          }
          if (const Json* def = get(variant, "default")) trailing.push_back("default: " + default_comment(variant, *def));
          if (!trailing.empty()) out += " // " + join(trailing, " ");
          out += "\n";
        }
        out += indent + ",\n";
        continue;
      }
      out += indent + std::string(key) + optional_mark + ": ";
      std::string t = schema_to_ts(val, indent + "    ");
      if (is_nullable(val) && t.find("null") == std::string::npos) t += " | null";
      out += t;
      out += ",";
      if (!one_of) {
        if (const Json* def = get(val, "default")) out += " // default: " + default_comment(val, *def);
      }
      out += "\n";
    }
  }
  out += indent + "}";
  return out;
}

std::string schema_to_ts(const Json& schema, const std::string& indent) {
  // A top-level union: each variant on its own line.
  if (const Json* one_of = get(schema, "oneOf"); one_of && one_of->is_array()) {
    std::string out;
    for (const Json& variant : one_of->as_array()) {
      out += "\n" + indent + " | " + variant_type(variant, indent);
      std::vector<std::string> trailing;
      if (const std::string* d = get_string(variant, "description")) trailing.push_back(*d);
      if (const Json* def = get(variant, "default")) trailing.push_back("default: " + default_comment(variant, *def));
      if (!trailing.empty()) out += " // " + join(trailing, " ");
    }
    return out;
  }
  const Json* type = get(schema, "type");
  if (type && type->is_array()) {
    std::vector<std::string> names;
    for (const Json& t : type->as_array())
      if (t.is_string()) names.push_back(t.as_string() == "integer" ? "number" : t.as_string());
    if (!names.empty()) return join(names, " | ");
  }
  if (type && type->is_string()) {
    const std::string& t = type->as_string();
    if (t == "object") return object_to_ts(schema, indent);
    if (t == "string") {
      if (const Json* e = get(schema, "enum"); e && e->is_array()) {
        std::vector<std::string> values;
        for (const Json& v : e->as_array())
          if (v.is_string()) values.push_back("\"" + v.as_string() + "\"");
        if (!values.empty()) return join(values, " | ");
      }
      return "string";
    }
    if (t == "number" || t == "integer") return "number";
    if (t == "boolean") return "boolean";
    if (t == "array") {
      if (const Json* items = get(schema, "items")) return schema_to_ts(*items, indent) + "[]";
      return "Array<any>";
    }
    return "any";
  }
  return "any";  // a "oneOf" that is not an array, no type, or a type of no strings
}

Json parse_schema(std::string_view text, std::string_view what) {
  try {
    return parse_json(text, what);
  } catch (const Error& e) {
    throw Error(Status::kInvalidArgument, e.what());
  }
}

// ---- system and developer texts -------------------------------------------------

std::string tools_section(const std::map<std::string, ToolNamespace>& tools) {
  std::vector<std::string> sections{"# Tools"};
  for (const auto& [ns_key, ns] : tools) {
    std::vector<std::string> lines;
    lines.push_back("## " + ns.name + "\n");
    if (ns.description) {
      for (std::string_view line : rust_lines(*ns.description))
        lines.push_back(ns.tools.empty() ? std::string(line) : "// " + std::string(line));
    }
    if (!ns.tools.empty()) {
      lines.push_back("namespace " + ns.name + " {\n");
      for (const ToolDescription& tool : ns.tools) {
        for (std::string_view line : rust_lines(tool.description)) lines.push_back("// " + std::string(line));
        if (tool.parameters) {
          const Json schema = parse_schema(*tool.parameters, "harmony: parameters of tool " + tool.name);
          lines.push_back("type " + tool.name + " = (_: " + schema_to_ts(schema, "") + ") => any;\n");
        } else {
          lines.push_back("type " + tool.name + " = () => any;\n");
        }
      }
      lines.push_back("} // namespace " + ns.name);
    }
    sections.push_back(join(lines, "\n"));
  }
  return join(sections, "\n\n");
}

bool has_function_tools(const Conversation& conversation) {
  for (const Message& m : conversation.messages)
    for (const Content& c : m.content)
      if (const auto* dev = std::get_if<DeveloperContent>(&c)) {
        auto it = dev->tools.find("functions");
        if (it != dev->tools.end() && !it->second.tools.empty()) return true;
      }
  return false;
}

// ---- special tokens -----------------------------------------------------------

int32_t special_id(const Tokenizer& tok, std::string_view text) {
  auto id = tok.special_token(text);
  GON_CHECK(id.has_value(), kInvalidArgument, "harmony: the tokenizer has no special token ", text);
  return *id;
}

struct FormatTokens {
  int32_t start, message, end, ret, call, channel, constrain;
  std::optional<int32_t> endoftext;
  explicit FormatTokens(const Tokenizer& tok)
      : start(special_id(tok, "<|start|>")),
        message(special_id(tok, "<|message|>")),
        end(special_id(tok, "<|end|>")),
        ret(special_id(tok, "<|return|>")),
        call(special_id(tok, "<|call|>")),
        channel(special_id(tok, "<|channel|>")),
        constrain(special_id(tok, "<|constrain|>")),
        endoftext(tok.special_token("<|endoftext|>")) {}
  bool is_stop(int32_t t) const { return t == end || t == ret || t == call; }
};

// ---- rendering -------------------------------------------------------------------

class Renderer {
 public:
  explicit Renderer(const Tokenizer& tok) : tok_(tok), ids_(tok) {}

  void text(std::vector<int32_t>& out, std::string_view s) const {
    if (s.empty()) return;
    GON_CHECK(valid_utf8(s), kInvalidArgument, "harmony: message text is not valid UTF-8");
    auto ids = tok_.encode(s, SpecialTokens::none());
    out.insert(out.end(), ids.begin(), ids.end());
  }

  void message(std::vector<int32_t>& out, const Message& m, bool function_tools) const {
    out.push_back(ids_.start);
    if (m.role == Role::kTool) {
      GON_CHECK(m.name.has_value(), kInvalidArgument, "harmony: a tool message needs an author name (the tool's)");
      text(out, *m.name);
    } else {
      text(out, role_name(m.role));
      if (m.name) text(out, ":" + *m.name);
    }
    if (m.recipient && *m.recipient != "all") text(out, " to=" + *m.recipient);
    if (m.channel) {
      out.push_back(ids_.channel);
      text(out, *m.channel);
    }
    if (m.content_type) {
      // "<|constrain|>json": the marker is the special token, the rest text.
      if (starts_with(*m.content_type, kConstrainMarker)) {
        text(out, " ");
        out.push_back(ids_.constrain);
        text(out, std::string_view(*m.content_type).substr(kConstrainMarker.size()));
      } else {
        text(out, " " + *m.content_type);
      }
    }
    out.push_back(ids_.message);
    for (const Content& c : m.content) {
      if (const auto* s = std::get_if<std::string>(&c)) {
        text(out, *s);
      } else if (const auto* sys = std::get_if<SystemContent>(&c)) {
        GON_CHECK(m.role == Role::kSystem, kInvalidArgument, "harmony: system content in a ", role_name(m.role),
                  " message");
        text(out, system_content_text(*sys, function_tools));
      } else if (const auto* dev = std::get_if<DeveloperContent>(&c)) {
        GON_CHECK(m.role == Role::kDeveloper, kInvalidArgument, "harmony: developer content in a ",
                  role_name(m.role), " message");
        text(out, developer_content_text(*dev));
      }
    }
    // Any assistant message with a recipient (even "all") is a tool call.
    out.push_back(m.role == Role::kAssistant && m.recipient ? ids_.call : ids_.end);
  }

  std::vector<int32_t> conversation(const Conversation& c, const RenderOptions& options) const {
    const bool function_tools = has_function_tools(c);
    const auto& msgs = c.messages;
    // Earlier analysis is dropped only when the last assistant message is a
    // final answer; "earlier" means before the FIRST final message (of any
    // role), so analysis between two finals is kept, as in the reference.
    bool last_assistant_final = false;
    for (auto it = msgs.rbegin(); it != msgs.rend(); ++it)
      if (it->role == Role::kAssistant) {
        last_assistant_final = it->channel && *it->channel == "final";
        break;
      }
    const bool drop = options.auto_drop_analysis && last_assistant_final;
    size_t first_final = msgs.size();
    for (size_t i = 0; i < msgs.size(); ++i)
      if (msgs[i].channel && *msgs[i].channel == "final") {
        first_final = i;
        break;
      }
    std::vector<int32_t> out;
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (drop && i < first_final && msgs[i].channel && *msgs[i].channel == "analysis") continue;
      message(out, msgs[i], function_tools);
    }
    return out;
  }

  const FormatTokens& ids() const { return ids_; }

 private:
  const Tokenizer& tok_;
  FormatTokens ids_;
};

}  // namespace

// ---- names -------------------------------------------------------------------

const char* role_name(Role role) {
  switch (role) {
    case Role::kSystem: return "system";
    case Role::kDeveloper: return "developer";
    case Role::kUser: return "user";
    case Role::kAssistant: return "assistant";
    case Role::kTool: return "tool";
  }
  return "user";
}

std::optional<Role> role_from_name(std::string_view name) {
  for (Role r : {Role::kUser, Role::kAssistant, Role::kSystem, Role::kDeveloper, Role::kTool})
    if (name == role_name(r)) return r;
  return std::nullopt;
}

const char* reasoning_effort_name(ReasoningEffort effort) {
  switch (effort) {
    case ReasoningEffort::kLow: return "low";
    case ReasoningEffort::kMedium: return "medium";
    case ReasoningEffort::kHigh: return "high";
  }
  return "medium";
}

const char* stream_state_name(StreamState state) {
  switch (state) {
    case StreamState::kExpectStart: return "expect_start";
    case StreamState::kHeader: return "header";
    case StreamState::kContent: return "content";
  }
  return "expect_start";
}

// ---- data model helpers -----------------------------------------------------------

DeveloperContent& DeveloperContent::with_function_tools(std::vector<ToolDescription> functions) {
  tools["functions"] = ToolNamespace{"functions", std::nullopt, std::move(functions)};
  return *this;
}

Message Message::from_text(Role role, std::string text) {
  Message m;
  m.role = role;
  m.content.emplace_back(std::move(text));
  return m;
}

Message Message::system(SystemContent content) {
  Message m;
  m.role = Role::kSystem;
  m.content.emplace_back(std::move(content));
  return m;
}

Message Message::developer(DeveloperContent content) {
  Message m;
  m.role = Role::kDeveloper;
  m.content.emplace_back(std::move(content));
  return m;
}

Message Message::tool_result(std::string tool_name, std::string text, std::optional<std::string> channel) {
  Message m;
  m.role = Role::kTool;
  m.name = std::move(tool_name);
  m.recipient = "assistant";
  m.channel = std::move(channel);
  m.content.emplace_back(std::move(text));
  return m;
}

std::string Message::text() const {
  std::string out;
  for (const Content& c : content)
    if (const auto* s = std::get_if<std::string>(&c)) out += *s;
  return out;
}

// ---- texts ---------------------------------------------------------------------------

std::string system_content_text(const SystemContent& sys, bool conversation_has_function_tools) {
  std::vector<std::string> sections;
  std::vector<std::string> top;
  if (sys.model_identity) top.push_back(*sys.model_identity);
  if (sys.knowledge_cutoff) top.push_back("Knowledge cutoff: " + *sys.knowledge_cutoff);
  if (sys.conversation_start_date) top.push_back("Current date: " + *sys.conversation_start_date);
  if (!top.empty()) sections.push_back(join(top, "\n"));
  if (sys.reasoning_effort) sections.push_back(std::string("Reasoning: ") + reasoning_effort_name(*sys.reasoning_effort));
  if (!sys.tools.empty()) sections.push_back(tools_section(sys.tools));
  if (sys.channel_config && !sys.channel_config->valid_channels.empty()) {
    std::string s = "# Valid channels: " + join(sys.channel_config->valid_channels, ", ") + ".";
    if (sys.channel_config->channel_required) s += " Channel must be included for every message.";
    if (conversation_has_function_tools) s += "\nCalls to these tools must go to the commentary channel: 'functions'.";
    sections.push_back(s);
  }
  return join(sections, "\n\n");
}

std::string developer_content_text(const DeveloperContent& dev) {
  std::vector<std::string> sections;
  if (dev.instructions) {
    sections.push_back("# Instructions");
    sections.push_back(*dev.instructions);
  }
  if (!dev.tools.empty()) sections.push_back(tools_section(dev.tools));
  return join(sections, "\n\n");
}

std::string json_schema_to_typescript(std::string_view schema_json) {
  return schema_to_ts(parse_schema(schema_json, "harmony: JSON schema"), "");
}

// ---- rendering entry points -------------------------------------------------------------

std::vector<int32_t> render_message(const Tokenizer& tokenizer, const Message& message,
                                    bool conversation_has_function_tools) {
  std::vector<int32_t> out;
  Renderer(tokenizer).message(out, message, conversation_has_function_tools);
  return out;
}

std::vector<int32_t> render_conversation(const Tokenizer& tokenizer, const Conversation& conversation,
                                         const RenderOptions& options) {
  return Renderer(tokenizer).conversation(conversation, options);
}

std::vector<int32_t> render_conversation_for_completion(const Tokenizer& tokenizer, const Conversation& conversation,
                                                        Role next_role, const RenderOptions& options) {
  Renderer r(tokenizer);
  std::vector<int32_t> out = r.conversation(conversation, options);
  out.push_back(r.ids().start);
  r.text(out, role_name(next_role));
  return out;
}

std::vector<int32_t> render_conversation_for_training(const Tokenizer& tokenizer, const Conversation& conversation,
                                                      const RenderOptions& options) {
  Renderer r(tokenizer);
  std::vector<int32_t> out = r.conversation(conversation, options);
  if (!conversation.messages.empty() && !out.empty()) {
    const Message& last = conversation.messages.back();
    if (last.role == Role::kAssistant && last.channel && *last.channel == "final") out.back() = r.ids().ret;
  }
  return out;
}

std::vector<int32_t> stop_tokens(const Tokenizer& tokenizer) {
  FormatTokens ids(tokenizer);
  std::vector<int32_t> out{ids.ret, ids.call, ids.end};
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int32_t> stop_tokens_for_assistant_actions(const Tokenizer& tokenizer) {
  FormatTokens ids(tokenizer);
  std::vector<int32_t> out{ids.ret, ids.call};
  std::sort(out.begin(), out.end());
  return out;
}

// ---- parsing ---------------------------------------------------------------------------

namespace {

struct ParsedHeader {
  Role role = Role::kAssistant;
  std::optional<std::string> name, recipient, channel, content_type;
};

struct HeaderResult {
  ParsedHeader header;
  std::string leftover;               // header words not used (joined by spaces)
  std::vector<std::string> problems;  // what the reference would have rejected
};

// Reads a header the way openai-harmony does: the channel after the first
// <|channel|> (up to whitespace or '<'), then whitespace-separated words: the
// role (unless given), then from the end a "to=" recipient and a content type.
// `positional`: read recipient and content type (otherwise every word after the
// role is left over, as for a header that never got <|message|>).
HeaderResult parse_header(std::string text, std::optional<Role> role, bool positional) {
  HeaderResult r;
  if (size_t idx = text.find(kChannelMarker); idx != std::string::npos) {
    const size_t value_begin = idx + kChannelMarker.size();
    size_t value_end = value_begin;
    while (value_end < text.size()) {
      const size_t n = utf8_len(text, value_end);
      if (n == 0) break;  // cannot happen: the text is valid UTF-8
      const uint32_t c = utf8_code_point(text, value_end, n);
      if (c == '<' || is_unicode_space(c)) break;
      value_end += n;
    }
    if (value_end == value_begin)
      r.problems.push_back("<|channel|> without a channel name");
    else
      r.header.channel = text.substr(value_begin, value_end - value_begin);
    text = text.substr(0, idx) + text.substr(value_end);
  }
  text = std::string(trim_unicode(text));
  // "to=x<|constrain|>json" -> "to=x <|constrain|>json", so the type is its own word.
  if (text.find(kConstrainMarker) != std::string::npos) {
    std::string spaced;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, kConstrainMarker.size(), kConstrainMarker) == 0) {
        spaced += ' ';
        spaced += kConstrainMarker;
        i += kConstrainMarker.size();
      } else {
        spaced += text[i++];
      }
    }
    text = std::string(trim_unicode(spaced));
  }
  std::vector<std::string> parts = split_ascii_whitespace(text);

  std::optional<std::string> role_word;
  if (role) {
    r.header.role = *role;
  } else if (parts.empty()) {
    r.problems.push_back("header has no role; taken as assistant");
    r.header.role = Role::kAssistant;
  } else {
    role_word = parts.front();
    const size_t colon = parts.front().find(':');
    std::optional<Role> prefix;
    if (colon != std::string::npos) prefix = role_from_name(std::string_view(parts.front()).substr(0, colon));
    if (auto known = role_from_name(parts.front())) {
      r.header.role = *known;
    } else if (prefix) {
      // "user:alice": a role with an author name, as rendered (the reference
      // reads it as a tool named "user:alice", or rejects it).
      r.header.role = *prefix;
      r.header.name = parts.front().substr(colon + 1);
      parts.erase(parts.begin());
    } else {
      // An unknown role word is the name of a tool (the reference requires a
      // recipient after it; a lone name is accepted here).
      parts.erase(parts.begin());
      r.header.role = Role::kTool;
    }
  }
  if (!parts.empty() && parts.front() == role_name(r.header.role)) parts.erase(parts.begin());

  if (positional && !parts.empty()) {
    const size_t num_parts = parts.size();
    std::string last = parts.back();
    parts.pop_back();
    if (starts_with(last, "to=")) {
      r.header.recipient = last.substr(3);
    } else if (num_parts == 1) {
      // A single word that is not "to=..." is the recipient (the reference's rule,
      // even for "<|constrain|>json").
      r.header.recipient = last;
    } else {
      r.header.content_type = last;
      std::string raw = parts.back();
      parts.pop_back();
      r.header.recipient = starts_with(raw, "to=") ? raw.substr(3) : raw;
    }
  }
  if (!parts.empty()) {
    r.leftover = join(parts, " ");
    if (positional) r.problems.push_back("unexpected words in header dropped: \"" + r.leftover + "\"");
  }
  if (r.header.role == Role::kTool && !r.header.name) r.header.name = role_word;
  return r;
}

}  // namespace

struct StreamParser::Impl {
  std::shared_ptr<const Tokenizer> tok;
  FormatTokens ids;
  StreamDecoder decoder;
  StreamState state = StreamState::kExpectStart;
  std::optional<Role> next_role;
  std::vector<int32_t> tokens;
  std::vector<Message> messages;
  std::vector<ParseWarning> warnings;
  std::string header;        // bytes of the header so far
  ParsedHeader current;      // header of the message whose content is being read
  std::string content;       // its text so far
  std::string delta;         // text completed by the last token
  bool skipping = false;     // inside a run of skipped tokens between messages
  size_t emitted = 0;        // messages completed so far (take_messages() does not reset it)

  Impl(std::shared_ptr<const Tokenizer> t, std::optional<Role> role)
      : tok(std::move(t)), ids(*tok), decoder(tok), next_role(role) {
    if (role) state = StreamState::kHeader;
  }

  size_t index() const { return tokens.empty() ? 0 : tokens.size() - 1; }

  void warn(std::string text, bool about_current = true, std::optional<size_t> at = std::nullopt) {
    ParseWarning w;
    w.token_index = at ? *at : index();
    w.message_index = about_current ? static_cast<int64_t>(emitted) : -1;
    w.text = std::move(text);
    warnings.push_back(std::move(w));
  }

  std::string describe(int32_t t) const {
    if (!tok->has_token(t)) return "id " + std::to_string(t) + " (no such token)";
    std::string_view bytes = tok->token_bytes(t);
    if (tok->is_special(t)) return std::string(bytes);
    std::string out = "id " + std::to_string(t) + " \"";
    for (unsigned char c : utf8_lossy(bytes.substr(0, 32))) {
      if (c == '\n') out += "\\n";
      else if (c < 0x20) out += '?';
      else out.push_back(static_cast<char>(c));
    }
    return out + "\"";
  }

  void begin_header(std::optional<Role> role) {
    state = StreamState::kHeader;
    header.clear();
    next_role = role;
  }

  std::string header_text() {
    if (valid_utf8(header)) return header;
    warn("header is not valid UTF-8 (replaced by U+FFFD)");
    return utf8_lossy(header);
  }

  void push_message(const ParsedHeader& h, std::string text) {
    Message m;
    m.role = h.role;
    m.name = h.name;
    m.recipient = h.recipient;
    m.channel = h.channel;
    m.content_type = h.content_type;
    m.content.emplace_back(std::move(text));
    messages.push_back(std::move(m));
    ++emitted;
  }

  // <|message|>: the header is complete, content follows.
  void start_content() {
    HeaderResult r = parse_header(header_text(), next_role, true);
    for (auto& p : r.problems) warn(std::move(p));
    current = std::move(r.header);
    next_role.reset();
    header.clear();
    content.clear();
    decoder.reset();
    state = StreamState::kContent;
  }

  // A header that ended without <|message|>: keep what it says.
  void abandon_header(const std::string& why, std::optional<size_t> at = std::nullopt) {
    if (header.empty()) {
      warn("empty message header ended by " + why, false, at);
    } else {
      warn("message header ended by " + why + " before <|message|>", true, at);
      HeaderResult r = parse_header(header_text(), next_role, false);
      for (auto& p : r.problems) warn(std::move(p), true, at);
      push_message(r.header, std::move(r.leftover));
    }
    header.clear();
    next_role.reset();
    state = StreamState::kExpectStart;
  }

  void finish_message() {
    std::string rest = decoder.flush();
    if (!rest.empty()) {
      warn("message ends inside a UTF-8 character (replaced by U+FFFD)");
      content += rest;
    }
    push_message(current, std::move(content));
    content.clear();
    current = ParsedHeader{};
    state = StreamState::kExpectStart;
  }

  void process(int32_t t) {
    tokens.push_back(t);
    delta.clear();
    switch (state) {
      case StreamState::kExpectStart: expect_start(t); break;
      case StreamState::kHeader: in_header(t); break;
      case StreamState::kContent: in_content(t); break;
    }
  }

  void expect_start(int32_t t) {
    if (t == ids.start) {
      skipping = false;
      begin_header(std::nullopt);
    } else if (t == ids.channel) {
      skipping = false;
      const Role role = !messages.empty() ? messages.back().role : Role::kAssistant;
      warn(std::string("<|channel|> without <|start|>: taken as a new ") + role_name(role) + " message");
      begin_header(role);
      header = kChannelMarker;
    } else if (ids.endoftext && t == *ids.endoftext) {
      // the end of the text: nothing to do
    } else if (!skipping) {
      warn("unexpected " + describe(t) + " while expecting <|start|>: skipped up to the next <|start|>", false);
      skipping = true;
    }
  }

  void in_header(int32_t t) {
    if (t == ids.message) {
      start_content();
    } else if (t == ids.start) {
      abandon_header("<|start|>");
      begin_header(std::nullopt);
    } else if (ids.is_stop(t) || (ids.endoftext && t == *ids.endoftext)) {
      abandon_header(std::string(tok->token_bytes(t)));
    } else if (!tok->has_token(t)) {
      warn("token " + describe(t) + " in a header: skipped");
    } else if (tok->is_special(t) && t != ids.channel && t != ids.constrain) {
      warn("special token " + describe(t) + " in a header: skipped");
    } else {
      const size_t before = header.size();
      header += tok->token_bytes(t);
      if (tok->is_special(t)) return;
      // "<|message|>" written as ordinary text ends the header too.
      const size_t from = before >= kMessageMarker.size() ? before - kMessageMarker.size() + 1 : 0;
      const size_t at = header.find(kMessageMarker, from);
      if (at == std::string::npos) return;
      warn("\"<|message|>\" written as text in a header: taken as <|message|>");
      std::string rest = header.substr(at + kMessageMarker.size());
      header.resize(at);
      start_content();
      if (!rest.empty()) {
        if (!valid_utf8(rest)) warn("content is not valid UTF-8 (replaced by U+FFFD)");
        delta = utf8_lossy(rest);
        content += delta;
      }
    }
  }

  void in_content(int32_t t) {
    if (ids.is_stop(t)) {
      finish_message();
    } else if (ids.endoftext && t == *ids.endoftext) {
      warn("message ended by <|endoftext|>");
      finish_message();
    } else if (t == ids.start) {
      warn("message not ended (no <|end|>, <|return|> or <|call|>) before <|start|>");
      finish_message();
      begin_header(std::nullopt);
    } else if (t == ids.channel) {
      const Role role = current.role;
      warn("message not ended before <|channel|>: a new message of the same role starts");
      finish_message();
      begin_header(role);
      header = kChannelMarker;
    } else if (!tok->has_token(t) || tok->is_special(t)) {
      warn("unexpected " + describe(t) + " in message content: dropped");
    } else {
      delta = decoder.push(t);
      content += delta;
    }
  }

  void process_eos() {
    delta.clear();
    const size_t at = tokens.size();
    skipping = false;
    switch (state) {
      case StreamState::kExpectStart: break;
      case StreamState::kHeader: abandon_header("the end of the stream", at); break;
      case StreamState::kContent:
        warn("stream ended inside a message (no <|end|>, <|return|> or <|call|>)", true, at);
        finish_message();
        break;
    }
    next_role.reset();
    state = StreamState::kExpectStart;
  }
};

StreamParser::StreamParser(std::shared_ptr<const Tokenizer> tokenizer, std::optional<Role> role) {
  GON_CHECK(tokenizer != nullptr, kInvalidArgument, "harmony: StreamParser needs a tokenizer");
  impl_ = std::make_unique<Impl>(std::move(tokenizer), role);
}
StreamParser::~StreamParser() = default;
StreamParser::StreamParser(StreamParser&&) noexcept = default;
StreamParser& StreamParser::operator=(StreamParser&&) noexcept = default;

void StreamParser::process(int32_t token) { impl_->process(token); }
void StreamParser::process_eos() { impl_->process_eos(); }
StreamState StreamParser::state() const { return impl_->state; }

std::optional<Role> StreamParser::current_role() const {
  if (impl_->state == StreamState::kContent) return impl_->current.role;
  return impl_->next_role;
}
std::optional<std::string> StreamParser::current_channel() const {
  if (impl_->state != StreamState::kContent) return std::nullopt;
  return impl_->current.channel;
}
std::optional<std::string> StreamParser::current_recipient() const {
  if (impl_->state != StreamState::kContent) return std::nullopt;
  return impl_->current.recipient;
}
std::optional<std::string> StreamParser::current_content_type() const {
  if (impl_->state != StreamState::kContent) return std::nullopt;
  return impl_->current.content_type;
}
const std::string& StreamParser::current_content() const { return impl_->content; }
const std::string& StreamParser::last_content_delta() const { return impl_->delta; }
const std::vector<Message>& StreamParser::messages() const { return impl_->messages; }
std::vector<Message> StreamParser::take_messages() { return std::exchange(impl_->messages, {}); }
const std::vector<ParseWarning>& StreamParser::warnings() const { return impl_->warnings; }
const std::vector<int32_t>& StreamParser::tokens() const { return impl_->tokens; }

std::vector<Message> parse_messages(std::shared_ptr<const Tokenizer> tokenizer, std::span<const int32_t> tokens,
                                    std::optional<Role> role, std::vector<ParseWarning>* warnings) {
  StreamParser parser(std::move(tokenizer), role);
  for (int32_t t : tokens) parser.process(t);
  parser.process_eos();
  if (warnings) *warnings = parser.warnings();
  return parser.take_messages();
}

}  // namespace gon::harmony
