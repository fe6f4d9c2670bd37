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
  // Tokens sampled per call into the Context (Context::sample_ahead); 0 = the
  // context's preferred_sample_chunk() (1 on the CPU, 16 on a GPU). The
  // pieces are the same for every value.
  int sample_chunk = 0;
};

// One step of generation: the token sampled and the text it completed.
struct GeneratedPiece {
  std::string text;      // valid UTF-8; may be empty (a character or stop string not yet complete)
  int32_t token = -1;    // -1 for a final piece that only flushes held-back text
  float logprob = 0.0f;
};

enum class FinishReason { kNone, kStopToken, kStopString, kLength, kContextFull, kCancelled };
// "none", "stop_token", "stop_string", "length", "context_full", "cancelled".
const char* finish_reason_name(FinishReason reason);

// Turns sampled tokens into text, applying stop tokens and stop strings: the
// text of each token is released once it can no longer be the start of a stop
// string, never splitting a UTF-8 character; a stop string ends the stream
// with the text before it, a stop token with the text before it. Used by
// Generator and Engine; useful for a sampling loop of one's own.
class TextStream {
 public:
  TextStream(std::shared_ptr<const Tokenizer> tokenizer, std::vector<std::string> stop,
             std::vector<int32_t> stop_tokens);
  // Feeds one token; returns the text it releases. Sets `finish` to
  // kStopToken or kStopString when the token ended the stream (the text
  // returned then includes everything held back).
  std::string push(int32_t token, FinishReason& finish);
  // Whatever is held back (at the end of a stream that did not stop).
  std::string flush();
  void reset();
  bool is_stop_token(int32_t token) const;
  const std::vector<int32_t>& stop_tokens() const { return stop_tokens_; }

 private:
  std::string take(bool final);

  std::shared_ptr<const Tokenizer> tokenizer_;
  std::vector<std::string> stop_;
  std::vector<int32_t> stop_tokens_;
  StreamDecoder decoder_;
  std::string held_;
};

// The stop tokens generation adds by default: the model's eos and harmony's
// <|return|> and <|call|> (those the tokenizer and vocabulary have).
std::vector<int32_t> default_stop_tokens(int eos_token_id, int vocab_size, const Tokenizer& tokenizer);
// [vocab_size] flags, 1 for ids that may be sampled: ids the tokenizer has text
// for, and the stop tokens. Empty when every id may be sampled.
std::vector<uint8_t> sampleable_tokens(const Tokenizer& tokenizer, int vocab_size,
                                       const std::vector<int32_t>& stop_tokens);

class Generator {
 public:
  // Generates after the tokens already in `ctx` (processing them first if
  // needed). The Context must outlive the Generator.
  //
  // Where the context's backend decodes many tokens per launch (a GPU: see
  // Context::sample_ahead), tokens are sampled in chunks of
  // Context::preferred_sample_chunk() and accepted into the context one piece
  // at a time, so the context always holds exactly the tokens whose pieces
  // were returned (as when sampling one by one).
  Generator(Context& ctx, std::shared_ptr<const Tokenizer> tokenizer, const GenerateOptions& options);

  // Produces the next piece; returns false (and leaves `piece` untouched) once
  // generation has finished. Context::cancel() makes it throw
  // gon::Error(kCancelled) and end with finish_reason() kCancelled (a later
  // call returns the held-back text, if any, then false).
  bool next(GeneratedPiece& piece);

  FinishReason finish_reason() const { return finish_; }
  int tokens_generated() const { return generated_; }

 private:
  Context& ctx_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  GenerateOptions options_;
  std::unique_ptr<TextStream> stream_;
  std::vector<uint8_t> has_text_;  // [vocab] 1 when the id may be sampled (empty: all may)
  FinishReason finish_ = FinishReason::kNone;
  int generated_ = 0;
  bool flushed_ = false;
  // Sampled ahead (Context::sample_ahead) and not handed out yet: chunk_[next_ .. chunk_size_).
  int chunk_tokens_ = 1;
  std::vector<SampleResult> chunk_;
  size_t chunk_size_ = 0, next_ = 0;
};

}  // namespace gon
