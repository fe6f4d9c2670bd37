// Bindings of the harmony chat format (gpt_oss_native/harmony.hpp) as the
// submodule gpt_oss_native._core.harmony; python/gpt_oss_native/harmony.py
// wraps them in Pythonic classes. The renderer and parser take the C++
// tokenizer object (gpt_oss_native.Tokenizer holds one as `_native`).
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "bindings/bindings.hpp"
#include "core/check.hpp"
#include "gpt_oss_native/harmony.hpp"

namespace nb = nanobind;

namespace gon::bindings {

namespace {

using namespace gon::harmony;
// _core.Tokenizer is held by std::shared_ptr<Tokenizer> (see bindings/tokenizer.cpp).
using TokenizerPtr = std::shared_ptr<Tokenizer>;

const Tokenizer& deref(const TokenizerPtr& t) {
  GON_CHECK(t != nullptr, kInvalidArgument, "harmony: a tokenizer is required");
  return *t;
}

Conversation to_conversation(std::vector<Message> messages) { return Conversation{std::move(messages)}; }

nb::tuple warning_tuple(const ParseWarning& w) {
  return nb::make_tuple(w.token_index, w.message_index, w.text);
}

nb::list warning_list(const std::vector<ParseWarning>& ws) {
  nb::list out;
  for (const ParseWarning& w : ws) out.append(warning_tuple(w));
  return out;
}

}  // namespace

void init_harmony(nb::module_& parent) {
  nb::module_ m = parent.def_submodule("harmony", "The harmony chat format (use gpt_oss_native.harmony).");

  nb::enum_<Role>(m, "Role")
      .value("SYSTEM", Role::kSystem)
      .value("DEVELOPER", Role::kDeveloper)
      .value("USER", Role::kUser)
      .value("ASSISTANT", Role::kAssistant)
      .value("TOOL", Role::kTool);
  nb::enum_<ReasoningEffort>(m, "ReasoningEffort")
      .value("LOW", ReasoningEffort::kLow)
      .value("MEDIUM", ReasoningEffort::kMedium)
      .value("HIGH", ReasoningEffort::kHigh);
  nb::enum_<StreamState>(m, "StreamState")
      .value("EXPECT_START", StreamState::kExpectStart)
      .value("HEADER", StreamState::kHeader)
      .value("CONTENT", StreamState::kContent);

  nb::class_<ToolDescription>(m, "ToolDescription")
      .def(nb::init<>())
      .def_rw("name", &ToolDescription::name)
      .def_rw("description", &ToolDescription::description)
      .def_rw("parameters", &ToolDescription::parameters, "JSON schema as JSON text, or None");
  nb::class_<ToolNamespace>(m, "ToolNamespace")
      .def(nb::init<>())
      .def_rw("name", &ToolNamespace::name)
      .def_rw("description", &ToolNamespace::description)
      .def_rw("tools", &ToolNamespace::tools);
  nb::class_<ChannelConfig>(m, "ChannelConfig")
      .def(nb::init<>())
      .def_rw("valid_channels", &ChannelConfig::valid_channels)
      .def_rw("channel_required", &ChannelConfig::channel_required);
  nb::class_<SystemContent>(m, "SystemContent")
      .def(nb::init<>())
      .def_rw("model_identity", &SystemContent::model_identity)
      .def_rw("reasoning_effort", &SystemContent::reasoning_effort)
      .def_rw("knowledge_cutoff", &SystemContent::knowledge_cutoff)
      .def_rw("conversation_start_date", &SystemContent::conversation_start_date)
      .def_rw("channel_config", &SystemContent::channel_config)
      .def_rw("tools", &SystemContent::tools);
  nb::class_<DeveloperContent>(m, "DeveloperContent")
      .def(nb::init<>())
      .def_rw("instructions", &DeveloperContent::instructions)
      .def_rw("tools", &DeveloperContent::tools);
  nb::class_<Message>(m, "Message")
      .def(nb::init<>())
      .def_rw("role", &Message::role)
      .def_rw("name", &Message::name)
      .def_rw("recipient", &Message::recipient)
      .def_rw("channel", &Message::channel)
      .def_rw("content_type", &Message::content_type)
      .def_rw("content", &Message::content, "list of parts: str, SystemContent or DeveloperContent")
      .def("text", [](const Message& msg) { return msg.text(); });

  m.def(
      "render_message",
      [](const TokenizerPtr& tok, const Message& msg, bool function_tools) {
        return render_message(deref(tok), msg, function_tools);
      },
      nb::arg("tokenizer"), nb::arg("message"), nb::arg("conversation_has_function_tools") = false);
  m.def(
      "render_conversation",
      [](const TokenizerPtr& tok, std::vector<Message> msgs, bool auto_drop) {
        return render_conversation(deref(tok), to_conversation(std::move(msgs)), RenderOptions{auto_drop});
      },
      nb::arg("tokenizer"), nb::arg("messages"), nb::arg("auto_drop_analysis") = true);
  m.def(
      "render_conversation_for_completion",
      [](const TokenizerPtr& tok, std::vector<Message> msgs, Role next_role, bool auto_drop) {
        return render_conversation_for_completion(deref(tok), to_conversation(std::move(msgs)), next_role,
                                                  RenderOptions{auto_drop});
      },
      nb::arg("tokenizer"), nb::arg("messages"), nb::arg("next_role"), nb::arg("auto_drop_analysis") = true);
  m.def(
      "render_conversation_for_training",
      [](const TokenizerPtr& tok, std::vector<Message> msgs, bool auto_drop) {
        return render_conversation_for_training(deref(tok), to_conversation(std::move(msgs)),
                                                RenderOptions{auto_drop});
      },
      nb::arg("tokenizer"), nb::arg("messages"), nb::arg("auto_drop_analysis") = true);
  m.def("system_content_text", &system_content_text, nb::arg("content"),
        nb::arg("conversation_has_function_tools") = false);
  m.def("developer_content_text", &developer_content_text, nb::arg("content"));
  m.def(
      "json_schema_to_typescript", [](const std::string& schema) { return json_schema_to_typescript(schema); },
      nb::arg("schema_json"));
  m.def(
      "stop_tokens", [](const TokenizerPtr& tok) { return stop_tokens(deref(tok)); }, nb::arg("tokenizer"));
  m.def(
      "stop_tokens_for_assistant_actions",
      [](const TokenizerPtr& tok) { return stop_tokens_for_assistant_actions(deref(tok)); }, nb::arg("tokenizer"));
  m.def(
      "parse_messages",
      [](const TokenizerPtr& tok, const std::vector<int32_t>& tokens, std::optional<Role> role) {
        deref(tok);
        std::vector<ParseWarning> warnings;
        std::vector<Message> msgs = parse_messages(tok, tokens, role, &warnings);
        return nb::make_tuple(nb::cast(std::move(msgs)), warning_list(warnings));
      },
      nb::arg("tokenizer"), nb::arg("tokens"), nb::arg("role").none(),
      "Messages and warnings (token_index, message_index, text) of a completion.");

  nb::class_<StreamParser>(m, "StreamParser")
      .def(
          "__init__",
          [](StreamParser* self, const TokenizerPtr& tok, std::optional<Role> role) {
            deref(tok);
            new (self) StreamParser(tok, role);
          },
          nb::arg("tokenizer"), nb::arg("role").none())
      .def("process", &StreamParser::process, nb::arg("token"))
      .def(
          "process_all",
          [](StreamParser& p, const std::vector<int32_t>& tokens) {
            for (int32_t t : tokens) p.process(t);
          },
          nb::arg("tokens"))
      .def("process_eos", &StreamParser::process_eos)
      .def_prop_ro("state", &StreamParser::state)
      .def_prop_ro("current_role", &StreamParser::current_role)
      .def_prop_ro("current_channel", &StreamParser::current_channel)
      .def_prop_ro("current_recipient", &StreamParser::current_recipient)
      .def_prop_ro("current_content_type", &StreamParser::current_content_type)
      .def_prop_ro("current_content", &StreamParser::current_content)
      .def_prop_ro("last_content_delta", &StreamParser::last_content_delta)
      .def_prop_ro("messages", &StreamParser::messages)
      .def_prop_ro("num_messages", [](const StreamParser& p) { return p.messages().size(); })
      .def_prop_ro("warnings", [](const StreamParser& p) { return warning_list(p.warnings()); })
      .def_prop_ro("num_warnings", [](const StreamParser& p) { return p.warnings().size(); })
      .def_prop_ro("tokens", &StreamParser::tokens);
}

}  // namespace gon::bindings
