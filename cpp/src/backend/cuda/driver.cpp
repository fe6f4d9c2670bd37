// Loading the CUDA driver at run time (see driver.hpp).
#include "backend/cuda/driver.hpp"

#include <dlfcn.h>

#include <mutex>

#include "core/check.hpp"

namespace gon::cuda {

namespace {
struct Loaded {
  Driver api{};
  std::string error;  // empty when usable
};

template <typename F>
bool resolve(void* lib, const char* name, F& out, std::string& error, bool required = true) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  if (out == nullptr && required) {
    error = std::string("the NVIDIA driver's libcuda.so.1 has no ") + name + " (driver too old?)";
    return false;
  }
  return true;
}

Loaded load() {
  Loaded l;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    l.error = std::string("no NVIDIA driver: libcuda.so.1 cannot be loaded (") + (why ? why : "unknown") + ")";
    return l;
  }
  Driver& d = l.api;
  std::string& e = l.error;
  bool ok = resolve(lib, "cuInit", d.cuInit, e) && resolve(lib, "cuDriverGetVersion", d.cuDriverGetVersion, e) &&
            resolve(lib, "cuDeviceGetCount", d.cuDeviceGetCount, e) && resolve(lib, "cuDeviceGet", d.cuDeviceGet, e) &&
            resolve(lib, "cuDeviceGetAttribute", d.cuDeviceGetAttribute, e) &&
            resolve(lib, "cuDeviceGetName", d.cuDeviceGetName, e) &&
            resolve(lib, "cuDeviceTotalMem_v2", d.cuDeviceTotalMem, e) &&
            resolve(lib, "cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain, e) &&
            resolve(lib, "cuDevicePrimaryCtxRelease_v2", d.cuDevicePrimaryCtxRelease, e) &&
            resolve(lib, "cuCtxSetCurrent", d.cuCtxSetCurrent, e) &&
            resolve(lib, "cuCtxSynchronize", d.cuCtxSynchronize, e) &&
            resolve(lib, "cuMemGetInfo_v2", d.cuMemGetInfo, e) && resolve(lib, "cuMemAlloc_v2", d.cuMemAlloc, e) &&
            resolve(lib, "cuMemFree_v2", d.cuMemFree, e) && resolve(lib, "cuMemHostAlloc", d.cuMemHostAlloc, e) &&
            resolve(lib, "cuMemFreeHost", d.cuMemFreeHost, e) &&
            resolve(lib, "cuMemcpyHtoD_v2", d.cuMemcpyHtoD, e) && resolve(lib, "cuMemcpyDtoH_v2", d.cuMemcpyDtoH, e) &&
            resolve(lib, "cuMemcpyHtoDAsync_v2", d.cuMemcpyHtoDAsync, e) &&
            resolve(lib, "cuMemcpyDtoHAsync_v2", d.cuMemcpyDtoHAsync, e) &&
            resolve(lib, "cuMemsetD8_v2", d.cuMemsetD8, e) && resolve(lib, "cuMemsetD8Async", d.cuMemsetD8Async, e) &&
            resolve(lib, "cuStreamCreate", d.cuStreamCreate, e) &&
            resolve(lib, "cuStreamDestroy_v2", d.cuStreamDestroy, e) &&
            resolve(lib, "cuStreamSynchronize", d.cuStreamSynchronize, e) &&
            resolve(lib, "cuStreamBeginCapture_v2", d.cuStreamBeginCapture, e) &&
            resolve(lib, "cuStreamEndCapture", d.cuStreamEndCapture, e) &&
            resolve(lib, "cuGraphInstantiateWithFlags", d.cuGraphInstantiateWithFlags, e) &&
            resolve(lib, "cuGraphLaunch", d.cuGraphLaunch, e) &&
            resolve(lib, "cuGraphExecDestroy", d.cuGraphExecDestroy, e) &&
            resolve(lib, "cuGraphDestroy", d.cuGraphDestroy, e) &&
            resolve(lib, "cuModuleLoadData", d.cuModuleLoadData, e) &&
            resolve(lib, "cuModuleUnload", d.cuModuleUnload, e) &&
            resolve(lib, "cuModuleGetFunction", d.cuModuleGetFunction, e) &&
            resolve(lib, "cuFuncSetAttribute", d.cuFuncSetAttribute, e) &&
            resolve(lib, "cuFuncGetAttribute", d.cuFuncGetAttribute, e) &&
            resolve(lib, "cuFuncGetParamInfo", d.cuFuncGetParamInfo, e, false) &&
            resolve(lib, "cuLaunchKernelEx", d.cuLaunchKernelEx, e) &&
            resolve(lib, "cuEventCreate", d.cuEventCreate, e) && resolve(lib, "cuEventDestroy_v2", d.cuEventDestroy, e) &&
            resolve(lib, "cuEventRecord", d.cuEventRecord, e) &&
            resolve(lib, "cuEventSynchronize", d.cuEventSynchronize, e) &&
            resolve(lib, "cuEventElapsedTime", d.cuEventElapsedTime, e) &&
            resolve(lib, "cuGetErrorName", d.cuGetErrorName, e) &&
            resolve(lib, "cuGetErrorString", d.cuGetErrorString, e) &&
            resolve(lib, "cuGraphCreate", d.cuGraphCreate, e, false) &&
            resolve(lib, "cuGraphConditionalHandleCreate", d.cuGraphConditionalHandleCreate, e, false) &&
            resolve(lib, "cuGraphAddNode_v2", d.cuGraphAddNode, e, false) &&
            resolve(lib, "cuStreamBeginCaptureToGraph", d.cuStreamBeginCaptureToGraph, e, false);
  if (!ok) return l;
  const CUresult r = d.cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char* name = nullptr;
    d.cuGetErrorName(r, &name);
    l.error = std::string("the NVIDIA driver does not initialise: cuInit failed with ") + (name ? name : "?") +
              " (no GPU visible to this process?)";
    return l;
  }
  int count = 0;
  if (d.cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0) {
    l.error = "the NVIDIA driver sees no GPU";
    return l;
  }
  return l;
}

const Loaded& loaded() {
  static const Loaded l = load();
  return l;
}
}  // namespace

const Driver& driver() {
  const Loaded& l = loaded();
  GON_CHECK(l.error.empty(), kBackendUnavailable, "device 'cuda' is not available: ", l.error);
  return l.api;
}

bool driver_available(std::string* why) {
  const Loaded& l = loaded();
  if (why) *why = l.error;
  return l.error.empty();
}

std::string error_text(CUresult r) {
  const Loaded& l = loaded();
  const char* name = nullptr;
  const char* text = nullptr;
  if (l.api.cuGetErrorName) l.api.cuGetErrorName(r, &name);
  if (l.api.cuGetErrorString) l.api.cuGetErrorString(r, &text);
  return std::string(name ? name : "CUDA error ") + (name ? "" : std::to_string(r)) + " (" + (text ? text : "?") + ")";
}

void throw_cuda_error(CUresult r, const char* what) {
  if (r == CUDA_ERROR_OUT_OF_MEMORY) GON_THROW(kOutOfMemory, "cuda: out of GPU memory in ", what);
  GON_THROW(kInternal, "cuda: ", what, " failed: ", error_text(r));
}

}  // namespace gon::cuda
