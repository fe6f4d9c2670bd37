// Bindings of gon::Context (wrapped by gpt_oss_native.Context in Python).
// Token arrays are read in place (int32 or int64, 1-D, contiguous, on the
// CPU); logits are returned as a NumPy view of the context's own buffer that
// keeps the context alive.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <vector>

#include "bindings/bindings.hpp"
#include "core/check.hpp"
#include "gpt_oss_native/context.hpp"
#include "gpt_oss_native/model.hpp"

namespace nb = nanobind;

namespace gon::bindings {

std::optional<KVDType> parse_kv_dtype(const std::string& s) {
  if (s == "auto") return std::nullopt;
  if (s == "fp32" || s == "float32") return KVDType::kF32;
  if (s == "bf16" || s == "bfloat16") return KVDType::kBF16;
  GON_THROW(kInvalidArgument, "kv_dtype must be 'auto', 'fp32' or 'bf16', got '", s, "'");
}

nb::dict memory_stats_dict(const MemoryStats& st) {
  nb::dict d;
  d["host_bytes"] = st.host_bytes;
  d["device_bytes"] = st.device_bytes;
  d["kv_cache_bytes"] = st.kv_cache_bytes;
  d["arena_allocations"] = st.arena_allocations;
  d["buffers"] = st.buffers;
  d["late_allocations"] = st.late_allocations;
  return d;
}

namespace {
template <typename T>
using TokenArray = nb::ndarray<const T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

LogitsMode parse_mode(const std::string& s) {
  if (s == "last") return LogitsMode::kLast;
  if (s == "all") return LogitsMode::kAll;
  if (s == "none") return LogitsMode::kNone;
  GON_THROW(kInvalidArgument, "logits must be 'last', 'all' or 'none', got '", s, "'");
}
}  // namespace

void init_context(nb::module_& m) {
  nb::class_<Context>(m, "Context")
      .def(
          "__init__",
          [](Context* self, std::shared_ptr<Model> model, int context_length, int max_batch_tokens,
             int logits_capacity, int rewind_window, const std::string& kv_dtype) {
            ContextOptions o;
            o.context_length = context_length;
            o.max_batch_tokens = max_batch_tokens;
            o.logits_capacity = logits_capacity;
            o.rewind_window = rewind_window;
            o.kv_dtype = parse_kv_dtype(kv_dtype);
            nb::gil_scoped_release release;
            new (self) Context(std::move(model), o);
          },
          nb::arg("model"), nb::arg("context_length") = 4096, nb::arg("max_batch_tokens") = 0,
          nb::arg("logits_capacity") = 0, nb::arg("rewind_window") = -1, nb::arg("kv_dtype") = "auto")
      .def(
          "append",
          [](Context& self, TokenArray<int32_t> tokens) { self.append(tokens.data(), tokens.shape(0)); },
          nb::arg("tokens").noconvert())
      .def(
          "append",
          [](Context& self, TokenArray<int64_t> tokens) { self.append(tokens.data(), tokens.shape(0)); },
          nb::arg("tokens").noconvert())
      .def(
          "assign",
          [](Context& self, TokenArray<int32_t> tokens) { return self.assign(tokens.data(), tokens.shape(0)); },
          nb::arg("tokens").noconvert())
      .def(
          "assign",
          [](Context& self, TokenArray<int64_t> tokens) { return self.assign(tokens.data(), tokens.shape(0)); },
          nb::arg("tokens").noconvert())
      .def(
          "process", [](Context& self, const std::string& logits) { self.process(parse_mode(logits)); },
          nb::arg("logits") = "last", nb::call_guard<nb::gil_scoped_release>())
      .def(
          "sample",
          [](Context& self, float temperature, float top_p, std::optional<uint64_t> seed) {
            SampleResult r = self.sample({temperature, top_p, seed});
            return std::make_pair(r.token, r.logprob);
          },
          nb::arg("temperature") = kDefaultTemperature, nb::arg("top_p") = 1.0f, nb::arg("seed") = nb::none(),
          nb::call_guard<nb::gil_scoped_release>())
      .def(
          "sample_many",
          [](Context& self, size_t max_tokens, float temperature, float top_p, std::optional<uint64_t> seed,
             std::vector<int32_t> stop_tokens) {
            std::vector<SampleResult> out;
            size_t n = 0;
            {
              nb::gil_scoped_release release;
              // Room for every token the context could take (another thread may rewind it before the call).
              out.resize(std::max<size_t>(1, std::min(max_tokens, static_cast<size_t>(self.options().context_length))));
              n = self.sample_many({temperature, top_p, seed}, max_tokens, stop_tokens.data(), stop_tokens.size(),
                                   out.data());
            }
            int32_t* ids = new int32_t[n > 0 ? n : 1];
            float* lps = new float[n > 0 ? n : 1];
            for (size_t i = 0; i < n; ++i) {
              ids[i] = out[i].token;
              lps[i] = out[i].logprob;
            }
            nb::capsule own_ids(ids, [](void* p) noexcept { delete[] static_cast<int32_t*>(p); });
            nb::capsule own_lps(lps, [](void* p) noexcept { delete[] static_cast<float*>(p); });
            size_t shape[1] = {n};
            return std::make_pair(nb::ndarray<nb::numpy, int32_t, nb::ndim<1>>(ids, 1, shape, own_ids),
                                  nb::ndarray<nb::numpy, float, nb::ndim<1>>(lps, 1, shape, own_lps));
          },
          nb::arg("max_tokens"), nb::arg("temperature"), nb::arg("top_p"), nb::arg("seed").none(),
          nb::arg("stop_tokens"))
      .def_prop_ro(
          "logits",
          [](nb::handle self_handle) -> nb::object {
            Context& self = nb::cast<Context&>(self_handle);
            DeviceBuffer b;
            {
              nb::gil_scoped_release release;
              b = self.logits_buffer();
            }
            size_t shape[2] = {static_cast<size_t>(self.logits_rows()), static_cast<size_t>(self.vocab_size())};
            float* data = const_cast<float*>(static_cast<const float*>(b.data));
            if (b.device_type == nb::device::cpu::value)
              return nb::cast(nb::ndarray<nb::numpy, float, nb::ndim<2>>(data, 2, shape, self_handle),
                              nb::rv_policy::reference);
            // Device memory: an array that only speaks DLPack (torch.from_dlpack, cupy...).
            return nb::cast(nb::ndarray<float, nb::ndim<2>>(data, 2, shape, self_handle, nullptr,
                                                            nb::dtype<float>(), b.device_type, b.device_id),
                            nb::rv_policy::reference);
          },
          "The logits of the last process(): a NumPy view on the CPU, a DLPack array on a GPU (no copy).")
      .def(
          "logits_host",
          [](Context& self) {
            const size_t rows = static_cast<size_t>(self.logits_rows()), V = static_cast<size_t>(self.vocab_size());
            float* copy = new float[rows * V > 0 ? rows * V : 1];
            nb::capsule owner(copy, [](void* p) noexcept { delete[] static_cast<float*>(p); });
            {
              nb::gil_scoped_release release;
              const float* src = self.logits();
              std::copy(src, src + rows * V, copy);
            }
            size_t shape[2] = {rows, V};
            return nb::ndarray<nb::numpy, float, nb::ndim<2>>(copy, 2, shape, owner);
          },
          "A NumPy copy of the logits of the last process().")
      .def_prop_ro("num_tokens", &Context::num_tokens)
      .def_prop_ro("num_processed", &Context::num_processed)
      .def_prop_ro(
          "tokens",
          [](nb::handle self_handle) {
            Context& self = nb::cast<Context&>(self_handle);
            size_t shape[1] = {static_cast<size_t>(self.num_tokens())};
            return nb::ndarray<nb::numpy, const int32_t, nb::ndim<1>>(self.tokens(), 1, shape, self_handle);
          },
          nb::rv_policy::reference_internal)
      .def("synchronize", &Context::synchronize, nb::call_guard<nb::gil_scoped_release>(),
           "Wait until the work queued by process() is done.")
      .def("cancel", &Context::cancel, "Stop a process()/sample() running on another thread (CancelledError).")
      .def("clear_cancel", &Context::clear_cancel, "Withdraw a cancel() no call has consumed; True if one was pending.")
      .def("rewind", &Context::rewind, nb::arg("num_tokens"))
      .def("reset", &Context::reset)
      .def_prop_ro("context_length", [](const Context& s) { return s.options().context_length; })
      .def_prop_ro("max_batch_tokens", [](const Context& s) { return s.options().max_batch_tokens; })
      .def_prop_ro("logits_capacity", [](const Context& s) { return s.options().logits_capacity; })
      .def_prop_ro("rewind_window", [](const Context& s) { return s.options().rewind_window; })
      .def_prop_ro("kv_dtype", [](const Context& s) { return std::string(kv_dtype_name(*s.options().kv_dtype)); })
      .def("memory_stats", [](const Context& s) { return memory_stats_dict(s.memory_stats()); });
}

}  // namespace gon::bindings
