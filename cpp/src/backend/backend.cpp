// create_backend(): maps a device name to a backend. Each optional backend
// provides make_<name>_backend() (backend/registry.hpp); when it is not built,
// a stub (backend/stubs/) throws kBackendUnavailable with the reason, so no
// call site needs to know which backends exist.
#include "backend/backend.hpp"

#include "backend/cpu/cpu_backend.hpp"
#include "backend/registry.hpp"
#include "core/check.hpp"

namespace gon {

std::unique_ptr<Backend> create_backend(const std::string& device, int threads) {
  GON_CHECK(threads >= 0, kInvalidArgument, "threads must be >= 0 (0 = one per core), got ", threads);
  if (device == "cpu") return std::make_unique<cpu::CpuBackend>(threads);
  if (device == "cuda") return make_cuda_backend(threads);
  if (device == "metal") return make_metal_backend(threads);
  if (device == "auto") {
    if (cuda_backend_usable()) {
      try {
        return make_cuda_backend(threads);
      } catch (const Error& e) {
        if (e.status() != Status::kBackendUnavailable) throw;
      }
    }
    return std::make_unique<cpu::CpuBackend>(threads);
  }
  GON_THROW(kInvalidArgument, "unknown device '", device, "': expected 'cpu', 'cuda', 'metal' or 'auto'");
}

std::string built_backends() {
  std::string out = "cpu";
  if (cuda_backend_built()) out += ",cuda";
  if (metal_backend_built()) out += ",metal";
  return out;
}

}  // namespace gon
