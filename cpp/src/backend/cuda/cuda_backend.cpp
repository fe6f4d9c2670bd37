// CudaBackend: device and context, memory, weight upload, the bandwidth probe,
// and the backend's registry entry points (see cuda_backend.hpp).
#include "backend/cuda/cuda_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "backend/registry.hpp"
#include "core/check.hpp"

namespace gon {

std::unique_ptr<Backend> make_cuda_backend(int) {
  int index = 0;
  if (const char* env = std::getenv("GON_CUDA_DEVICE")) index = std::atoi(env);
  return std::make_unique<cuda::CudaBackend>(index);
}
bool cuda_backend_built() { return true; }
bool cuda_backend_usable() {
  if (!cuda::driver_available()) return false;
  const cuda::Driver& d = cuda::driver();
  cuda::CUdevice dev = 0;
  int major = 0, minor = 0;
  if (d.cuDeviceGet(&dev, 0) != cuda::CUDA_SUCCESS) return false;
  d.cuDeviceGetAttribute(&major, cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  d.cuDeviceGetAttribute(&minor, cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  const int arch = cuda::cubin_arch_for(major, minor);
  if (arch == 0) return false;
  for (size_t i = 0; i < cuda::num_kernel_images(); ++i)
    if (cuda::kernel_images()[i].arch == arch) return true;
  return false;
}

}  // namespace gon

namespace gon::cuda {

CudaBackend::CudaBackend(int device_index) : device_index_(device_index) {
  const Driver& d = driver();  // throws kBackendUnavailable with the reason
  int count = 0;
  GON_CU(d.cuDeviceGetCount(&count));
  GON_CHECK(device_index >= 0 && device_index < count, kBackendUnavailable, "device 'cuda': GPU ", device_index,
            " does not exist (", count, " visible; GON_CUDA_DEVICE chooses)");
  GON_CU(d.cuDeviceGet(&device_, device_index));
  int major = 0, minor = 0;
  GON_CU(d.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device_));
  GON_CU(d.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device_));
  GON_CU(d.cuDeviceGetAttribute(&sm_count_, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device_));
  char name[256] = {};
  GON_CU(d.cuDeviceGetName(name, sizeof name - 1, device_));
  size_t total = 0;
  GON_CU(d.cuDeviceTotalMem(&total, device_));
  const int arch = cubin_arch_for(major, minor);
  GON_CHECK(arch != 0, kBackendUnavailable, "device 'cuda': ", name, " has compute capability ", major, ".", minor,
            ", for which this build has no kernels (it has sm_80 for 8.x, sm_90a for 9.0, sm_100a for 10.0)");
  GON_CU(d.cuDevicePrimaryCtxRetain(&context_, device_));
  make_current();
  kernels_ = std::make_unique<KernelSet>(arch);
  description_ = std::string(name) + " (sm_" + std::to_string(major) + std::to_string(minor) + ", " +
                 std::to_string(sm_count_) + " SMs, " + std::to_string(total >> 30) + " GiB; kernels sm_" +
                 std::to_string(arch) + ", Triton " + kernels_triton_version() + ")";
}

CudaBackend::~CudaBackend() {
  make_current();
  const Driver& d = driver();
  d.cuCtxSynchronize();
  for (void* p : weight_blocks_) release(p, false);
  kernels_.reset();
  d.cuDevicePrimaryCtxRelease(device_);
}

void CudaBackend::make_current() const { GON_CU(driver().cuCtxSetCurrent(context_)); }

void* CudaBackend::allocate(size_t bytes, bool host_visible) {
  make_current();
  const Driver& d = driver();
  bytes = std::max<size_t>(bytes, 256);
  void* p = nullptr;
  if (host_visible) {
    const CUresult r = d.cuMemHostAlloc(&p, bytes, CU_MEMHOSTALLOC_PORTABLE);
    GON_CHECK(r == CUDA_SUCCESS, kOutOfMemory, "cuda: cannot allocate ", bytes, " bytes of pinned host memory (",
              error_text(r), ")");
  } else {
    CUdeviceptr dp = 0;
    const CUresult r = d.cuMemAlloc(&dp, bytes);
    if (r != CUDA_SUCCESS) {
      size_t free_bytes = 0, total = 0;
      d.cuMemGetInfo(&free_bytes, &total);
      GON_THROW(kOutOfMemory, "cuda: cannot allocate ", bytes >> 20, " MiB of GPU memory (", free_bytes >> 20,
                " MiB free of ", total >> 20, " MiB; ", error_text(r), ")");
    }
    p = reinterpret_cast<void*>(static_cast<uintptr_t>(dp));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  blocks_[p] = {bytes, host_visible};
  if (!host_visible) {
    const uint64_t now = in_use_.fetch_add(bytes) + bytes;
    uint64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
  }
  return p;
}

void CudaBackend::release(void* block, bool host_visible) noexcept {
  if (block == nullptr) return;
  const Driver& d = driver();
  d.cuCtxSetCurrent(context_);
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.find(block);
    if (it != blocks_.end()) {
      bytes = it->second.first;
      blocks_.erase(it);
    }
  }
  if (host_visible) {
    d.cuMemFreeHost(block);
  } else {
    in_use_.fetch_sub(bytes);
    d.cuMemFree(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(block)));
  }
}

void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  make_current();
  GON_CU(driver().cuMemcpyHtoD(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(dst)), src, bytes));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  make_current();
  GON_CU(driver().cuMemcpyDtoH(dst, static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(src)), bytes));
}

namespace {
// Tensors of a checkpoint to upload, in order, with where each lands.
struct Upload {
  const void* src;
  size_t bytes;
  size_t offset = 0;
};

constexpr size_t kAlign = 256;
size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

std::unique_ptr<ModelWeights> CudaBackend::prepare_weights(const ModelWeights& h, const ModelConfig& c,
                                                           const Progress& progress) {
  make_current();
  const Driver& d = driver();
  // Limits of the compiled kernels (the expert sort and the router's top-k hold
  // every expert of a token in one block).
  GON_CHECK(c.num_experts <= 128, kUnsupportedCheckpoint, "device 'cuda': models with more than 128 experts ",
            "are not supported (this one has ", c.num_experts, ")");
  GON_CHECK(c.head_dim <= 128, kUnsupportedCheckpoint, "device 'cuda': head_dim ", c.head_dim,
            " > 128 is not supported by the attention kernels");
  const size_t H = c.hidden_size, I = c.intermediate_size, E = c.num_experts, V = c.vocab_size;
  const size_t bf16 = 2;
  std::vector<Upload> ups;
  auto add = [&](const void* p, size_t bytes) -> size_t {
    ups.push_back({p, bytes});
    return ups.size() - 1;
  };
  // Plan: every tensor in one block; q, k and v (and their biases) adjacent, so
  // the three projections are one [qkv_rows, H] matrix.
  struct LayerIdx {
    size_t attn_norm, q, k, v, qb, kb, vb, out, outb, sinks, mlp_norm, router, routerb, m1b, m1s, m1bias, m2b, m2s,
        m2bias;
  };
  const size_t emb = add(h.embedding, V * H * bf16);
  const size_t fnorm = add(h.final_norm, H * bf16);
  const size_t unemb = add(h.unembedding.data, V * H * bf16);
  const size_t rope = add(h.rope_inv_freq, c.head_dim / 2 * sizeof(float));
  std::vector<LayerIdx> li(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = h.layers[l];
    LayerIdx& x = li[l];
    x.attn_norm = add(L.attn_norm, H * bf16);
    x.q = add(L.q.data, size_t(L.q.rows) * H * bf16);
    x.k = add(L.k.data, size_t(L.k.rows) * H * bf16);
    x.v = add(L.v.data, size_t(L.v.rows) * H * bf16);
    x.qb = add(L.q.bias, size_t(L.q.rows) * bf16);
    x.kb = add(L.k.bias, size_t(L.k.rows) * bf16);
    x.vb = add(L.v.bias, size_t(L.v.rows) * bf16);
    x.out = add(L.out.data, size_t(L.out.rows) * L.out.cols * bf16);
    x.outb = add(L.out.bias, size_t(L.out.rows) * bf16);
    x.sinks = add(L.sinks, size_t(c.num_heads) * bf16);
    x.mlp_norm = add(L.mlp_norm, H * bf16);
    x.router = add(L.router.data, E * H * bf16);
    x.routerb = add(L.router.bias, E * bf16);
    x.m1b = add(L.mlp1.blocks, E * 2 * I * (H / 32) * 16);
    x.m1s = add(L.mlp1.scales, E * 2 * I * (H / 32));
    x.m1bias = add(L.mlp1.bias, E * 2 * I * bf16);
    x.m2b = add(L.mlp2.blocks, E * H * (I / 32) * 16);
    x.m2s = add(L.mlp2.scales, E * H * (I / 32));
    x.m2bias = add(L.mlp2.bias, E * H * bf16);
  }
  size_t total = 0;
  for (Upload& u : ups) {
    u.offset = total;
    // q|k|v and their biases must be contiguous: no padding inside those groups.
    total += u.bytes;
    total = aligned(total);
  }
  // Re-pack the q|k|v groups without padding (their sizes are multiples of 2 bytes, not of 256).
  for (const LayerIdx& x : li) {
    ups[x.k].offset = ups[x.q].offset + ups[x.q].bytes;
    ups[x.v].offset = ups[x.k].offset + ups[x.k].bytes;
    ups[x.kb].offset = ups[x.qb].offset + ups[x.qb].bytes;
    ups[x.vb].offset = ups[x.kb].offset + ups[x.kb].bytes;
  }
  // (The group's padded span in the plan covers the three, so nothing overlaps.)
  void* block = allocate(total, false);
  weight_blocks_.push_back(block);
  char* base = static_cast<char*>(block);

  // Stream through two pinned staging buffers: copy a piece of the (mapped)
  // file into one while the other's upload runs.
  constexpr size_t kStage = size_t{64} << 20;
  void* stage[2] = {allocate(kStage, true), allocate(kStage, true)};
  CUstream s = nullptr;
  CUevent done[2] = {nullptr, nullptr};
  GON_CU(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  GON_CU(d.cuEventCreate(&done[0], CU_EVENT_DEFAULT));
  GON_CU(d.cuEventCreate(&done[1], CU_EVENT_DEFAULT));
  uint64_t sent = 0, all = 0;
  for (const Upload& u : ups) all += u.bytes;
  int which = 0;
  bool pending[2] = {false, false};
  auto cleanup = [&] {
    d.cuStreamSynchronize(s);
    d.cuEventDestroy(done[0]);
    d.cuEventDestroy(done[1]);
    d.cuStreamDestroy(s);
    release(stage[0], true);
    release(stage[1], true);
  };
  try {
    for (const Upload& u : ups) {
      if (u.src == nullptr || u.bytes == 0) continue;
      for (size_t at = 0; at < u.bytes; at += kStage) {
        const size_t n = std::min(kStage, u.bytes - at);
        if (pending[which]) GON_CU(d.cuEventSynchronize(done[which]));
        std::memcpy(stage[which], static_cast<const char*>(u.src) + at, n);
        GON_CU(d.cuMemcpyHtoDAsync(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(base + u.offset + at)),
                                   stage[which], n, s));
        GON_CU(d.cuEventRecord(done[which], s));
        pending[which] = true;
        which ^= 1;
        sent += n;
        if (progress) progress(sent, all);
      }
    }
    GON_CU(d.cuStreamSynchronize(s));
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();

  auto at = [&](size_t i) -> const void* { return base + ups[i].offset; };
  auto w = std::make_unique<ModelWeights>(h);
  w->embedding = static_cast<const uint16_t*>(at(emb));
  w->final_norm = static_cast<const uint16_t*>(at(fnorm));
  w->unembedding.data = static_cast<const uint16_t*>(at(unemb));
  w->rope_inv_freq = static_cast<const float*>(at(rope));
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights& L = w->layers[l];
    const LayerIdx& x = li[l];
    L.attn_norm = static_cast<const uint16_t*>(at(x.attn_norm));
    L.q.data = static_cast<const uint16_t*>(at(x.q));
    L.k.data = static_cast<const uint16_t*>(at(x.k));
    L.v.data = static_cast<const uint16_t*>(at(x.v));
    L.q.bias = static_cast<const uint16_t*>(at(x.qb));
    L.k.bias = static_cast<const uint16_t*>(at(x.kb));
    L.v.bias = static_cast<const uint16_t*>(at(x.vb));
    L.out.data = static_cast<const uint16_t*>(at(x.out));
    L.out.bias = static_cast<const uint16_t*>(at(x.outb));
    L.sinks = static_cast<const uint16_t*>(at(x.sinks));
    L.mlp_norm = static_cast<const uint16_t*>(at(x.mlp_norm));
    L.router.data = static_cast<const uint16_t*>(at(x.router));
    L.router.bias = static_cast<const uint16_t*>(at(x.routerb));
    L.mlp1.blocks = static_cast<const uint8_t*>(at(x.m1b));
    L.mlp1.scales = static_cast<const uint8_t*>(at(x.m1s));
    L.mlp1.bias = static_cast<const uint16_t*>(at(x.m1bias));
    L.mlp2.blocks = static_cast<const uint8_t*>(at(x.m2b));
    L.mlp2.scales = static_cast<const uint8_t*>(at(x.m2s));
    L.mlp2.bias = static_cast<const uint16_t*>(at(x.m2bias));
  }
  return w;
}

std::unique_ptr<Executor> CudaBackend::create_executor(const ModelWeights& weights, const ModelConfig& c,
                                                       const ExecutorOptions& options) {
  validate_executor_options(options, c, kv_block_positions());
  make_current();
  return std::make_unique<CudaExecutor>(*this, weights, c, options);
}

double CudaBackend::measure_read_bandwidth(size_t bytes) {
  make_current();
  const Driver& d = driver();
  const Kernel& k = kernels_->get("read_sum");
  const int64_t n = static_cast<int64_t>(bytes / 8);
  const int64_t per_program = k.constexpr_value("BLOCK") * k.constexpr_value("ITERS");
  const unsigned grid = static_cast<unsigned>((n + per_program - 1) / per_program);
  void* buf = allocate(static_cast<size_t>(n) * 8, false);
  void* out = allocate(static_cast<size_t>(grid) * 8, false);
  CUstream s = nullptr;
  CUevent e0 = nullptr, e1 = nullptr;
  double best = 0.0;
  try {
    GON_CU(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    GON_CU(d.cuEventCreate(&e0, CU_EVENT_DEFAULT));
    GON_CU(d.cuEventCreate(&e1, CU_EVENT_DEFAULT));
    GON_CU(d.cuMemsetD8Async(static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(buf)), 0x5a,
                             static_cast<size_t>(n) * 8, s));
    for (int r = 0; r < 12; ++r) {
      GON_CU(d.cuEventRecord(e0, s));
      k.launch(s, {grid, 1, 1}, {buf, n, out});
      GON_CU(d.cuEventRecord(e1, s));
      GON_CU(d.cuEventSynchronize(e1));
      float ms = 0;
      GON_CU(d.cuEventElapsedTime(&ms, e0, e1));
      if (r >= 2 && ms > 0) best = std::max(best, static_cast<double>(n) * 8 / (ms * 1e-3));
    }
  } catch (...) {
    if (s) d.cuStreamSynchronize(s);
    release(buf, false);
    release(out, false);
    throw;
  }
  d.cuEventDestroy(e0);
  d.cuEventDestroy(e1);
  d.cuStreamDestroy(s);
  release(buf, false);
  release(out, false);
  return best;
}

}  // namespace gon::cuda
