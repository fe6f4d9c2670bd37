// Element types of checkpoint tensors, spelled as safetensors spells them.
//
// The safetensors parser maps the header's "dtype" strings onto DType and uses
// dtype_size() to check that every tensor's byte range matches its shape; the
// rest of the runtime uses DType to decide how to read weights (gpt-oss stores
// bf16 weights and MXFP4 experts as U8 blocks + U8 scales).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace gon {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kU64,
  kI64,
  kF16,
  kBF16,
  kF32,
  kF64,
  kF8E4M3,
  kF8E5M2,
};

// Bytes per element (1, 2, 4 or 8).
size_t dtype_size(DType dtype);

// The safetensors spelling: "BOOL", "U8", ..., "BF16", "F8_E4M3", "F8_E5M2".
const char* dtype_name(DType dtype);

// The inverse of dtype_name (exact, case-sensitive match); nullopt for any other string.
std::optional<DType> dtype_from_name(std::string_view name);

}  // namespace gon
