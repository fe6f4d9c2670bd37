// Bindings of gon::Generator (wrapped by Context.generate / Model.generate in
// Python) and of Model.tokenizer.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "bindings/bindings.hpp"
#include "gpt_oss_native/generate.hpp"
#include "gpt_oss_native/model.hpp"

namespace nb = nanobind;

namespace gon::bindings {

void init_generate(nb::module_& m) {
  nb::class_<Generator>(m, "Generator")
      .def(
          "__init__",
          [](Generator* self, Context& ctx, std::shared_ptr<Tokenizer> tokenizer, int max_tokens, float temperature,
             float top_p, std::optional<uint64_t> seed, std::vector<std::string> stop,
             std::vector<int32_t> stop_tokens, bool default_stop_tokens) {
            GenerateOptions o;
            o.max_tokens = max_tokens;
            o.sampling = {temperature, top_p, seed, nullptr};
            o.stop = std::move(stop);
            o.stop_tokens = std::move(stop_tokens);
            o.default_stop_tokens = default_stop_tokens;
            new (self) Generator(ctx, std::move(tokenizer), o);
          },
          nb::arg("context"), nb::arg("tokenizer"), nb::arg("max_tokens"), nb::arg("temperature"), nb::arg("top_p"),
          nb::arg("seed").none(), nb::arg("stop"), nb::arg("stop_tokens"), nb::arg("default_stop_tokens"),
          nb::keep_alive<1, 2>(), nb::keep_alive<1, 3>())
      .def(
          "next",
          [](Generator& self) -> std::optional<std::tuple<nb::bytes, int32_t, float>> {
            GeneratedPiece piece;
            bool more;
            {
              nb::gil_scoped_release release;
              more = self.next(piece);
            }
            if (!more) return std::nullopt;
            return std::make_tuple(nb::bytes(piece.text.data(), piece.text.size()), piece.token, piece.logprob);
          },
          "The next (utf-8 bytes, token, logprob), or None when finished.")
      .def_prop_ro("finish_reason", [](const Generator& self) { return finish_reason_name(self.finish_reason()); })
      .def_prop_ro("tokens_generated", &Generator::tokens_generated);

  m.def(
      "model_tokenizer",
      [](const Model& model) { return std::const_pointer_cast<Tokenizer>(model.tokenizer()); },
      nb::arg("model"), nb::call_guard<nb::gil_scoped_release>(),
      "The checkpoint's tokenizer (tokenizer.json beside the weights), loaded once.");
}

}  // namespace gon::bindings
