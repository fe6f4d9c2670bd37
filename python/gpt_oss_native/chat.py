"""``python -m gpt_oss_native chat [MODEL]``: an interactive harmony chat in the terminal
(no MODEL: the embedded default model).

Each turn renders the whole conversation in the harmony format, finds how much
of it is already in the context's KV cache (the longest common prefix with the
tokens there), rewinds to that point and processes only the rest. The reply is
sampled token by token into a harmony stream parser: the final channel is
printed as it comes, the analysis channel dimmed (or shown plainly, or hidden),
and each reply ends with its speed.

Commands at the prompt: ``/reset`` starts over, ``/exit`` (or end of input) quits.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import List, Optional, TextIO

import numpy as np

from . import harmony
from .errors import Error

DIM, RESET = "\x1b[2m", "\x1b[0m"


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
    p.add_argument("--max-batch-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")


def _common_prefix(a: np.ndarray, b: List[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.nonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))[0]
    return int(diff[0]) if diff.size else n


class ChatSession:
    """The conversation and its context; one call of :meth:`reply` per user turn."""

    def __init__(self, model, args: argparse.Namespace, out: TextIO) -> None:
        import gpt_oss_native as gon

        self.model = model
        self.tok = model.tokenizer
        self.args = args
        self.out = out
        self.color = args.analysis == "dim" and getattr(out, "isatty", lambda: False)()
        self.ctx = gon.Context(model, context_length=args.context_length, max_batch_tokens=args.max_batch_tokens)
        self.reset()

    def reset(self) -> None:
        system = harmony.SystemContent(
            reasoning_effort=harmony.ReasoningEffort(self.args.reasoning),
            conversation_start_date=datetime.date.today().isoformat(),
        )
        self.messages: List[harmony.Message] = [harmony.Message.system(system)]
        if self.args.developer:
            self.messages.append(harmony.Message.developer(self.args.developer))
        self.ctx.reset()

    def _write(self, text: str, channel: Optional[str]) -> None:
        if channel in (None, "final"):
            self.out.write(text)
        elif self.args.analysis == "hide":
            return
        elif self.color:
            self.out.write(DIM + text + RESET)
        else:
            self.out.write(text)
        self.out.flush()

    def reply(self, user_text: str) -> dict:
        self.messages.append(harmony.Message.user(user_text))
        prompt = harmony.render_conversation_for_completion(self.tok, self.messages, harmony.Role.ASSISTANT)
        if len(prompt) + 1 >= self.ctx.context_length:
            self.messages.pop()
            raise Error(f"the conversation ({len(prompt)} tokens) no longer fits the context of "
                        f"{self.ctx.context_length}; /reset to start over")
        reused = _common_prefix(self.ctx.tokens, prompt)
        self.ctx.rewind(reused)
        cached = self.ctx.num_processed
        self.ctx.append(prompt[reused:])
        t0 = time.perf_counter()
        self.ctx.process()
        prefill_s = time.perf_counter() - t0

        parser = harmony.StreamParser(self.tok, harmony.Role.ASSISTANT)
        channel_shown = None
        room = self.ctx.context_length - self.ctx.num_tokens
        gen = self.ctx.generate(max_tokens=min(self.args.max_tokens, room), temperature=self.args.temperature,
                                top_p=self.args.top_p, seed=self.args.seed, return_tokens=True)
        t1 = time.perf_counter()
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
        decode_s = time.perf_counter() - t1
        parser.process_eos()
        self.messages.extend(m for m in parser.messages if m.role == harmony.Role.ASSISTANT)
        n = len(gen.tokens)
        stats = {
            "tokens": n,
            "decode_tok_s": n / decode_s if decode_s > 0 else 0.0,
            "prefill_tokens": len(prompt) - reused,
            "cached_tokens": cached,
            "prefill_s": prefill_s,
            "finish_reason": gen.finish_reason,
            "warnings": len(parser.warnings),
        }
        self.out.write(
            f"\n[{n} tokens, {stats['decode_tok_s']:.1f} tok/s; prompt: {stats['prefill_tokens']} new tokens in "
            f"{prefill_s:.2f} s, {cached} from cache; {gen.finish_reason}]\n"
        )
        self.out.flush()
        return stats


def run(args: argparse.Namespace, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    import gpt_oss_native as gon

    path = args.model
    if path is None:
        from ._default import default_model_path

        path = default_model_path()
    model = gon.Model(path, device=args.device, threads=args.threads)
    session = ChatSession(model, args, out)
    interactive = getattr(stdin, "isatty", lambda: False)()
    out.write(f"chat with {model.path} ({args.reasoning} reasoning); /reset, /exit\n")
    while True:
        if interactive:
            out.write("> ")
            out.flush()
        line = stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.strip() == "/exit":
            break
        if line.strip() == "/reset":
            session.reset()
            out.write("[conversation reset]\n")
            continue
        try:
            session.reply(line)
        except Error as e:
            out.write(f"\nerror: {e}\n")
    return 0
