// Bindings of gon::Tokenizer and gon::StreamDecoder (wrapped by
// gpt_oss_native.Tokenizer in Python).
//
// _core.Tokenizer is gon::Tokenizer itself, held by std::shared_ptr (the const
// of shared_ptr<const Tokenizer> is cast away: every method is const), so other
// bindings take it as `const gon::Tokenizer&` or `std::shared_ptr<gon::Tokenizer>`.
//
// Text crosses as UTF-8: a str is read through CPython's cached UTF-8 form (a
// str with lone surrogates has none: InvalidArgumentError). Token lists are
// built directly as Python lists; token arrays come in as int32/int64 NumPy
// arrays (the wrapper converts other sequences). The GIL is released while
// encoding or decoding large inputs and while loading.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

#include "bindings/bindings.hpp"
#include "core/check.hpp"
#include "core/mapped_file.hpp"
#include "gpt_oss_native/tokenizer.hpp"
#include "text/pretokenizer.hpp"

namespace nb = nanobind;

namespace gon::bindings {

namespace {

// Inputs at least this large are encoded/decoded without the GIL.
constexpr size_t kReleaseGilBytes = 2048;

template <typename T>
using TokenArray = nb::ndarray<const T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

std::shared_ptr<Tokenizer> mutable_ptr(std::shared_ptr<const Tokenizer> t) {
  return std::const_pointer_cast<Tokenizer>(std::move(t));
}

std::string_view utf8_of(nb::handle text, const char* what) {
  if (!PyUnicode_Check(text.ptr()))
    GON_THROW(kInvalidArgument, what, " must be a str, got ", Py_TYPE(text.ptr())->tp_name);
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(text.ptr(), &n);
  if (p == nullptr) {
    // A lone surrogate: say where.
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_ssize_t start = -1;
    if (value == nullptr || PyUnicodeEncodeError_GetStart(value, &start) != 0) {
      PyErr_Clear();
      start = -1;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    GON_THROW(kInvalidArgument, what, " is not valid Unicode: it contains a lone surrogate (at character ", start,
              "), which has no UTF-8 encoding");
  }
  return {p, static_cast<size_t>(n)};
}

nb::list to_list(const std::vector<int32_t>& ids) {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(ids.size()));
  if (!list) throw nb::python_error();
  for (size_t i = 0; i < ids.size(); ++i) PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyLong_FromLong(ids[i]));
  return nb::steal<nb::list>(list);
}

nb::object to_numpy(std::vector<int32_t>&& ids) {
  auto* owned = new std::vector<int32_t>(std::move(ids));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
  size_t shape[1] = {owned->size()};
  return nb::cast(nb::ndarray<nb::numpy, uint32_t, nb::ndim<1>>(reinterpret_cast<uint32_t*>(owned->data()), 1,
                                                                shape, owner));
}

SpecialTokens make_specials(const std::vector<std::string>& allowed, bool all, bool reject_others) {
  SpecialTokens s;
  s.all = all;
  s.allowed = allowed;
  s.reject_others = reject_others;
  return s;
}

std::vector<int32_t> encode(const Tokenizer& self, nb::handle text, const SpecialTokens& specials) {
  const std::string_view utf8 = utf8_of(text, "text");
  if (utf8.size() < kReleaseGilBytes) return self.encode(utf8, specials);
  nb::gil_scoped_release release;
  return self.encode(utf8, specials);
}

template <typename T>
std::string decode_array(const Tokenizer& self, const TokenArray<T>& ids) {
  auto run = [&] {
    std::string out;
    out.reserve(ids.shape(0) * 4);
    const T* p = ids.data();
    for (size_t i = 0; i < ids.shape(0); ++i) {
      const T t = p[i];
      if (t < 0 || t > static_cast<T>(0x7FFFFFFF)) {
        GON_THROW(kTokenOutOfRange, "token id ", static_cast<long long>(t), " is out of range (the vocabulary has ids 0..",
                  self.vocab_size() - 1, ")");
      }
      out.append(self.token_bytes(static_cast<int32_t>(t)));
    }
    return out;
  };
  if (ids.shape(0) * 4 < kReleaseGilBytes) return run();
  nb::gil_scoped_release release;
  return run();
}

// Decodes a list or tuple of ints without converting it to an array first.
std::string decode_sequence(const Tokenizer& self, nb::handle seq) {
  PyObject* fast = PySequence_Fast(seq.ptr(), "tokens must be a sequence of ints");
  if (!fast) throw nb::python_error();
  nb::object owner = nb::steal(fast);
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  PyObject** items = PySequence_Fast_ITEMS(fast);
  std::string out;
  out.reserve(static_cast<size_t>(n) * 4);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = items[i];
    if (PyBool_Check(item) || !PyIndex_Check(item))
      GON_THROW(kInvalidArgument, "tokens must be ints, got ", Py_TYPE(item)->tp_name);
    nb::object index = nb::steal(PyNumber_Index(item));
    if (!index.is_valid()) throw nb::python_error();
    int overflow = 0;
    const long long t = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (overflow != 0 || t < 0 || t > 0x7FFFFFFF) {
      GON_THROW(kTokenOutOfRange, "token id ", nb::str(index).c_str(), " is out of range (the vocabulary has ids 0..",
                self.vocab_size() - 1, ")");
    }
    out.append(self.token_bytes(static_cast<int32_t>(t)));
  }
  return out;
}

nb::bytes as_bytes(const std::string& s) { return nb::bytes(s.data(), s.size()); }

nb::str as_text_replacing(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw nb::python_error();
  return nb::steal<nb::str>(o);
}

int32_t check_id(const Tokenizer& self, int64_t token) {
  if (token < 0 || token > 0x7FFFFFFF)
    GON_THROW(kTokenOutOfRange, "token id ", token, " is out of range (the vocabulary has ids 0..",
              self.vocab_size() - 1, ")");
  return static_cast<int32_t>(token);
}

}  // namespace

void init_tokenizer(nb::module_& m) {
  nb::class_<Tokenizer>(m, "Tokenizer")
      .def_static(
          "load",
          [](const std::string& path) {
            nb::gil_scoped_release release;
            return mutable_ptr(Tokenizer::load(path));
          },
          nb::arg("path"))
      .def_static(
          "from_tiktoken_file",
          [](const std::string& path) {
            nb::gil_scoped_release release;
            const auto f = MappedFile::open(path);
            return mutable_ptr(Tokenizer::from_tiktoken(
                std::string_view(reinterpret_cast<const char*>(f->data()), f->size()), path));
          },
          nb::arg("path"))
      .def_static(
          "from_tiktoken_bytes",
          [](nb::bytes data, const std::string& origin) {
            const std::string_view v(data.c_str(), data.size());
            nb::gil_scoped_release release;
            return mutable_ptr(Tokenizer::from_tiktoken(v, origin));
          },
          nb::arg("data"), nb::arg("origin") = "<bytes>")
      .def_static(
          "from_hf_json_bytes",
          [](nb::bytes data, const std::string& origin) {
            const std::string_view v(data.c_str(), data.size());
            nb::gil_scoped_release release;
            return mutable_ptr(Tokenizer::from_hf_json(v, origin));
          },
          nb::arg("data"), nb::arg("origin") = "<bytes>")
      .def_prop_ro("vocab_size", &Tokenizer::vocab_size)
      .def_prop_ro("num_tokens", &Tokenizer::num_tokens)
      .def(
          "encode",
          [](const Tokenizer& self, nb::handle text, const std::vector<std::string>& allowed, bool all,
             bool reject_others) { return to_list(encode(self, text, make_specials(allowed, all, reject_others))); },
          nb::arg("text"), nb::arg("allowed") = std::vector<std::string>(), nb::arg("all") = false,
          nb::arg("reject_others") = false)
      .def(
          "encode_to_numpy",
          [](const Tokenizer& self, nb::handle text, const std::vector<std::string>& allowed, bool all,
             bool reject_others) { return to_numpy(encode(self, text, make_specials(allowed, all, reject_others))); },
          nb::arg("text"), nb::arg("allowed") = std::vector<std::string>(), nb::arg("all") = false,
          nb::arg("reject_others") = false)
      .def(
          "encode_bytes",
          [](const Tokenizer& self, nb::bytes data) {
            const std::string_view v(data.c_str(), data.size());
            if (v.size() < kReleaseGilBytes) return to_list(self.encode_bytes(v));
            std::vector<int32_t> ids;
            {
              nb::gil_scoped_release release;
              ids = self.encode_bytes(v);
            }
            return to_list(ids);
          },
          nb::arg("data"))
      .def("decode_bytes", [](const Tokenizer& s, TokenArray<int32_t> ids) { return as_bytes(decode_array(s, ids)); },
           nb::arg("ids").noconvert())
      .def("decode_bytes", [](const Tokenizer& s, TokenArray<int64_t> ids) { return as_bytes(decode_array(s, ids)); },
           nb::arg("ids").noconvert())
      .def("decode", [](const Tokenizer& s, TokenArray<int32_t> ids) { return as_text_replacing(decode_array(s, ids)); },
           nb::arg("ids").noconvert())
      .def("decode", [](const Tokenizer& s, TokenArray<int64_t> ids) { return as_text_replacing(decode_array(s, ids)); },
           nb::arg("ids").noconvert())
      .def(
          "decode_sequence_bytes", [](const Tokenizer& s, nb::handle seq) { return as_bytes(decode_sequence(s, seq)); },
          nb::arg("tokens"), "decode_bytes of a list or tuple of ints.")
      .def(
          "decode_sequence", [](const Tokenizer& s, nb::handle seq) { return as_text_replacing(decode_sequence(s, seq)); },
          nb::arg("tokens"), "decode of a list or tuple of ints.")
      .def(
          "token_bytes",
          [](const Tokenizer& self, int64_t token) {
            const std::string_view b = self.token_bytes(check_id(self, token));
            return nb::bytes(b.data(), b.size());
          },
          nb::arg("token"))
      .def(
          "is_special",
          [](const Tokenizer& self, int64_t token) {
            return token >= 0 && token <= 0x7FFFFFFF && self.is_special(static_cast<int32_t>(token));
          },
          nb::arg("token"))
      .def(
          "special_token", [](const Tokenizer& self, const std::string& text) { return self.special_token(text); },
          nb::arg("text"))
      .def("special_tokens", [](const Tokenizer& self) { return self.special_tokens(); })
      .def("stream_decoder", [](std::shared_ptr<Tokenizer> self) { return new StreamDecoder(std::move(self)); });

  nb::class_<StreamDecoder>(m, "StreamDecoder")
      .def(nb::init<std::shared_ptr<Tokenizer>>(), nb::arg("tokenizer"))
      .def(
          "push",
          [](StreamDecoder& self, int64_t token) {
            if (token < 0 || token > 0x7FFFFFFF) GON_THROW(kTokenOutOfRange, "token id ", token, " is out of range");
            const std::string s = self.push(static_cast<int32_t>(token));
            return nb::str(s.data(), s.size());
          },
          nb::arg("token"))
      .def("flush",
           [](StreamDecoder& self) {
             const std::string s = self.flush();
             return nb::str(s.data(), s.size());
           })
      .def("reset", &StreamDecoder::reset);

  // Diagnostics and test hooks.
  m.def(
      "_o200k_split",
      [](nb::handle text) {
        nb::list out;
        for (const std::string_view piece : text::o200k_split(utf8_of(text, "text")))
          out.append(nb::str(piece.data(), piece.size()));
        return out;
      },
      nb::arg("text"), "The o200k pre-tokeniser's pieces of a str.");
  m.def(
      "_unicode_char_classes",
      [] {
        std::string classes(0x110000, '\0');
        for (uint32_t cp = 0; cp < 0x110000; ++cp) classes[cp] = static_cast<char>(text::char_class(cp));
        return nb::bytes(classes.data(), classes.size());
      },
      "The pre-tokeniser's class of every code point (0 other, 1 Lu/Lt, 2 Ll, 3 Lm/Lo, 4 M, 5 N, 6 White_Space).");
  m.attr("_unicode_tables_version") = text::unicode_tables_version();
}

}  // namespace gon::bindings
