"""The harmony chat format (gpt_oss_native.harmony) against the reference, openai-harmony.

Rendering must match openai-harmony token for token, and parsing must give the
same messages and the same per-token stream state (role, channel, recipient,
content type, content delta). Both run on the real o200k_harmony vocabulary:
the o200k_base rank file is written from quicktok-v1's vocabulary and checked
against the official sha256, then given to openai-harmony (through
TIKTOKEN_ENCODINGS_BASE, so nothing is downloaded) and to our tokenizer.
Malformed streams must never raise and must be reported as warnings.
"""

from __future__ import annotations

import os
import random

import pytest

import openai_harmony as oh

import gpt_oss_native.harmony as H


START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL = 200006, 200007, 200008, 200005, 200003, 200002, 200012
ENDOFTEXT, STARTOFTEXT, RESERVED = 199999, 199998, 200013


# ---- fixtures: one vocabulary for both implementations ---------------------------------


@pytest.fixture(scope="session")
def vocab_dir(o200k_rank_file):
    return o200k_rank_file.parent


@pytest.fixture(scope="session")
def henc(vocab_dir):
    old = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(vocab_dir)
    try:
        return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    finally:
        if old is None:
            del os.environ["TIKTOKEN_ENCODINGS_BASE"]
        else:
            os.environ["TIKTOKEN_ENCODINGS_BASE"] = old


@pytest.fixture(scope="session")
def tok(vocab_dir):
    from gpt_oss_native.tokenizer import Tokenizer

    return Tokenizer(vocab_dir / "o200k_base.tiktoken")


# ---- our data model -> openai-harmony's ------------------------------------------------


def h_tool(t: H.ToolDescription):
    return oh.ToolDescription.new(t.name, t.description, t.parameters)


def h_namespace(ns: H.ToolNamespace):
    return oh.ToolNamespaceConfig(name=ns.name, description=ns.description, tools=[h_tool(t) for t in ns.tools])


def h_part(p):
    if isinstance(p, str):
        return oh.TextContent(text=p)
    if isinstance(p, H.SystemContent):
        effort = None if p.reasoning_effort is None else oh.ReasoningEffort(p.reasoning_effort.value.capitalize())
        cc = None
        if p.valid_channels is not None:
            cc = oh.ChannelConfig(valid_channels=list(p.valid_channels), channel_required=p.channel_required)
        return oh.SystemContent(
            model_identity=p.model_identity,
            reasoning_effort=effort,
            knowledge_cutoff=p.knowledge_cutoff,
            conversation_start_date=p.conversation_start_date,
            channel_config=cc,
            tools={ns.name: h_namespace(ns) for ns in p.tools} or None,
        )
    if isinstance(p, H.DeveloperContent):
        d = oh.DeveloperContent(instructions=p.instructions)
        for ns in p.tools:
            d = d.with_tools(h_namespace(ns))
        if p.function_tools:
            d = d.with_function_tools([h_tool(t) for t in p.function_tools])
        return d
    raise TypeError(p)


def h_message(m: H.Message):
    parts = m.content if isinstance(m.content, list) else [m.content]
    hm = oh.Message(author=oh.Author(role=oh.Role(m.role.value), name=m.name), content=[h_part(p) for p in parts])
    hm.channel, hm.recipient, hm.content_type = m.channel, m.recipient, m.content_type
    return hm


def h_conv(msgs):
    return oh.Conversation.from_messages([h_message(m) for m in msgs])


def as_tuple(m):
    """A parsed message of either implementation, comparable."""
    if isinstance(m, H.Message):
        return (m.role.value, m.name, m.recipient, m.channel, m.content_type, m.text)
    assert len(m.content) == 1
    return (m.author.role.value, m.author.name, m.recipient, m.channel, m.content_type, m.content[0].text)


# ---- the conversations -------------------------------------------------------------------

SCHEMAS = {
    "get_current_weather": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        "required": ["location"],
    },
    "lists": {
        "type": "object",
        "properties": {
            "locations": {"type": "array", "items": {"type": "string"}, "description": 'e.g. ["Paris", "Oslo"]'},
            "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "anything": {"type": "array"},
            "flags": {"type": "array", "items": {"type": "boolean"}, "default": [True, False]},
        },
        "required": ["locations", "matrix"],
    },
    "nested": {
        "description": "Parameters of a nested call.",
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "description": "Who asks.",
                "properties": {
                    "name": {"type": "string", "title": "Name", "examples": ["Ada", "Grace"]},
                    "age": {"type": "integer", "default": 42},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "integer"]}},
                        "required": ["city"],
                    },
                },
                "required": ["name"],
            },
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        },
    },
    "kitchensink": {
        "description": "params object",
        "type": "object",
        "properties": {
            "string": {"type": "string", "title": "STRING", "description": "A string", "examples": ["hello", "world"]},
            "string_nullable": {"type": "string", "nullable": True, "description": "A nullable string",
                                "default": "the default"},
            "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
            "oneof_string_or_number": {
                "oneOf": [{"type": "string", "default": "default_string_in_oneof"},
                          {"type": "number", "description": "numbers can happen too"}],
                "description": "a oneof",
                "default": 20,
            },
            "oneof_same_desc": {
                "oneOf": [{"type": "string", "description": "same"}, {"type": "boolean", "nullable": True}],
                "description": "same",
                "default": "x",
            },
            "enum_default": {"type": "string", "enum": ["x", "y"], "default": "y", "nullable": True},
            "float": {"type": "number", "default": 0.1},
            "big": {"type": "number", "default": 1e20},
            "tiny": {"type": "number", "default": 1.5e-7},
            "whole": {"type": "number", "default": 3.0},
            "obj_default": {"type": "object", "default": {"k": "v\n\"q\"", "n": None}},
            "null_type": {"type": "null"},
            "no_type": {"description": "no type at all"},
            "type_list": {"type": ["number", "string", "null"]},
        },
        "required": ["string_enum"],
    },
    "top_level_oneof": {"oneOf": [{"type": "string", "description": "a name"}, {"type": "integer", "default": 7}]},
    "empty_object": {"type": "object", "properties": {}},
    "odd_shapes": {
        "type": "object",
        "properties": {
            "int_enum": {"type": "integer", "enum": [1, 2]},
            "oneof_not_list": {"oneOf": {"type": "string"}, "description": "skipped", "default": 1},
            "any_of": {"anyOf": [{"type": "string"}, {"type": "number"}]},
            "multi_line": {"type": "string", "description": "line one\nline two"},
            "mixed_examples": {"type": "string", "examples": ["a", 1, None, "b"]},
            "array_of_union": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
            "title_not_string": {"type": "boolean", "title": 5, "default": False},
            "big_int": {"type": "integer", "default": 2**70},
            "neg": {"type": "integer", "default": -17},
            "neg_zero": {"type": "number", "default": -0.0},
            "quoted": {"type": "string", "default": 'say "hi"\t\u0001'},
        },
        "required": "not-a-list",
    },
    "properties_not_object": {"type": "object", "properties": [1, 2], "description": "odd"},
    "unicode": {"type": "object", "properties": {"città": {"type": "string", "description": "Città — ☃"}}},
}


def function_tools():
    return [
        H.ToolDescription("get_location", "Gets the location of the user."),
        H.ToolDescription("get_current_weather", "Gets the current weather\nin the provided location.",
                          SCHEMAS["get_current_weather"]),
        *[H.ToolDescription(name, f"The {name} tool.", schema) for name, schema in SCHEMAS.items()
          if name != "get_current_weather"],
        H.ToolDescription("no_description", "", {"type": "object", "properties": {"x": {"type": "string"}}}),
    ]


def browser_like():
    # openai-harmony's own built-in namespaces, as data.
    out = []
    for ns in (oh.ToolNamespaceConfig.browser(), oh.ToolNamespaceConfig.python()):
        out.append(H.ToolNamespace(ns.name, ns.description,
                                   [H.ToolDescription(t.name, t.description, t.parameters) for t in ns.tools]))
    return out


def conversations():
    S, U, A, T = H.Message.system, H.Message.user, H.Message.assistant, H.Message.tool
    sc = H.SystemContent
    call = A('{"location": "Tokyo, JP"}', channel="commentary", recipient="functions.get_current_weather",
             content_type="<|constrain|>json")
    convs = {}
    for effort in H.ReasoningEffort:
        convs[f"effort_{effort.value}"] = [S(sc(reasoning_effort=effort)), U("What is 2 + 2?")]
        convs[f"effort_{effort.value}_dated"] = [
            S(sc(reasoning_effort=effort, conversation_start_date="2025-06-28", knowledge_cutoff="2024-06")), U("Hi")]
    convs["no_effort_no_cutoff"] = [S(sc(reasoning_effort=None, knowledge_cutoff=None)), U("Hi")]
    convs["bare_system"] = [S(sc(model_identity=None, reasoning_effort=None, knowledge_cutoff=None,
                                 valid_channels=None)), U("Hi")]
    convs["custom_identity_channels"] = [
        S(sc(model_identity="You are a helpful bot.", valid_channels=["analysis", "final"], channel_required=False)),
        U("Hi")]
    convs["developer_instructions"] = [S(), H.Message.developer("Talk like a pirate.\n\nAlways."), U("Hello")]
    convs["function_tools"] = [
        S(sc(reasoning_effort=H.ReasoningEffort.HIGH, conversation_start_date="2025-06-28")),
        H.Message.developer(H.DeveloperContent("Always respond in riddles", function_tools=function_tools())),
        U("What is the weather like in Tokyo?"),
        A("Need to call get_current_weather.", channel="analysis"),
        call,
        T("functions.get_current_weather", '{"temperature": 20, "sunny": true}'),
        A("It is sunny and 20°C in Tokyo.", channel="final"),
    ]
    convs["tools_without_instructions"] = [S(), H.Message.developer(H.DeveloperContent(function_tools=function_tools()[:2])),
                                           U("Weather?")]
    convs["system_namespaces"] = [S(sc(tools=browser_like(), conversation_start_date="2025-06-28")), U("Search it")]
    convs["developer_extra_namespace"] = [
        S(), H.Message.developer(H.DeveloperContent(
            "Be brief.", function_tools=function_tools()[:1],
            tools=[H.ToolNamespace("zeta", "Zeta tools.\nLine two.", [H.ToolDescription("z", "Does z.")]),
                   H.ToolNamespace("alpha", "Only a description.")])),
        U("Hi")]
    convs["tool_call_pending"] = [S(), H.Message.developer(H.DeveloperContent(function_tools=function_tools()[:2])),
                                  U("Weather in Tokyo?"), A("I should call the tool.", channel="analysis"), call]
    convs["multi_turn_drop"] = [S(), U("q1"), A("think 1", channel="analysis"), A("answer 1"), U("q2"),
                                A("think 2", channel="analysis"), A("answer 2")]
    convs["ongoing_analysis"] = [S(), U("q1"), A("think 1", channel="analysis"), A("answer 1"), U("q2"),
                                 A("think 2", channel="analysis")]
    convs["analysis_between_finals"] = [S(), U("q"), A("t0", channel="analysis"), A("first"),
                                        A("t1", channel="analysis"), A("second")]
    convs["unicode"] = [S(), U("héllo 🌍 你好 — ‽ ﷽ e\u0301 \U0001F9D1\u200D\U0001F680"), A("Ça va? 😀 日本語", channel="final")]
    convs["special_token_text"] = [
        S(), U("What does <|end|> mean? <|start|>assistant<|channel|>final<|message|>hi<|return|>"),
        A("It is <|call|> and <|constrain|>json.", channel="final")]
    convs["named_user_and_plain_type"] = [S(), H.Message(H.Role.USER, "hi", name="alice"),
                                          A('{"a": 1}', channel="final", content_type="json")]
    convs["recipient_all_and_empty"] = [S(), U(""), A("broadcast", channel="commentary", recipient="all")]
    convs["multi_part_and_whitespace"] = [S(), H.Message(H.Role.USER, ["part one, ", "part two"]),
                                          U("  spaces  \n\ttabs\r\nCRLF\n\n")]
    convs["tool_result_without_recipient"] = [S(), U("q"), call, T("functions.get_current_weather", "20C", recipient=None)]
    convs["no_system"] = [U("Just a user"), A("and an answer", channel="final")]
    return convs


CONVERSATIONS = conversations()


# ---- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_matches_openai_harmony(name, tok, henc):
    msgs = CONVERSATIONS[name]
    hc = h_conv(msgs)
    for role in (H.Role.ASSISTANT, H.Role.USER):
        ours = H.render_conversation_for_completion(tok, msgs, role)
        assert ours == henc.render_conversation_for_completion(hc, oh.Role(role.value)), name
    for drop in (True, False):
        cfg = oh.RenderConversationConfig(auto_drop_analysis=drop)
        assert H.render_conversation(tok, msgs, auto_drop_analysis=drop) == henc.render_conversation(hc, cfg)
        assert (H.render_conversation_for_training(tok, H.Conversation(msgs), auto_drop_analysis=drop)
                == henc.render_conversation_for_training(hc, cfg))
    for m in msgs:
        for fn in (False, True):
            assert (H.render_message(tok, m, conversation_has_function_tools=fn)
                    == henc.render(h_message(m), oh.RenderOptions(conversation_has_function_tools=fn)))


def test_render_text_of_system_message(tok, henc):
    toks = H.render_conversation_for_completion(
        tok, [H.Message.system(H.SystemContent(reasoning_effort=H.ReasoningEffort.HIGH,
                                               conversation_start_date="2025-06-28")), H.Message.user("Hi")])
    assert henc.decode_utf8(toks) == (
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\nCurrent date: 2025-06-28\n\nReasoning: high\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
        "<|start|>user<|message|>Hi<|end|><|start|>assistant")


def test_stop_tokens(tok, henc):
    assert sorted(H.stop_tokens(tok)) == sorted(henc.stop_tokens()) == H.stop_tokens()
    assert sorted(H.stop_tokens_for_assistant_actions(tok)) == sorted(henc.stop_tokens_for_assistant_actions())
    assert H.stop_tokens_for_assistant_actions() == [RETURN, CALL]


def test_render_errors(tok):
    from gpt_oss_native.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="tool message needs an author name"):
        H.render_message(tok, H.Message(H.Role.TOOL, "result"))
    with pytest.raises(InvalidArgumentError, match="system content in a user message"):
        H.render_message(tok, H.Message(H.Role.USER, H.SystemContent()))
    with pytest.raises(TypeError):
        H.render_message(tok, H.Message(H.Role.USER, 42))
    bad_schema = H.DeveloperContent(function_tools=[H.ToolDescription("f", "", {"default": float("nan")})])
    with pytest.raises(InvalidArgumentError, match="parameters of tool f"):
        H.render_message(tok, H.Message.developer(bad_schema))


def test_json_schema_to_typescript():
    assert H.json_schema_to_typescript(SCHEMAS["get_current_weather"]) == (
        '{\n// The city and state, e.g. San Francisco, CA\nlocation: string,\n'
        'format?: "celsius" | "fahrenheit", // default: celsius\n}')
    assert H.json_schema_to_typescript({"type": "array", "items": {"type": "integer"}}) == "number[]"


# ---- parsing: agreement with openai-harmony ----------------------------------------------------


def parser_state(p):
    """What a streaming parser exposes after each token (ours mirrors openai-harmony's names)."""
    return (p.current_role and p.current_role.value, p.current_channel, p.current_recipient,
            p.current_content_type, p.last_content_delta, p.state.name, len(p.messages), p.current_content)


def harmony_stream(henc, tokens, role):
    """Per-token states of openai-harmony's parser; stops where it raises."""
    p = oh.StreamableParser(henc, None if role is None else oh.Role(role.value))
    states = []
    try:
        for t in tokens:
            p.process(t)
            states.append(parser_state(p))
        p.process_eos()
    except oh.HarmonyError:
        return states, None
    return states, [as_tuple(m) for m in p.messages]


def our_stream(tok, tokens, role):
    p = H.StreamParser(tok, role)
    states = []
    for t in tokens:
        p.process(t)
        states.append(parser_state(p))
    p.process_eos()
    return states, [as_tuple(m) for m in p.messages], p.warnings


def check_agreement(tok, henc, tokens, role, *, expect_clean=True):
    h_states, h_msgs = harmony_stream(henc, tokens, role)
    states, msgs, warnings = our_stream(tok, tokens, role)
    n = len(h_states)
    if h_msgs is None:  # the reference gave up at token n-1: states agree before it
        n -= 1
    assert states[:n] == h_states[:n]
    if h_msgs is not None:
        assert msgs == h_msgs
        if expect_clean:
            assert warnings == []
        # the non-streaming entry points agree too
        assert [as_tuple(m) for m in H.parse_messages(tok, tokens, role)] == msgs
        assert [as_tuple(m) for m in henc.parse_messages_from_completion_tokens(
            tokens, None if role is None else oh.Role(role.value))] == h_msgs
    return h_msgs, msgs, warnings


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_parse_rendered_conversation(name, tok, henc):
    msgs = CONVERSATIONS[name]
    tokens = henc.render_conversation(h_conv(msgs), oh.RenderConversationConfig(auto_drop_analysis=False))
    h_msgs, ours, warnings = check_agreement(tok, henc, tokens, None)
    assert len(ours) == len(msgs) and warnings == []
    if h_msgs is None:
        # The reference rejects a header of a lone tool name (no recipient) or "role:name"; we read them.
        read_by_us_only = {
            "tool_result_without_recipient": ("tool", "functions.get_current_weather", None, "commentary", None, "20C"),
            "named_user_and_plain_type": ("user", "alice", None, None, None, "hi"),
        }
        assert read_by_us_only[name] in ours


def completion_cases(henc):
    """Completions as the model samples them: after "<|start|>assistant" (role given) or whole messages."""
    enc = lambda s: henc.encode(s, allowed_special="all")  # noqa: E731
    A = H.Role.ASSISTANT
    cases = {
        "analysis_final": enc("<|channel|>analysis<|message|>User asks 2+2. Answer 4.<|end|>"
                              "<|start|>assistant<|channel|>final<|message|>2 + 2 = **4** ✅<|return|>"),
        "tool_call_channel_first": enc("<|channel|>analysis<|message|>Need weather.<|end|>"
                                       "<|start|>assistant<|channel|>commentary to=functions.get_weather "
                                       "<|constrain|>json<|message|>{\"location\":\"San Francisco\"}<|call|>"),
        "tool_call_recipient_first": enc("<|start|>assistant to=functions.get_weather<|channel|>commentary "
                                         "<|constrain|>json<|message|>{\"city\": \"東京\"}<|call|>"),
        "constrain_glued": enc("<|channel|>commentary to=functions.f<|constrain|>json<|message|>{}<|call|>"),
        "commentary_preamble": enc("<|channel|>commentary<|message|>Let me check.<|end|>"
                                   "<|start|>assistant<|channel|>final<|message|>Done.<|return|>"),
        "no_stop_token": enc("<|channel|>final<|message|>cut short"),
        "emoji_split": enc("<|channel|>final<|message|>") + henc.encode("🧑‍🚀 👩🏽‍🔬 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ﷽") + [RETURN],
    }
    out = {name: (tokens, None if name == "tool_call_recipient_first" else A) for name, tokens in cases.items()}
    out["whole_messages"] = (enc("<|start|>assistant<|channel|>analysis<|message|>x<|end|>"
                                 "<|start|>functions.f to=assistant<|channel|>commentary<|message|>42<|end|>"
                                 "<|start|>assistant<|channel|>final<|message|>y<|return|>"), None)
    return out


def test_parse_completions(tok, henc):
    for name, (tokens, role) in completion_cases(henc).items():
        h_msgs, ours, warnings = check_agreement(tok, henc, tokens, role, expect_clean=name != "no_stop_token")
        assert h_msgs is not None, name
        if name == "no_stop_token":
            assert len(warnings) == 1 and warnings[0].message_index == 0
    tool = completion_cases(henc)["tool_call_channel_first"][0]
    m = H.parse_messages(tok, tool, H.Role.ASSISTANT)[-1]
    assert (m.recipient, m.channel, m.content_type, m.text) == (
        "functions.get_weather", "commentary", "<|constrain|>json", '{"location":"San Francisco"}')


def test_stream_deltas_never_split_characters(tok, henc):
    text = "naïve café 🧑‍🚀 日本語テキスト 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
    tokens = henc.encode("<|channel|>final<|message|>", allowed_special="all") + henc.encode(text)
    p = H.StreamParser(tok, H.Role.ASSISTANT)
    pieces = []
    for t in tokens:
        p.process(t)
        pieces.append(p.last_content_delta)
    assert "".join(x for x in pieces if x) == text == p.current_content
    assert None in pieces[-len(henc.encode(text)):]  # some token completed no character
    p.process(RETURN)
    assert p.messages[-1].text == text and p.state == H.StreamState.EXPECT_START


# ---- parsing: malformed streams ---------------------------------------------------------------------


def check_invariants(p: H.StreamParser, n_tokens: int):
    for m in p.messages:
        assert isinstance(m.text, str)
        m.text.encode("utf-8")  # no lone surrogates: valid UTF-8 came out
    for w in p.warnings:
        assert 0 <= w.token_index <= n_tokens
        assert -1 <= w.message_index <= len(p.messages)
        assert w.text


def test_specific_recoveries(tok, henc):
    enc = lambda s: henc.encode(s, allowed_special="all")  # noqa: E731
    w = []
    # a new <|start|> in the middle of a message
    msgs = H.parse_messages(tok, enc("<|channel|>analysis<|message|>thinking<|start|>assistant<|channel|>final"
                                     "<|message|>answer<|return|>"), H.Role.ASSISTANT, warnings=w)
    assert [(m.channel, m.text) for m in msgs] == [("analysis", "thinking"), ("final", "answer")]
    assert len(w) == 1 and w[0].message_index == 0
    # <|channel|> where <|end|><|start|>assistant was expected
    w = []
    msgs = H.parse_messages(tok, enc("<|channel|>analysis<|message|>a<|channel|>final<|message|>b<|return|>"),
                            H.Role.ASSISTANT, warnings=w)
    assert [(m.role, m.channel, m.text) for m in msgs] == [(H.Role.ASSISTANT, "analysis", "a"),
                                                           (H.Role.ASSISTANT, "final", "b")]
    assert len(w) == 1
    # a header that never got <|message|>
    w = []
    msgs = H.parse_messages(tok, enc("<|start|>assistant<|channel|>final Hello there<|end|>"), None, warnings=w)
    assert [(m.channel, m.text) for m in msgs] == [("final", "Hello there")] and w
    # "<|message|>" written as text instead of the special token
    w = []
    msgs = H.parse_messages(tok, enc("<|channel|>final") + henc.encode("<|message|>", disallowed_special=())
                            + henc.encode("Hi!") + [RETURN], H.Role.ASSISTANT, warnings=w)
    assert [(m.channel, m.text) for m in msgs] == [("final", "Hi!")] and len(w) == 1
    # text where <|start|> was expected, stray specials, ids outside the vocabulary
    w = []
    msgs = H.parse_messages(tok, henc.encode("junk") + [END, 10**6, -1] + enc("<|start|>user<|message|>x")
                            + [CONSTRAIN, RESERVED, 10**7, STARTOFTEXT] + henc.encode("y") + [END, ENDOFTEXT],
                            None, warnings=w)
    assert [(m.role, m.text) for m in msgs] == [(H.Role.USER, "xy")]
    assert len(w) == 5
    # ids far outside int32 are ids with no token too
    w = []
    msgs = H.parse_messages(tok, enc("<|start|>user<|message|>a") + [2**40, -(2**40)] + [END], None, warnings=w)
    assert [m.text for m in msgs] == ["a"] and len(w) == 2
    # end of stream inside a header and inside a message
    w = []
    msgs = H.parse_messages(tok, enc("<|start|>assistant<|channel|>analysis"), None, warnings=w)
    assert [(m.channel, m.text) for m in msgs] == [("analysis", "")] and len(w) == 1
    w = []
    assert H.parse_messages(tok, [], H.Role.ASSISTANT, warnings=w) == [] and len(w) == 1


def test_truncated_streams(tok, henc):
    tokens = henc.render_conversation(h_conv(CONVERSATIONS["function_tools"]),
                                      oh.RenderConversationConfig(auto_drop_analysis=False))
    starts = {i for i, t in enumerate(tokens) if t == START}
    rng = random.Random(1234)
    cuts = sorted(set(rng.sample(range(len(tokens)), 60)) | {len(tokens)} | starts)
    for n in cuts:
        p = H.StreamParser(tok, None)
        p.process_tokens(tokens[:n])
        p.process_eos()
        check_invariants(p, n)
        # cut at a message boundary: clean; inside a message: reported
        assert (p.warnings == []) == (n in starts or n == len(tokens) or n == 0), n


def test_interleaved_specials(tok, henc):
    base = henc.render_conversation(h_conv(CONVERSATIONS["function_tools"][2:]),
                                    oh.RenderConversationConfig(auto_drop_analysis=False))
    rng = random.Random(99)
    for _ in range(150):
        tokens = list(base)
        special = rng.choice([START, END, MESSAGE, RETURN, CALL, RESERVED, 10**6])
        tokens.insert(rng.randrange(len(tokens) + 1), special)
        p = H.StreamParser(tok, None)
        p.process_tokens(tokens)
        p.process_eos()
        check_invariants(p, len(tokens))
        assert p.warnings, (special, tokens)


def test_random_token_soup(tok, henc):
    rng = random.Random(2024)
    specials = [START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL, ENDOFTEXT, STARTOFTEXT, RESERVED]
    words = [henc.encode(w) for w in ("assistant", "user", " to=functions.f", "analysis", "final", " json", "é", "🧑")]
    for i in range(300):
        tokens = []
        for _ in range(rng.randrange(1, 120)):
            r = rng.random()
            if r < 0.3:
                tokens.append(rng.choice(specials))
            elif r < 0.5:
                tokens.extend(rng.choice(words))
            elif r < 0.9:
                tokens.append(rng.randrange(200000))
            else:
                tokens.append(rng.randrange(-5, 300000))
        role = rng.choice([None, H.Role.ASSISTANT])
        p = H.StreamParser(tok, role)
        for t in tokens:
            p.process(t)
            assert p.last_content_delta is None or isinstance(p.last_content_delta, str)
        p.process_eos()
        check_invariants(p, len(tokens))
        assert p.state == H.StreamState.EXPECT_START
        # Tokens that have no place in harmony (no such id, reserved, <|startoftext|>) are always reported,
        # and so is a stream that does not start with <|start|>.
        if any(is_odd(t) for t in tokens) or (role is None and tokens[0] not in (START, ENDOFTEXT)):
            assert p.warnings


def is_odd(t):
    return not (0 <= t < 199998 or t in (ENDOFTEXT, START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL))


# ---- randomised: rendering and parsing of generated conversations ---------------------------------


def random_schema(rng, depth=0):
    kind = rng.choice(["string", "number", "integer", "boolean", "array", "enum", "oneOf", "typelist"]
                      + (["object"] * 3 if depth < 3 else []))
    s = {}
    if kind == "object":
        s["type"] = "object"
        props = {}
        for i in range(rng.randrange(0, 4)):
            props[rng.choice(["a", "b_c", "déjà", "x1"]) + str(i)] = random_schema(rng, depth + 1)
        s["properties"] = props
        s["required"] = [k for k in props if rng.random() < 0.5]
    elif kind == "array":
        s["type"] = "array"
        if rng.random() < 0.8:
            s["items"] = random_schema(rng, depth + 1)
    elif kind == "enum":
        s["type"] = "string"
        s["enum"] = rng.sample(["red", "green", "blue", "ünï"], rng.randrange(1, 4))
    elif kind == "oneOf":
        s["oneOf"] = [random_schema(rng, depth + 1) for _ in range(rng.randrange(1, 3))]
    elif kind == "typelist":
        s["type"] = rng.sample(["string", "integer", "null", "boolean"], 2)
    else:
        s["type"] = kind
    for key, p, gen in (("description", 0.4, lambda: rng.choice(["Some text.", "Two\nlines", "€ – ✓"])),
                        ("default", 0.2, lambda: rng.choice([1, 2.5, "dflt", True, None, [1, "x"], {"k": 1}])),
                        ("nullable", 0.2, lambda: True), ("title", 0.1, lambda: "A Title"),
                        ("examples", 0.1, lambda: ["ex1", "ex2"])):
        if rng.random() < p:
            s[key] = gen()
    return s


def random_conversation(rng):
    texts = ["Hello!", "", "  padded  ", "multi\nline\r\n", "ünïcödé ✓ 😀 日本", "<|end|> literal <|start|>",
             '{"json": [1, 2, {"a": null}]}', "to=functions.x <|channel|>final", "a" * 50]
    msgs = []
    if rng.random() < 0.8:
        msgs.append(H.Message.system(H.SystemContent(
            reasoning_effort=rng.choice(list(H.ReasoningEffort) + [None]),
            conversation_start_date=rng.choice([None, "2025-01-01"]),
            knowledge_cutoff=rng.choice([None, "2024-06"]))))
    if rng.random() < 0.6:
        tools = [H.ToolDescription(f"tool_{i}", rng.choice(["", "Does things.", "Line 1\nLine 2\n"]),
                                   random_schema(rng) if rng.random() < 0.8 else None) for i in range(rng.randrange(0, 3))]
        msgs.append(H.Message.developer(H.DeveloperContent(rng.choice([None, "Be nice."]), function_tools=tools)))
    for _ in range(rng.randrange(1, 8)):
        r = rng.random()
        text = rng.choice(texts)
        if r < 0.3:
            msgs.append(H.Message.user(text))
        elif r < 0.8:
            ch = rng.choice(["analysis", "commentary", "final", None])
            rec = rng.choice([None, None, "functions.tool_0", "all"])
            ct = rng.choice([None, None, "<|constrain|>json", "json"]) if rec else None
            msgs.append(H.Message.assistant(text, channel=ch, recipient=rec, content_type=ct))
        else:
            msgs.append(H.Message.tool("functions.tool_0", text, channel=rng.choice(["commentary", None])))
    return msgs


def test_random_conversations(tok, henc):
    rng = random.Random(7)
    for i in range(120):
        msgs = random_conversation(rng)
        hc = h_conv(msgs)
        assert H.render_conversation_for_completion(tok, msgs) == henc.render_conversation_for_completion(
            hc, oh.Role.ASSISTANT), i
        tokens = henc.render_conversation(hc, oh.RenderConversationConfig(auto_drop_analysis=False))
        h_msgs, ours, warnings = check_agreement(tok, henc, tokens, None)
        assert len(ours) == len(msgs)
