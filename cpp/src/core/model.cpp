// Model: a checkpoint plus the backend that runs it (see model.hpp).
#include "gpt_oss_native/model.hpp"

#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

#include "backend/backend.hpp"
#include "core/check.hpp"
#include "core/checkpoint.hpp"
#include "gpt_oss_native/tokenizer.hpp"

namespace gon {

struct Model::Impl {
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ModelWeights> weights;
  std::mutex tokenizer_mutex;
  std::shared_ptr<const Tokenizer> tokenizer;
};

namespace {
// MemAvailable from /proc/meminfo, or 0 when unknown.
uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit) {
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}
}  // namespace

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  GON_CHECK(options.threads >= 0 && options.threads <= 4096, kInvalidArgument,
            "threads must be in [0, 4096] (0 = one per core), got ", options.threads);
  // Create the backend first: an unavailable device fails before any file work.
  auto backend = create_backend(options.device, options.threads);
  auto checkpoint = Checkpoint::open(path);
  bool prefetch = false;
  switch (options.prefetch) {
    case LoadOptions::Prefetch::kAlways: prefetch = true; break;
    case LoadOptions::Prefetch::kNever: prefetch = false; break;
    case LoadOptions::Prefetch::kAuto: {
      const uint64_t avail = available_memory_bytes();
      prefetch = avail > 0 && checkpoint->total_bytes() + (uint64_t{1} << 30) < avail;
      break;
    }
  }
  if (prefetch) {
    checkpoint->prefetch(options.progress);
  } else if (options.progress) {
    options.progress(checkpoint->total_bytes(), checkpoint->total_bytes());
  }
  std::shared_ptr<Model> model(new Model());
  model->impl_->weights = backend->prepare_weights(checkpoint->weights(), checkpoint->config(), options.progress);
  model->impl_->checkpoint = std::move(checkpoint);
  model->impl_->backend = std::move(backend);
  return model;
}

const ModelConfig& Model::config() const { return impl_->checkpoint->config(); }
const std::string& Model::path() const { return impl_->checkpoint->directory(); }
const std::string& Model::checkpoint_format() const { return impl_->checkpoint->format(); }
std::string Model::device() const { return impl_->backend->name(); }
std::string Model::device_description() const { return impl_->backend->description(); }
uint64_t Model::backend_memory_in_use() const { return impl_->backend->memory_in_use(); }
uint64_t Model::backend_memory_peak() const { return impl_->backend->memory_peak(); }
double Model::measure_read_bandwidth(size_t bytes) const { return impl_->backend->measure_read_bandwidth(bytes); }
int Model::threads() const { return impl_->backend->threads(); }
uint64_t Model::weight_bytes() const { return impl_->checkpoint->total_bytes(); }
Backend& Model::backend() const { return *impl_->backend; }

std::shared_ptr<const Tokenizer> Model::tokenizer() const {
  std::lock_guard<std::mutex> lock(impl_->tokenizer_mutex);
  if (impl_->tokenizer) return impl_->tokenizer;
  namespace fs = std::filesystem;
  const fs::path dir(path());
  std::error_code ec;
  for (const fs::path& candidate : {dir / "tokenizer.json", dir.parent_path() / "tokenizer.json"}) {
    if (fs::is_regular_file(candidate, ec)) {
      impl_->tokenizer = Tokenizer::load(candidate.string());
      return impl_->tokenizer;
    }
  }
  GON_THROW(kFileNotFound, path(), ": the checkpoint has no tokenizer.json (nor has its parent directory)");
}
const ModelWeights& Model::weights() const { return *impl_->weights; }

uint64_t Model::decode_bytes_per_token() const {
  const ModelConfig& c = config();
  const uint64_t H = c.hidden_size, I = c.intermediate_size, E = c.num_experts, k = c.experts_per_token;
  const uint64_t q = uint64_t(c.num_heads) * c.head_dim, kv = uint64_t(c.num_kv_heads) * c.head_dim;
  const uint64_t bf16 = 2;
  uint64_t layer = 0;
  layer += (q + 2 * kv) * (H + 1) * bf16;           // qkv weights + bias
  layer += H * (q + 1) * bf16;                      // out weights + bias
  layer += c.num_heads * bf16 + 2 * H * bf16;       // sinks, two norms
  layer += E * (H + 1) * bf16;                      // router
  layer += k * (2 * I * (H / 32 * 17) + 2 * I * bf16);  // mlp1 blocks+scales, bias
  layer += k * (H * (I / 32 * 17) + H * bf16);          // mlp2 blocks+scales, bias
  uint64_t total = layer * c.num_layers;
  total += uint64_t(c.vocab_size) * H * bf16;  // unembedding
  total += H * bf16 * 2;                       // one embedding row, final norm
  return total;
}

}  // namespace gon
