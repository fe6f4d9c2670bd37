// The Python extension module gpt_oss_native._core: one init_* per file,
// called from module.cpp. Bindings only forward to the C++ API; errors are
// translated once (errors.cpp) into the exception classes of
// python/gpt_oss_native/errors.py.
#pragma once

#include <nanobind/nanobind.h>

#include <optional>
#include <string>

#include "gpt_oss_native/context.hpp"

namespace gon::bindings {

void init_errors(nanobind::module_& m);
void init_model(nanobind::module_& m);
void init_context(nanobind::module_& m);
void init_utils(nanobind::module_& m);
void init_tokenizer(nanobind::module_& m);
void init_harmony(nanobind::module_& m);
void init_generate(nanobind::module_& m);
void init_engine(nanobind::module_& m);

// "auto" (nullopt), "fp32"/"float32", "bf16"/"bfloat16"; anything else is kInvalidArgument.
std::optional<KVDType> parse_kv_dtype(const std::string& s);
nanobind::dict memory_stats_dict(const MemoryStats& st);

}  // namespace gon::bindings
