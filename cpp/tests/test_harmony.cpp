// Tests of the harmony chat format (gpt_oss_native/harmony.hpp) that need no
// vocabulary: rendering basics and, above all, the stream parser's recovery
// from malformed token streams. They run on a byte-level test double of
// gon::Tokenizer (one token per byte, plus the harmony special tokens at their
// real ids), which splits every multi-byte character across tokens. The exact
// agreement with openai-harmony on the real o200k vocabulary is tested in
// tests/test_harmony.py.
#include "gpt_oss_native/harmony.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>

#include "test_util.hpp"

using namespace gon::harmony;

namespace {

// One token per byte (ids 0-255) plus the harmony special tokens.
class ByteTokenizer : public gon::Tokenizer {
 public:
  ByteTokenizer() {
    for (int i = 0; i < 256; ++i) bytes_[i] = std::string(1, static_cast<char>(i));
    const std::pair<const char*, int32_t> specials[] = {
        {"<|startoftext|>", 199998}, {"<|endoftext|>", 199999}, {"<|return|>", 200002},
        {"<|constrain|>", 200003},   {"<|channel|>", 200005},   {"<|start|>", 200006},
        {"<|end|>", 200007},         {"<|message|>", 200008},   {"<|call|>", 200012},
        {"<|reserved_200013|>", 200013}};
    for (auto& [text, id] : specials) specials_[text] = id;
  }
  int vocab_size() const override { return 201088; }
  int num_tokens() const override { return 256 + static_cast<int>(specials_.size()); }
  std::vector<int32_t> encode(std::string_view text, const gon::SpecialTokens& sp) const override {
    std::vector<int32_t> out;
    for (size_t i = 0; i < text.size();) {
      bool matched = false;
      if (sp.all) {
        for (auto& [s, id] : specials_)
          if (text.substr(i, s.size()) == s) {
            out.push_back(id);
            i += s.size();
            matched = true;
            break;
          }
      }
      if (!matched) out.push_back(static_cast<unsigned char>(text[i++]));
    }
    return out;
  }
  std::vector<int32_t> encode_bytes(std::string_view b) const override { return encode(b, gon::SpecialTokens::none()); }
  std::string decode(std::span<const int32_t> tokens) const override {
    std::string s;
    for (int32_t t : tokens) s += token_bytes(t);
    return s;
  }
  std::string_view token_bytes(int32_t t) const override {
    if (t >= 0 && t < 256) return bytes_[t];
    for (auto& [s, id] : specials_)
      if (id == t) return s;
    throw gon::Error(gon::Status::kTokenOutOfRange, "no token " + std::to_string(t));
  }
  bool has_token(int32_t t) const override {
    if (t >= 0 && t < 256) return true;
    for (auto& [s, id] : specials_)
      if (id == t) return true;
    return false;
  }
  bool is_special(int32_t t) const override { return t >= 256 && has_token(t); }
  std::optional<int32_t> special_token(std::string_view text) const override {
    auto it = specials_.find(std::string(text));
    if (it == specials_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::pair<std::string, int32_t>> special_tokens() const override {
    return {specials_.begin(), specials_.end()};
  }

 private:
  std::string bytes_[256];
  std::map<std::string, int32_t> specials_;
};

std::shared_ptr<const gon::Tokenizer> tok() {
  static auto t = std::make_shared<ByteTokenizer>();
  return t;
}

constexpr int32_t kStart = 200006, kEnd = 200007, kMessage = 200008, kChannel = 200005, kReturn = 200002,
                  kCall = 200012, kConstrain = 200003, kEot = 199999, kReserved = 200013;

// Text with specials written "<|start|>" etc. as tokens.
std::vector<int32_t> toks(std::string_view text) { return tok()->encode(text, gon::SpecialTokens::every()); }
std::string detok(const std::vector<int32_t>& t) { return tok()->decode(t); }

std::vector<Message> parse(std::string_view text, std::optional<Role> role, std::vector<ParseWarning>* w = nullptr) {
  auto t = toks(text);
  return parse_messages(tok(), t, role, w);
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

}  // namespace

// ---- rendering ------------------------------------------------------------------

TEST(system_message_text) {
  SystemContent sys;
  CHECK(system_content_text(sys) ==
        "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n\n"
        "Reasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included for every "
        "message.");
  sys.reasoning_effort = ReasoningEffort::kHigh;
  sys.conversation_start_date = "2025-06-28";
  CHECK(system_content_text(sys, true) ==
        "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: "
        "2025-06-28\n\nReasoning: high\n\n# Valid channels: analysis, commentary, final. Channel must be included "
        "for every message.\nCalls to these tools must go to the commentary channel: 'functions'.");
  SystemContent bare;
  bare.model_identity.reset();
  bare.knowledge_cutoff.reset();
  bare.reasoning_effort.reset();
  bare.channel_config.reset();
  CHECK(system_content_text(bare).empty());
  bare.reasoning_effort = ReasoningEffort::kLow;
  CHECK(system_content_text(bare) == "Reasoning: low");
}

TEST(developer_message_with_function_tools) {
  DeveloperContent dev;
  dev.instructions = "Always respond in riddles";
  dev.with_function_tools({
      {"get_location", "Gets the location of the user.", std::nullopt},
      {"get_current_weather", "Gets the current weather in the provided location.",
       R"({"type": "object", "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
           "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}}, "required": ["location"]})"},
      {"kitchensink", "A function with various complex schemas.",
       R"({"description": "params object", "type": "object", "properties": {
           "string": {"type": "string", "title": "STRING", "description": "A string", "examples": ["hello", "world"]},
           "string_nullable": {"type": "string", "nullable": true, "description": "A nullable string", "default": "the default"},
           "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
           "oneof_string_or_number": {"oneOf": [{"type": "string", "default": "default_string_in_oneof"},
               {"type": "number", "description": "numbers can happen too"}], "description": "a oneof", "default": 20}}})"},
  });
  const std::string expected =
      "# Instructions\n\nAlways respond in riddles\n\n# Tools\n\n## functions\n\nnamespace functions {\n\n"
      "// Gets the location of the user.\ntype get_location = () => any;\n\n"
      "// Gets the current weather in the provided location.\ntype get_current_weather = (_: {\n"
      "// The city and state, e.g. San Francisco, CA\nlocation: string,\n"
      "format?: \"celsius\" | \"fahrenheit\", // default: celsius\n}) => any;\n\n"
      "// A function with various complex schemas.\ntype kitchensink = (_: // params object\n{\n"
      "// STRING\n//\n// A string\n// Examples:\n// - \"hello\"\n// - \"world\"\nstring?: string,\n"
      "// A nullable string\nstring_nullable?: string | null, // default: \"the default\"\n"
      "string_enum?: \"a\" | \"b\" | \"c\",\n// a oneof\n// default: 20\noneof_string_or_number?:\n"
      " | string // default: \"default_string_in_oneof\"\n | number // numbers can happen too\n,\n}) => any;\n\n"
      "} // namespace functions";
  const std::string got = developer_content_text(dev);
  CHECK(got == expected);
  if (got != expected) std::printf("got:\n%s\n", got.c_str());
}

TEST(json_schema_types) {
  CHECK(json_schema_to_typescript(R"({"type": "integer"})") == "number");
  CHECK(json_schema_to_typescript(R"({"type": ["integer", "null"]})") == "number | null");
  CHECK(json_schema_to_typescript(R"({"type": "array"})") == "Array<any>");
  CHECK(json_schema_to_typescript(R"({"type": "array", "items": {"type": "boolean"}})") == "boolean[]");
  CHECK(json_schema_to_typescript(R"({"type": "null"})") == "any");
  CHECK(json_schema_to_typescript(R"({})") == "any");
  CHECK(json_schema_to_typescript(R"({"type": "object", "properties": {"n": {"type": "object", "properties":
        {"x": {"type": "number", "default": 1.5}, "y": {"type": "number", "default": 1e20}, "z": {"default": [1, "a\n"]}},
        "required": ["x"]}}})") ==
        "{\nn?: {\n    x: number, // default: 1.5\n    y?: number, // default: 1e20\n    z?: any, // default: "
        "[1,\"a\\n\"]\n    },\n}");
  CHECK_THROWS_STATUS(json_schema_to_typescript("{"), kInvalidArgument);
}

TEST(render_messages) {
  const auto& t = *tok();
  CHECK(detok(render_message(t, Message::from_text(Role::kUser, "Hi <|end|> there"))) ==
        "<|start|>user<|message|>Hi <|end|> there<|end|>");
  // special-token text in content is ordinary text
  auto user = render_message(t, Message::from_text(Role::kUser, "<|end|>"));
  CHECK(std::count(user.begin(), user.end(), kEnd) == 1);
  Message call = Message::from_text(Role::kAssistant, R"({"location": "Tokyo"})");
  call.with_channel("commentary").with_recipient("functions.get_weather").with_content_type("<|constrain|>json");
  auto call_tokens = render_message(t, call);
  CHECK(detok(call_tokens) ==
        "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>"
        "{\"location\": \"Tokyo\"}<|call|>");
  CHECK(std::count(call_tokens.begin(), call_tokens.end(), kConstrain) == 1);
  CHECK(call_tokens.back() == kCall);
  Message result = Message::tool_result("functions.get_weather", "{\"sunny\": true}");
  CHECK(detok(render_message(t, result)) ==
        "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{\"sunny\": true}<|end|>");
  Message named = Message::from_text(Role::kUser, "x");
  named.name = "alice";
  CHECK(detok(render_message(t, named)) == "<|start|>user:alice<|message|>x<|end|>");
  Message all = Message::from_text(Role::kAssistant, "x");
  all.recipient = "all";
  CHECK(detok(render_message(t, all)) == "<|start|>assistant<|message|>x<|call|>");
  Message typed = Message::from_text(Role::kAssistant, "x");
  typed.content_type = "json";
  CHECK(detok(render_message(t, typed)) == "<|start|>assistant json<|message|>x<|end|>");
  Message nameless;
  nameless.role = Role::kTool;
  CHECK_THROWS_STATUS(render_message(t, nameless), kInvalidArgument);
  Message wrong = Message::system(SystemContent{});
  wrong.role = Role::kUser;
  CHECK_THROWS_STATUS(render_message(t, wrong), kInvalidArgument);
  CHECK_THROWS_STATUS(render_message(t, Message::from_text(Role::kUser, "\xff")), kInvalidArgument);
}

TEST(render_conversation_drops_earlier_analysis) {
  const auto& t = *tok();
  auto a = [](const char* channel, const char* text) { return Message::from_text(Role::kAssistant, text).with_channel(channel); };
  Conversation c{{Message::from_text(Role::kUser, "q1"), a("analysis", "think1"), a("final", "ans1"),
                  Message::from_text(Role::kUser, "q2"), a("analysis", "think2"), a("final", "ans2")}};
  // Before the first final: dropped; between finals: kept.
  CHECK(detok(render_conversation(t, c)) ==
        "<|start|>user<|message|>q1<|end|><|start|>assistant<|channel|>final<|message|>ans1<|end|>"
        "<|start|>user<|message|>q2<|end|><|start|>assistant<|channel|>analysis<|message|>think2<|end|>"
        "<|start|>assistant<|channel|>final<|message|>ans2<|end|>");
  RenderOptions keep;
  keep.auto_drop_analysis = false;
  CHECK(detok(render_conversation(t, c, keep)).find("think1") != std::string::npos);
  // The last assistant message is analysis: nothing dropped.
  c.messages.push_back(Message::from_text(Role::kUser, "q3"));
  c.messages.push_back(a("analysis", "think3"));
  CHECK(detok(render_conversation(t, c)).find("think1") != std::string::npos);
  auto prompt = render_conversation_for_completion(t, c, Role::kAssistant);
  CHECK(detok(prompt).ends_with("think3<|end|><|start|>assistant"));
  Conversation done{{Message::from_text(Role::kUser, "q"), a("final", "a")}};
  CHECK(render_conversation_for_training(t, done).back() == kReturn);
  CHECK(stop_tokens(t) == (std::vector<int32_t>{kReturn, kEnd, kCall}));
  CHECK(stop_tokens_for_assistant_actions(t) == (std::vector<int32_t>{kReturn, kCall}));
}

TEST(function_tools_line_in_system_message) {
  DeveloperContent dev;
  dev.with_function_tools({{"f", "does f", std::nullopt}});
  Conversation c{{Message::system(SystemContent{}), Message::developer(dev)}};
  CHECK(detok(render_conversation(*tok(), c)).find("'functions'.<|end|>") != std::string::npos);
}

// ---- parsing well-formed streams ------------------------------------------------------

TEST(parse_well_formed) {
  std::vector<ParseWarning> w;
  auto msgs = parse(
      "<|channel|>analysis<|message|>Let me think \xE2\x9C\x93<|end|>"
      "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{\"a\":1}<|call|>",
      Role::kAssistant, &w);
  CHECK(w.empty());
  CHECK(msgs.size() == 2);
  if (msgs.size() == 2) {
    CHECK(msgs[0].role == Role::kAssistant && msgs[0].channel == "analysis" && msgs[0].text() == "Let me think \xE2\x9C\x93");
    CHECK(msgs[1].recipient == "functions.get_weather" && msgs[1].channel == "commentary");
    CHECK(msgs[1].content_type == "<|constrain|>json" && msgs[1].text() == "{\"a\":1}");
  }
  // The model's order: channel first, then the recipient.
  msgs = parse("<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>",
               std::nullopt, &w);
  CHECK(w.empty() && msgs.size() == 1 && msgs[0].recipient == "functions.f" && msgs[0].content_type == "<|constrain|>json");
  // "role:name", as rendered for a named author.
  msgs = parse("<|start|>user:alice<|message|>hi<|end|>", std::nullopt, &w);
  CHECK(w.empty() && msgs.size() == 1 && msgs[0].role == Role::kUser && msgs[0].name == "alice");
  // A tool result: unknown role word = the tool's name.
  msgs = parse("<|start|>functions.f to=assistant<|channel|>commentary<|message|>42<|end|>", std::nullopt, &w);
  CHECK(w.empty() && msgs.size() == 1 && msgs[0].role == Role::kTool && msgs[0].name == "functions.f" &&
        msgs[0].recipient == "assistant");
}

TEST(stream_state_and_deltas) {
  StreamParser p(tok(), Role::kAssistant);
  CHECK(p.state() == StreamState::kHeader && p.current_role() == Role::kAssistant);
  std::string text;
  for (int32_t t : toks("<|channel|>final<|message|>caf\xC3\xA9 \xF0\x9F\x98\x80!")) {
    p.process(t);
    CHECK(valid_utf8(p.last_content_delta()));
    text += p.last_content_delta();
  }
  CHECK(p.state() == StreamState::kContent && p.current_channel() == "final");
  CHECK(text == "caf\xC3\xA9 \xF0\x9F\x98\x80!" && p.current_content() == text);
  p.process(kReturn);
  CHECK(p.state() == StreamState::kExpectStart && !p.current_channel() && p.last_content_delta().empty());
  CHECK(p.messages().size() == 1 && p.messages()[0].text() == text && p.warnings().empty());
  p.process_eos();
  CHECK(p.warnings().empty() && p.messages().size() == 1);
}

// ---- recovery --------------------------------------------------------------------------

TEST(recover_start_inside_content) {
  std::vector<ParseWarning> w;
  auto msgs = parse("<|channel|>analysis<|message|>abc<|start|>assistant<|channel|>final<|message|>done<|return|>",
                    Role::kAssistant, &w);
  CHECK(msgs.size() == 2 && w.size() == 1);
  if (msgs.size() == 2) CHECK(msgs[0].text() == "abc" && msgs[1].channel == "final" && msgs[1].text() == "done");
  if (!w.empty()) CHECK(w[0].message_index == 0);
}

TEST(recover_channel_inside_content_and_between_messages) {
  std::vector<ParseWarning> w;
  auto msgs = parse("<|channel|>analysis<|message|>abc<|channel|>final<|message|>done<|end|><|channel|>final<|message|>x<|return|>",
                    Role::kAssistant, &w);
  CHECK(msgs.size() == 3 && w.size() == 2);
  if (msgs.size() == 3) {
    CHECK(msgs[0].channel == "analysis" && msgs[0].text() == "abc");
    CHECK(msgs[1].channel == "final" && msgs[1].role == Role::kAssistant && msgs[1].text() == "done");
    CHECK(msgs[2].channel == "final" && msgs[2].role == Role::kAssistant && msgs[2].text() == "x");
  }
}

TEST(recover_missing_message_token) {
  std::vector<ParseWarning> w;
  // Header ended by a stop token: the words after role/channel become content.
  auto msgs = parse("<|start|>assistant<|channel|>final Hello world<|end|><|start|>user<|message|>hi<|end|>", std::nullopt, &w);
  CHECK(msgs.size() == 2 && !w.empty());
  if (msgs.size() == 2) {
    CHECK(msgs[0].role == Role::kAssistant && msgs[0].channel == "final" && msgs[0].text() == "Hello world");
    CHECK(msgs[1].role == Role::kUser && msgs[1].text() == "hi");
  }
  // <|message|> spelled as text.
  msgs = parse("<|start|>assistant<|channel|>final<|message|>", std::nullopt, &w);  // (warning: EOS in content)
  std::vector<int32_t> t = toks("<|start|>assistant<|channel|>final");
  for (char c : std::string("<|message|>hi")) t.push_back(static_cast<unsigned char>(c));
  t.push_back(kEnd);
  msgs = parse_messages(tok(), t, std::nullopt, &w);
  CHECK(msgs.size() == 1 && w.size() == 1);
  if (msgs.size() == 1) CHECK(msgs[0].channel == "final" && msgs[0].text() == "hi");
  // New <|start|> inside a header.
  msgs = parse("<|start|>assistant<|channel|>fin<|start|>user<|message|>u<|end|>", std::nullopt, &w);
  CHECK(msgs.size() == 2 && !w.empty());
  if (msgs.size() == 2) CHECK(msgs[0].channel == "fin" && msgs[0].text().empty() && msgs[1].text() == "u");
}

TEST(recover_junk_between_messages) {
  std::vector<ParseWarning> w;
  auto msgs = parse("junk<|end|><|message|>more<|start|>user<|message|>ok<|end|>trailing", std::nullopt, &w);
  CHECK(msgs.size() == 1 && w.size() == 2);  // one warning per run of skipped tokens
  if (msgs.size() == 1) CHECK(msgs[0].text() == "ok");
  for (auto& x : w) CHECK(x.message_index == -1);
}

TEST(recover_bad_headers) {
  std::vector<ParseWarning> w;
  auto msgs = parse("<|start|><|message|>x<|end|>", std::nullopt, &w);  // no role
  CHECK(msgs.size() == 1 && msgs[0].role == Role::kAssistant && w.size() == 1);
  msgs = parse("<|start|>assistant<|channel|><|message|>x<|end|>", std::nullopt, &w);  // empty channel
  CHECK(msgs.size() == 1 && !msgs[0].channel && w.size() == 1);
  msgs = parse("<|start|>assistant a b c<|message|>x<|end|>", std::nullopt, &w);  // extra words
  CHECK(msgs.size() == 1 && msgs[0].recipient == "b" && msgs[0].content_type == "c" && w.size() == 1);
  msgs = parse("<|start|>user\xFF<|message|>x<|end|>", std::nullopt, &w);  // invalid UTF-8 in header
  CHECK(msgs.size() == 1 && !w.empty());
  msgs = parse("<|start|>assistant<|reserved_200013|><|message|>x<|end|>", std::nullopt, &w);
  CHECK(msgs.size() == 1 && msgs[0].role == Role::kAssistant && w.size() == 1);
  msgs = parse("<|start|><|start|>user<|message|>x<|end|>", std::nullopt, &w);  // empty header abandoned
  CHECK(msgs.size() == 1 && msgs[0].role == Role::kUser && w.size() == 1 && w[0].message_index == -1);
}

TEST(recover_specials_and_bad_ids_in_content) {
  std::vector<ParseWarning> w;
  std::vector<int32_t> t = toks("<|start|>user<|message|>a");
  for (int32_t bad : {kMessage, kConstrain, kReserved, 300000, -5, 150000, 199998}) t.push_back(bad);
  for (int32_t x : toks("b<|end|>")) t.push_back(x);
  auto msgs = parse_messages(tok(), t, std::nullopt, &w);
  CHECK(msgs.size() == 1 && w.size() == 7);
  if (msgs.size() == 1) CHECK(msgs[0].text() == "ab");
  msgs = parse("<|start|>user<|message|>a<|endoftext|>", std::nullopt, &w);
  CHECK(msgs.size() == 1 && msgs[0].text() == "a" && w.size() == 1);
}

TEST(recover_truncated_streams) {
  std::vector<ParseWarning> w;
  // EOS in content: the message is kept; a split character becomes U+FFFD.
  std::vector<int32_t> t = toks("<|start|>user<|message|>ok \xE2\x9C");
  auto msgs = parse_messages(tok(), t, std::nullopt, &w);
  CHECK(msgs.size() == 1 && w.size() == 2);
  if (msgs.size() == 1) CHECK(msgs[0].text() == "ok \xEF\xBF\xBD");
  // EOS in a header with text: kept as a message without content.
  msgs = parse("<|start|>assistant<|channel|>analysis", std::nullopt, &w);
  CHECK(msgs.size() == 1 && msgs[0].channel == "analysis" && msgs[0].text().empty() && !w.empty());
  // Empty completion for a given role: no message, a warning.
  msgs = parse("", Role::kAssistant, &w);
  CHECK(msgs.empty() && w.size() == 1);
  // Every prefix of a well-formed stream parses without crashing.
  std::vector<int32_t> full = toks(
      "<|channel|>analysis<|message|>\xC3\xA9t\xC3\xA9<|end|><|start|>assistant to=functions.f<|channel|>commentary "
      "<|constrain|>json<|message|>{}<|call|>");
  for (size_t n = 0; n <= full.size(); ++n) {
    std::vector<int32_t> prefix(full.begin(), full.begin() + static_cast<long>(n));
    auto m = parse_messages(tok(), prefix, Role::kAssistant, &w);
    for (auto& msg : m) CHECK(valid_utf8(msg.text()));
    CHECK(m.size() <= 2);
  }
}

TEST(random_token_soup_never_crashes) {
  std::mt19937_64 rng(gon_test::seed());
  const int32_t specials[] = {kStart, kEnd, kMessage, kChannel, kReturn, kCall, kConstrain, kEot, kReserved, 199998};
  const std::string words[] = {"assistant", "user", " to=functions.f", "analysis", "final", " ", "\xE2\x9C\x93", "x"};
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> t;
    const int n = static_cast<int>(rng() % 200);
    for (int i = 0; i < n; ++i) {
      switch (rng() % 5) {
        case 0: t.push_back(specials[rng() % std::size(specials)]); break;
        case 1: t.push_back(static_cast<int32_t>(rng() % 256)); break;
        case 2: t.push_back(static_cast<int32_t>(rng() % 400000) - 100000); break;
        default:
          for (char c : words[rng() % std::size(words)]) t.push_back(static_cast<unsigned char>(c));
      }
    }
    StreamParser p(tok(), rng() % 2 ? std::optional<Role>(Role::kAssistant) : std::nullopt);
    for (int32_t x : t) {
      p.process(x);
      CHECK(valid_utf8(p.last_content_delta()));
      CHECK(valid_utf8(p.current_content()));
    }
    p.process_eos();
    CHECK(p.state() == StreamState::kExpectStart);
    for (const Message& m : p.messages()) {
      CHECK(m.content.size() == 1);
      CHECK(valid_utf8(m.text()));
      if (m.channel) CHECK(valid_utf8(*m.channel));
      if (m.recipient) CHECK(valid_utf8(*m.recipient));
    }
    for (const ParseWarning& w : p.warnings()) {
      CHECK(w.token_index <= t.size());
      CHECK(w.message_index >= -1 && w.message_index <= static_cast<int64_t>(p.messages().size()));
    }
  }
}

// With the real vocabulary, when GON_O200K_BASE names an o200k_base.tiktoken
// file (tests/test_harmony.py compares everything with openai-harmony).
TEST(real_vocabulary_when_available) {
  const char* path = std::getenv("GON_O200K_BASE");
  if (!path) {
    std::printf("  (skipped: set GON_O200K_BASE to an o200k_base.tiktoken file)\n");
    return;
  }
  auto real = gon::Tokenizer::load(path);
  Conversation c{{Message::system(SystemContent{}), Message::from_text(Role::kUser, "hi")}};
  // openai-harmony 0.0.8's rendering of the same conversation.
  const std::vector<int32_t> expected = {
      200006, 17360, 200008, 3575, 553, 17554, 162016, 11, 261, 4410, 6439, 2359, 22203, 656, 7788, 17527, 558,
      87447, 100594, 25, 220, 1323, 19, 12, 3218, 279, 30377, 289, 25, 14093, 279, 2, 13888, 18403, 25, 8450,
      11, 49159, 11, 1721, 13, 21030, 2804, 413, 7360, 395, 1753, 3176, 13, 200007, 200006, 1428, 200008, 3686,
      200007, 200006, 173781};
  CHECK(render_conversation_for_completion(*real, c, Role::kAssistant) == expected);
  std::vector<ParseWarning> w;
  auto msgs = parse_messages(real, render_conversation(*real, c), std::nullopt, &w);
  CHECK(w.empty() && msgs.size() == 2);
  if (msgs.size() == 2) CHECK(msgs[0].role == Role::kSystem && msgs[0].text() == system_content_text(SystemContent{}));
}

GON_TEST_MAIN()
