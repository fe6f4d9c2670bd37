// The harmony chat format of gpt-oss: rendering conversations into prompt
// tokens and parsing the model's completions back into messages.
//
// gpt-oss was trained on "harmony": every message is
//   <|start|>{role or tool name}[ to={recipient}][<|channel|>{channel}][ {content type}]<|message|>{content}<|end|>
// (an assistant message addressed to a tool ends with <|call|>, a finished
// answer is sampled ending with <|return|>). This file reproduces the
// reference implementation (the `openai-harmony` package) token for token:
// the system and developer message texts, the TypeScript-like rendering of
// function tools, dropping earlier chain-of-thought, and a streaming parser
// that agrees with openai-harmony's StreamableParser on well-formed streams and
// recovers (reporting warnings) from malformed ones where the reference
// throws.
//
//   auto tok = gon::Tokenizer::load(dir);
//   using namespace gon::harmony;
//   Conversation c{{Message::system(SystemContent{}), Message::from_text(Role::kUser, "Hi")}};
//   std::vector<int32_t> prompt = render_conversation_for_completion(*tok, c, Role::kAssistant);
//   StreamParser parser(tok, Role::kAssistant);
//   for (int32_t t : sampled) { parser.process(t); std::cout << parser.last_content_delta(); }
//   parser.process_eos();
//
// Not reproduced: openai-harmony's built-in "browser" and "python" tool
// presets (the text of their descriptions). Any tool namespace, including
// those, can be given explicitly (ToolNamespace) and renders as the reference
// renders it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gpt_oss_native/tokenizer.hpp"

namespace gon::harmony {

enum class Role { kSystem, kDeveloper, kUser, kAssistant, kTool };

// "system", "developer", "user", "assistant", "tool".
const char* role_name(Role role);
// The role named exactly so, if any.
std::optional<Role> role_from_name(std::string_view name);

enum class ReasoningEffort { kLow, kMedium, kHigh };
// "low", "medium", "high" (as rendered in the system message).
const char* reasoning_effort_name(ReasoningEffort effort);

// One tool (a function the model can call). `parameters` is a JSON schema as
// JSON text (or absent for a tool without arguments); it is rendered as a
// TypeScript-like type, e.g. `type get_weather = (_: {\nlocation: string,\n}) => any;`.
struct ToolDescription {
  std::string name;
  std::string description;
  std::optional<std::string> parameters;
};

// A namespace of tools, rendered as "## {name}" plus `namespace {name} { ... }`.
// Function tools live in the namespace "functions" of the developer message.
struct ToolNamespace {
  std::string name;
  std::optional<std::string> description;
  std::vector<ToolDescription> tools;
};

struct ChannelConfig {
  std::vector<std::string> valid_channels;
  bool channel_required = true;
};

// The content of the system message. The defaults are openai-harmony's.
struct SystemContent {
  std::optional<std::string> model_identity = std::string("You are ChatGPT, a large language model trained by OpenAI.");
  std::optional<ReasoningEffort> reasoning_effort = ReasoningEffort::kMedium;
  std::optional<std::string> knowledge_cutoff = std::string("2024-06");
  std::optional<std::string> conversation_start_date;
  std::optional<ChannelConfig> channel_config = ChannelConfig{{"analysis", "commentary", "final"}, true};
  // Built-in tool namespaces by name (rendered in name order, as the reference does).
  std::map<std::string, ToolNamespace> tools;
};

// The content of the developer message: instructions and function tools.
struct DeveloperContent {
  std::optional<std::string> instructions;
  std::map<std::string, ToolNamespace> tools;  // by namespace name, rendered in name order

  // Sets the "functions" namespace to these tools.
  DeveloperContent& with_function_tools(std::vector<ToolDescription> functions);
};

// A message's content is a sequence of parts, each rendered on its own:
// text, or the structured content of a system or developer message.
using Content = std::variant<std::string, SystemContent, DeveloperContent>;

struct Message {
  Role role = Role::kUser;
  // Author name: a tool message's name ("functions.get_weather"), which is
  // rendered instead of the role; for other roles rendered as "{role}:{name}".
  std::optional<std::string> name;
  std::optional<std::string> recipient;     // "functions.get_weather"; "all" is not rendered
  std::optional<std::string> channel;       // "analysis", "commentary", "final"
  std::optional<std::string> content_type;  // e.g. "<|constrain|>json" or "json"
  std::vector<Content> content;

  static Message from_text(Role role, std::string text);
  static Message system(SystemContent content);
  static Message developer(DeveloperContent content);
  // A tool's result: author `tool_name`, addressed to the assistant.
  static Message tool_result(std::string tool_name, std::string text, std::optional<std::string> channel = "commentary");

  // Concatenated text parts (structured parts are skipped).
  std::string text() const;

  Message& with_channel(std::string c) { channel = std::move(c); return *this; }
  Message& with_recipient(std::string r) { recipient = std::move(r); return *this; }
  Message& with_content_type(std::string t) { content_type = std::move(t); return *this; }
  Message& with_name(std::string n) { name = std::move(n); return *this; }
};

struct Conversation {
  std::vector<Message> messages;
};

struct RenderOptions {
  // When the last assistant message is on the "final" channel, messages on the
  // "analysis" channel before the first "final" message are left out (the
  // model's earlier chain of thought is not shown again). On by default, as in
  // openai-harmony's Python API.
  bool auto_drop_analysis = true;
};

// One message, alone. `conversation_has_function_tools` adds the line about
// function calls to a system message's channel section (the conversation
// renderers decide it from the developer message).
// Throws gon::Error(kInvalidArgument): a tool message without a name, system
// content outside a system message, developer content outside a developer
// message, an invalid JSON schema, invalid UTF-8 text.
std::vector<int32_t> render_message(const Tokenizer& tokenizer, const Message& message,
                                    bool conversation_has_function_tools = false);
// All messages of the conversation, concatenated.
std::vector<int32_t> render_conversation(const Tokenizer& tokenizer, const Conversation& conversation,
                                         const RenderOptions& options = {});
// The conversation followed by "<|start|>{next_role}": the prompt for sampling.
std::vector<int32_t> render_conversation_for_completion(const Tokenizer& tokenizer, const Conversation& conversation,
                                                        Role next_role = Role::kAssistant,
                                                        const RenderOptions& options = {});
// The conversation as a training target: a final assistant message at the end
// ends with <|return|> instead of <|end|>.
std::vector<int32_t> render_conversation_for_training(const Tokenizer& tokenizer, const Conversation& conversation,
                                                      const RenderOptions& options = {});

// The text of a system or developer message's content, as rendered (before tokenising).
std::string system_content_text(const SystemContent& content, bool conversation_has_function_tools = false);
std::string developer_content_text(const DeveloperContent& content);
// A JSON schema (JSON text) as the TypeScript-like type harmony renders.
// Throws gon::Error(kInvalidArgument) for invalid JSON.
std::string json_schema_to_typescript(std::string_view schema_json);

// Tokens that end a message: <|return|>, <|call|> and <|end|> (ascending ids).
std::vector<int32_t> stop_tokens(const Tokenizer& tokenizer);
// Tokens that end an assistant's turn: <|return|> (answer done) and <|call|>
// (a tool call to run). Sample with these: after <|end|> the assistant goes on
// with another message of its own (e.g. analysis, then final).
std::vector<int32_t> stop_tokens_for_assistant_actions(const Tokenizer& tokenizer);

// ---- parsing ----------------------------------------------------------------

enum class StreamState {
  kExpectStart,  // between messages: waiting for <|start|>
  kHeader,       // reading a header (role, recipient, channel, content type) up to <|message|>
  kContent,      // reading content up to <|end|>, <|return|> or <|call|>
};
const char* stream_state_name(StreamState state);  // "expect_start", "header", "content"

// A problem found in the token stream; the parser reports it and goes on.
struct ParseWarning {
  size_t token_index = 0;      // index of the token (in tokens()) at which it was found; tokens().size() at EOS
  int64_t message_index = -1;  // index in messages() of the message it concerns, -1 if none
  std::string text;
};

// Parses a token stream into messages, one token at a time.
//
// On a well-formed stream it behaves as openai-harmony's StreamableParser
// (same messages, same current role/channel/recipient/content type and content
// delta after every token). It never throws on token input; where the
// reference would raise (or silently take a format token as text), it applies
// these recovery rules and records a ParseWarning:
//  * Between messages, a token other than <|start|> is skipped (one warning per
//    run of skipped tokens; <|endoftext|> is skipped silently), except
//    <|channel|>, which starts a new message of the previous message's role (or
//    assistant) as if "<|start|>{role}" had come before it.
//  * In a header: <|start|> ends the header and starts a new one (the role given
//    to the constructor is then forgotten: the new header names its role); a
//    stop token (<|end|>, <|return|>, <|call|>) or <|endoftext|> ends a header
//    that never got <|message|>. Either way a header with text becomes a
//    message: its header read leniently, the header words after role and
//    channel becoming its content. The text "<|message|>" spelled with ordinary
//    tokens is taken as the <|message|> token. Other special tokens (but
//    <|channel|> and <|constrain|>) and ids with no token are skipped.
//  * Header text is read as the reference reads it: the channel after the first
//    <|channel|> (up to whitespace or '<'), then whitespace-separated words:
//    the role, then from the end a content type and a recipient ("to=x", or a
//    lone last word). Where the reference gives up: a role word "user:alice"
//    is role user with name alice; any other unknown role word is a tool's
//    name, even without a recipient (no warning for these two); an empty role
//    becomes assistant; leftover words are dropped; invalid UTF-8 becomes U+FFFD;
//    an empty channel name is ignored (warnings for these).
//  * In content: <|start|> ends the message (kept, with the text it has) and
//    starts a new one; <|channel|> does the same and the new message keeps the
//    role; <|endoftext|> ends the message; other special tokens (<|message|>,
//    <|constrain|>, reserved ones) and ids with no token are dropped. Special-
//    token text spelled with ordinary tokens is content, as in the reference.
//  * End of stream (process_eos) in content keeps the message (held-back bytes of
//    an incomplete UTF-8 character become U+FFFD); in a header it keeps a message
//    as the stop-token rule does; right after the constructor's role (no token
//    at all) it is reported.
class StreamParser {
 public:
  // `role`: the role of the first message when the stream starts inside its
  // header (a completion of a prompt ending with "<|start|>assistant");
  // nullopt when the stream starts with <|start|>.
  StreamParser(std::shared_ptr<const Tokenizer> tokenizer, std::optional<Role> role);
  ~StreamParser();
  StreamParser(StreamParser&&) noexcept;
  StreamParser& operator=(StreamParser&&) noexcept;

  void process(int32_t token);
  // End of the stream: completes a message in progress.
  void process_eos();

  StreamState state() const;
  // As the reference: the role of the message whose content is being read, or
  // else the role given for the next message (the constructor's, until the first
  // message's header is read).
  std::optional<Role> current_role() const;
  // Header fields of the message whose content is being read (nullopt otherwise).
  std::optional<std::string> current_channel() const;
  std::optional<std::string> current_recipient() const;
  std::optional<std::string> current_content_type() const;
  // Text of the message being read, so far.
  const std::string& current_content() const;
  // Text completed by the last token (empty if it completed none or was not content).
  const std::string& last_content_delta() const;
  // Completed messages; each has one text part.
  const std::vector<Message>& messages() const;
  std::vector<Message> take_messages();
  const std::vector<ParseWarning>& warnings() const;
  // Every token given to process().
  const std::vector<int32_t>& tokens() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Parses a completion (tokens after the prompt) into messages; see StreamParser.
// `warnings`, if given, receives the problems found.
std::vector<Message> parse_messages(std::shared_ptr<const Tokenizer> tokenizer, std::span<const int32_t> tokens,
                                    std::optional<Role> role, std::vector<ParseWarning>* warnings = nullptr);

}  // namespace gon::harmony
