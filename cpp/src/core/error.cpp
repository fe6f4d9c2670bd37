// Status names for gon::Error (declared in the public error.hpp).
#include "gpt_oss_native/error.hpp"

namespace gon {

const char* status_name(Status status) noexcept {
  switch (status) {
    case Status::kInvalidArgument: return "invalid_argument";
    case Status::kTokenOutOfRange: return "token_out_of_range";
    case Status::kContextOverflow: return "context_overflow";
    case Status::kFileNotFound: return "file_not_found";
    case Status::kIoError: return "io_error";
    case Status::kCorruptCheckpoint: return "corrupt_checkpoint";
    case Status::kUnsupportedCheckpoint: return "unsupported_checkpoint";
    case Status::kOutOfMemory: return "out_of_memory";
    case Status::kBackendUnavailable: return "backend_unavailable";
    case Status::kInternal: return "internal";
    case Status::kCancelled: return "cancelled";
  }
  return "unknown";
}

}  // namespace gon
