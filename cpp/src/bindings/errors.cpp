// Translates gon::Error into the package's exception classes, chosen by Status.
// The classes live in python/gpt_oss_native/errors.py (so they carry Python
// docstrings and standard bases such as ValueError); they are looked up once.
#include <nanobind/nanobind.h>

#include <cstring>

#include "bindings/bindings.hpp"
#include "gpt_oss_native/error.hpp"

namespace nb = nanobind;

namespace gon::bindings {

namespace {
const char* class_name(Status s) {
  switch (s) {
    case Status::kInvalidArgument: return "InvalidArgumentError";
    case Status::kTokenOutOfRange: return "TokenOutOfRangeError";
    case Status::kContextOverflow: return "ContextOverflowError";
    case Status::kFileNotFound: return "CheckpointNotFoundError";
    case Status::kIoError: return "CheckpointError";
    case Status::kCorruptCheckpoint: return "CorruptCheckpointError";
    case Status::kUnsupportedCheckpoint: return "UnsupportedCheckpointError";
    case Status::kOutOfMemory: return "OutOfMemoryError";
    case Status::kBackendUnavailable: return "BackendUnavailableError";
    case Status::kInternal: return "Error";
    case Status::kCancelled: return "CancelledError";
  }
  return "Error";
}
}  // namespace

void init_errors(nb::module_& m) {
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      nb::module_ errors = nb::module_::import_("gpt_oss_native.errors");
      nb::object cls = errors.attr(class_name(e.status()));
      // Messages may quote file names that are not valid UTF-8.
      PyObject* message = PyUnicode_DecodeUTF8(e.what(), static_cast<Py_ssize_t>(std::strlen(e.what())), "replace");
      PyErr_SetObject(cls.ptr(), message);
      Py_XDECREF(message);
    }
  });
}

}  // namespace gon::bindings
