// The DType table: sizes and safetensors names (see dtype.hpp).
#include "core/dtype.hpp"

#include <iterator>

namespace gon {

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

// Indexed by the enum's value.
constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1},   {DType::kU8, "U8", 1},          {DType::kI8, "I8", 1},
    {DType::kU16, "U16", 2},     {DType::kI16, "I16", 2},        {DType::kU32, "U32", 4},
    {DType::kI32, "I32", 4},     {DType::kU64, "U64", 8},        {DType::kI64, "I64", 8},
    {DType::kF16, "F16", 2},     {DType::kBF16, "BF16", 2},      {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},     {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};

constexpr bool table_is_indexed_by_enum() {
  for (size_t i = 0; i < std::size(kDTypes); ++i)
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  return true;
}
static_assert(table_is_indexed_by_enum(), "kDTypes must list the DType values in order");
static_assert(std::size(kDTypes) == static_cast<size_t>(DType::kF8E5M2) + 1, "kDTypes must list every DType");

const DTypeInfo& info(DType dtype) {
  const auto i = static_cast<size_t>(dtype);
  return kDTypes[i < std::size(kDTypes) ? i : 0];
}

}  // namespace

size_t dtype_size(DType dtype) { return info(dtype).size; }

const char* dtype_name(DType dtype) { return info(dtype).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.dtype;
  return std::nullopt;
}

}  // namespace gon
