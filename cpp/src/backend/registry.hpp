// The optional backends' entry points. Each is defined by the backend itself
// when CMake builds it (GON_CUDA, GON_METAL), or by its stub in
// backend/stubs/, which throws kBackendUnavailable saying why.
#pragma once

#include <memory>

#include "backend/backend.hpp"

namespace gon {

std::unique_ptr<Backend> make_cuda_backend(int threads);
bool cuda_backend_built();
// Built, a driver loads and a GPU with cubins for its architecture is present.
bool cuda_backend_usable();

std::unique_ptr<Backend> make_metal_backend(int threads);
bool metal_backend_built();

}  // namespace gon
