// The safetensors header validator and SafetensorsFile (see safetensors.hpp
// for the checks). Nothing here reads tensor bytes; the parser only needs the
// length prefix and the header, and checks every offset against `size`.
#include "core/safetensors.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "core/check.hpp"
#include "core/json.hpp"

namespace gon {

namespace {

// A name from the file, quoted for an error message: control bytes, quotes and
// backslashes escaped, long names cut (at a UTF-8 boundary; the JSON parser
// has already checked the name is valid UTF-8).
std::string quoted(std::string_view s) {
  constexpr size_t kMax = 120;
  bool cut = false;
  if (s.size() > kMax) {
    size_t n = kMax;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s = s.substr(0, n);
    cut = true;
  }
  std::string out = "'";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F || c == '\'' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out.push_back(ch);
    }
  }
  out += cut ? "'..." : "'";
  return out;
}

// A JSON value described for an error message ("-3", "1.5", "a string", "an array").
std::string describe(const Json& v) {
  switch (v.kind()) {
    case Json::Kind::kNull: return "null";
    case Json::Kind::kBool: return v.as_bool() ? "true" : "false";
    case Json::Kind::kNumber: {
      if (v.is_integer()) return std::to_string(v.as_int());
      if (v.is_uint()) return std::to_string(v.as_uint());
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v.as_number());
      return v.is_integer_literal() ? str_cat("the integer ", buf) : std::string(buf);
    }
    case Json::Kind::kString: return str_cat("the string ", quoted(v.as_string()));
    case Json::Kind::kArray: return "an array";
    case Json::Kind::kObject: return "an object";
  }
  return "?";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += str_cat(i ? ", " : "", shape[i]);
  return s + "]";
}

std::string supported_dtypes() {
  std::string s;
  for (int i = 0; i <= static_cast<int>(DType::kF8E5M2); ++i)
    s += str_cat(i ? ", " : "", dtype_name(static_cast<DType>(i)));
  return s;
}

bool looks_like_dtype_name(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

struct Context {
  std::string_view origin;
  uint64_t file_size;
  uint64_t data_start;
  uint64_t data_size;
};

TensorInfo parse_tensor(const Context& ctx, const std::string& name, const Json& entry) {
  const std::string where = str_cat(ctx.origin, ": tensor ", quoted(name));
  if (!entry.is_object())
    GON_THROW(kCorruptCheckpoint, where, ": header entry must be an object with dtype, shape and data_offsets, got ",
              describe(entry));

  const Json* dtype_v = nullptr;
  const Json* shape_v = nullptr;
  const Json* offsets_v = nullptr;
  for (const auto& [key, value] : entry.as_object()) {
    const Json** slot = key == "dtype" ? &dtype_v : key == "shape" ? &shape_v : key == "data_offsets" ? &offsets_v : nullptr;
    if (slot == nullptr)
      GON_THROW(kCorruptCheckpoint, where, ": unexpected key ", quoted(key),
                " in the header entry (expected only dtype, shape and data_offsets)");
    if (*slot != nullptr) GON_THROW(kCorruptCheckpoint, where, ": key ", quoted(key), " appears twice in the header entry");
    *slot = &value;
  }
  if (dtype_v == nullptr) GON_THROW(kCorruptCheckpoint, where, ": header entry has no \"dtype\"");
  if (shape_v == nullptr) GON_THROW(kCorruptCheckpoint, where, ": header entry has no \"shape\"");
  if (offsets_v == nullptr) GON_THROW(kCorruptCheckpoint, where, ": header entry has no \"data_offsets\"");

  TensorInfo t;
  t.name = name;

  // dtype
  if (!dtype_v->is_string()) GON_THROW(kCorruptCheckpoint, where, ": dtype must be a string, got ", describe(*dtype_v));
  const std::string& dtype_s = dtype_v->as_string();
  const auto dtype = dtype_from_name(dtype_s);
  if (!dtype) {
    if (looks_like_dtype_name(dtype_s))
      GON_THROW(kUnsupportedCheckpoint, where, ": dtype ", quoted(dtype_s), " is not supported (supported: ",
                supported_dtypes(), ")");
    GON_THROW(kCorruptCheckpoint, where, ": invalid dtype ", quoted(dtype_s));
  }
  t.dtype = *dtype;

  // shape
  if (!shape_v->is_array())
    GON_THROW(kCorruptCheckpoint, where, ": shape must be an array of non-negative integers, got ", describe(*shape_v));
  const auto& dims = shape_v->as_array();
  if (dims.size() > kSafetensorsMaxRank)
    GON_THROW(kUnsupportedCheckpoint, where, ": shape has rank ", dims.size(), ", more than the supported ",
              kSafetensorsMaxRank);
  t.shape.reserve(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    const Json& d = dims[i];
    if (!d.is_integer_literal() || !d.is_integer() || d.as_int() < 0)
      GON_THROW(kCorruptCheckpoint, where, ": shape[", i, "] must be a non-negative integer below 2^63, got ",
                describe(d));
    t.shape.push_back(d.as_int());
  }

  // Byte size: element count * dtype size, overflow-checked. A zero dimension
  // makes the tensor empty whatever the other dimensions are.
  uint64_t count = 1;
  const bool empty = std::find(t.shape.begin(), t.shape.end(), int64_t{0}) != t.shape.end();
  if (empty) {
    count = 0;
  } else {
    for (const int64_t d : t.shape)
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count))
        GON_THROW(kCorruptCheckpoint, where, ": shape ", shape_text(t.shape), " has more than 2^64 elements");
  }
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(dtype_size(t.dtype)), &t.nbytes))
    GON_THROW(kCorruptCheckpoint, where, ": shape ", shape_text(t.shape), " of dtype ", dtype_name(t.dtype),
              " needs more than 2^64 bytes");

  // data_offsets
  if (!offsets_v->is_array() || offsets_v->as_array().size() != 2)
    GON_THROW(kCorruptCheckpoint, where, ": data_offsets must be an array of two integers [begin, end], got ",
              offsets_v->is_array() ? str_cat("an array of ", offsets_v->as_array().size(), " elements")
                                    : describe(*offsets_v));
  uint64_t be[2];
  for (int i = 0; i < 2; ++i) {
    const Json& v = offsets_v->as_array()[i];
    if (!v.is_integer_literal() || !v.is_uint())
      GON_THROW(kCorruptCheckpoint, where, ": data_offsets[", i, "] must be a non-negative integer below 2^64, got ",
                describe(v));
    be[i] = v.as_uint();
  }
  const uint64_t begin = be[0], end = be[1];
  const std::string range = str_cat("data_offsets [", begin, ", ", end, "]");
  if (begin > end) GON_THROW(kCorruptCheckpoint, where, ": ", range, " has begin > end");
  if (end > ctx.data_size)
    GON_THROW(kCorruptCheckpoint, where, ": ", range, " ends beyond the data section, which has ", ctx.data_size,
              " bytes (file size ", ctx.file_size, ", data starts at byte ", ctx.data_start, "); truncated file?");
  if (end - begin != t.nbytes)
    GON_THROW(kCorruptCheckpoint, where, ": ", range, " cover ", end - begin, " bytes, but shape ",
              shape_text(t.shape), " of dtype ", dtype_name(t.dtype), " needs ", t.nbytes, " bytes");
  t.offset = ctx.data_start + begin;  // <= file size: no overflow
  return t;
}

void check_unique_names(const Context& ctx, const std::vector<TensorInfo>& tensors) {
  std::vector<const TensorInfo*> sorted;
  sorted.reserve(tensors.size());
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) { return a->name < b->name; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->name == sorted[i - 1]->name)
      GON_THROW(kCorruptCheckpoint, ctx.origin, ": tensor ", quoted(sorted[i]->name), " appears twice in the header");
}

void check_no_overlap(const Context& ctx, const std::vector<TensorInfo>& tensors) {
  std::vector<const TensorInfo*> sorted;
  for (const auto& t : tensors)
    if (t.nbytes > 0) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->nbytes < b->nbytes;
  });
  const TensorInfo* reach = nullptr;  // the tensor reaching furthest so far
  for (const TensorInfo* t : sorted) {
    if (reach != nullptr && t->offset < reach->offset + reach->nbytes) {
      auto rel = [&](const TensorInfo* x) {
        const uint64_t b = x->offset - ctx.data_start;
        return str_cat("[", b, ", ", b + x->nbytes, ")");
      };
      GON_THROW(kCorruptCheckpoint, ctx.origin, ": tensors ", quoted(reach->name), " (data bytes ", rel(reach), ") and ",
                quoted(t->name), " (data bytes ", rel(t), ") overlap");
    }
    if (reach == nullptr || t->offset + t->nbytes > reach->offset + reach->nbytes) reach = t;
  }
}

}  // namespace

SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, std::string_view origin) {
  if (size < 8)
    GON_THROW(kCorruptCheckpoint, origin, ": not a safetensors file: it has ", size,
              " bytes, fewer than the 8-byte header length field");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kSafetensorsMaxHeaderBytes)
    GON_THROW(kCorruptCheckpoint, origin, ": safetensors header length ", n, " exceeds the limit of ",
              kSafetensorsMaxHeaderBytes, " bytes (corrupt, or not a safetensors file)");
  if (n > size - 8)
    GON_THROW(kCorruptCheckpoint, origin, ": safetensors header length ", n, " exceeds the ", size - 8,
              " bytes that follow the length field (truncated file?)");

  Context ctx{origin, size, 8 + n, size - 8 - n};
  const Json root = parse_json(std::string_view(reinterpret_cast<const char*>(data) + 8, n),
                               str_cat(origin, ": safetensors header"));
  if (!root.is_object())
    GON_THROW(kCorruptCheckpoint, origin, ": safetensors header must be a JSON object, got ", describe(root));

  SafetensorsHeader header;
  header.data_start = ctx.data_start;
  bool seen_metadata = false;
  header.tensors.reserve(root.as_object().size());
  for (const auto& [key, value] : root.as_object()) {
    if (key != "__metadata__") {
      header.tensors.push_back(parse_tensor(ctx, key, value));
      continue;
    }
    if (seen_metadata) GON_THROW(kCorruptCheckpoint, origin, ": \"__metadata__\" appears twice in the header");
    seen_metadata = true;
    if (value.is_null()) continue;
    if (!value.is_object())
      GON_THROW(kCorruptCheckpoint, origin, ": \"__metadata__\" must be an object of strings, got ", describe(value));
    for (const auto& [mkey, mvalue] : value.as_object()) {
      if (!mvalue.is_string())
        GON_THROW(kCorruptCheckpoint, origin, ": \"__metadata__\" value for ", quoted(mkey),
                  " must be a string, got ", describe(mvalue));
      header.metadata.emplace_back(mkey, mvalue.as_string());
    }
  }
  check_unique_names(ctx, header.tensors);
  check_no_overlap(ctx, header.tensors);
  return header;
}

// ---- SafetensorsFile -------------------------------------------------------------

SafetensorsFile::SafetensorsFile(std::shared_ptr<const MappedFile> file, SafetensorsHeader header)
    : file_(std::move(file)), header_(std::move(header)) {
  by_name_.resize(header_.tensors.size());
  for (size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
  std::sort(by_name_.begin(), by_name_.end(),
            [&](size_t a, size_t b) { return header_.tensors[a].name < header_.tensors[b].name; });
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  SafetensorsHeader header = parse_safetensors(file->data(), file->size(), path);
  return std::shared_ptr<SafetensorsFile>(new SafetensorsFile(std::move(file), std::move(header)));
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                   [&](size_t i, std::string_view n) { return header_.tensors[i].name < n; });
  if (it == by_name_.end() || header_.tensors[*it].name != name) return nullptr;
  return &header_.tensors[*it];
}

const uint8_t* SafetensorsFile::data(const TensorInfo& tensor) const {
  const uint64_t size = file_->size();
  if (tensor.offset < header_.data_start || tensor.offset > size || tensor.nbytes > size - tensor.offset)
    GON_THROW(kInvalidArgument, path(), ": tensor ", quoted(tensor.name), " (bytes [", tensor.offset, ", +",
              tensor.nbytes, ")) does not lie within this file's data section");
  return file_->data() + tensor.offset;
}

}  // namespace gon
