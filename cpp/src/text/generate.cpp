// Streaming generation (see gpt_oss_native/generate.hpp).
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
  }
  return "none";
}

Generator::Generator(Context& ctx, std::shared_ptr<const Tokenizer> tokenizer, const GenerateOptions& options)
    : ctx_(ctx), tokenizer_(std::move(tokenizer)), options_(options), decoder_(tokenizer_) {
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
  stop_tokens_ = options_.stop_tokens;
  if (options_.default_stop_tokens) {
    const int eos = ctx_.model().config().eos_token_id;
    if (eos >= 0 && eos < V) stop_tokens_.push_back(eos);
    for (const char* name : {"<|return|>", "<|call|>"}) {
      auto id = tokenizer_->special_token(name);
      if (id && *id < V) stop_tokens_.push_back(*id);
    }
  }
  // Ids without text (a tokenizer smaller than the model's vocabulary) are
  // never sampled, unless they are stop tokens.
  has_text_.assign(V, 1);
  bool gaps = false;
  for (int i = 0; i < V; ++i) {
    if (!tokenizer_->has_token(i) && !is_stop_token(i)) {
      has_text_[i] = 0;
      gaps = true;
    }
  }
  if (!gaps) has_text_.clear();
  options_.sampling.allowed = has_text_.empty() ? nullptr : has_text_.data();
}

bool Generator::is_stop_token(int32_t token) const {
  return std::find(stop_tokens_.begin(), stop_tokens_.end(), token) != stop_tokens_.end();
}

std::string Generator::take_text(bool final) {
  if (final) {
    held_ += decoder_.flush();
    std::string out;
    out.swap(held_);
    return out;
  }
  // Keep the shortest suffix that could still begin a stop string.
  size_t keep_from = held_.size();
  for (const std::string& stop : options_.stop) {
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

bool Generator::next(GeneratedPiece& piece) {
  if (finish_ != FinishReason::kNone) {
    if (flushed_) return false;
    flushed_ = true;
    std::string rest = take_text(true);
    if (rest.empty()) return false;
    piece = {std::move(rest), -1, 0.0f};
    return true;
  }
  if (generated_ >= options_.max_tokens || ctx_.num_tokens() >= ctx_.options().context_length) {
    finish_ = generated_ >= options_.max_tokens ? FinishReason::kLength : FinishReason::kContextFull;
    return next(piece);
  }
  const SampleResult r = ctx_.sample(options_.sampling);
  ++generated_;
  if (is_stop_token(r.token)) {
    finish_ = FinishReason::kStopToken;
    flushed_ = true;
    piece = {take_text(true), r.token, r.logprob};
    return true;
  }
  held_ += decoder_.push(r.token);
  // The earliest complete stop string ends generation; text before it is emitted.
  size_t cut = std::string::npos;
  for (const std::string& stop : options_.stop) cut = std::min(cut, held_.find(stop));
  if (cut != std::string::npos) {
    held_.resize(cut);
    finish_ = FinishReason::kStopString;
    flushed_ = true;
    std::string text;
    text.swap(held_);
    decoder_.reset();
    piece = {std::move(text), r.token, r.logprob};
    return true;
  }
  piece = {take_text(false), r.token, r.logprob};
  return true;
}

}  // namespace gon
