// create_backend(): maps a device name to a backend. Backends that are not
// built into this binary raise kBackendUnavailable here, so no call site needs
// to know which backends exist.
#include "backend/backend.hpp"

#include "backend/cpu/cpu_backend.hpp"
#include "core/check.hpp"

namespace gon {

std::unique_ptr<Backend> create_backend(const std::string& device, int threads) {
  GON_CHECK(threads >= 0, kInvalidArgument, "threads must be >= 0 (0 = one per core), got ", threads);
  if (device == "cpu" || device == "auto") {
    return std::make_unique<cpu::CpuBackend>(threads);
  }
  if (device == "cuda" || device == "metal") {
    GON_THROW(kBackendUnavailable, "device '", device,
              "' is not available: this build of gpt-oss-native has no ", device,
              " backend (use device='cpu')");
  }
  GON_THROW(kInvalidArgument, "unknown device '", device, "': expected 'cpu', 'cuda', 'metal' or 'auto'");
}

}  // namespace gon
