// Tests of the checkpoint file layer: DType names, MappedFile, and the
// safetensors header validator (core/safetensors.hpp). Files are built in
// memory; every corruption path must throw kCorruptCheckpoint (or
// kUnsupportedCheckpoint) with a useful message, and truncated or randomly
// damaged files must never be read out of bounds.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/mapped_file.hpp"
#include "core/safetensors.hpp"
#include "test_util.hpp"

using gon::DType;
using gon::parse_safetensors;
using gon::SafetensorsHeader;

namespace {

constexpr const char* kOrigin = "mem.safetensors";

// ---- building files -------------------------------------------------------------

struct Spec {
  std::string name;  // written verbatim between quotes (may hold JSON escapes)
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

std::string header_json(const std::vector<Spec>& specs, const std::string& metadata = "") {
  std::string s = "{";
  if (!metadata.empty()) s += "\"__metadata__\":" + metadata;
  for (const auto& t : specs) {
    if (s.size() > 1) s += ",";
    s += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? "," : "") + std::to_string(t.shape[i]);
    s += "],\"data_offsets\":[" + std::to_string(t.begin) + "," + std::to_string(t.end) + "]}";
  }
  return s + "}";
}

// Serialises a safetensors file: length prefix, header (+ `pad` spaces), data.
std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data, size_t pad = 0) {
  const uint64_t n = header.size() + pad;
  std::vector<uint8_t> f(8);
  for (int i = 0; i < 8; ++i) f[i] = static_cast<uint8_t>(n >> (8 * i));
  f.insert(f.end(), header.begin(), header.end());
  f.insert(f.end(), pad, ' ');
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

std::vector<uint8_t> bytes(size_t n, uint8_t start = 0) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(start + i);
  return d;
}

void set_length(std::vector<uint8_t>& f, uint64_t n) {
  for (int i = 0; i < 8; ++i) f[i] = static_cast<uint8_t>(n >> (8 * i));
}

// Parses from an exact-size heap copy, so that ASan flags any read past the end.
SafetensorsHeader parse(const uint8_t* data, size_t size) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[size]);
  if (size) std::memcpy(copy.get(), data, size);
  return parse_safetensors(copy.get(), size, kOrigin);
}
SafetensorsHeader parse(const std::vector<uint8_t>& f) { return parse(f.data(), f.size()); }

// The status and message of the failure to parse `f` (kInternal/"" if it parsed).
std::pair<gon::Status, std::string> failure(const std::vector<uint8_t>& f) {
  try {
    (void)parse(f);
  } catch (const gon::Error& e) {
    return {e.status(), e.what()};
  }
  return {gon::Status::kInternal, ""};
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// Checks that `f` fails with `status` and a message holding each of `parts`.
void expect_failure(const std::vector<uint8_t>& f, gon::Status status, std::initializer_list<std::string_view> parts,
                    int line) {
  const auto [st, msg] = failure(f);
  bool ok = st == status && contains(msg, kOrigin);
  for (auto p : parts) ok = ok && contains(msg, p);
  if (!ok) {
    std::printf("  line %d: expected %s with", line, gon::status_name(status));
    for (auto p : parts) std::printf(" [%.*s]", static_cast<int>(p.size()), p.data());
    std::printf("; got %s: %s\n", msg.empty() ? "no error" : gon::status_name(st), msg.c_str());
    ++gon_test::failures();
  }
}
#define EXPECT_CORRUPT(f, ...) expect_failure(f, gon::Status::kCorruptCheckpoint, {__VA_ARGS__}, __LINE__)
#define EXPECT_UNSUPPORTED(f, ...) expect_failure(f, gon::Status::kUnsupportedCheckpoint, {__VA_ARGS__}, __LINE__)

std::vector<uint8_t> one_tensor(const std::string& entry, size_t data_bytes = 16) {
  return make_file("{\"t\":" + entry + "}", bytes(data_bytes));
}

// The invariants every successfully parsed header must satisfy.
bool header_is_sound(const SafetensorsHeader& h, size_t size) {
  if (h.data_start < 8 || h.data_start > size) return false;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> names;
  for (const auto& t : h.tensors) {
    if (t.offset < h.data_start || t.offset > size || t.nbytes > size - t.offset) return false;
    if (t.shape.size() > gon::kSafetensorsMaxRank) return false;
    uint64_t count = 1, nbytes = 0;
    bool zero = false, overflow = false;
    for (int64_t d : t.shape) {
      if (d < 0) return false;
      if (d == 0) zero = true;
      else overflow = overflow || __builtin_mul_overflow(count, static_cast<uint64_t>(d), &count);
    }
    if (zero) count = 0;
    else if (overflow) return false;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(gon::dtype_size(t.dtype)), &nbytes)) return false;
    if (nbytes != t.nbytes) return false;
    if (t.nbytes) ranges.emplace_back(t.offset, t.offset + t.nbytes);
    names.push_back(t.name);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) return false;
  std::sort(names.begin(), names.end());
  return std::adjacent_find(names.begin(), names.end()) == names.end();
}

// A small valid file whose data section is exactly covered by its tensors
// (so that every truncation breaks it), listed out of data order.
std::vector<uint8_t> sample_file(std::string* header_out = nullptr) {
  const std::string header = header_json(
      {
          {"model.b", "BF16", {4}, 24, 32},
          {"model.a", "F32", {2, 3}, 0, 24},
          {"blocks", "U8", {2, 2, 4}, 32, 48},
          {"empty", "F16", {0, 5}, 48, 48},
          {"scalar", "I64", {}, 48, 56},
          {"caf\\u00e9", "F8_E4M3", {3}, 56, 59},
      },
      R"({"format":"pt","note":"t\u00e9st"})");
  if (header_out) *header_out = header;
  return make_file(header, bytes(59, 1), 5);
}

// A scratch directory, removed (with the files the test registered) at the end.
struct TempDir {
  std::string path;
  std::vector<std::string> files;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/gon_test_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path = buf.data();
  }
  std::string write(const std::string& name, const std::vector<uint8_t>& content) {
    const std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(content.data()),
                                             static_cast<std::streamsize>(content.size()));
    files.push_back(p);
    return p;
  }
  ~TempDir() {
    for (const auto& f : files) ::unlink(f.c_str());
    ::rmdir(path.c_str());
  }
};

}  // namespace

// ---- dtype --------------------------------------------------------------------------

TEST(dtype_names_and_sizes) {
  const std::pair<const char*, size_t> expected[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"U16", 2}, {"I16", 2},  {"U32", 4},     {"I32", 4},     {"U64", 8},
      {"I64", 8},  {"F16", 2}, {"BF16", 2}, {"F32", 4}, {"F64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
  };
  for (size_t i = 0; i < std::size(expected); ++i) {
    const auto d = static_cast<DType>(i);
    CHECK(std::string(gon::dtype_name(d)) == expected[i].first);
    CHECK(gon::dtype_size(d) == expected[i].second);
    CHECK(gon::dtype_from_name(expected[i].first) == d);
  }
  for (const char* bad : {"", "f32", "F32 ", "FLOAT", "F8", "F8_E8M0", "F4", "bf16"})
    CHECK(!gon::dtype_from_name(bad).has_value());
  CHECK(!gon::dtype_from_name(std::string_view("F32\0", 4)).has_value());
}

// ---- MappedFile ---------------------------------------------------------------------

TEST(mapped_file) {
  TempDir dir;
  CHECK_THROWS_STATUS(gon::MappedFile::open(dir.path + "/missing.bin"), kFileNotFound);
  CHECK_THROWS_STATUS(gon::MappedFile::open(dir.path + "/no/such/dir/x"), kFileNotFound);
  CHECK_THROWS_STATUS(gon::MappedFile::open(""), kFileNotFound);
  CHECK_THROWS_STATUS(gon::MappedFile::open(dir.path + std::string("\0x", 2)), kInvalidArgument);
  CHECK_THROWS_STATUS(gon::MappedFile::open(dir.path), kIoError);
  try {
    (void)gon::MappedFile::open(dir.path);
  } catch (const gon::Error& e) {
    CHECK(contains(e.what(), dir.path));
    CHECK(contains(e.what(), "directory"));
  }
  try {
    (void)gon::MappedFile::open(dir.path + "/missing.bin");
  } catch (const gon::Error& e) {
    CHECK(contains(e.what(), dir.path + "/missing.bin"));
  }
  // A regular file through a path component that is a file.
  const std::string plain = dir.write("plain.bin", bytes(10));
  CHECK_THROWS_STATUS(gon::MappedFile::open(plain + "/x"), kFileNotFound);

  std::mt19937_64 rng(gon_test::seed());
  std::vector<uint8_t> content(100000 + rng() % 10000);
  for (auto& b : content) b = static_cast<uint8_t>(rng());
  const std::string p = dir.write("data.bin", content);
  auto f = gon::MappedFile::open(p);
  CHECK(f->size() == content.size());
  CHECK(f->path() == p);
  CHECK(f->data() != nullptr && std::memcmp(f->data(), content.data(), content.size()) == 0);
  f->advise_willneed(0, f->size());
  f->advise_willneed(5000, 1);
  f->advise_willneed(f->size() - 1, 1000000);
  f->advise_willneed(f->size(), 10);
  f->advise_willneed(~size_t{0}, ~size_t{0});
  f->advise_sequential(123, ~size_t{0});
  f->advise_random(0, 0);
  CHECK(std::memcmp(f->data(), content.data(), content.size()) == 0);

  auto empty = gon::MappedFile::open(dir.write("empty.bin", {}));
  CHECK(empty->size() == 0);
  empty->advise_willneed(0, 100);

  // Unreadable file (skipped when running as root, which can read anything).
  if (::geteuid() != 0) {
    const std::string secret = dir.write("secret.bin", bytes(4));
    ::chmod(secret.c_str(), 0);
    CHECK_THROWS_STATUS(gon::MappedFile::open(secret), kIoError);
  }
#ifdef __linux__
  CHECK_THROWS_STATUS(gon::MappedFile::open("/dev/null"), kIoError);  // not a regular file
#endif
}

// ---- safetensors: valid files -------------------------------------------------------

TEST(safetensors_valid_file) {
  std::string header;
  const auto f = sample_file(&header);
  const SafetensorsHeader h = parse(f);
  const uint64_t data_start = 8 + header.size() + 5;
  CHECK(h.data_start == data_start);
  CHECK(h.tensors.size() == 6);
  CHECK(header_is_sound(h, f.size()));
  // Document order, absolute offsets.
  CHECK(h.tensors[0].name == "model.b" && h.tensors[0].dtype == DType::kBF16);
  CHECK(h.tensors[0].shape == std::vector<int64_t>{4});
  CHECK(h.tensors[0].offset == data_start + 24 && h.tensors[0].nbytes == 8);
  CHECK(h.tensors[1].name == "model.a" && h.tensors[1].dtype == DType::kF32);
  CHECK((h.tensors[1].shape == std::vector<int64_t>{2, 3}) && h.tensors[1].offset == data_start && h.tensors[1].nbytes == 24);
  CHECK(h.tensors[2].dtype == DType::kU8 && h.tensors[2].nbytes == 16);
  CHECK(h.tensors[3].name == "empty" && h.tensors[3].nbytes == 0 && (h.tensors[3].shape == std::vector<int64_t>{0, 5}));
  CHECK(h.tensors[4].name == "scalar" && h.tensors[4].shape.empty() && h.tensors[4].nbytes == 8);
  CHECK(h.tensors[5].name == "caf\xC3\xA9" && h.tensors[5].dtype == DType::kF8E4M3 && h.tensors[5].nbytes == 3);
  CHECK(h.metadata.size() == 2);
  CHECK(h.metadata[0] == (std::pair<std::string, std::string>{"format", "pt"}));
  CHECK(h.metadata[1] == (std::pair<std::string, std::string>{"note", "t\xC3\xA9st"}));
}

TEST(safetensors_valid_variants) {
  // Empty header object, no tensors, no data.
  CHECK(parse(make_file("{}", {})).tensors.empty());
  // Padding with every JSON whitespace character, leading whitespace too.
  {
    auto f = make_file(" \n{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}\t\r\n  ", bytes(2));
    CHECK(parse(f).tensors.at(0).nbytes == 2);
  }
  // Keys of an entry in any order; gaps, trailing bytes after the last tensor,
  // adjacent and zero-size tensors anywhere (also inside another tensor).
  {
    const std::string hdr =
        R"({"b":{"data_offsets":[40,48],"shape":[2],"dtype":"F32"},"a":{"shape":[1],"dtype":"F64","data_offsets":[8,16]},)"
        R"("c":{"dtype":"U8","shape":[8],"data_offsets":[16,24]},"z":{"dtype":"F32","shape":[4611686018427387904,0],"data_offsets":[12,12]},)"
        R"("z2":{"dtype":"BOOL","shape":[0],"data_offsets":[100,100]}})";
    const auto f = make_file(hdr, bytes(100));
    const auto h = parse(f);
    CHECK(h.tensors.size() == 5 && header_is_sound(h, f.size()));
    CHECK(h.tensors[3].shape[0] == 4611686018427387904LL && h.tensors[3].nbytes == 0);
  }
  // Every dtype.
  {
    std::vector<Spec> specs;
    uint64_t off = 0;
    for (int i = 0; i <= static_cast<int>(DType::kF8E5M2); ++i) {
      const auto d = static_cast<DType>(i);
      const uint64_t n = 3 * gon::dtype_size(d);
      specs.push_back({std::string("t") + gon::dtype_name(d), gon::dtype_name(d), {3}, off, off + n});
      off += n;
    }
    const auto h = parse(make_file(header_json(specs), bytes(off)));
    CHECK(h.tensors.size() == specs.size());
    for (size_t i = 0; i < h.tensors.size(); ++i) CHECK(h.tensors[i].dtype == static_cast<DType>(i));
  }
  // Rank up to the maximum; null metadata; empty metadata.
  CHECK(parse(one_tensor(R"({"dtype":"U8","shape":[1,1,1,1,1,1,1,2],"data_offsets":[0,2]})")).tensors[0].shape.size() == 8);
  CHECK(parse(make_file(R"({"__metadata__":null})", {})).metadata.empty());
  CHECK(parse(make_file(R"({"__metadata__":{}})", {})).metadata.empty());
  // Big offsets that still fit: the data section may be large; here the
  // offsets are checked against the real size, so only small ones pass.
  CHECK(parse(one_tensor(R"({"dtype":"U64","shape":[2],"data_offsets":[0,16]})")).tensors[0].nbytes == 16);
}

// ---- safetensors: every rejection path ---------------------------------------------

TEST(safetensors_length_field) {
  for (size_t n = 0; n < 8; ++n) {
    const std::vector<uint8_t> f(n, 0);
    EXPECT_CORRUPT(f, "8-byte", std::to_string(n) + " bytes");
  }
  auto f = make_file("{}", {});
  set_length(f, 3);  // larger than the 2 bytes that follow
  EXPECT_CORRUPT(f, "header length 3", "2 bytes");
  set_length(f, ~uint64_t{0});
  EXPECT_CORRUPT(f, "18446744073709551615", "limit");
  set_length(f, gon::kSafetensorsMaxHeaderBytes + 1);
  EXPECT_CORRUPT(f, "100000001", "limit of 100000000");
  set_length(f, gon::kSafetensorsMaxHeaderBytes);
  EXPECT_CORRUPT(f, "100000000", "truncated");
  set_length(f, 0);
  EXPECT_CORRUPT(f, "invalid JSON at byte 0");
  set_length(f, 1);  // "{"
  EXPECT_CORRUPT(f, "invalid JSON at byte 1");
}

TEST(safetensors_header_json) {
  EXPECT_CORRUPT(make_file("not json", {}), "safetensors header: invalid JSON at byte 0");
  EXPECT_CORRUPT(make_file("{\"a\":1,}", {}), "invalid JSON at byte 7");
  EXPECT_CORRUPT(make_file("[]", {}), "must be a JSON object", "an array");
  EXPECT_CORRUPT(make_file("3", {}), "must be a JSON object");
  EXPECT_CORRUPT(make_file("\"{}\"", {}), "must be a JSON object");
  EXPECT_CORRUPT(make_file("{} {}", {}), "invalid JSON");
  // NUL padding is not whitespace.
  {
    auto f = make_file("{}", {});
    f.push_back(0);
    set_length(f, 3);
    EXPECT_CORRUPT(f, "invalid JSON at byte 2");
  }
  // Invalid UTF-8 in a tensor name.
  EXPECT_CORRUPT(make_file("{\"\xC0\x80\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", {}), "UTF-8");
  // The data section does not count as header: a header cut short is invalid JSON.
  EXPECT_CORRUPT(make_file("{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]", bytes(2)), "invalid JSON");
}

TEST(safetensors_entry_shape_errors) {
  EXPECT_CORRUPT(one_tensor("5"), "tensor 't'", "must be an object", "got 5");
  EXPECT_CORRUPT(one_tensor("[\"U8\",[1],[0,1]]"), "tensor 't'", "an array");
  EXPECT_CORRUPT(one_tensor("null"), "tensor 't'", "got null");
  EXPECT_CORRUPT(one_tensor(R"({"shape":[1],"data_offsets":[0,1]})"), "tensor 't'", "no \"dtype\"");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","data_offsets":[0,1]})"), "no \"shape\"");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","shape":[1]})"), "no \"data_offsets\"");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":0})"), "unexpected key 'extra'");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"__metadata__":{}})"), "unexpected key");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]})"), "'dtype' appears twice");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]})"), "'shape' appears twice");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]})"), "appears twice");
  EXPECT_CORRUPT(one_tensor(R"({})"), "no \"dtype\"");
}

TEST(safetensors_dtype_errors) {
  EXPECT_CORRUPT(one_tensor(R"({"dtype":4,"shape":[1],"data_offsets":[0,1]})"), "dtype must be a string", "got 4");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":null,"shape":[1],"data_offsets":[0,1]})"), "dtype must be a string");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":["U8"],"shape":[1],"data_offsets":[0,1]})"), "dtype must be a string");
  EXPECT_UNSUPPORTED(one_tensor(R"({"dtype":"F4","shape":[1],"data_offsets":[0,1]})"), "dtype 'F4' is not supported",
                     "BF16");
  EXPECT_UNSUPPORTED(one_tensor(R"({"dtype":"F8_E8M0","shape":[1],"data_offsets":[0,1]})"), "F8_E8M0");
  EXPECT_UNSUPPORTED(one_tensor(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})"), "'f32'");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"","shape":[1],"data_offsets":[0,1]})"), "invalid dtype ''");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"F 32","shape":[1],"data_offsets":[0,1]})"), "invalid dtype");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8\u0000","shape":[1],"data_offsets":[0,1]})"), "invalid dtype 'U8\\x00'");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","shape":[1],"data_offsets":[0,1]})"),
                 "invalid dtype");
}

TEST(safetensors_shape_errors) {
  const auto entry = [](const std::string& shape, const std::string& offsets = "[0,4]") {
    return one_tensor(R"({"dtype":"U8","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}");
  };
  EXPECT_CORRUPT(entry("4"), "shape must be an array", "got 4");
  EXPECT_CORRUPT(entry("\"4\""), "shape must be an array");
  EXPECT_CORRUPT(entry("{}"), "shape must be an array");
  EXPECT_CORRUPT(entry("[-1]"), "shape[0]", "got -1");
  EXPECT_CORRUPT(entry("[2,-2]"), "shape[1]", "got -2");
  EXPECT_CORRUPT(entry("[4.0]"), "shape[0]");
  EXPECT_CORRUPT(entry("[4e0]"), "shape[0]");
  EXPECT_CORRUPT(entry("[1.5]"), "shape[0]", "1.5");
  EXPECT_CORRUPT(entry("[\"4\"]"), "shape[0]", "the string '4'");
  EXPECT_CORRUPT(entry("[null]"), "shape[0]");
  EXPECT_CORRUPT(entry("[[4]]"), "shape[0]");
  EXPECT_CORRUPT(entry("[true]"), "shape[0]");
  EXPECT_CORRUPT(entry("[9223372036854775808]"), "shape[0]", "9223372036854775808");
  EXPECT_CORRUPT(entry("[18446744073709551616]"), "shape[0]");
  EXPECT_UNSUPPORTED(entry("[1,1,1,1,1,1,1,1,4]"), "rank 9");
  // Element count and byte size overflow (checked before the offsets).
  EXPECT_CORRUPT(entry("[4294967296,4294967296,2]"), "[4294967296, 4294967296, 2]", "2^64 elements");
  EXPECT_CORRUPT(entry("[9223372036854775807,9223372036854775807]"), "2^64 elements");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]})"),
                 "4611686018427387904", "F64", "2^64 bytes");
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]})"), "2^64 bytes");
  // Fits uint64 exactly, but the data section is far smaller.
  EXPECT_CORRUPT(one_tensor(R"({"dtype":"U8","shape":[4294967296,4294967295],"data_offsets":[0,4]})"),
                 "18446744069414584320 bytes");
}

TEST(safetensors_offset_errors) {
  const auto entry = [](const std::string& offsets) {
    return one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":)" + offsets + "}", 16);
  };
  CHECK(parse(entry("[0,8]")).tensors.size() == 1);
  CHECK(parse(entry("[8,16]")).tensors.size() == 1);
  EXPECT_CORRUPT(entry("8"), "data_offsets must be an array of two integers", "got 8");
  EXPECT_CORRUPT(entry("[0]"), "array of 1 elements");
  EXPECT_CORRUPT(entry("[]"), "array of 0 elements");
  EXPECT_CORRUPT(entry("[0,8,16]"), "array of 3 elements");
  EXPECT_CORRUPT(entry("{\"begin\":0}"), "data_offsets must be an array");
  EXPECT_CORRUPT(entry("[-8,0]"), "data_offsets[0]", "got -8");
  EXPECT_CORRUPT(entry("[0,-8]"), "data_offsets[1]");
  EXPECT_CORRUPT(entry("[0,8.0]"), "data_offsets[1]");
  EXPECT_CORRUPT(entry("[0,8e0]"), "data_offsets[1]");
  EXPECT_CORRUPT(entry("[\"0\",8]"), "data_offsets[0]");
  EXPECT_CORRUPT(entry("[0,18446744073709551616]"), "data_offsets[1]");
  EXPECT_CORRUPT(entry("[8,0]"), "data_offsets [8, 0]", "begin > end");
  EXPECT_CORRUPT(entry("[12,20]"), "data_offsets [12, 20]", "beyond the data section", "16 bytes");
  EXPECT_CORRUPT(entry("[18446744073709551607,18446744073709551615]"), "18446744073709551615", "beyond");
  EXPECT_CORRUPT(entry("[0,4]"), "data_offsets [0, 4]", "4 bytes", "[2]", "F32", "needs 8 bytes");
  EXPECT_CORRUPT(entry("[0,16]"), "16 bytes", "needs 8");
  EXPECT_CORRUPT(entry("[4,4]"), "needs 8");
}

TEST(safetensors_overlaps_and_names) {
  const auto two = [](uint64_t b1, uint64_t e1, uint64_t b2, uint64_t e2) {
    return make_file(header_json({{"x", "U8", {static_cast<int64_t>(e1 - b1)}, b1, e1},
                                  {"y", "U8", {static_cast<int64_t>(e2 - b2)}, b2, e2}}),
                     bytes(64));
  };
  CHECK(parse(two(0, 8, 8, 16)).tensors.size() == 2);   // adjacent
  CHECK(parse(two(8, 16, 0, 8)).tensors.size() == 2);   // out of order
  CHECK(parse(two(0, 8, 32, 40)).tensors.size() == 2);  // gap
  CHECK(parse(two(0, 16, 4, 4)).tensors.size() == 2);   // empty inside another
  CHECK(parse(two(4, 4, 4, 4)).tensors.size() == 2);    // two empty at one place
  EXPECT_CORRUPT(two(0, 8, 4, 12), "'x'", "'y'", "overlap", "[0, 8)", "[4, 12)");
  EXPECT_CORRUPT(two(4, 12, 0, 8), "overlap");
  EXPECT_CORRUPT(two(0, 8, 0, 8), "overlap");
  EXPECT_CORRUPT(two(0, 16, 4, 8), "overlap");
  EXPECT_CORRUPT(two(4, 8, 0, 16), "overlap");
  EXPECT_CORRUPT(two(0, 64, 63, 64), "overlap");
  // A long first tensor overlapping a later one past an intermediate one.
  EXPECT_CORRUPT(make_file(header_json({{"a", "U8", {32}, 0, 32}, {"b", "U8", {4}, 8, 12}, {"c", "U8", {4}, 20, 24}}),
                           bytes(64)),
                 "overlap");
  // Duplicate tensor names, also when spelled differently.
  EXPECT_CORRUPT(make_file(header_json({{"x", "U8", {8}, 0, 8}, {"x", "U8", {8}, 8, 16}}), bytes(16)),
                 "tensor 'x' appears twice");
  EXPECT_CORRUPT(make_file(header_json({{"x", "U8", {8}, 0, 8}, {"\\u0078", "U8", {8}, 8, 16}}), bytes(16)),
                 "appears twice");
  // Names in messages are escaped and cut.
  EXPECT_CORRUPT(make_file(header_json({{"a\\nb'", "U8", {8}, 0, 9}}), bytes(16)), "tensor 'a\\x0Ab\\x27'");
  EXPECT_CORRUPT(make_file(header_json({{std::string(500, 'n'), "U8", {8}, 0, 9}}), bytes(16)), "'...", "needs 8");
}

TEST(safetensors_metadata_errors) {
  EXPECT_CORRUPT(make_file(R"({"__metadata__":{"a":1}})", {}), "__metadata__", "'a'", "must be a string", "got 1");
  EXPECT_CORRUPT(make_file(R"({"__metadata__":{"a":{"b":"c"}}})", {}), "must be a string", "an object");
  EXPECT_CORRUPT(make_file(R"({"__metadata__":["a"]})", {}), "__metadata__", "must be an object");
  EXPECT_CORRUPT(make_file(R"({"__metadata__":"x"})", {}), "must be an object");
  EXPECT_CORRUPT(make_file(R"({"__metadata__":{},"__metadata__":{}})", {}), "\"__metadata__\" appears twice");
  EXPECT_CORRUPT(make_file(R"({"__metadata__":null,"__metadata__":{}})", {}), "appears twice");
}

// ---- safetensors: hostile damage ------------------------------------------------------

TEST(safetensors_every_truncation_fails) {
  const auto f = sample_file();
  CHECK(header_is_sound(parse(f), f.size()));
  for (size_t n = 0; n < f.size(); ++n) CHECK_THROWS_STATUS(parse(f.data(), n), kCorruptCheckpoint);
}

TEST(safetensors_random_damage) {
  std::string header;
  const auto base = sample_file(&header);
  const size_t header_end = 8 + header.size() + 5;
  std::mt19937_64 rng(gon_test::seed() + 10);
  const char interesting[] = "{}[]\":,\\0123456789-.eE \x01\x80\xFF";
  size_t parsed = 0, corrupt = 0, unsupported = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    std::vector<uint8_t> f = base;
    const int mode = static_cast<int>(rng() % 3);
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      if (mode == 0) {
        // Flip bytes anywhere in the length field and header.
        f[rng() % header_end] ^= static_cast<uint8_t>(1 + rng() % 255);
      } else {
        // Edit the JSON (replace / insert / delete), then fix the length field
        // so that the damage reaches the validator.
        const size_t json_len = f.size() - 8 - 59;
        const size_t pos = 8 + rng() % json_len;
        const char c = interesting[rng() % (sizeof interesting - 1)];
        switch (rng() % 3) {
          case 0: f[pos] = static_cast<uint8_t>(c); break;
          case 1: f.insert(f.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<uint8_t>(c)); break;
          default: f.erase(f.begin() + static_cast<std::ptrdiff_t>(pos)); break;
        }
        if (mode == 1) set_length(f, f.size() - 8 - 59);
      }
    }
    try {
      const auto h = parse(f);
      ++parsed;
      if (!header_is_sound(h, f.size())) {
        std::printf("  unsound header accepted at iteration %d\n", iter);
        ++gon_test::failures();
      }
    } catch (const gon::Error& e) {
      if (e.status() == gon::Status::kCorruptCheckpoint) {
        ++corrupt;
      } else if (e.status() == gon::Status::kUnsupportedCheckpoint) {
        ++unsupported;
      } else {
        std::printf("  unexpected status %s: %s\n", gon::status_name(e.status()), e.what());
        ++gon_test::failures();
      }
      if (!contains(e.what(), kOrigin)) {
        std::printf("  message without origin: %s\n", e.what());
        ++gon_test::failures();
      }
    }
  }
  std::printf("  random damage: %zu parsed, %zu corrupt, %zu unsupported\n", parsed, corrupt, unsupported);
  CHECK(parsed > 0 && corrupt > 0);
}

TEST(safetensors_random_valid_files) {
  // Random valid layouts (random order, gaps, zero-size tensors) parse to
  // exactly what was written.
  std::mt19937_64 rng(gon_test::seed() + 11);
  for (int iter = 0; iter < 300; ++iter) {
    std::vector<Spec> specs;
    uint64_t off = rng() % 3;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      const auto d = static_cast<DType>(rng() % (static_cast<int>(DType::kF8E5M2) + 1));
      std::vector<int64_t> shape(rng() % 4);
      uint64_t count = 1;
      for (auto& s : shape) {
        s = static_cast<int64_t>(rng() % 5);
        count *= static_cast<uint64_t>(s);
      }
      const uint64_t nb = count * gon::dtype_size(d);
      specs.push_back({"w" + std::to_string(i), gon::dtype_name(d), shape, off, off + nb});
      off += nb + rng() % 3;
    }
    std::shuffle(specs.begin(), specs.end(), rng);
    const std::string hdr = header_json(specs);
    const auto f = make_file(hdr, bytes(off + rng() % 4), rng() % 8);
    const auto h = parse(f);
    CHECK(h.tensors.size() == specs.size() && header_is_sound(h, f.size()));
    for (size_t i = 0; i < specs.size() && i < h.tensors.size(); ++i) {
      CHECK(h.tensors[i].name == specs[i].name);
      CHECK(gon::dtype_name(h.tensors[i].dtype) == specs[i].dtype);
      CHECK(h.tensors[i].shape == specs[i].shape);
      CHECK(h.tensors[i].offset == h.data_start + specs[i].begin);
      CHECK(h.tensors[i].nbytes == specs[i].end - specs[i].begin);
    }
  }
}

// ---- SafetensorsFile ------------------------------------------------------------------

TEST(safetensors_file) {
  TempDir dir;
  const auto content = sample_file();
  const std::string p = dir.write("model.safetensors", content);
  const auto file = gon::SafetensorsFile::open(p);
  CHECK(file->path() == p);
  CHECK(file->tensors().size() == 6);
  CHECK(file->file().size() == content.size());
  CHECK(file->shared_file().get() == &file->file());
  for (const auto& t : file->tensors()) {
    const gon::TensorInfo* found = file->find(t.name);
    CHECK(found == &t);
    const uint8_t* d = file->data(t);
    CHECK(d == file->file().data() + t.offset);
    CHECK(t.nbytes == 0 || std::memcmp(d, content.data() + t.offset, t.nbytes) == 0);
  }
  CHECK(file->find("model.a")->dtype == DType::kF32);
  CHECK(file->find("caf\xC3\xA9") != nullptr);
  CHECK(file->find("missing") == nullptr);
  CHECK(file->find("") == nullptr);
  CHECK(file->find("model") == nullptr);
  CHECK(file->header().metadata.size() == 2);
  // The data of model.a: bytes 1..24 of the data section.
  const uint8_t* a = file->data(*file->find("model.a"));
  CHECK(a[0] == 1 && a[23] == 24);
  // A TensorInfo that does not belong to the file.
  gon::TensorInfo foreign = *file->find("model.a");
  foreign.offset = content.size() - 4;
  CHECK_THROWS_STATUS(file->data(foreign), kInvalidArgument);
  foreign.offset = 3;
  CHECK_THROWS_STATUS(file->data(foreign), kInvalidArgument);
  // The mapping outlives the SafetensorsFile through shared_file().
  std::shared_ptr<const gon::MappedFile> keep = file->shared_file();
  CHECK(keep->size() == content.size());

  CHECK_THROWS_STATUS(gon::SafetensorsFile::open(dir.path + "/nope.safetensors"), kFileNotFound);
  CHECK_THROWS_STATUS(gon::SafetensorsFile::open(dir.path), kIoError);
  std::vector<uint8_t> truncated(content.begin(), content.end() - 1);
  const std::string tp = dir.write("truncated.safetensors", truncated);
  CHECK_THROWS_STATUS(gon::SafetensorsFile::open(tp), kCorruptCheckpoint);
  try {
    (void)gon::SafetensorsFile::open(tp);
  } catch (const gon::Error& e) {
    CHECK(contains(e.what(), tp));
    CHECK(contains(e.what(), "truncated"));
  }
  CHECK_THROWS_STATUS(gon::SafetensorsFile::open(dir.write("empty.safetensors", {})), kCorruptCheckpoint);
}

TEST(safetensors_many_tensors_lookup) {
  std::vector<Spec> specs;
  for (int i = 0; i < 3000; ++i)
    specs.push_back({"model.layers." + std::to_string(i % 36) + ".w" + std::to_string(i), "BF16", {2}, 4ull * i,
                     4ull * i + 4});
  TempDir dir;
  const auto file = gon::SafetensorsFile::open(dir.write("big.safetensors", make_file(header_json(specs), bytes(12000))));
  CHECK(file->tensors().size() == 3000);
  for (const auto& s : specs) {
    const auto* t = file->find(s.name);
    CHECK(t != nullptr && t->offset == file->header().data_start + s.begin);
  }
}

GON_TEST_MAIN()
