// A C++ program that uses the runtime without Python: loads a checkpoint,
// processes a prompt of token ids and samples tokens, printing them and the
// timing. Built against the installed CMake package:
//
//   find_package(gpt_oss_native REQUIRED)
//   target_link_libraries(app PRIVATE gpt_oss_native::gpt_oss_native)
//
// Usage: gon_generate MODEL_DIR [--tokens 1,2,3 | --prompt TEXT] [--max-tokens N]
//                     [--temperature T] [--top-p P] [--seed S] [--threads N] [--device D]
// With --prompt the text is encoded with the checkpoint's tokenizer and the
// completion is streamed as text (gon::Generator); otherwise token ids are
// printed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gpt_oss_native/gpt_oss_native.hpp>

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: gon_generate MODEL_DIR [--tokens 1,2,3 | --prompt TEXT] [--max-tokens N]\n"
               "                    [--temperature T] [--top-p P] [--seed S] [--threads N]\n"
               "                    [--device cpu|cuda|auto]\n");
}

std::vector<int32_t> parse_tokens(const char* s) {
  std::vector<int32_t> out;
  const char* p = s;
  while (*p) {
    char* end = nullptr;
    long v = std::strtol(p, &end, 10);
    if (end == p) {
      std::fprintf(stderr, "error: bad token list '%s'\n", s);
      std::exit(2);
    }
    out.push_back(static_cast<int32_t>(v));
    p = end;
    while (*p == ',' || *p == ' ') ++p;
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  std::string path = argv[1];
  std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  const char* prompt_text = nullptr;
  int max_tokens = 16;
  gon::SampleOptions sampling;
  sampling.temperature = 0.0f;
  sampling.seed = 0;
  gon::LoadOptions load;
  for (int i = 2; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--tokens")) prompt = parse_tokens(next());
    else if (!std::strcmp(argv[i], "--prompt")) prompt_text = next();
    else if (!std::strcmp(argv[i], "--max-tokens")) max_tokens = std::atoi(next());
    else if (!std::strcmp(argv[i], "--temperature")) sampling.temperature = std::strtof(next(), nullptr);
    else if (!std::strcmp(argv[i], "--top-p")) sampling.top_p = std::strtof(next(), nullptr);
    else if (!std::strcmp(argv[i], "--seed")) sampling.seed = std::strtoull(next(), nullptr, 10);
    else if (!std::strcmp(argv[i], "--threads")) load.threads = std::atoi(next());
    else if (!std::strcmp(argv[i], "--device")) load.device = next();
    else {
      usage();
      return 2;
    }
  }

  try {
    auto t0 = std::chrono::steady_clock::now();
    std::shared_ptr<gon::Model> model = gon::Model::load(path, load);
    std::printf("loaded %s (%s layout, %d layers) in %.2f s, %d threads\n", model->path().c_str(),
                model->checkpoint_format().c_str(), model->config().num_layers, seconds_since(t0), model->threads());

    std::shared_ptr<const gon::Tokenizer> tokenizer;
    if (prompt_text != nullptr) {
      tokenizer = model->tokenizer();
      prompt = tokenizer->encode(prompt_text, gon::SpecialTokens::every());
    }

    gon::ContextOptions options;
    options.context_length = static_cast<int>(prompt.size()) + max_tokens + 1;
    options.max_batch_tokens = 128;
    gon::Context ctx(model, options);
    ctx.append(prompt.data(), prompt.size());
    auto t1 = std::chrono::steady_clock::now();
    ctx.process(gon::LogitsMode::kLast);
    double prefill = seconds_since(t1);

    int generated = 0;
    auto t2 = std::chrono::steady_clock::now();
    if (tokenizer) {
      // Text out, streamed: pieces never split a UTF-8 character.
      gon::GenerateOptions g;
      g.max_tokens = max_tokens;
      g.sampling = sampling;
      gon::Generator gen(ctx, tokenizer, g);
      gon::GeneratedPiece piece;
      std::printf("text: ");
      while (gen.next(piece)) {
        std::fwrite(piece.text.data(), 1, piece.text.size(), stdout);
        std::fflush(stdout);
      }
      generated = gen.tokens_generated();
      std::printf("\nfinish: %s\n", gon::finish_reason_name(gen.finish_reason()));
    } else {
      std::printf("generated:");
      for (int i = 0; i < max_tokens; ++i) {
        gon::SampleResult r = ctx.sample(sampling);
        std::printf(" %d", r.token);
        std::fflush(stdout);
      }
      generated = max_tokens;
      std::printf("\n");
    }
    double decode = seconds_since(t2);
    std::printf("prefill: %zu tokens in %.1f ms; decode: %d tokens at %.2f tok/s\n", prompt.size(), prefill * 1e3,
                generated, generated / (decode > 0 ? decode : 1e-9));
  } catch (const gon::Error& e) {
    std::fprintf(stderr, "error (%s): %s\n", gon::status_name(e.status()), e.what());
    return 1;
  }
  return 0;
}
