// The CUDA backend's entry points when this binary is built without it
// (GON_CUDA=OFF, or Triton was not found at build time).
#include "backend/registry.hpp"
#include "core/check.hpp"

namespace gon {

std::unique_ptr<Backend> make_cuda_backend(int) {
  GON_THROW(kBackendUnavailable,
            "device 'cuda' is not available: this build of gpt-oss-native has no CUDA backend (it is built when "
            "Triton is installed at build time on Linux x86-64, or with -DGON_CUDA=ON); use device='cpu'");
}
bool cuda_backend_built() { return false; }
bool cuda_backend_usable() { return false; }

}  // namespace gon
