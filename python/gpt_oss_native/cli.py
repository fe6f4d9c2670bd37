"""Command line: ``python -m gpt_oss_native <command>``.

Commands:
  generate [MODEL]   prefill a prompt (token ids or --prompt text), decode, print the
                     tokens (or text) and timing (no MODEL: the embedded default model,
                     a tiny gpt-oss trained on the Python documentation, answering a
                     question unless --tokens or --prompt is given)
  chat [MODEL]       interactive harmony chat in the terminal (no MODEL: the embedded one)
  make-checkpoint    write a random-weight checkpoint in the real layout
  info MODEL         print a checkpoint's configuration and sizes
  bench [MODEL]      measure load, prefill, decode and batched decoding on this machine
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from ._terminal import (EXIT_INTERRUPTED, EXIT_USAGE, TerminalText, UsageError, check_cache_writable, check_options,
                        quiet_broken_pipe, run_cancellable)
from .errors import CancelledError, Error, InvalidArgumentError

# A fixed prompt of token ids for when --tokens is not given.
_DEFAULT_PROMPT = [200006, 17360, 200008, 3575, 553, 261, 10297, 29186, 13, 200007, 200006, 1428, 200008]


def _parse_tokens(values: List[str]) -> List[int]:
    tokens: List[int] = []
    for v in values:
        for part in v.replace(",", " ").split():
            try:
                tokens.append(int(part))
            except ValueError:
                raise UsageError(f"--tokens expects integer ids, got {part!r}") from None
    return tokens


def _check_generate_options(args: argparse.Namespace) -> None:
    check_options(args, min_max_tokens=0)
    if args.tokens and args.prompt is not None:
        raise UsageError("give --tokens or --prompt, not both")
    if args.prompt is not None and not args.prompt:
        raise UsageError("--prompt is empty")
    if args.prompt is None:
        n = len(_parse_tokens(args.tokens)) if args.tokens else len(_DEFAULT_PROMPT)
        if n == 0:
            raise UsageError("--tokens is empty")
        if args.context_length is not None and n >= args.context_length:
            raise UsageError(f"--context-length {args.context_length} leaves no room after the prompt of {n} tokens")
    if args.model is None:
        check_cache_writable()


def _cmd_generate(args: argparse.Namespace) -> int:
    _check_generate_options(args)
    import gpt_oss_native as gon

    from ._default import default_model_path, default_prompt

    model_path = args.model
    if model_path is None:
        model_path = str(default_model_path())
        print(f"model: embedded default ({model_path})", file=sys.stderr)
        if not args.tokens and args.prompt is None:
            args.prompt = default_prompt()  # a question in the harmony format; the answer printed as text
    t0 = time.perf_counter()
    model = gon.Model(model_path, device=args.device, threads=args.threads, progress=None)
    load_s = time.perf_counter() - t0
    if args.prompt is not None:
        prompt = model.tokenizer.encode(args.prompt, allowed_special="all")
        if not prompt:
            raise UsageError("--prompt is empty")
    else:
        prompt = _parse_tokens(args.tokens) if args.tokens else list(_DEFAULT_PROMPT)
    vocab = model.vocab_size
    if not args.tokens and args.prompt is None:
        prompt = [t % vocab for t in prompt]
    ctx = gon.Context(
        model,
        context_length=args.context_length or min(model.config["max_context"], max(4096, len(prompt) + args.max_tokens)),
        max_batch_tokens=args.max_batch_tokens,
    )
    print(
        f"loaded {model.path} ({model.checkpoint_format} layout, {model.weight_bytes / 1e9:.2f} GB) "
        f"in {load_s:.2f} s on {model.device} with {model.threads} threads",
        file=sys.stderr,
    )
    ctx.append(prompt)
    out = sys.stdout
    clean = TerminalText(out)
    timing = {"prefill_s": 0.0, "decode_s": 0.0}
    tokens: List[int] = []
    finish = {"reason": None}

    def prefill() -> None:
        t1 = time.perf_counter()
        ctx.process(logits="last")
        timing["prefill_s"] = time.perf_counter() - t1

    def decode() -> None:
        t2 = time.perf_counter()
        try:
            if args.prompt is not None:
                # Text in, text out: stream the completion until a stop token or --max-tokens.
                gen = ctx.generate(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                                   seed=args.seed)
                try:
                    for piece in gen:
                        out.write(clean(piece))
                        out.flush()
                finally:
                    tokens.extend(gen.tokens)
                    finish["reason"] = gen.finish_reason
            else:
                eos = model.config["eos_token_id"]
                out.write("generated:")
                out.flush()
                finish["reason"] = "length"
                for _ in range(args.max_tokens):
                    if ctx.num_tokens >= ctx.context_length:
                        finish["reason"] = "context_full"
                        break
                    token, logprob = ctx.sample(temperature=args.temperature, top_p=args.top_p, seed=args.seed)
                    tokens.append(token)
                    out.write(f" {token}")
                    out.flush()
                    if args.stop_at_eos and token == eos:
                        finish["reason"] = "stop_token"
                        break
        finally:
            timing["decode_s"] = time.perf_counter() - t2

    try:
        run_cancellable(ctx, prefill)
    except CancelledError:
        _newline_if_tty(sys.stderr)  # after the terminal's "^C"
        print(f"interrupted during the prefill ({ctx.num_processed} of {len(prompt)} prompt tokens processed)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.prompt is None:
        out.write("prompt: " + " ".join(map(str, prompt)) + "\n")
        out.flush()
    try:
        run_cancellable(ctx, decode)
    except CancelledError:
        out.write("\n")
        out.flush()
        print(f"interrupted after {len(tokens)} generated tokens", file=sys.stderr)
        return EXIT_INTERRUPTED
    out.write("\n")
    out.flush()
    if args.prompt is not None:
        print(f"finish: {finish['reason']}", file=sys.stderr)
    if finish["reason"] == "context_full" and len(tokens) < args.max_tokens:
        print(f"generation stopped at the context length ({ctx.context_length} tokens) after {len(tokens)} of "
              f"{args.max_tokens} tokens; raise --context-length", file=sys.stderr)
    n = len(tokens)
    prefill_s, decode_s = timing["prefill_s"], timing["decode_s"]
    print(
        f"prefill: {len(prompt)} tokens in {prefill_s * 1e3:.1f} ms ({len(prompt) / max(prefill_s, 1e-9):.1f} tok/s); "
        f"decode: {n} tokens in {decode_s * 1e3:.1f} ms ({n / max(decode_s, 1e-9):.2f} tok/s)",
        file=sys.stderr,
    )
    return 0


def _cmd_make_checkpoint(argv: List[str]) -> int:
    from .checkpoint import main_make_checkpoint

    return main_make_checkpoint(argv)


def _cmd_info(args: argparse.Namespace) -> int:
    import gpt_oss_native as gon

    model = gon.Model(args.model, prefetch="never", progress=False)
    print(f"path: {model.path}")
    print(f"format: {model.checkpoint_format}")
    print(f"weights: {model.weight_bytes / 1e9:.3f} GB; decode reads {model.decode_bytes_per_token / 1e9:.3f} GB/token")
    for k, v in model.config.items():
        if k == "layer_is_sliding":
            v = "".join("S" if s else "F" for s in v)
        print(f"{k}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpt_oss_native", description="gpt-oss-native runtime")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="prefill a prompt and decode tokens")
    g.add_argument("model", nargs="?", default=None, help="checkpoint directory (default: the embedded model)")
    g.add_argument("--tokens", nargs="+", default=None, help="prompt token ids (space or comma separated)")
    g.add_argument("--prompt", default=None,
                   help="prompt text (encoded with the model's tokenizer, special tokens recognised); "
                        "the completion is printed as text")
    g.add_argument("--max-tokens", type=int, default=32, help="tokens to generate (default 32)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--context-length", type=int, default=None)
    g.add_argument("--max-batch-tokens", type=int, default=None,
                   help="tokens per prefill step (default: 128 on the CPU, 2048 on a GPU)")
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--device", default="cpu")
    g.add_argument("--stop-at-eos", action="store_true", help="stop at the model's eos token")

    sub.add_parser("make-checkpoint", help="write a random-weight checkpoint (see make-checkpoint --help)", add_help=False)

    from .chat import add_arguments as chat_arguments

    c = sub.add_parser("chat", help="interactive harmony chat")
    chat_arguments(c)

    i = sub.add_parser("info", help="print a checkpoint's configuration")
    i.add_argument("model")

    from .bench import add_arguments as bench_arguments

    b = sub.add_parser("bench", help="measure load, prefill, decode and batched throughput on this machine")
    bench_arguments(b)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Runs a command; returns its exit status: 0, 1 (a runtime error), 2 (a bad option),
    130 (Ctrl-C) or 141 (stdout closed, e.g. piped into ``head``)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C outside the cancellable work (loading, tokenising): no traceback.
        _newline_if_tty(sys.stdout)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return quiet_broken_pipe()


def _newline_if_tty(stream) -> None:
    try:
        if stream.isatty():
            stream.write("\n")
            stream.flush()
    except (OSError, ValueError):
        pass


def _main(argv: Optional[List[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "make-checkpoint":
        return _cmd_make_checkpoint(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return _cmd_generate(args)
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "chat":
            from .chat import run

            return run(args)
        if args.command == "bench":
            from .bench import check_arguments as bench_check
            from .bench import main as bench_main

            check_options(args)
            try:
                bench_check(args)
            except InvalidArgumentError as e:
                raise UsageError(str(e)) from None
            if args.model is None:
                check_cache_writable()
            return bench_main(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CancelledError:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2
