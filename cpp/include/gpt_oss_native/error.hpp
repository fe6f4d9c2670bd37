// The one error type of the runtime.
//
// Every failure the runtime can report (bad arguments, unreadable or corrupt
// checkpoints, overflowing a context, a backend that is not built) is thrown as
// gon::Error carrying a Status and a message that starts with where it
// happened. The Python bindings translate each Status into one Python exception
// class (see python/gpt_oss_native/errors.py); C++ callers catch gon::Error.
#pragma once

#include <exception>
#include <string>
#include <utility>

namespace gon {

enum class Status {
  kInvalidArgument = 1,   // an argument has a wrong value, type or shape
  kTokenOutOfRange,       // a token id is negative or >= vocabulary size
  kContextOverflow,       // more tokens than the context was created for
  kFileNotFound,          // a checkpoint file or directory does not exist
  kIoError,               // a file exists but cannot be opened, mapped or read
  kCorruptCheckpoint,     // a checkpoint file is truncated or malformed
  kUnsupportedCheckpoint, // well-formed, but describes something we do not run
  kOutOfMemory,           // an allocation failed
  kBackendUnavailable,    // the requested device is not built in or not present
  kInternal,              // a broken invariant: a bug in the runtime
  kCancelled,             // the call was cancelled (Context::cancel) before it finished
};

// Short stable name of a status, e.g. "invalid_argument".
const char* status_name(Status status) noexcept;

class Error : public std::exception {
 public:
  Error(Status status, std::string message) : status_(status), message_(std::move(message)) {}
  Status status() const noexcept { return status_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  Status status_;
  std::string message_;
};

}  // namespace gon
