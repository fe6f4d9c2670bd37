// Loading and launching the embedded Triton kernels (see kernel_table.hpp).
#include "backend/cuda/kernel_table.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/check.hpp"

namespace gon::cuda {

namespace {
struct ProfileTable {
  std::mutex mutex;
  std::map<std::string, std::pair<long, double>> per_kernel;  // calls, milliseconds
  CUevent start = nullptr, stop = nullptr;
  ~ProfileTable() {
    if (per_kernel.empty()) return;
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    for (auto& [name, v] : per_kernel) {
      rows.push_back({v.second, name});
      total += v.second;
    }
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "GON_CUDA_PROFILE: kernel time (each launch timed alone), total %.3f ms\n", total);
    for (auto& [ms, name] : rows) {
      const long calls = per_kernel[name].first;
      std::fprintf(stderr, "  %-42s %10.3f ms %5.1f%% %8ld calls %9.2f us/call\n", name.c_str(), ms, 100 * ms / total,
                   calls, 1e3 * ms / calls);
    }
  }
};
ProfileTable& profile_table() {
  static ProfileTable t;
  return t;
}
}  // namespace

bool profiling() {
  static const bool on = [] {
    const char* v = std::getenv("GON_CUDA_PROFILE");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}

bool pdl_for(const std::string& variant) {
  // Read once: unset the default list, empty or "0" none, "1" every kernel, else a comma-separated list of
  // variant-name prefixes.
  static const std::string spec = [] {
    const char* v = std::getenv("GON_CUDA_PDL");
    if (v == nullptr) return std::string(kDefaultPdlKernels);
    return std::string(std::strcmp(v, "0") == 0 ? "" : v);
  }();
  if (spec.empty()) return false;
  if (spec == "1") return true;
  for (size_t at = 0; at <= spec.size();) {
    const size_t end = std::min(spec.find(',', at), spec.size());
    const size_t n = end - at;
    if (n > 0 && variant.compare(0, n, spec, at, n) == 0) return true;
    at = end + 1;
  }
  return false;
}

int cubin_arch_for(int major, int minor) {
  if (major == 8) return 80;
  if (major == 9 && minor == 0) return 90;
  if (major == 10 && minor == 0) return 100;
  return 0;
}

int64_t Kernel::constexpr_value(const char* name) const {
  for (int i = 0; i < image_->num_constexprs; ++i)
    if (std::strcmp(image_->constexprs[i].name, name) == 0) return image_->constexprs[i].value;
  GON_THROW(kInternal, "cuda: kernel ", name_, " has no constexpr ", name);
}

void Kernel::launch(CUstream stream, Grid grid, std::initializer_list<Arg> args) const {
  const KernelImage& im = *image_;
  GON_CHECK(static_cast<int>(args.size()) == im.num_args, kInternal, "cuda: ", name_, " takes ", im.num_args,
            " arguments, launched with ", args.size());
  void* params[64];
  GON_CHECK(im.num_args + 2 <= 64, kInternal, "cuda: ", name_, " has too many arguments");
  int i = 0;
  for (const Arg& a : args) {
    const KernelArg& spec = im.args[i];
    const bool want_pointer = spec.type[0] == '*';
    GON_CHECK(a.size == spec.size && a.pointer == want_pointer, kInternal, "cuda: ", name_, " argument ", spec.name,
              " is ", spec.type, " (", spec.size, " bytes) but was given ", a.pointer ? "a pointer" : "a value", " of ",
              a.size, " bytes");
    params[i++] = const_cast<unsigned char*>(a.bytes);
  }
  static CUdeviceptr null_scratch = 0;
  params[i++] = &null_scratch;  // global scratch (every variant has none: build.py checks)
  params[i++] = &null_scratch;  // profile scratch
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  CUlaunchConfig cfg{};
  cfg.gridDimX = grid.x * static_cast<unsigned>(im.num_ctas);
  cfg.gridDimY = grid.y;
  cfg.gridDimZ = grid.z;
  cfg.blockDimX = 32u * static_cast<unsigned>(im.num_warps);
  cfg.blockDimY = 1;
  cfg.blockDimZ = 1;
  cfg.sharedMemBytes = static_cast<unsigned>(im.shared);
  cfg.hStream = stream;
  CUlaunchAttribute attr{};
  if (pdl_) {
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
  }
  const Driver& d = driver();
  if (profiling()) {
    ProfileTable& t = profile_table();
    std::lock_guard<std::mutex> lock(t.mutex);
    if (t.start == nullptr) {
      GON_CU(d.cuEventCreate(&t.start, CU_EVENT_DEFAULT));
      GON_CU(d.cuEventCreate(&t.stop, CU_EVENT_DEFAULT));
    }
    GON_CU(d.cuEventRecord(t.start, stream));
    const CUresult r = d.cuLaunchKernelEx(&cfg, function_, params, nullptr);
    if (r != CUDA_SUCCESS) throw_cuda_error(r, name_.c_str());
    GON_CU(d.cuEventRecord(t.stop, stream));
    GON_CU(d.cuEventSynchronize(t.stop));
    float ms = 0;
    GON_CU(d.cuEventElapsedTime(&ms, t.start, t.stop));
    auto& e = t.per_kernel[name_];
    e.first += 1;
    e.second += ms;
    return;
  }
  const CUresult r = d.cuLaunchKernelEx(&cfg, function_, params, nullptr);
  if (r != CUDA_SUCCESS) throw_cuda_error(r, name_.c_str());
}

KernelSet::KernelSet(int arch) : arch_(arch) {
  const Driver& d = driver();
  const KernelImage* images = kernel_images();
  for (size_t n = 0; n < num_kernel_images(); ++n) {
    const KernelImage& im = images[n];
    if (im.arch != arch) continue;
    GON_CHECK(im.num_ctas == 1 && !im.launch_cooperative_grid && im.global_scratch_size == 0 &&
                  im.profile_scratch_size == 0,
              kInternal, "cuda: kernel ", im.variant, " needs launch features this runtime does not provide");
    Kernel k;
    k.name_ = im.variant;
    k.image_ = &im;
    k.pdl_ = im.launch_pdl && pdl_for(k.name_);
    GON_CU(d.cuModuleLoadData(&k.module_, im.cubin));
    GON_CU(d.cuModuleGetFunction(&k.function_, k.module_, im.function));
    if (im.shared > 48 * 1024) {
      GON_CU(d.cuFuncSetAttribute(k.function_, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, im.shared));
    }
    if (d.cuFuncGetParamInfo != nullptr) {
      // The manifest's arguments plus Triton's two scratch pointers, with their sizes.
      for (int a = 0; a < im.num_args + 2; ++a) {
        size_t offset = 0, size = 0;
        GON_CU(d.cuFuncGetParamInfo(k.function_, static_cast<size_t>(a), &offset, &size));
        const size_t want = a < im.num_args ? static_cast<size_t>(im.args[a].size) : 8;
        GON_CHECK(size == want, kInternal, "cuda: kernel ", im.variant, " parameter ", a, " is ", size,
                  " bytes in the cubin but ", want, " in the manifest (stale build?)");
      }
    }
    kernels_.emplace(k.name_, std::move(k));
  }
  GON_CHECK(!kernels_.empty(), kBackendUnavailable, "device 'cuda' is not available: this build has no cubins for sm_",
            arch, " (rebuild with that architecture in triton_kernels/aot.py ARCHS)");
}

KernelSet::~KernelSet() {
  const Driver& d = driver();
  for (auto& [name, k] : kernels_)
    if (k.module_) d.cuModuleUnload(k.module_);
}

const Kernel& KernelSet::get(const std::string& variant) const {
  auto it = kernels_.find(variant);
  GON_CHECK(it != kernels_.end(), kInternal, "cuda: no kernel variant '", variant, "' for sm_", arch_,
            " in this build");
  return it->second;
}

}  // namespace gon::cuda
