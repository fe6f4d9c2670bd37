// Throwing helpers used throughout the runtime.
//
// GON_THROW(status, parts...) builds a message from its streamable parts and
// throws gon::Error; GON_CHECK(cond, status, parts...) does so when cond is
// false. Messages should say what was wrong and with which value, and start
// with where (the file, tensor or argument), so the user can act on them.
#pragma once

#include <sstream>
#include <string>

#include "gpt_oss_native/error.hpp"

namespace gon {

template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

template <typename... Parts>
[[noreturn]] void throw_error(Status status, const Parts&... parts) {
  throw Error(status, str_cat(parts...));
}

}  // namespace gon

#define GON_THROW(status, ...) ::gon::throw_error(::gon::Status::status, __VA_ARGS__)
#define GON_CHECK(cond, status, ...)                               \
  do {                                                             \
    if (!(cond)) ::gon::throw_error(::gon::Status::status, __VA_ARGS__); \
  } while (0)
