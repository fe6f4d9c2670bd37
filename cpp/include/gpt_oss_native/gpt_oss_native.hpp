// gpt-oss-native: the public C++ API. Include this one header.
//
//   #include <gpt_oss_native/gpt_oss_native.hpp>
//   auto model = gon::Model::load(path);
//   gon::Context ctx(model);
//   ctx.append(tokens.data(), tokens.size());
//   auto next = ctx.sample({.temperature = 0});
//
// Link with the CMake target gpt_oss_native::gpt_oss_native
// (find_package(gpt_oss_native)). Errors are thrown as gon::Error.
#pragma once

#include "gpt_oss_native/config.hpp"
#include "gpt_oss_native/context.hpp"
#include "gpt_oss_native/engine.hpp"
#include "gpt_oss_native/error.hpp"
#include "gpt_oss_native/generate.hpp"
#include "gpt_oss_native/harmony.hpp"
#include "gpt_oss_native/model.hpp"
#include "gpt_oss_native/tokenizer.hpp"
#include "gpt_oss_native/version.hpp"
