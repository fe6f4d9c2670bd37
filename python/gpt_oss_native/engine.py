"""Continuous batching from Python: :class:`Engine` runs many requests on one
model, each step decoding every running sequence and prefilling new ones in
one forward pass (the C++ ``gon::Engine`` does the work; this module streams
its events to request handles).

    engine = gon.Engine(model, max_sequences=64, context_length=8192, max_batch_tokens=512)
    a = engine.submit("<|start|>user<|message|>Hi<|end|><|start|>assistant", max_tokens=64, seed=1)
    b = engine.submit(other_prompt, max_tokens=64, temperature=0)
    for piece in a:                 # steps the engine until `a` has text; `b` advances too
        print(piece, end="")
    print(b.result())               # runs until `b` is done, returns its text

A request that reaches the engine's context length ends with
:class:`ContextOverflowError`, a cancelled one with :class:`CancelledError`,
raised when its results are read (after the text it produced); the other
requests go on.
"""

from __future__ import annotations

import collections
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _core, errors
from .errors import InvalidArgumentError
from .runtime import DEFAULT_TEMPERATURE, GenerationChunk, Model, _as_token_array, _check_int, _sampling_args


class Request:
    """One submitted request: iterate for its text pieces (or :class:`GenerationChunk` with
    ``return_tokens=True``); :meth:`result` waits for the whole text. Iterating or waiting
    runs engine steps, which advance every request of the engine.

    A request that fills its context (``finish_reason == "context_full"``) or is cancelled
    (``"cancelled"``) delivers the pieces it made, then iterating on or :meth:`result` raises
    :class:`ContextOverflowError` or :class:`CancelledError` for it alone; the engine's other
    requests go on. (:meth:`Model.generate` ends a full context without raising.)"""

    def __init__(self, engine: "Engine", rid: int, return_tokens: bool) -> None:
        self._engine = engine
        self.id = rid
        self._return_tokens = return_tokens
        self._queue: Deque[Any] = collections.deque()
        self.tokens: List[int] = []
        self.logprobs: List[float] = []
        self._pieces: List[str] = []
        self.finish_reason: Optional[str] = None
        self._error: Optional[BaseException] = None
        self._error_raised = False

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def _receive(self, token: int, logprob: float, text: str, finished: bool, reason: str,
                 error: Optional[BaseException]) -> None:
        if token >= 0:
            self.tokens.append(token)
            self.logprobs.append(logprob)
        if text or token >= 0:
            self._pieces.append(text)
            self._queue.append(GenerationChunk(text, token, logprob) if self._return_tokens else text)
        if finished:
            self.finish_reason = reason
            self._error = error

    def __iter__(self) -> "Request":
        return self

    def __next__(self):
        while not self._queue:
            if self.done:
                if self._error is not None and not self._error_raised:
                    self._error_raised = True
                    raise self._error
                raise StopIteration
            self._engine.step()
        return self._queue.popleft()

    def result(self) -> str:
        """Runs the engine until this request is done and returns its whole text (raising its
        error, if it ended with one)."""
        while not self.done:
            self._engine.step()
        self._queue.clear()
        if self._error is not None:
            self._error_raised = True
            raise self._error
        return self.text

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def cancel(self) -> None:
        """Ends the request at the engine's next step (CancelledError for it; others go on)."""
        self._engine.cancel(self)

    def __repr__(self) -> str:
        return f"Request(id={self.id}, tokens={len(self.tokens)}, finish_reason={self.finish_reason})"


class Engine:
    """Continuous batching of many requests on one :class:`Model`.

    Args:
        model: the loaded model.
        max_sequences: requests running at once (each has a KV cache slot of
            ``context_length`` positions, allocated now).
        context_length: positions per sequence (prompt plus generated tokens).
        max_batch_tokens: tokens per step: one decode token per running request
            plus prefill chunks of new ones.
        kv_dtype: ``"auto"``, ``"fp32"`` or ``"bf16"`` (see :class:`Context`).
        text: stream text (needs the checkpoint's tokenizer); ``False`` for token
            ids only (stop strings then cannot be used).
        decode_loop_steps: on a GPU, while every running request is decoding and
            none waits, one :meth:`step` decodes up to this many tokens of each
            request in a device-side loop (one launch and one wait) and delivers
            them all; 0 lets the backend choose (16 on a GPU, none on the CPU),
            1 turns it off (then :meth:`last_logits` has every step's rows). On
            the CPU a value above 1 runs the same loop on the host (same tokens,
            no faster: for tests).

    Requests wait for a free slot; a finished request's slot keeps its cache, and a
    new prompt sharing a prefix with it reuses that part (a conversation resubmitted
    turn by turn processes only its new tokens). A request gets the same tokens as
    it would alone in a :class:`Context` with the same seed.
    """

    def __init__(self, model: Model, max_sequences: int = 16, context_length: int = 4096,
                 max_batch_tokens: int = 256, *, kv_dtype: str = "auto", rewind_window: Optional[int] = None,
                 text: bool = True, decode_loop_steps: int = 0) -> None:
        if not isinstance(model, Model):
            raise InvalidArgumentError(f"model must be a gpt_oss_native.Model, got {type(model).__name__}")
        max_sequences = _check_int("max_sequences", max_sequences, 1)
        context_length = _check_int("context_length", context_length, 2)
        max_batch_tokens = _check_int("max_batch_tokens", max_batch_tokens, 1)
        rewind = -1 if rewind_window is None else _check_int("rewind_window", rewind_window, 0)
        decode_loop_steps = _check_int("decode_loop_steps", decode_loop_steps, 0)
        if not isinstance(kv_dtype, str):
            raise InvalidArgumentError(f"kv_dtype must be a str, got {type(kv_dtype).__name__}")
        self.model = model
        self._text = bool(text)
        self._core = _core.Engine(model._core, max_sequences, context_length, max_batch_tokens, rewind, kv_dtype,
                                  self._text, decode_loop_steps)
        self._requests: Dict[int, Request] = {}

    def submit(self, prompt: Union[str, Sequence[int], np.ndarray], *, max_tokens: int = 256,
               temperature: float = DEFAULT_TEMPERATURE, top_p: float = 1.0, seed: Optional[int] = None,
               stop: Union[None, str, Iterable[str]] = None, stop_tokens: Optional[Iterable[int]] = None,
               default_stop_tokens: bool = True, return_tokens: bool = False) -> Request:
        """Queues a request and returns its handle (see :meth:`Model.generate` for the arguments)."""
        if isinstance(prompt, str):
            prompt = self.model.tokenizer.encode(prompt, allowed_special="all")
        tokens = np.ascontiguousarray(_as_token_array(prompt), dtype=np.int64)
        max_tokens = _check_int("max_tokens", max_tokens, 0)
        temperature, top_p, seed = _sampling_args(temperature, top_p, seed)
        stop = [] if stop is None else ([stop] if isinstance(stop, str) else list(stop))
        for s in stop:
            if not isinstance(s, str) or not s:
                raise InvalidArgumentError("stop strings must be non-empty str")
        stop_ids = [] if stop_tokens is None else [_check_int("stop token", t, 0) for t in stop_tokens]
        rid = self._core.submit(tokens, max_tokens, temperature, top_p, seed, stop, stop_ids,
                                bool(default_stop_tokens))
        req = Request(self, rid, return_tokens)
        self._requests[rid] = req
        return req

    def step(self) -> int:
        """Runs one step (a forward pass over every running request; on a GPU possibly a
        device loop of several, see ``decode_loop_steps``); returns how many events it
        delivered."""
        events = self._core.step()
        for rid, token, logprob, data, finished, reason, error, message in events:
            req = self._requests.get(rid)
            if req is None:
                continue
            exc = None
            if error is not None:
                cls = errors.ContextOverflowError if error == "context_overflow" else errors.CancelledError
                exc = cls(f"request {rid}: {message}")
            req._receive(token, logprob, data.decode("utf-8", errors="replace"), finished, reason, exc)
            if finished:
                del self._requests[rid]
        return len(events)

    def run(self) -> None:
        """Steps until every submitted request is done."""
        while self._core.has_work:
            self.step()

    @property
    def has_work(self) -> bool:
        return self._core.has_work

    def cancel(self, request: Union[Request, int]) -> None:
        rid = request.id if isinstance(request, Request) else _check_int("request id", request, 0)
        self._core.cancel(rid)

    def last_logits(self, request: Union[Request, int]) -> Optional[np.ndarray]:
        """A copy of the logits row the last step sampled ``request`` from (None if it had none)."""
        rid = request.id if isinstance(request, Request) else int(request)
        return self._core.last_logits(rid)

    def stats(self) -> dict:
        """Running and waiting requests, steps, tokens processed and generated, prefix tokens reused."""
        return self._core.stats()

    def memory_stats(self) -> dict:
        return self._core.memory_stats()

    @property
    def max_sequences(self) -> int:
        return self._core.max_sequences

    @property
    def context_length(self) -> int:
        return self._core.context_length

    @property
    def max_batch_tokens(self) -> int:
        return self._core.max_batch_tokens

    @property
    def kv_dtype(self) -> str:
        return self._core.kv_dtype

    def __repr__(self) -> str:
        st = self.stats()
        return (f"Engine(max_sequences={self.max_sequences}, context_length={self.context_length}, "
                f"running={st['running']}, waiting={st['waiting']})")


def generate_batch(model: Model, prompts: Sequence[Union[str, Sequence[int], np.ndarray]], *,
                   max_tokens: int = 256, temperature: float = DEFAULT_TEMPERATURE, top_p: float = 1.0,
                   seed: Optional[int] = None, stop: Union[None, str, Iterable[str]] = None,
                   context_length: Optional[int] = None, max_sequences: int = 64,
                   max_batch_tokens: int = 512, kv_dtype: str = "auto") -> List[Request]:
    """Generates a completion of every prompt with one :class:`Engine` and returns the finished
    requests in order (``.text``, ``.tokens``, ``.finish_reason``). Request i gets seed
    ``seed + i`` when a seed is given."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise InvalidArgumentError("prompts must be a sequence of prompts")
    if len(prompts) == 0:
        return []
    encoded = [model.tokenizer.encode(p, allowed_special="all") if isinstance(p, str) else p for p in prompts]
    longest = max(len(_as_token_array(p)) for p in encoded)
    max_tokens = _check_int("max_tokens", max_tokens, 0)
    if context_length is None:
        context_length = min(model.config["max_context"], longest + max_tokens + 1)
    engine = Engine(model, max_sequences=min(_check_int("max_sequences", max_sequences, 1), len(prompts)),
                    context_length=context_length, max_batch_tokens=max_batch_tokens, kv_dtype=kv_dtype)
    reqs = [engine.submit(p, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                          seed=None if seed is None else seed + i, stop=stop) for i, p in enumerate(encoded)]
    engine.run()
    return reqs
