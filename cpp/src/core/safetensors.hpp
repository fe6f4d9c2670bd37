// Reading safetensors checkpoint files.
//
// gpt-oss checkpoints are safetensors files: an 8-byte little-endian header
// length N, N bytes of JSON describing each tensor (dtype, shape, byte range in
// the data section), then the raw tensor data. parse_safetensors validates the
// whole header against the file size before anything trusts an offset, so a
// truncated or hostile file is reported as an error rather than read out of
// bounds; it is a pure function over bytes and is the fuzz target.
// SafetensorsFile adds the memory map and lookup by name.
//
// What is checked (each failure throws gon::Error(kCorruptCheckpoint) with a
// message naming the file, the tensor and the numbers involved):
//  * the file holds the 8-byte length; N <= kSafetensorsMaxHeaderBytes and
//    N <= file size - 8;
//  * the header is valid JSON (see json.hpp; trailing whitespace padding is
//    allowed) whose top level is an object;
//  * every key other than "__metadata__" is a tensor name (unique) mapped to an
//    object with exactly the keys "dtype" (string), "shape" (array of
//    non-negative integer literals) and "data_offsets" (two non-negative
//    integer literals begin <= end); any other or repeated key is rejected;
//  * element count * dtype size fits in uint64 and equals end - begin, and
//    end lies within the data section; every step is overflow-checked;
//  * no two tensors share a byte (tensors may be in any order, with gaps and
//    trailing bytes after the last one; zero-byte tensors overlap nothing);
//  * "__metadata__", when present, appears once and is an object of string
//    values (null is accepted and means no metadata).
// Well-formed files we cannot run throw kUnsupportedCheckpoint instead: a dtype
// spelled like a dtype name ([A-Za-z0-9_], at most 32 characters, e.g. "F4" or
// "F8_E8M0") that this runtime does not know, or a rank above kSafetensorsMaxRank.
// Integers written with a fraction or exponent ("4.0", "4e0") are rejected as
// the reference implementation does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.hpp"
#include "core/mapped_file.hpp"
#include "gpt_oss_native/error.hpp"

namespace gon {

inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
inline constexpr size_t kSafetensorsMaxRank = 8;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;  // each >= 0; empty for a scalar
  uint64_t offset = 0;         // absolute byte offset in the file
  uint64_t nbytes = 0;         // element count * dtype_size(dtype)
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;                               // in header (document) order
  std::vector<std::pair<std::string, std::string>> metadata;    // "__metadata__", in document order
  uint64_t data_start = 0;                                       // 8 + header length
};

// Parses and validates the header of the safetensors file whose complete bytes
// are [data, data + size). `origin` (the path) starts every error message.
SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, std::string_view origin);

class SafetensorsFile {
 public:
  // Maps and parses `path`. Throws what MappedFile::open and parse_safetensors throw.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }

  // The tensor called `name`, or nullptr. O(log n).
  const TensorInfo* find(std::string_view name) const;

  // Pointer to the tensor's first byte inside the map (valid while this file,
  // or shared_file(), is alive). Throws kInvalidArgument if `tensor` does not
  // lie within this file (e.g. it came from another file).
  const uint8_t* data(const TensorInfo& tensor) const;

  const MappedFile& file() const { return *file_; }
  // The mapping, for views that must keep it alive beyond this object.
  const std::shared_ptr<const MappedFile>& shared_file() const { return file_; }
  const std::string& path() const { return file_->path(); }

 private:
  SafetensorsFile(std::shared_ptr<const MappedFile> file, SafetensorsHeader header);

  std::shared_ptr<const MappedFile> file_;
  SafetensorsHeader header_;
  std::vector<size_t> by_name_;  // indices into header_.tensors, sorted by name
};

}  // namespace gon
