"""The Python surface of the runtime: :class:`Model` and :class:`Context`.

Both are thin wrappers over the C++ objects in ``gpt_oss_native._core``: they
check argument types (raising :class:`~gpt_oss_native.errors.InvalidArgumentError`
rather than a bare ``TypeError``), accept the integer containers Python users
have (lists, NumPy and torch arrays), and carry the documentation. The work
itself, and every buffer, belongs to the C++ runtime.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .errors import InvalidArgumentError

ProgressArg = Union[None, bool, Callable[[int, int], Any]]

#: The default sampling temperature of every API (C++, the binding and Python): 1.0,
#: the setting gpt-oss was tuned for. Pass ``temperature=0`` for greedy decoding.
DEFAULT_TEMPERATURE = 1.0

_PROGRESS_THRESHOLD_BYTES = 1 << 30


def _check_int(name: str, value: Any, minimum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def _sampling_args(temperature: Any, top_p: Any, seed: Any) -> Tuple[float, float, Optional[int]]:
    """Type checks of the sampling arguments (their ranges are checked by the runtime)."""
    temperature = _check_float("temperature", temperature)
    top_p = _check_float("top_p", top_p)
    if seed is not None:
        seed = _check_int("seed", seed, 0)
        if seed >= 1 << 64:
            raise InvalidArgumentError("seed must be below 2**64")
    return temperature, top_p, seed


class Model:
    """A gpt-oss checkpoint loaded for inference.

    ``path`` is a checkpoint directory in the Hugging Face layout (config.json,
    model.safetensors.index.json and its shards, or one model.safetensors) or
    the original layout (``original/`` or a directory with the original
    config.json and model.safetensors). Weights are memory-mapped and used in
    their stored precision (MXFP4 experts, bf16 elsewhere); nothing is copied.

    Args:
        path: the checkpoint directory (or its config.json / a .safetensors file in it).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when a usable GPU is
            present, else the CPU). ``"cuda"`` raises :class:`BackendUnavailableError`
            saying why when it cannot run here (not built, no driver or GPU, no
            kernels for its architecture); ``"metal"`` until that backend exists.
        threads: CPU worker threads; ``None`` uses every available core.
        prefetch: ``"auto"`` (read the weights into memory when they fit),
            ``"always"`` or ``"never"`` (pages load on first use).
        progress: ``None`` shows a progress line on a terminal for checkpoints of
            1 GB or more, ``True`` always, ``False`` never; a callable receives
            ``(bytes_done, bytes_total)``.

    One Model can be shared by any number of :class:`Context` objects.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        device: str = "cpu",
        *,
        threads: Optional[int] = None,
        prefetch: str = "auto",
        progress: ProgressArg = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidArgumentError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if not isinstance(device, str):
            raise InvalidArgumentError(f"device must be a str, got {type(device).__name__}")
        if not isinstance(prefetch, str):
            raise InvalidArgumentError(f"prefetch must be a str, got {type(prefetch).__name__}")
        nthreads = 0 if threads is None else _check_int("threads", threads, 1)
        callback = _progress_callback(progress, os.fspath(path))
        try:
            self._core = _core.Model.load(os.fspath(path), device, nthreads, prefetch, callback)
        finally:
            if callback is not None and hasattr(callback, "close"):
                callback.close()

    @property
    def config(self) -> dict:
        """The architecture: layers, experts, sizes, heads, window, RoPE parameters, ..."""
        return self._core.config

    @property
    def path(self) -> str:
        """Directory the weights were loaded from."""
        return self._core.path

    @property
    def checkpoint_format(self) -> str:
        """``"hf"`` or ``"original"``."""
        return self._core.checkpoint_format

    @property
    def device(self) -> str:
        return self._core.device

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def device_description(self) -> str:
        """The device in words: the CPU model and its kernels, or the GPU's name and architecture."""
        return self._core.device_description

    @property
    def backend_memory_in_use(self) -> int:
        """Bytes of backend memory (GPU memory for CUDA) in use: weights plus every context's buffers."""
        return self._core.backend_memory_in_use

    @property
    def backend_memory_peak(self) -> int:
        """Most bytes of backend memory in use at once so far."""
        return self._core.backend_memory_peak

    def measure_read_bandwidth(self, bytes: int = 1 << 31) -> float:
        """Measures the best read bandwidth of the backend's memory now (bytes/s): the
        denominator of the decode floor (:attr:`decode_bytes_per_token` / bandwidth)."""
        return self._core.measure_read_bandwidth(_check_int("bytes", bytes, 1 << 20))

    @property
    def weight_bytes(self) -> int:
        """Bytes of all checkpoint files."""
        return self._core.weight_bytes

    @property
    def decode_bytes_per_token(self) -> int:
        """Weight bytes read to decode one token at batch 1 (the bandwidth floor's numerator)."""
        return self._core.decode_bytes_per_token

    @property
    def vocab_size(self) -> int:
        return self._core.config["vocab_size"]

    @property
    def tokenizer(self):
        """The checkpoint's :class:`~gpt_oss_native.Tokenizer` (``tokenizer.json`` beside the
        weights, or in the parent directory of an ``original/`` layout), loaded on first use.
        Raises :class:`CheckpointNotFoundError` when the checkpoint has none."""
        tok = getattr(self, "_tokenizer", None)
        if tok is None:
            from .tokenizer import Tokenizer

            tok = Tokenizer(_core.model_tokenizer(self._core))
            self._tokenizer = tok
        return tok

    def generate(
        self,
        prompt: Union[str, Sequence[int], np.ndarray],
        *,
        max_tokens: int = 256,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[None, str, Iterable[str]] = None,
        stop_tokens: Optional[Iterable[int]] = None,
        default_stop_tokens: bool = True,
        return_tokens: bool = False,
        context_length: Optional[int] = None,
        max_batch_tokens: Optional[int] = None,
    ) -> "Generation":
        """Streams a completion of ``prompt``: ``for piece in model.generate("...")``.

        ``prompt`` is text (encoded with the special tokens recognised, so a
        harmony-formatted prompt works as it is) or token ids. Yields text pieces
        (never a partial UTF-8 character), or :class:`GenerationChunk` objects
        (text, token, logprob) with ``return_tokens=True``. Stops after
        ``max_tokens``, at a stop token (the model's eos and harmony's
        ``<|return|>`` and ``<|call|>`` unless ``default_stop_tokens=False``, plus
        ``stop_tokens``) or before the first stop string in ``stop``. A fresh
        :class:`Context` of ``context_length`` positions (default: prompt plus
        ``max_tokens``) is created for the call; use :meth:`Context.generate` to
        continue an existing one.
        """
        tokens = prompt if not isinstance(prompt, str) else self.tokenizer.encode(prompt, allowed_special="all")
        tokens = _as_token_array(tokens)
        if tokens.size == 0:
            raise InvalidArgumentError("generate: the prompt is empty")
        max_tokens = _check_int("max_tokens", max_tokens, 0)
        if context_length is None:
            context_length = min(self.config["max_context"], int(tokens.size) + max_tokens + 1)
        ctx = Context(self, context_length=context_length, max_batch_tokens=max_batch_tokens)
        ctx.append(tokens)
        return ctx.generate(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop,
                            stop_tokens=stop_tokens, default_stop_tokens=default_stop_tokens,
                            return_tokens=return_tokens)

    def generate_batch(self, prompts, **kwargs):
        """Completes every prompt at once with continuous batching (an :class:`Engine`);
        returns the finished requests in order. See :func:`gpt_oss_native.engine.generate_batch`."""
        from .engine import generate_batch

        return generate_batch(self, prompts, **kwargs)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Model({self.path!r}, format={self.checkpoint_format}, device={self.device}, "
            f"layers={c['num_layers']}, experts={c['num_experts']}x{c['experts_per_token']}, "
            f"hidden={c['hidden_size']})"
        )


class _ProgressAdapter:
    """Forwards C++ load progress to a progress line (shown only for large checkpoints)."""

    def __init__(self, label: str, always: bool) -> None:
        self._label = label
        self._always = always
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if not self._always and total < _PROGRESS_THRESHOLD_BYTES:
                return
            from ._progress import Progress

            self._bar = Progress(self._label)
            self._bar.__enter__()
        self._bar.update(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _progress_callback(progress: ProgressArg, path: str):
    if progress is False:
        return None
    if progress is None:
        if not sys.stderr.isatty():
            return None
        return _ProgressAdapter(f"loading {os.path.basename(os.path.normpath(path))}", always=False)
    if progress is True:
        return _ProgressAdapter(f"loading {os.path.basename(os.path.normpath(path))}", always=True)
    if callable(progress):
        return progress
    raise InvalidArgumentError("progress must be None, a bool or a callable(done, total)")


def _as_token_array(tokens: Any) -> np.ndarray:
    """Returns a 1-D int32/int64 C-contiguous array, viewing the input when it already is one."""
    if isinstance(tokens, (bool, np.bool_)):
        raise InvalidArgumentError("tokens must be integers, got a bool")
    if isinstance(tokens, (int, np.integer)):
        return np.asarray([int(tokens)], dtype=np.int64)
    if isinstance(tokens, (str, bytes)):
        raise InvalidArgumentError("tokens must be integer ids; text is not tokenised by append()")
    if isinstance(tokens, np.ndarray):
        arr = tokens
    elif hasattr(tokens, "__dlpack__"):
        try:
            arr = np.from_dlpack(tokens)
        except Exception:
            try:
                arr = np.asarray(tokens)
            except Exception as exc:
                raise InvalidArgumentError(
                    f"cannot read tokens from {type(tokens).__name__} (is it on the CPU?): {exc}"
                ) from None
    elif isinstance(tokens, (list, tuple, range)):
        if len(tokens) == 0:
            return np.zeros(0, dtype=np.int64)
        for t in tokens:
            if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
                raise InvalidArgumentError(f"tokens must be integers, got an element of type {type(t).__name__}")
        try:
            arr = np.asarray(tokens, dtype=np.int64)
        except OverflowError:
            raise InvalidArgumentError("a token id does not fit in 64 bits") from None
    else:
        raise InvalidArgumentError(
            f"tokens must be an int, a list of ints, or a NumPy/torch integer array, got {type(tokens).__name__}"
        )
    if arr.ndim != 1:
        raise InvalidArgumentError(f"tokens must be 1-D, got an array of shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise InvalidArgumentError(f"tokens must have an integer dtype, got {arr.dtype}")
    if arr.dtype == np.int32 or arr.dtype == np.int64:
        if arr.dtype.byteorder not in "=|" and arr.dtype.byteorder != ("<" if sys.byteorder == "little" else ">"):
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise InvalidArgumentError("a token id does not fit in 64 bits")
    return np.ascontiguousarray(arr, dtype=np.int64)


class Context:
    """One sequence processed by a :class:`Model`: its tokens, KV cache and logits.

    Every buffer (tokens, KV cache, activations, logits, sampler scratch) is
    allocated once here; :meth:`process` and :meth:`sample` never allocate
    (:meth:`memory_stats` reports the arenas).

    Args:
        model: the loaded model (shared; a Context keeps it alive).
        context_length: most tokens the context can hold.
        max_batch_tokens: tokens per forward pass while prefilling (default:
            the backend's choice, 128 on the CPU and 2048 on a GPU).
        logits_capacity: rows of logits ``process(logits="all")`` can return
            (default ``max_batch_tokens`` when that is given, else 128).
        rewind_window: how far behind the furthest processed token a rewind
            keeps the KV cache (default ``max(1024, max_batch_tokens)``); a
            rewind further back is still correct but recomputes.
        kv_dtype: element type of the KV cache: ``"fp32"``, ``"bf16"`` (half
            the memory and the bytes attention reads; logits then agree with an
            fp32 reference to about 1e-2 instead of 1e-5) or ``"auto"`` (the
            backend's default: fp32 on the CPU, bf16 on a GPU).

    Sliding-window layers keep a ring of ``sliding_window + rewind_window``
    positions instead of the whole context; :attr:`rewind_window` tells the
    guaranteed rewind distance after defaults and clamping.
    """

    def __init__(
        self,
        model: Model,
        context_length: int = 4096,
        max_batch_tokens: Optional[int] = None,
        *,
        logits_capacity: Optional[int] = None,
        rewind_window: Optional[int] = None,
        kv_dtype: str = "auto",
    ) -> None:
        if not isinstance(model, Model):
            raise InvalidArgumentError(f"model must be a gpt_oss_native.Model, got {type(model).__name__}")
        context_length = _check_int("context_length", context_length, 1)
        max_batch_tokens = 0 if max_batch_tokens is None else _check_int("max_batch_tokens", max_batch_tokens, 1)
        logits_capacity = 0 if logits_capacity is None else _check_int("logits_capacity", logits_capacity, 1)
        rewind_window = -1 if rewind_window is None else _check_int("rewind_window", rewind_window, 0)
        if not isinstance(kv_dtype, str):
            raise InvalidArgumentError(f"kv_dtype must be a str, got {type(kv_dtype).__name__}")
        self.model = model
        self._core = _core.Context(model._core, context_length, max_batch_tokens, logits_capacity, rewind_window,
                                   kv_dtype)

    def append(self, tokens: Union[str, int, Sequence[int], np.ndarray, Any], *, allowed_special="all") -> None:
        """Appends tokens without processing them.

        Accepts text (encoded with the model's tokenizer; special-token text such
        as ``<|start|>`` becomes the special token unless ``allowed_special``
        says otherwise, e.g. ``set()``), an int, a list/tuple of ints, or a 1-D
        NumPy or torch (CPU) integer array; int32 and int64 arrays are read in
        place. Raises :class:`TokenOutOfRangeError` for ids outside the
        vocabulary and :class:`ContextOverflowError` when they do not fit; on
        error nothing is appended.
        """
        if isinstance(tokens, str):
            tokens = self.model.tokenizer.encode_to_numpy(tokens, allowed_special=allowed_special,
                                                          disallowed_special=())
        self._core.append(_as_token_array(tokens))

    def assign(self, tokens: Union[str, Sequence[int], np.ndarray, Any], *, allowed_special="all") -> int:
        """Makes the context hold exactly ``tokens``, keeping the KV cache of the longest
        common prefix with what it holds now (as far as :meth:`rewind` would keep it).

        The way to continue a conversation: assign the whole rendered conversation
        each turn and only the new part is processed. Accepts what :meth:`append`
        accepts; returns the number of tokens whose cache was kept.
        """
        if isinstance(tokens, str):
            tokens = self.model.tokenizer.encode_to_numpy(tokens, allowed_special=allowed_special,
                                                          disallowed_special=())
        return self._core.assign(_as_token_array(tokens))

    def process(self, logits: str = "last") -> None:
        """Runs the model over the tokens appended since the last call.

        Prefill runs in chunks of ``max_batch_tokens``. ``logits`` chooses what
        :attr:`logits` holds afterwards: ``"last"`` (the last token's row),
        ``"all"`` (one row per token processed by this call, at most
        ``logits_capacity``) or ``"none"``.
        """
        if not isinstance(logits, str):
            raise InvalidArgumentError("logits must be 'last', 'all' or 'none'")
        self._core.process(logits)

    @property
    def logits(self):
        """float32 ``[rows, vocab]`` logits of the last :meth:`process`, without a copy.

        On the CPU a NumPy view of the context's buffer; on a GPU an array in
        device memory that speaks DLPack, so ``torch.from_dlpack(ctx.logits)``
        gives a tensor on that device over the same memory (use
        :meth:`logits_host` for a NumPy copy). The array keeps the context alive,
        but its contents are overwritten by the next :meth:`process` or
        :meth:`sample`: copy it to keep values.
        """
        return self._core.logits

    def logits_host(self) -> np.ndarray:
        """A NumPy copy of :attr:`logits` (on every backend)."""
        return self._core.logits_host()

    @property
    def kv_dtype(self) -> str:
        """Element type of the KV cache: ``"fp32"`` or ``"bf16"``."""
        return self._core.kv_dtype

    def sample(self, temperature: float = DEFAULT_TEMPERATURE, top_p: float = 1.0,
               seed: Optional[int] = None) -> Tuple[int, float]:
        """Samples the next token, appends it, and returns ``(token, logprob)``.

        Pending tokens are processed first. ``temperature`` 0 takes the argmax;
        otherwise tokens are drawn from softmax(logits / temperature) restricted
        to the smallest set whose probability reaches ``top_p``. The same
        ``seed`` at the same position gives the same token on every run;
        ``seed=None`` draws from the OS. ``logprob`` is the token's
        log-probability under the model (temperature 1, no top-p). The sampled
        token is processed by the next :meth:`process` or :meth:`sample`.
        """
        temperature, top_p, seed = _sampling_args(temperature, top_p, seed)
        return self._core.sample(temperature, top_p, seed)

    def sample_many(self, max_tokens: int, temperature: float = DEFAULT_TEMPERATURE, top_p: float = 1.0,
                    seed: Optional[int] = None, stop_tokens: Sequence[int] = ()) -> Tuple[np.ndarray, np.ndarray]:
        """Samples up to ``max_tokens`` tokens one after the other and appends them:
        the same tokens as that many :meth:`sample` calls with these arguments.
        Stops after the first token of ``stop_tokens`` (included) or when the
        context is full. Returns ``(tokens, logprobs)``, int32 and float32 arrays.

        On a GPU the steps run as one loop on the device: one launch and one
        wait for up to 256 tokens, so the host's time per token is a small part
        of a step. :meth:`cancel` takes effect when a loop ends.
        """
        max_tokens = _check_int("max_tokens", max_tokens, 0)
        temperature, top_p, seed = _sampling_args(temperature, top_p, seed)
        stops = [_check_int("stop_tokens", t) for t in stop_tokens]
        if any(t < 0 or t >= 1 << 31 for t in stops):
            from .errors import TokenOutOfRangeError

            raise TokenOutOfRangeError(f"sample_many: stop token {next(t for t in stops if t < 0 or t >= 1 << 31)} "
                                       "is outside the vocabulary")
        return self._core.sample_many(max_tokens, temperature, top_p, seed, stops)

    @property
    def num_tokens(self) -> int:
        """Tokens in the context, processed or not."""
        return self._core.num_tokens

    @property
    def num_processed(self) -> int:
        """Tokens whose keys and values are in the cache."""
        return self._core.num_processed

    @property
    def tokens(self) -> np.ndarray:
        """int32 view of the context's tokens (read-only; valid until the context changes)."""
        return self._core.tokens

    def rewind(self, num_tokens: int) -> None:
        """Keeps the first ``num_tokens`` tokens and drops the rest.

        The KV cache is kept when the rewind is within :attr:`rewind_window` of
        the furthest processed token; otherwise the next :meth:`process`
        recomputes it (the result is the same either way). A :meth:`process`
        or :meth:`sample` with nothing appended after the rewind recomputes the
        last kept token, which reads one position further back: at exactly
        :attr:`rewind_window` that rebuilds the cache too.
        """
        self._core.rewind(_check_int("num_tokens", num_tokens, 0))

    def reset(self) -> None:
        """Drops every token; the buffers stay allocated."""
        self._core.reset()

    def synchronize(self) -> None:
        """Waits until the work queued by :meth:`process` is done. On a GPU, ``process()``
        returns once the work is queued; reading logits or sampling waits by itself, so
        this is for timing."""
        self._core.synchronize()

    def cancel(self) -> None:
        """Makes a :meth:`process`, :meth:`sample` or generation running on another thread stop
        before its next forward pass (a long prefill checks between chunks of
        ``max_batch_tokens``) and raise :class:`CancelledError`; when none is running, the next
        one does. Tokens processed before it keep their cache; the context stays usable.
        Safe to call from any thread."""
        self._core.cancel()

    def clear_cancel(self) -> bool:
        """Withdraws a :meth:`cancel` that no call has consumed yet (one that came after the
        work it was meant for had finished), so that it does not stop the next call. Returns
        whether one was pending."""
        return self._core.clear_cancel()

    @property
    def context_length(self) -> int:
        return self._core.context_length

    @property
    def max_batch_tokens(self) -> int:
        return self._core.max_batch_tokens

    @property
    def logits_capacity(self) -> int:
        return self._core.logits_capacity

    @property
    def rewind_window(self) -> int:
        """Tokens a rewind can go back (behind the furthest processed token) keeping the KV cache."""
        return self._core.rewind_window

    def memory_stats(self) -> dict:
        """Arena sizes and counters: ``late_allocations`` stays 0 (nothing is allocated after creation)."""
        return self._core.memory_stats()

    def generate(
        self,
        *,
        max_tokens: int = 256,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[None, str, Iterable[str]] = None,
        stop_tokens: Optional[Iterable[int]] = None,
        default_stop_tokens: bool = True,
        return_tokens: bool = False,
    ) -> "Generation":
        """Streams tokens sampled after the ones in this context (see :meth:`Model.generate`).

        Sampled tokens are appended to the context as they come, so the
        conversation can go on afterwards; a stop token is appended too.
        """
        max_tokens = _check_int("max_tokens", max_tokens, 0)
        temperature, top_p, seed = _sampling_args(temperature, top_p, seed)
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        else:
            stop = list(stop)
        for s in stop:
            if not isinstance(s, str) or not s:
                raise InvalidArgumentError("stop strings must be non-empty str")
        stop_ids = [] if stop_tokens is None else [_check_int("stop token", t, 0) for t in stop_tokens]
        native = _core.Generator(self._core, self.model.tokenizer._native, max_tokens, temperature, top_p, seed,
                                 stop, stop_ids, bool(default_stop_tokens))
        return Generation(native, return_tokens)

    def __len__(self) -> int:
        return self.num_tokens

    def __repr__(self) -> str:
        return (
            f"Context(tokens={self.num_tokens}/{self.context_length}, processed={self.num_processed}, "
            f"max_batch_tokens={self.max_batch_tokens})"
        )


class GenerationChunk(NamedTuple):
    """One step of :meth:`Context.generate` with ``return_tokens=True``: a named tuple
    ``(text, token, logprob)``, so ``for text, token, logprob in gen`` unpacks it and
    ``chunk.token`` names a field."""

    text: str
    token: int  # -1 for a last chunk that only carries held-back text
    logprob: float


class Generation:
    """The iterator :meth:`Model.generate` and :meth:`Context.generate` return.

    Iterating yields text pieces (or :class:`GenerationChunk` objects); afterwards
    :attr:`finish_reason` says why it stopped (``"stop_token"``, ``"stop_string"``,
    ``"length"``, ``"context_full"``, or ``"cancelled"`` after :meth:`Context.cancel` made
    the iteration raise :class:`CancelledError`), :attr:`text` holds the whole text and
    :attr:`tokens` the sampled ids (a stop token included).
    """

    def __init__(self, native, return_tokens: bool) -> None:
        self._native = native
        self._return_tokens = return_tokens
        self.tokens: List[int] = []
        self.logprobs: List[float] = []
        self._pieces: List[str] = []

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> Union[str, GenerationChunk]:
        step = self._native.next()
        if step is None:
            raise StopIteration
        data, token, logprob = step
        text = data.decode("utf-8")
        self._pieces.append(text)
        if token >= 0:
            self.tokens.append(token)
            self.logprobs.append(logprob)
        if self._return_tokens:
            return GenerationChunk(text, token, logprob)
        return text

    @property
    def finish_reason(self) -> Optional[str]:
        reason = self._native.finish_reason
        return None if reason == "none" else reason

    @property
    def text(self) -> str:
        return "".join(self._pieces)
