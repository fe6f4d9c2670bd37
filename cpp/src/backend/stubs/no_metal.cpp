// The Metal backend's entry points: the backend is not written yet, so every
// build has this stub (CMake's GON_METAL option refuses ON for now).
#include "backend/registry.hpp"
#include "core/check.hpp"

namespace gon {

std::unique_ptr<Backend> make_metal_backend(int) {
  GON_THROW(kBackendUnavailable,
            "device 'metal' is not available: gpt-oss-native has no Metal backend yet; use device='cpu'");
}
bool metal_backend_built() { return false; }

}  // namespace gon
