"""The harmony chat format of gpt-oss: prompts from conversations, messages from completions.

gpt-oss models are trained on "harmony" messages::

    <|start|>{role}[ to={recipient}][<|channel|>{channel}][ {content type}]<|message|>{content}<|end|>

This module renders conversations into prompt tokens and parses sampled tokens
back into messages, token for token as the reference ``openai-harmony``
package does (the work is done in C++, see ``cpp/include/gpt_oss_native/harmony.hpp``)::

    from gpt_oss_native import harmony as H
    tok = gpt_oss_native.Tokenizer(...)            # the model's tokenizer
    conv = H.Conversation([
        H.Message.system(H.SystemContent(reasoning_effort=H.ReasoningEffort.HIGH)),
        H.Message.developer(H.DeveloperContent(instructions="Answer in French.",
                                               function_tools=[H.ToolDescription("get_weather", "Weather.", schema)])),
        H.Message.user("What is the weather in Paris?"),
    ])
    prompt = H.render_conversation_for_completion(tok, conv)     # ends with <|start|>assistant
    parser = H.StreamParser(tok, role=H.Role.ASSISTANT)
    for token in sampled:                                        # stop on H.stop_tokens_for_assistant_actions()
        parser.process(token)
        print(parser.last_content_delta or "", end="")
    parser.process_eos()
    parser.messages                                              # [Message(channel="analysis", ...), ...]

The parser never raises on token input: malformed streams (missing header parts,
stray special tokens, truncation) are recovered from as documented on
``gon::harmony::StreamParser`` and reported in ``StreamParser.warnings``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Sequence, Union

from . import _core

_h = _core.harmony

__all__ = [
    "Role",
    "ReasoningEffort",
    "StreamState",
    "ToolDescription",
    "ToolNamespace",
    "SystemContent",
    "DeveloperContent",
    "Message",
    "Conversation",
    "ParseWarning",
    "StreamParser",
    "render_message",
    "render_conversation",
    "render_conversation_for_completion",
    "render_conversation_for_training",
    "parse_messages",
    "stop_tokens",
    "stop_tokens_for_assistant_actions",
    "json_schema_to_typescript",
    "DEFAULT_MODEL_IDENTITY",
]

DEFAULT_MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."

# Ids of the stop tokens in the gpt-oss vocabulary (o200k_harmony), for callers without a tokenizer at hand.
_RETURN, _END, _CALL = 200002, 200007, 200012


class Role(str, Enum):
    SYSTEM = "system"
    DEVELOPER = "developer"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ReasoningEffort(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class StreamState(str, Enum):
    EXPECT_START = "expect_start"  # between messages
    HEADER = "header"  # reading role / recipient / channel / content type
    CONTENT = "content"  # reading content


_ROLE_TO_NATIVE = {r: getattr(_h.Role, r.name) for r in Role}
_ROLE_FROM_NATIVE = {v: k for k, v in _ROLE_TO_NATIVE.items()}
_EFFORT_TO_NATIVE = {e: getattr(_h.ReasoningEffort, e.name) for e in ReasoningEffort}
_STATE_FROM_NATIVE = {getattr(_h.StreamState, s.name): s for s in StreamState}


@dataclass
class ToolDescription:
    """A function the model may call; ``parameters`` is its JSON schema (a dict) or None."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


@dataclass
class ToolNamespace:
    """A namespace of tools, rendered as ``## name`` and ``namespace name { ... }``."""

    name: str
    description: str | None = None
    tools: list[ToolDescription] = field(default_factory=list)


@dataclass
class SystemContent:
    """The system message. Defaults are openai-harmony's; None leaves a line out.

    ``valid_channels`` None or empty leaves out the channel section. ``tools``
    are built-in tool namespaces (rendered in name order).
    """

    model_identity: str | None = DEFAULT_MODEL_IDENTITY
    reasoning_effort: ReasoningEffort | None = ReasoningEffort.MEDIUM
    knowledge_cutoff: str | None = "2024-06"
    conversation_start_date: str | None = None
    valid_channels: list[str] | None = field(default_factory=lambda: ["analysis", "commentary", "final"])
    channel_required: bool = True
    tools: list[ToolNamespace] = field(default_factory=list)


@dataclass
class DeveloperContent:
    """The developer message: instructions and tools.

    ``function_tools`` form the ``functions`` namespace (the usual way to give
    tools); ``tools`` may add other namespaces (rendered in name order).
    """

    instructions: str | None = None
    function_tools: list[ToolDescription] = field(default_factory=list)
    tools: list[ToolNamespace] = field(default_factory=list)


Part = Union[str, SystemContent, DeveloperContent]


@dataclass
class Message:
    """One harmony message.

    ``content`` is text, a SystemContent / DeveloperContent, or a list of these
    parts. ``name`` is a tool message's author (e.g. ``"functions.get_weather"``),
    rendered in place of the role. Parsed messages have text content.
    """

    role: Role
    content: Part | list[Part] = ""
    name: str | None = None
    recipient: str | None = None
    channel: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        """The text parts of the content, concatenated."""
        parts = self.content if isinstance(self.content, list) else [self.content]
        return "".join(p for p in parts if isinstance(p, str))

    @classmethod
    def system(cls, content: SystemContent | None = None) -> Message:
        return cls(Role.SYSTEM, content if content is not None else SystemContent())

    @classmethod
    def developer(cls, content: DeveloperContent | str) -> Message:
        if isinstance(content, str):
            content = DeveloperContent(instructions=content)
        return cls(Role.DEVELOPER, content)

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(Role.USER, text)

    @classmethod
    def assistant(
        cls, text: str, channel: str | None = "final", recipient: str | None = None, content_type: str | None = None
    ) -> Message:
        return cls(Role.ASSISTANT, text, recipient=recipient, channel=channel, content_type=content_type)

    @classmethod
    def tool(cls, name: str, text: str, channel: str | None = "commentary", recipient: str | None = "assistant") -> Message:
        """A tool's result, e.g. ``Message.tool("functions.get_weather", '{"temp": 20}')``."""
        return cls(Role.TOOL, text, name=name, recipient=recipient, channel=channel)


@dataclass
class Conversation:
    messages: list[Message] = field(default_factory=list)

    def __iter__(self):
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)


@dataclass(frozen=True)
class ParseWarning:
    """A problem the parser found and recovered from."""

    token_index: int  # index of the token in the stream (== number of tokens at end of stream)
    message_index: int  # index of the message concerned in ``messages``, -1 if none
    text: str


# ---- conversion to and from the C++ types -------------------------------------------


def _native_tokenizer(tokenizer: Any) -> Any:
    """The C++ tokenizer object of a gpt_oss_native.Tokenizer (or that object itself)."""
    if tokenizer is None:
        raise TypeError("a tokenizer is required (gpt_oss_native.Tokenizer)")
    native_type = getattr(_core, "Tokenizer", None)
    if native_type is not None and isinstance(tokenizer, native_type):
        return tokenizer
    for attr in ("_native", "_tokenizer", "_impl", "_inner"):
        inner = getattr(tokenizer, attr, None)
        if inner is not None and (native_type is None or isinstance(inner, native_type)):
            return inner
    return tokenizer


def _tool_to_native(t: ToolDescription) -> Any:
    n = _h.ToolDescription()
    n.name = t.name
    n.description = t.description
    n.parameters = None if t.parameters is None else json.dumps(t.parameters)
    return n


def _namespace_to_native(ns: ToolNamespace) -> Any:
    n = _h.ToolNamespace()
    n.name = ns.name
    n.description = ns.description
    n.tools = [_tool_to_native(t) for t in ns.tools]
    return n


def _namespaces(namespaces: Iterable[ToolNamespace]) -> dict[str, Any]:
    return {ns.name: _namespace_to_native(ns) for ns in namespaces}


def _system_to_native(s: SystemContent) -> Any:
    n = _h.SystemContent()
    n.model_identity = s.model_identity
    n.reasoning_effort = None if s.reasoning_effort is None else _EFFORT_TO_NATIVE[ReasoningEffort(s.reasoning_effort)]
    n.knowledge_cutoff = s.knowledge_cutoff
    n.conversation_start_date = s.conversation_start_date
    if s.valid_channels is None:
        n.channel_config = None
    else:
        c = _h.ChannelConfig()
        c.valid_channels = list(s.valid_channels)
        c.channel_required = s.channel_required
        n.channel_config = c
    n.tools = _namespaces(s.tools)
    return n


def _developer_to_native(d: DeveloperContent) -> Any:
    n = _h.DeveloperContent()
    n.instructions = d.instructions
    tools = _namespaces(d.tools)
    if d.function_tools:
        tools["functions"] = _namespace_to_native(ToolNamespace("functions", None, list(d.function_tools)))
    n.tools = tools
    return n


def _part_to_native(p: Part) -> Any:
    if isinstance(p, str):
        return p
    if isinstance(p, SystemContent):
        return _system_to_native(p)
    if isinstance(p, DeveloperContent):
        return _developer_to_native(p)
    raise TypeError(f"message content must be str, SystemContent or DeveloperContent, not {type(p).__name__}")


def _message_to_native(m: Message) -> Any:
    if not isinstance(m, Message):
        raise TypeError(f"expected a harmony Message, got {type(m).__name__}")
    n = _h.Message()
    n.role = _ROLE_TO_NATIVE[Role(m.role)]
    n.name = m.name
    n.recipient = m.recipient
    n.channel = m.channel
    n.content_type = m.content_type
    parts = m.content if isinstance(m.content, list) else [m.content]
    n.content = [_part_to_native(p) for p in parts]
    return n


def _messages_to_native(conversation: Conversation | Sequence[Message]) -> list[Any]:
    msgs = conversation.messages if isinstance(conversation, Conversation) else conversation
    return [_message_to_native(m) for m in msgs]


def _message_from_native(n: Any) -> Message:
    # Parsed messages carry exactly one text part.
    return Message(
        role=_ROLE_FROM_NATIVE[n.role],
        content=n.text(),
        name=n.name,
        recipient=n.recipient,
        channel=n.channel,
        content_type=n.content_type,
    )


def _warning(w: tuple[int, int, str]) -> ParseWarning:
    return ParseWarning(int(w[0]), int(w[1]), str(w[2]))


def _token_id(t: int) -> int:
    """A token id for the parser; ids beyond int32 become -1 (an id with no token, reported as such)."""
    t = int(t)
    return t if -(2**31) <= t < 2**31 else -1


def _role_or_none(role: Role | str | None) -> Any:
    return None if role is None else _ROLE_TO_NATIVE[Role(role)]


# ---- rendering ----------------------------------------------------------------------


def render_message(tokenizer: Any, message: Message, *, conversation_has_function_tools: bool = False) -> list[int]:
    """Tokens of one message, from ``<|start|>`` to ``<|end|>`` (or ``<|call|>``)."""
    return _h.render_message(_native_tokenizer(tokenizer), _message_to_native(message), conversation_has_function_tools)


def render_conversation(
    tokenizer: Any, conversation: Conversation | Sequence[Message], *, auto_drop_analysis: bool = True
) -> list[int]:
    """Tokens of all messages. With ``auto_drop_analysis`` (default), when the last
    assistant message is on the final channel, analysis messages before the
    first final message are left out, as openai-harmony does."""
    return _h.render_conversation(_native_tokenizer(tokenizer), _messages_to_native(conversation), auto_drop_analysis)


def render_conversation_for_completion(
    tokenizer: Any,
    conversation: Conversation | Sequence[Message],
    next_role: Role = Role.ASSISTANT,
    *,
    auto_drop_analysis: bool = True,
) -> list[int]:
    """The prompt for sampling the next message: the conversation then ``<|start|>{next_role}``."""
    return _h.render_conversation_for_completion(
        _native_tokenizer(tokenizer), _messages_to_native(conversation), _ROLE_TO_NATIVE[Role(next_role)], auto_drop_analysis
    )


def render_conversation_for_training(
    tokenizer: Any, conversation: Conversation | Sequence[Message], *, auto_drop_analysis: bool = True
) -> list[int]:
    """As render_conversation, but a final assistant message at the end ends with ``<|return|>``."""
    return _h.render_conversation_for_training(
        _native_tokenizer(tokenizer), _messages_to_native(conversation), auto_drop_analysis
    )


def json_schema_to_typescript(schema: dict[str, Any]) -> str:
    """A tool's JSON schema as the TypeScript-like type harmony renders."""
    return _h.json_schema_to_typescript(json.dumps(schema))


def stop_tokens(tokenizer: Any = None) -> list[int]:
    """Ids of ``<|return|>``, ``<|end|>`` and ``<|call|>``: the tokens that end a message."""
    if tokenizer is None:
        return [_RETURN, _END, _CALL]
    return list(_h.stop_tokens(_native_tokenizer(tokenizer)))


def stop_tokens_for_assistant_actions(tokenizer: Any = None) -> list[int]:
    """Ids of ``<|return|>`` and ``<|call|>``: the tokens that end an assistant's turn
    (sample with these; after ``<|end|>`` the assistant continues with another message)."""
    if tokenizer is None:
        return [_RETURN, _CALL]
    return list(_h.stop_tokens_for_assistant_actions(_native_tokenizer(tokenizer)))


# ---- parsing ---------------------------------------------------------------------------


def parse_messages(
    tokenizer: Any,
    tokens: Iterable[int],
    role: Role | None = None,
    *,
    warnings: list[ParseWarning] | None = None,
) -> list[Message]:
    """Messages of a completion. ``role``: the role of the first message when the
    tokens start inside its header (after a prompt ending ``<|start|>assistant``);
    None when they start with ``<|start|>``. Problems are appended to ``warnings``."""
    msgs, ws = _h.parse_messages(_native_tokenizer(tokenizer), [_token_id(t) for t in tokens], _role_or_none(role))
    if warnings is not None:
        warnings.extend(_warning(w) for w in ws)
    return [_message_from_native(m) for m in msgs]


class StreamParser:
    """Parses sampled tokens one at a time (see the module docstring)."""

    def __init__(self, tokenizer: Any, role: Role | None = None) -> None:
        self._native = _h.StreamParser(_native_tokenizer(tokenizer), _role_or_none(role))
        self._messages: list[Message] = []
        self._warnings: list[ParseWarning] = []

    def process(self, token: int) -> StreamParser:
        self._native.process(_token_id(token))
        return self

    def process_tokens(self, tokens: Iterable[int]) -> StreamParser:
        self._native.process_all([_token_id(t) for t in tokens])
        return self

    def process_eos(self) -> StreamParser:
        """End of the stream: completes the message in progress."""
        self._native.process_eos()
        return self

    @property
    def state(self) -> StreamState:
        return _STATE_FROM_NATIVE[self._native.state]

    @property
    def current_role(self) -> Role | None:
        r = self._native.current_role
        return None if r is None else _ROLE_FROM_NATIVE[r]

    @property
    def current_channel(self) -> str | None:
        return self._native.current_channel

    @property
    def current_recipient(self) -> str | None:
        return self._native.current_recipient

    @property
    def current_content_type(self) -> str | None:
        return self._native.current_content_type

    @property
    def current_content(self) -> str:
        return self._native.current_content

    @property
    def last_content_delta(self) -> str | None:
        """Text completed by the last token, None if none (never a split UTF-8 character)."""
        return self._native.last_content_delta or None

    @property
    def messages(self) -> list[Message]:
        if self._native.num_messages != len(self._messages):
            self._messages = [_message_from_native(m) for m in self._native.messages]
        return list(self._messages)

    @property
    def warnings(self) -> list[ParseWarning]:
        if self._native.num_warnings != len(self._warnings):
            self._warnings = [_warning(w) for w in self._native.warnings]
        return list(self._warnings)

    @property
    def tokens(self) -> list[int]:
        return list(self._native.tokens)
