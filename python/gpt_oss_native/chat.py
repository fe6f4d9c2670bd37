"""``python -m gpt_oss_native chat [MODEL]``: an interactive harmony chat in the terminal
(no MODEL: the embedded default model).

Each turn renders the whole conversation in the harmony format and assigns it
to the context (``Context.assign``: the runtime keeps the KV cache of the
longest common prefix with the tokens there), so only the rest is processed. The reply is
sampled token by token into a harmony stream parser: the final channel is
printed as it comes, the analysis channel dimmed (or shown plainly, or hidden),
and each reply ends with its speed.

On a terminal the prompt has line editing and history (the readline module,
where the platform has it). Commands at the prompt: ``/help``, ``/reset``
starts over, ``/save FILE`` writes the conversation as JSON, ``/exit`` (or
Ctrl-D) quits. Ctrl-C stops a reply (the part shown is kept in the
conversation) or its prompt processing (the message is dropped); at the prompt
it clears the line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from enum import Enum
from typing import List, Optional, TextIO


from . import harmony
from ._terminal import (DIM, RESET, UsageError, check_options, for_terminal, is_tty, note_for_terminal,
                        run_cancellable)
from .errors import CancelledError, Error

HELP = """commands:
  /help         this help
  /reset        start a new conversation (the system and developer messages stay)
  /save FILE    write the conversation to FILE as JSON: {"model", "messages": [{"role", "channel",
                "content", ...}], "harmony": the conversation rendered in the harmony format}
  /exit         quit (or Ctrl-D)
Ctrl-C stops a reply (what was shown is kept) or clears the line at the prompt.
Line editing and history (up/down arrows) where Python has the readline module."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="checkpoint directory (with tokenizer.json; default: the embedded model)")
    p.add_argument("--reasoning", choices=["low", "medium", "high"], default="medium", help="reasoning effort")
    p.add_argument("--analysis", choices=["dim", "show", "hide"], default="dim",
                   help="how to show the analysis (reasoning) channel: dim (default), show or hide")
    p.add_argument("--developer", default=None, help="developer instructions (a system prompt)")
    p.add_argument("--max-tokens", type=int, default=2048, help="most tokens per reply")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--context-length", type=int, default=8192)
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="tokens per prefill step (default: 128 on the CPU, 2048 on a GPU)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")


class ChatSession:
    """The conversation and its context; one call of :meth:`reply` per user turn."""

    def __init__(self, model, args: argparse.Namespace, out: TextIO) -> None:
        import gpt_oss_native as gon

        self.model = model
        self.tok = model.tokenizer
        self.args = args
        self.out = out
        self.tty = is_tty(out)
        self.color = args.analysis == "dim" and self.tty
        self.ctx = gon.Context(model, context_length=args.context_length, max_batch_tokens=args.max_batch_tokens)
        self.reset()

    def reset(self) -> None:
        self.messages: List[harmony.Message] = _system_messages(self.args)
        self.ctx.reset()

    def _write(self, text: str, channel: Optional[str]) -> None:
        if self.tty:
            text = for_terminal(text)
        if channel in (None, "final"):
            self.out.write(text)
        elif self.args.analysis == "hide":
            return
        elif self.color:
            self.out.write(DIM + text + RESET)
        else:
            self.out.write(text)
        self.out.flush()

    def _note(self, text: str) -> None:
        """A line of the program's own (warnings, interruptions), dimmed on a terminal."""
        self.out.write((DIM + note_for_terminal(text) + RESET if self.tty else text) + "\n")
        self.out.flush()

    def reply(self, user_text: str) -> dict:
        """Processes the user's message and streams the reply. Context.cancel() (Ctrl-C)
        stops it: during the prompt's processing the message is dropped; during the reply
        what was generated so far is kept as the assistant's (partial) message. Either way the
        context's tokens stay a prefix-compatible record that the next turn reconciles."""
        self.messages.append(harmony.Message.user(user_text))
        prompt = harmony.render_conversation_for_completion(self.tok, self.messages, harmony.Role.ASSISTANT)
        if len(prompt) + 1 >= self.ctx.context_length:
            self.messages.pop()
            raise Error(f"the conversation ({len(prompt)} tokens) no longer fits the context of "
                        f"{self.ctx.context_length}; /reset to start over")
        cached = self.ctx.assign(prompt)  # keeps the cache of the common prefix
        reused = cached
        t0 = time.perf_counter()
        try:
            self.ctx.process()
        except CancelledError:
            self.messages.pop()
            self._note(f"[interrupted while processing the prompt ({self.ctx.num_processed} of {len(prompt)} "
                       f"tokens); the message was not kept]")
            return {"tokens": 0, "prefill_tokens": len(prompt) - reused, "cached_tokens": cached,
                    "prefill_s": time.perf_counter() - t0, "finish_reason": "cancelled", "warnings": 0,
                    "decode_tok_s": 0.0}
        prefill_s = time.perf_counter() - t0

        parser = harmony.StreamParser(self.tok, harmony.Role.ASSISTANT)
        channel_shown = None
        room = self.ctx.context_length - self.ctx.num_tokens
        gen = self.ctx.generate(max_tokens=min(self.args.max_tokens, room), temperature=self.args.temperature,
                                top_p=self.args.top_p, seed=self.args.seed, return_tokens=True)
        t1 = time.perf_counter()
        cancelled = False
        try:
            for chunk in gen:
                if chunk.token < 0:
                    continue
                parser.process(chunk.token)  # a stop token (<|return|>, <|call|>) ends the message
                delta = parser.last_content_delta
                if delta:
                    channel = parser.current_channel
                    if channel != channel_shown and channel not in (None, "final") and self.args.analysis == "show":
                        self.out.write(f"[{channel}] ")
                    if channel_shown not in (None, "final") and channel in (None, "final") and channel_shown != channel:
                        if self.args.analysis != "hide":
                            self.out.write("\n")
                    channel_shown = channel
                    self._write(delta, channel)
        except CancelledError:
            cancelled = True
        decode_s = time.perf_counter() - t1
        parser.process_eos()
        self.messages.extend(m for m in parser.messages if m.role == harmony.Role.ASSISTANT)
        n = len(gen.tokens)
        finish = "cancelled" if cancelled else gen.finish_reason
        if finish == "length" and n >= room and room < self.args.max_tokens:
            finish = "context_full"
        stats = {
            "tokens": n,
            "decode_tok_s": n / decode_s if decode_s > 0 else 0.0,
            "prefill_tokens": len(prompt) - reused,
            "cached_tokens": cached,
            "prefill_s": prefill_s,
            "finish_reason": finish,
            "warnings": len(parser.warnings),
        }
        self.out.write("\n")
        # The harmony parser recovers from malformed replies (random weights make many);
        # say what it recovered from. A reply cut short by Ctrl-C is not malformed.
        warnings = [w for w in parser.warnings if not cancelled or w.token_index < n]
        for w in warnings[:5]:
            self._note(f"[harmony: {w.text} (token {w.token_index})]")
        if len(warnings) > 5:
            self._note(f"[harmony: {len(warnings) - 5} more warnings]")
        if cancelled:
            self._note(f"[interrupted after {n} tokens; the reply so far is kept]")
        elif finish == "context_full":
            self._note(f"[the reply stopped at the context length ({self.ctx.context_length} tokens); "
                       f"/reset to start over or raise --context-length]")
        self.out.write(
            f"[{n} tokens, {stats['decode_tok_s']:.1f} tok/s; prompt: {stats['prefill_tokens']} new tokens in "
            f"{prefill_s:.2f} s, {cached} from cache; {finish}]\n"
        )
        self.out.flush()
        return stats

    def to_json(self) -> dict:
        """The conversation: its messages and its harmony rendering."""
        def plain(v):
            if isinstance(v, Enum):
                return v.value
            if dataclasses.is_dataclass(v):
                return {k: plain(x) for k, x in dataclasses.asdict(v).items()}
            if isinstance(v, list):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        messages = []
        for m in self.messages:
            d = {"role": m.role.value, "content": plain(m.content)}
            for key in ("name", "recipient", "channel", "content_type"):
                if getattr(m, key) is not None:
                    d[key] = getattr(m, key)
            messages.append(d)
        rendered = harmony.render_conversation(self.tok, self.messages)
        return {"model": self.model.path, "messages": messages, "harmony": self.tok.decode(rendered)}

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=1, ensure_ascii=False)
            f.write("\n")


def _find_tokenizer(model_dir: str) -> Optional[str]:
    """The tokenizer.json the model will use (beside the weights, or in the parent of original/)."""
    d = model_dir if os.path.isdir(model_dir) else os.path.dirname(model_dir)
    for c in (os.path.join(d, "tokenizer.json"), os.path.join(os.path.dirname(os.path.abspath(d)), "tokenizer.json")):
        if os.path.isfile(c):
            return c
    return None


def check_arguments(args: argparse.Namespace) -> None:
    """The options, and that the system prompt fits the context, checked before loading the model."""
    check_options(args, min_max_tokens=1)
    path = _find_tokenizer(str(args.model))
    if path is None:
        return  # the model load says what is missing
    from .tokenizer import Tokenizer

    try:
        tok = Tokenizer.load(path)
    except Error:
        return  # likewise
    messages = _system_messages(args)
    prompt = harmony.render_conversation_for_completion(tok, messages + [harmony.Message.user("")],
                                                        harmony.Role.ASSISTANT)
    if len(prompt) + 1 >= args.context_length:
        raise UsageError(f"--context-length {args.context_length} is too small for the system prompt "
                         f"({len(prompt)} tokens with an empty message)")


def _system_messages(args: argparse.Namespace) -> List[harmony.Message]:
    system = harmony.SystemContent(
        reasoning_effort=harmony.ReasoningEffort(args.reasoning),
        conversation_start_date=datetime.date.today().isoformat(),
    )
    messages = [harmony.Message.system(system)]
    if args.developer:
        messages.append(harmony.Message.developer(args.developer))
    return messages


def _setup_readline() -> bool:
    """Line editing and history for input() where the platform has readline."""
    try:
        import readline  # noqa: F401  (importing it is what makes input() edit lines)
    except ImportError:
        return False
    return True


def _handle(line: str, session: ChatSession, out: TextIO) -> bool:
    """One line typed at the prompt; returns False to quit."""
    line = line.rstrip("\n")
    command = line.strip()
    if not command:
        return True
    if command in ("/exit", "/quit"):
        return False
    if command in ("/help", "/?"):
        out.write(HELP + "\n")
        out.flush()
        return True
    if command == "/reset":
        session.reset()
        out.write("[conversation reset]\n")
        out.flush()
        return True
    if command == "/save" or command.startswith("/save "):
        target = command[len("/save"):].strip()
        if not target:
            out.write("usage: /save FILE\n")
        else:
            try:
                session.save(os.path.expanduser(target))
                out.write(f"[saved {len(session.messages)} messages to {target}]\n")
            except OSError as e:
                out.write(f"error: cannot write {target}: {e.strerror or e}\n")
        out.flush()
        return True
    if command.startswith("/") and not command.startswith("//"):
        out.write(f"unknown command {command.split()[0]}; /help lists them (start a message with // to send "
                  f"one that begins with /)\n")
        out.flush()
        return True
    if command.startswith("//"):
        line = line.replace("//", "/", 1)
    try:
        run_cancellable(session.ctx, lambda: session.reply(line))
    except CancelledError:  # cancelled outside the prefill and the reply: nothing was lost
        out.write("\n[interrupted]\n")
    except Error as e:
        out.write(f"\nerror: {e}\n")
    out.flush()
    return True


def run(args: argparse.Namespace, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    import gpt_oss_native as gon

    if args.model is None:  # the embedded default model
        from ._default import default_model_path

        args.model = str(default_model_path())
    check_arguments(args)
    model = gon.Model(args.model, device=args.device, threads=args.threads)
    session = ChatSession(model, args, out)
    # A terminal: input() with readline's line editing and history; else plain lines.
    interactive = stdin is sys.stdin and out is sys.stdout and is_tty(stdin) and is_tty(out)
    if interactive:
        _setup_readline()
    out.write(f"chat with {model.path} ({args.reasoning} reasoning); /help for commands, Ctrl-D to quit\n")
    out.flush()
    while True:
        try:
            if interactive:
                line = input("> ")
            else:
                line = stdin.readline()
                if not line:
                    break
        except EOFError:  # Ctrl-D
            out.write("\n")
            break
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line
            out.write("\n")
            out.flush()
            continue
        try:
            if not _handle(line, session, out):
                break
        except KeyboardInterrupt:  # Ctrl-C between the steps of a command: nothing to stop
            out.write("\n")
            out.flush()
    return 0
