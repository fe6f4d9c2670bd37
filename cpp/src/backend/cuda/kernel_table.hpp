// The Triton kernels compiled ahead of time (triton_kernels/build.py): their
// embedded cubins and manifest, loaded into a CUDA context, and one checked
// launch path for all of them.
//
// A variant is looked up by name (the C++ code never names Triton functions).
// At load, every variant for the device's architecture is loaded and its
// parameters are checked against the manifest (count and sizes, through
// cuFuncGetParamInfo where the driver has it); at launch, the arguments given
// are checked against the manifest's types, so a launcher that drifts from its
// kernel fails loudly instead of corrupting memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/cuda/driver.hpp"

namespace gon::cuda {

struct KernelArg {
  const char* name;
  const char* type;  // Triton type: "*fp32", "i32", ...
  int size;          // bytes of the launch parameter
};
struct KernelConstexpr {
  const char* name;
  int64_t value;
};
// One variant for one architecture (generated tables, gon_cuda_kernels.cpp).
struct KernelImage {
  const char* variant;
  int arch;  // 80, 90, 100
  const char* function;
  const unsigned char* cubin;
  size_t cubin_size;
  int num_warps, num_ctas, shared, global_scratch_size, global_scratch_align, profile_scratch_size;
  bool launch_pdl, launch_cooperative_grid;
  const KernelArg* args;
  int num_args;
  const KernelConstexpr* constexprs;
  int num_constexprs;
};
const KernelImage* kernel_images();
size_t num_kernel_images();
const char* kernels_triton_version();
// The longest K (hidden or intermediate size) the tensor-core expert kernels take: triton_kernels/moe_mma.py K_MAX
// (their shared-memory copy of x, and the scale bytes of a warp's rows in moe_gemm_mma.py).
int kernels_mma_k_max();

// A launch argument: a device pointer, an int32, int64 or float.
struct Arg {
  unsigned char bytes[8];
  int size;
  bool pointer;
  Arg(CUdeviceptr p) : size(8), pointer(true) { std::memcpy(bytes, &p, 8); }
  template <typename T>
  Arg(T* p) : Arg(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p))) {}
  Arg(int32_t v) : size(4), pointer(false) { std::memcpy(bytes, &v, 4); }
  Arg(int64_t v) : size(8), pointer(false) { std::memcpy(bytes, &v, 8); }
  Arg(float v) : size(4), pointer(false) { std::memcpy(bytes, &v, 4); }
};

struct Grid {
  unsigned x = 1, y = 1, z = 1;
};

class Kernel {
 public:
  const std::string& name() const { return name_; }
  // A constexpr of the variant (tile sizes the launcher needs for its grid).
  int64_t constexpr_value(const char* name) const;
  int num_warps() const { return image_->num_warps; }
  // Launches on `stream` (checked: argument count and sizes). With
  // pdl_for(name()), a kernel compiled for programmatic dependent launch (sm_90+,
  // every kernel there; see triton_kernels/aot.py pdl_begin) is launched with
  // the attribute that lets it start while the previous kernel is finishing.
  void launch(CUstream stream, Grid grid, std::initializer_list<Arg> args) const;

 private:
  friend class KernelSet;
  std::string name_;
  const KernelImage* image_ = nullptr;
  CUmodule module_ = nullptr;
  CUfunction function_ = nullptr;
  bool pdl_ = false;  // launched with programmatic dependent launch (pdl_for)
};

// Every variant for one architecture, loaded into the current context.
class KernelSet {
 public:
  // Throws kBackendUnavailable when this build has no cubins for `arch`.
  explicit KernelSet(int arch);
  ~KernelSet();
  KernelSet(const KernelSet&) = delete;
  KernelSet& operator=(const KernelSet&) = delete;

  // Throws kInternal for an unknown variant name.
  const Kernel& get(const std::string& variant) const;
  bool has(const std::string& variant) const { return kernels_.count(variant) != 0; }
  int arch() const { return arch_; }
  size_t size() const { return kernels_.size(); }

 private:
  int arch_;
  std::unordered_map<std::string, Kernel> kernels_;
};

// GON_CUDA_PROFILE=1: every launch is timed alone (events around it, waited
// for), graphs are not used, and a table of time per kernel variant is printed
// to stderr at exit. For finding which kernel holds a step back; it removes the
// launch overlap that graphs give, so compare its sum with a graph step's time.
bool profiling();
// Programmatic dependent launch for the kernels compiled with it (sm_90 and later), per launched variant:
// GON_CUDA_PDL unset: the kernels of kDefaultPdlKernels; 0 (or empty) none; 1 every kernel; else a comma-separated
// list of variant-name prefixes, e.g. "moe_router,attention_combine". Measured on an H200 (bench/gpu/NOTES.md runs
// 75-78): with every kernel, decode steps were 6-8% slower (runs 20, 45, 53-54) because of the one-token mlp1 alone
// (+4.6%): its issue-bound programs were placed on the SMs beside the router's 16 programs, unevenly. The router now
// lets its dependents be scheduled only at its end (triton_kernels/aot.py pdl_wait / pdl_trigger), after which mlp1
// gains like the others: the one-token router, qkv + rope, mlp1, mlp2 and the direct (one-split) attention together
// take 1.7% off a 20b token. The kernels are correct either way.
inline constexpr const char* kDefaultPdlKernels =
    "moe_router_hilo,qkv_rope_gemv_m1,moe_mlp1_route_mma,moe_mlp2_route_mma,attention_decode_direct";
bool pdl_for(const std::string& variant);

// The cubin architecture for a device of compute capability major.minor: 80
// for 8.x (sm_80 code runs on 8.6 and 8.9), 90 for 9.0 (sm_90a), 100 for 10.0
// (sm_100a); 0 when none fits.
int cubin_arch_for(int major, int minor);

}  // namespace gon::cuda
