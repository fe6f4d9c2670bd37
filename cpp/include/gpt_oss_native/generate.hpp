// Streaming text generation on a Context: sample tokens one at a time and
// return them as text pieces that never split a UTF-8 character, stopping at
// stop tokens, stop strings or a token budget.
//
//   gon::Context ctx(model, {.context_length = 4096});
//   ctx.append(tokenizer->encode(prompt, gon::SpecialTokens::every()));
//   gon::Generator gen(ctx, tokenizer, {.max_tokens = 128});
//   gon::GeneratedPiece piece;
//   while (gen.next(piece)) std::cout << piece.text << std::flush;
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpt_oss_native/context.hpp"
#include "gpt_oss_native/tokenizer.hpp"

namespace gon {

struct GenerateOptions {
  int max_tokens = 256;               // tokens to sample at most
  SampleOptions sampling;             // temperature kDefaultTemperature (1.0), top_p 1.0, no seed
  std::vector<std::string> stop;      // stop strings: generation ends before the first one
  std::vector<int32_t> stop_tokens;   // stop token ids (not part of the text); empty = the defaults below
  bool default_stop_tokens = true;    // add the model's eos and harmony's <|return|> and <|call|>
};

// One step of generation: the token sampled and the text it completed.
struct GeneratedPiece {
  std::string text;      // valid UTF-8; may be empty (a character or stop string not yet complete)
  int32_t token = -1;    // -1 for a final piece that only flushes held-back text
  float logprob = 0.0f;
};

enum class FinishReason { kNone, kStopToken, kStopString, kLength, kContextFull };
const char* finish_reason_name(FinishReason reason);

class Generator {
 public:
  // Generates after the tokens already in `ctx` (processing them first if
  // needed). The Context must outlive the Generator.
  Generator(Context& ctx, std::shared_ptr<const Tokenizer> tokenizer, const GenerateOptions& options);

  // Produces the next piece; returns false (and leaves `piece` untouched) once
  // generation has finished.
  bool next(GeneratedPiece& piece);

  FinishReason finish_reason() const { return finish_; }
  int tokens_generated() const { return generated_; }

 private:
  bool is_stop_token(int32_t token) const;
  std::string take_text(bool final);  // emits what can no longer be the start of a stop string

  Context& ctx_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  GenerateOptions options_;
  StreamDecoder decoder_;
  std::vector<int32_t> stop_tokens_;
  std::vector<uint8_t> has_text_;  // [vocab] 1 when the id has bytes (others are never sampled)
  std::string held_;               // decoded text not yet emitted (possible stop-string prefix)
  FinishReason finish_ = FinishReason::kNone;
  int generated_ = 0;
  bool flushed_ = false;
};

}  // namespace gon
