// Bindings of gon::Engine (wrapped by gpt_oss_native.Engine in Python).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>

#include "bindings/bindings.hpp"
#include "core/check.hpp"
#include "gpt_oss_native/engine.hpp"
#include "gpt_oss_native/model.hpp"

namespace nb = nanobind;

namespace gon::bindings {

namespace {
template <typename T>
using TokenArray = nb::ndarray<const T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

RequestOptions request_options(int max_tokens, float temperature, float top_p, std::optional<uint64_t> seed,
                               std::vector<std::string> stop, std::vector<int32_t> stop_tokens,
                               bool default_stop_tokens) {
  RequestOptions o;
  o.max_tokens = max_tokens;
  o.sampling = {temperature, top_p, seed, nullptr};
  o.stop = std::move(stop);
  o.stop_tokens = std::move(stop_tokens);
  o.default_stop_tokens = default_stop_tokens;
  return o;
}
}  // namespace

void init_engine(nb::module_& m) {
  nb::class_<Engine>(m, "Engine")
      .def(
          "__init__",
          [](Engine* self, std::shared_ptr<Model> model, int max_sequences, int context_length, int max_batch_tokens,
             int rewind_window, const std::string& kv_dtype, bool text, int decode_loop_steps) {
            EngineOptions o;
            o.max_sequences = max_sequences;
            o.context_length = context_length;
            o.max_batch_tokens = max_batch_tokens;
            o.rewind_window = rewind_window;
            o.kv_dtype = parse_kv_dtype(kv_dtype);
            o.text = text;
            o.decode_loop_steps = decode_loop_steps;
            nb::gil_scoped_release release;
            new (self) Engine(std::move(model), o);
          },
          nb::arg("model"), nb::arg("max_sequences") = 16, nb::arg("context_length") = 4096,
          nb::arg("max_batch_tokens") = 256, nb::arg("rewind_window") = -1, nb::arg("kv_dtype") = "auto",
          nb::arg("text") = true, nb::arg("decode_loop_steps") = 0)
      .def(
          "submit",
          [](Engine& self, TokenArray<int64_t> prompt, int max_tokens, float temperature, float top_p,
             std::optional<uint64_t> seed, std::vector<std::string> stop, std::vector<int32_t> stop_tokens,
             bool default_stop_tokens) {
            return self.submit(prompt.data(), prompt.shape(0),
                               request_options(max_tokens, temperature, top_p, seed, std::move(stop),
                                               std::move(stop_tokens), default_stop_tokens));
          },
          nb::arg("prompt").noconvert(), nb::arg("max_tokens"), nb::arg("temperature"), nb::arg("top_p"),
          nb::arg("seed").none(), nb::arg("stop"), nb::arg("stop_tokens"), nb::arg("default_stop_tokens"))
      .def("cancel", &Engine::cancel, nb::arg("id"))
      .def_prop_ro("has_work", &Engine::has_work)
      .def(
          "step",
          [](Engine& self) {
            const std::vector<EngineEvent>* events;
            {
              nb::gil_scoped_release release;
              events = &self.step();
            }
            nb::list out;
            for (const EngineEvent& e : *events) {
              nb::object error = nb::none();
              if (e.finish == FinishReason::kContextFull || e.finish == FinishReason::kCancelled)
                error = nb::str(status_name(e.error));
              out.append(nb::make_tuple(e.id, e.token, e.logprob, nb::bytes(e.text.data(), e.text.size()),
                                        e.finished, finish_reason_name(e.finish), error, e.message));
            }
            return out;
          },
          "One step; a list of (id, token, logprob, text bytes, finished, finish_reason, error, message).")
      .def(
          "last_logits",
          [](Engine& self, RequestId id) -> nb::object {
            const float* row = self.last_logits(id);
            if (row == nullptr) return nb::none();
            const size_t V = static_cast<size_t>(self.model().config().vocab_size);
            float* copy = new float[V];
            std::memcpy(copy, row, V * sizeof(float));
            nb::capsule owner(copy, [](void* p) noexcept { delete[] static_cast<float*>(p); });
            size_t shape[1] = {V};
            return nb::cast(nb::ndarray<nb::numpy, float, nb::ndim<1>>(copy, 1, shape, owner));
          },
          nb::arg("id"))
      .def("stats",
           [](const Engine& self) {
             EngineStats st = self.stats();
             nb::dict d;
             d["running"] = st.running;
             d["waiting"] = st.waiting;
             d["steps"] = st.steps;
             d["tokens_processed"] = st.tokens_processed;
             d["tokens_generated"] = st.tokens_generated;
             d["prefix_tokens_reused"] = st.prefix_tokens_reused;
             return d;
           })
      .def("memory_stats",
           [](const Engine& self) { return memory_stats_dict(self.memory_stats()); })
      .def_prop_ro("max_sequences", [](const Engine& s) { return s.options().max_sequences; })
      .def_prop_ro("context_length", [](const Engine& s) { return s.options().context_length; })
      .def_prop_ro("max_batch_tokens", [](const Engine& s) { return s.options().max_batch_tokens; })
      .def_prop_ro("kv_dtype", [](const Engine& s) { return std::string(kv_dtype_name(*s.options().kv_dtype)); });
}

}  // namespace gon::bindings
