// Streaming generation and the text stream under it (see gpt_oss_native/generate.hpp).
#include "gpt_oss_native/generate.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"
#include "gpt_oss_native/model.hpp"

namespace gon {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStopToken: return "stop_token";
    case FinishReason::kStopString: return "stop_string";
    case FinishReason::kLength: return "length";
    case FinishReason::kContextFull: return "context_full";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "none";
}

// ---- TextStream ------------------------------------------------------------------

TextStream::TextStream(std::shared_ptr<const Tokenizer> tokenizer, std::vector<std::string> stop,
                       std::vector<int32_t> stop_tokens)
    : tokenizer_(std::move(tokenizer)), stop_(std::move(stop)), stop_tokens_(std::move(stop_tokens)),
      decoder_(tokenizer_) {
  GON_CHECK(tokenizer_ != nullptr, kInvalidArgument, "text stream: the model has no tokenizer");
  for (const std::string& s : stop_) GON_CHECK(!s.empty(), kInvalidArgument, "stop strings must not be empty");
}

bool TextStream::is_stop_token(int32_t token) const {
  return std::find(stop_tokens_.begin(), stop_tokens_.end(), token) != stop_tokens_.end();
}

void TextStream::reset() {
  decoder_.reset();
  held_.clear();
}

std::string TextStream::take(bool final) {
  if (final) {
    held_ += decoder_.flush();
    std::string out;
    out.swap(held_);
    return out;
  }
  // Keep the shortest suffix that could still begin a stop string.
  size_t keep_from = held_.size();
  for (const std::string& stop : stop_) {
    const size_t start = held_.size() > stop.size() ? held_.size() - stop.size() + 1 : 0;
    for (size_t i = start; i < held_.size(); ++i) {
      if (stop.compare(0, held_.size() - i, held_, i, held_.size() - i) == 0) {
        keep_from = std::min(keep_from, i);
        break;
      }
    }
  }
  std::string out = held_.substr(0, keep_from);
  held_.erase(0, keep_from);
  return out;
}

std::string TextStream::flush() { return take(true); }

std::string TextStream::push(int32_t token, FinishReason& finish) {
  if (is_stop_token(token)) {
    finish = FinishReason::kStopToken;
    return take(true);
  }
  held_ += decoder_.push(token);
  // The earliest complete stop string ends the stream; text before it is released.
  size_t cut = std::string::npos;
  for (const std::string& stop : stop_) cut = std::min(cut, held_.find(stop));
  if (cut != std::string::npos) {
    held_.resize(cut);
    finish = FinishReason::kStopString;
    std::string text;
    text.swap(held_);
    decoder_.reset();
    return text;
  }
  return take(false);
}

std::vector<int32_t> default_stop_tokens(int eos_token_id, int vocab_size, const Tokenizer& tokenizer) {
  std::vector<int32_t> out;
  if (eos_token_id >= 0 && eos_token_id < vocab_size) out.push_back(eos_token_id);
  for (const char* name : {"<|return|>", "<|call|>"}) {
    auto id = tokenizer.special_token(name);
    if (id && *id < vocab_size && std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
  }
  return out;
}

std::vector<uint8_t> sampleable_tokens(const Tokenizer& tokenizer, int vocab_size,
                                       const std::vector<int32_t>& stop_tokens) {
  std::vector<uint8_t> flags(vocab_size, 1);
  bool gaps = false;
  for (int i = 0; i < vocab_size; ++i) {
    if (!tokenizer.has_token(i) && std::find(stop_tokens.begin(), stop_tokens.end(), i) == stop_tokens.end()) {
      flags[i] = 0;
      gaps = true;
    }
  }
  if (!gaps) flags.clear();
  return flags;
}

// ---- Generator -------------------------------------------------------------------

Generator::Generator(Context& ctx, std::shared_ptr<const Tokenizer> tokenizer, const GenerateOptions& options)
    : ctx_(ctx), tokenizer_(std::move(tokenizer)), options_(options) {
  GON_CHECK(tokenizer_ != nullptr, kInvalidArgument, "generate: the model has no tokenizer");
  GON_CHECK(options_.max_tokens >= 0, kInvalidArgument, "generate: max_tokens must be >= 0, got ",
            options_.max_tokens);
  const SampleOptions& so = options_.sampling;
  GON_CHECK(std::isfinite(so.temperature) && so.temperature >= 0.0f, kInvalidArgument,
            "generate: temperature must be a finite number >= 0, got ", so.temperature);
  GON_CHECK(std::isfinite(so.top_p) && so.top_p > 0.0f && so.top_p <= 1.0f, kInvalidArgument,
            "generate: top_p must be in (0, 1], got ", so.top_p);
  for (const std::string& s : options_.stop)
    GON_CHECK(!s.empty(), kInvalidArgument, "generate: stop strings must not be empty");
  const int V = ctx_.vocab_size();
  for (int32_t t : options_.stop_tokens)
    GON_CHECK(t >= 0 && t < V, kTokenOutOfRange, "generate: stop token ", t, " is outside [0, ", V, ")");
  std::vector<int32_t> stops = options_.stop_tokens;
  if (options_.default_stop_tokens) {
    for (int32_t t : default_stop_tokens(ctx_.model().config().eos_token_id, V, *tokenizer_))
      if (std::find(stops.begin(), stops.end(), t) == stops.end()) stops.push_back(t);
  }
  // Ids without text (a tokenizer smaller than the model's vocabulary) are
  // never sampled, unless they are stop tokens.
  has_text_ = sampleable_tokens(*tokenizer_, V, stops);
  options_.sampling.allowed = has_text_.empty() ? nullptr : has_text_.data();
  stream_ = std::make_unique<TextStream>(tokenizer_, options_.stop, std::move(stops));
  GON_CHECK(options_.sample_chunk >= 0, kInvalidArgument, "generate: sample_chunk must be >= 0, got ",
            options_.sample_chunk);
  chunk_tokens_ = options_.sample_chunk > 0 ? options_.sample_chunk : std::max(1, ctx_.preferred_sample_chunk());
  if (chunk_tokens_ > 1) chunk_.resize(static_cast<size_t>(chunk_tokens_));
}

bool Generator::next(GeneratedPiece& piece) {
  if (finish_ != FinishReason::kNone) {
    if (flushed_) return false;
    flushed_ = true;
    std::string rest = stream_->flush();
    if (rest.empty()) return false;
    piece = {std::move(rest), -1, 0.0f};
    return true;
  }
  // Tokens sampled ahead that the context no longer holds (it was changed since) are sampled again.
  if (next_ < chunk_size_ && ctx_.tokens_ahead() != chunk_size_ - next_) chunk_size_ = next_ = 0;
  if (generated_ >= options_.max_tokens || ctx_.num_tokens() >= ctx_.options().context_length) {
    finish_ = generated_ >= options_.max_tokens ? FinishReason::kLength : FinishReason::kContextFull;
    return next(piece);
  }
  SampleResult r;
  try {
    if (next_ < chunk_size_) {
      // A token sampled ahead; a cancel() since then ends the generation here, as it would a step.
      if (ctx_.clear_cancel()) {
        chunk_size_ = next_ = 0;
        GON_THROW(kCancelled, "generate: cancelled after ", generated_, " tokens");
      }
      ctx_.accept_ahead(1);
      r = chunk_[next_++];
    } else if (chunk_tokens_ > 1) {
      const size_t want = static_cast<size_t>(std::min(chunk_tokens_, options_.max_tokens - generated_));
      const std::vector<int32_t>& stops = stream_->stop_tokens();
      chunk_size_ = ctx_.sample_ahead(options_.sampling, want, stops.data(), stops.size(), chunk_.data());
      next_ = 0;
      ctx_.accept_ahead(1);
      r = chunk_[next_++];
    } else {
      r = ctx_.sample(options_.sampling);
    }
  } catch (const Error& e) {
    // Context::cancel(): the generation ends here; a later next() flushes the held-back text.
    if (e.status() == Status::kCancelled) finish_ = FinishReason::kCancelled;
    throw;
  }
  ++generated_;
  FinishReason stop = FinishReason::kNone;
  std::string text = stream_->push(r.token, stop);
  if (stop != FinishReason::kNone) {
    finish_ = stop;
    flushed_ = true;
  }
  piece = {std::move(text), r.token, r.logprob};
  return true;
}

}  // namespace gon
