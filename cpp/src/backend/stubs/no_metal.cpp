// The Metal backend's entry points when this binary is built without it
// (GON_METAL=OFF; Metal exists on Apple platforms only).
#include "backend/registry.hpp"
#include "core/check.hpp"

namespace gon {

std::unique_ptr<Backend> make_metal_backend(int) {
  GON_THROW(kBackendUnavailable,
            "device 'metal' is not available: this build of gpt-oss-native has no Metal backend (it runs on Apple "
            "Silicon builds with -DGON_METAL=ON); use device='cpu'");
}
bool metal_backend_built() { return false; }

}  // namespace gon
