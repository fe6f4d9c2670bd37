// Bindings of runtime utilities used by benchmarks and diagnostics.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include "backend/cpu/bandwidth.hpp"
#include "backend/cpu/matmul.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "backend/registry.hpp"
#include "bindings/bindings.hpp"
#include "core/profile.hpp"

namespace nb = nanobind;

namespace gon::bindings {

void init_utils(nb::module_& m) {
  m.def("cpu_read_bandwidth", &cpu::measure_read_bandwidth, nb::arg("bytes") = size_t{1} << 31,
        nb::arg("threads") = 0, nb::arg("repeats") = 5, nb::call_guard<nb::gil_scoped_release>(),
        "Best memory read bandwidth of this machine in bytes/s (sums a buffer with all cores).");
  m.def("cpu_kernel_isa", &cpu::matmul_isa, "Instruction set of the CPU matrix kernels in use.");
  m.def("cpu_cores", &cpu::available_cores, "Cores this process may run on.");
  m.def("built_backends", &built_backends, "Backends compiled into this build, e.g. 'cpu,cuda'.");
  m.def("cuda_usable", &cuda_backend_usable, "Whether the CUDA backend can run here (driver, GPU, kernels).");
  m.def("profile_enabled", &profile::enabled, "Whether GON_PROFILE timing is on in this process.");
  m.def(
      "profile_totals",
      [] {
        const profile::Totals t = profile::totals();
        nb::dict d;
        for (int i = 0; i < profile::kNumOps; ++i)
          d[profile::op_name(i)] = nb::make_tuple(t.seconds[i], t.calls[i], t.tokens[i]);
        return d;
      },
      "GON_PROFILE's running sums since the process started: {operation: (seconds, calls, token-calls)}.");
}

}  // namespace gon::bindings
