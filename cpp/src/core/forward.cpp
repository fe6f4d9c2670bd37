// The model graph over backend operations (see forward.hpp).
#include "core/forward.hpp"

#include "core/profile.hpp"

namespace gon {

void forward(Backend& be, const ModelWeights& w, const ModelConfig& c, const ForwardBuffers& buf,
             const int32_t* tokens, const Batch& b, const LogitsRequest& logits) {
  using profile::Scope;
  const int H = c.hidden_size, k = c.experts_per_token, T = b.count;
  be.begin_batch(b);
  {
    Scope s(profile::kEmbed, T);
    be.embed(w, tokens, b, buf.x);
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = w.layers[l];
    const KVCacheLayer& cache = buf.kv[l];
    // Attention block.
    {
      Scope s(profile::kRmsnorm, T);
      be.rmsnorm(buf.x, L.attn_norm, b, H, c.rms_norm_eps, buf.xn);
    }
    {
      Scope s(profile::kQkv, T);
      const BF16Matrix qkv[3] = {L.q, L.k, L.v};
      be.linear(buf.xn, qkv, 3, b, buf.qkv, c.qkv_rows(), false, buf.workspace);
    }
    {
      Scope s(profile::kRopeKv, T);
      be.rope_kv_store(buf.qkv, w, c, b, cache);
    }
    {
      Scope s(profile::kAttention, T);
      be.attention(buf.qkv, L.sinks, c, b, cache, L.sliding ? c.sliding_window : 0, buf.attn, buf.workspace);
    }
    {
      Scope s(profile::kOut, T);
      be.linear(buf.attn, &L.out, 1, b, buf.x, H, true, buf.workspace);
    }
    // Mixture-of-experts block.
    {
      Scope s(profile::kRmsnorm, T);
      be.rmsnorm(buf.x, L.mlp_norm, b, H, c.rms_norm_eps, buf.xn);
    }
    {
      Scope s(profile::kRouter, T);
      be.router(buf.xn, L.router, k, b, buf.expert_ids, buf.expert_weights, buf.workspace);
    }
    {
      Scope s(profile::kMoe, T);
      be.moe(buf.xn, buf.expert_ids, buf.expert_weights, k, L, c, b, buf.x, buf.workspace);
    }
  }
  if (logits.num_rows > 0) {
    Scope s(profile::kUnembed, logits.num_rows);
    // Only the rows whose logits are wanted are normalised and projected.
    const Batch rows{b.first_position + logits.first_row, logits.num_rows};
    const size_t offset = static_cast<size_t>(logits.first_row) * H;
    be.rmsnorm(buf.x + offset, w.final_norm, rows, H, c.rms_norm_eps, buf.xn + offset);
    be.unembed(w, buf.xn, logits.first_row, logits.num_rows, H, logits.logits, buf.workspace);
  }
  be.end_batch();
}

}  // namespace gon
