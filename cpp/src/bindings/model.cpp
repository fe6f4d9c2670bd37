// Bindings of gon::Model (wrapped by gpt_oss_native.Model in Python).
#include <nanobind/nanobind.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>

#include "bindings/bindings.hpp"
#include "core/check.hpp"
#include "gpt_oss_native/model.hpp"

namespace nb = nanobind;

namespace gon::bindings {

namespace {
nb::dict config_dict(const ModelConfig& c) {
  nb::dict d;
  d["num_layers"] = c.num_layers;
  d["num_experts"] = c.num_experts;
  d["experts_per_token"] = c.experts_per_token;
  d["vocab_size"] = c.vocab_size;
  d["hidden_size"] = c.hidden_size;
  d["intermediate_size"] = c.intermediate_size;
  d["head_dim"] = c.head_dim;
  d["num_heads"] = c.num_heads;
  d["num_kv_heads"] = c.num_kv_heads;
  d["sliding_window"] = c.sliding_window;
  nb::list sliding;
  for (uint8_t s : c.layer_is_sliding) sliding.append(bool(s));
  d["layer_is_sliding"] = sliding;
  d["rope_theta"] = c.rope_theta;
  d["rope_scaling_factor"] = c.rope_scaling_factor;
  d["rope_beta_fast"] = c.rope_beta_fast;
  d["rope_beta_slow"] = c.rope_beta_slow;
  d["rope_original_context"] = c.rope_original_context;
  d["rope_truncate"] = c.rope_truncate;
  d["max_context"] = c.max_context;
  d["rms_norm_eps"] = c.rms_norm_eps;
  d["swiglu_limit"] = c.swiglu_limit;
  d["swiglu_alpha"] = c.swiglu_alpha;
  d["eos_token_id"] = c.eos_token_id;
  d["pad_token_id"] = c.pad_token_id;
  return d;
}
}  // namespace

void init_model(nb::module_& m) {
  nb::class_<Model>(m, "Model")
      .def_static(
          "load",
          [](const std::string& path, const std::string& device, int threads, const std::string& prefetch,
             nb::object progress) {
            LoadOptions o;
            o.device = device;
            o.threads = threads;
            if (prefetch == "auto") {
              o.prefetch = LoadOptions::Prefetch::kAuto;
            } else if (prefetch == "always") {
              o.prefetch = LoadOptions::Prefetch::kAlways;
            } else if (prefetch == "never") {
              o.prefetch = LoadOptions::Prefetch::kNever;
            } else {
              GON_THROW(kInvalidArgument, "prefetch must be 'auto', 'always' or 'never', got '", prefetch, "'");
            }
            if (!progress.is_none()) {
              o.progress = [&progress](uint64_t done, uint64_t total) {
                nb::gil_scoped_acquire acquire;
                progress(done, total);
              };
            }
            std::shared_ptr<Model> model;
            {
              nb::gil_scoped_release release;
              model = Model::load(path, o);
            }
            return model;
          },
          nb::arg("path"), nb::arg("device") = "cpu", nb::arg("threads") = 0, nb::arg("prefetch") = "auto",
          nb::arg("progress") = nb::none(), "Load a checkpoint directory (see gpt_oss_native.Model).")
      .def_prop_ro("config", [](const Model& self) { return config_dict(self.config()); })
      .def_prop_ro("path", &Model::path)
      .def_prop_ro("checkpoint_format", &Model::checkpoint_format)
      .def_prop_ro("device", &Model::device)
      .def_prop_ro("device_description", &Model::device_description)
      .def_prop_ro("backend_memory_in_use", &Model::backend_memory_in_use)
      .def_prop_ro("backend_memory_peak", &Model::backend_memory_peak)
      .def("measure_read_bandwidth", &Model::measure_read_bandwidth, nb::arg("bytes") = size_t{1} << 31,
           nb::call_guard<nb::gil_scoped_release>(), "Best read bandwidth of the backend's memory, bytes/s.")
      .def_prop_ro("threads", &Model::threads)
      .def_prop_ro("weight_bytes", &Model::weight_bytes)
      .def_prop_ro("decode_bytes_per_token", &Model::decode_bytes_per_token);
}

}  // namespace gon::bindings
