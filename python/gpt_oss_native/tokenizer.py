"""The gpt-oss tokenizer (o200k_harmony): :class:`Tokenizer` and :class:`StreamDecoder`.

A thin wrapper over the C++ tokenizer in ``gpt_oss_native._core``, with
tiktoken's method names and semantics, so code written for
``tiktoken.get_encoding("o200k_harmony")`` works unchanged::

    tok = Tokenizer("/path/to/gpt-oss-20b")               # its tokenizer.json (= Tokenizer.load)
    tok = Tokenizer.from_tiktoken_file("o200k_base.tiktoken")  # + harmony specials
    ids = tok.encode("Hello <|start|>", allowed_special={"<|start|>"})
    text = tok.decode(ids)

The encoding is byte-identical to tiktoken's (the o200k pre-tokenisation
pattern, BPE by rank, Unicode 16.0 character classes like tiktoken 0.14).
Differences, on purpose:

* a ``str`` with lone surrogates raises :class:`InvalidArgumentError` (tiktoken
  silently replaces them with U+FFFD);
* naming a special token that does not exist in ``allowed_special`` raises
  :class:`InvalidArgumentError` (tiktoken ignores it);
* errors are this package's exceptions: :class:`InvalidArgumentError` (a
  ``ValueError``) where tiktoken raises ``ValueError``,
  :class:`TokenOutOfRangeError` where it raises ``KeyError``.
"""

from __future__ import annotations

import functools
import os
import re
from typing import AbstractSet, Collection, Iterable, Literal, Union

import numpy as np

from . import _core
from .errors import InvalidArgumentError, TokenOutOfRangeError

PathLike = Union[str, os.PathLike]


def _check_path(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _as_bytes(name: str, data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise InvalidArgumentError(f"{name} must be bytes, bytearray or memoryview, got {type(data).__name__}")


def _as_ids(tokens) -> np.ndarray:
    """Token ids as a contiguous int32/int64 array (without copying NumPy arrays of those types)."""
    if isinstance(tokens, (str, bytes, bytearray)):
        raise InvalidArgumentError(f"tokens must be a sequence of ints, got {type(tokens).__name__}")
    if not isinstance(tokens, np.ndarray):
        if hasattr(tokens, "detach") and hasattr(tokens, "numpy"):  # torch tensors
            tokens = tokens.detach().cpu().numpy()
        else:
            try:
                tokens = np.asarray(tokens if hasattr(tokens, "__len__") else list(tokens))
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"tokens must be a sequence of ints, got {type(tokens).__name__}") from None
    if tokens.ndim != 1:
        if tokens.size == 0:
            return np.zeros(0, dtype=np.int64)
        raise InvalidArgumentError(f"tokens must be 1-D, got shape {tokens.shape}")
    if tokens.dtype in (np.int32, np.int64):
        return np.ascontiguousarray(tokens)
    if tokens.dtype.kind in "iu":
        if tokens.size and tokens.dtype.kind == "u" and tokens.max() > np.iinfo(np.int64).max:
            raise TokenOutOfRangeError(f"token id {int(tokens.max())} is out of range")
        return tokens.astype(np.int64)
    if tokens.size == 0:
        return np.zeros(0, dtype=np.int64)
    if tokens.dtype == object:  # Python ints beyond int64, or a mixture
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
                raise InvalidArgumentError(f"tokens must be ints, got {type(t).__name__}")
            if not 0 <= int(t) < 2**31:
                raise TokenOutOfRangeError(f"token id {int(t)} is out of range")
        return tokens.astype(np.int64)
    raise InvalidArgumentError(f"tokens must be integers, got {tokens.dtype}")


def _check_token(token) -> int:
    if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
        raise InvalidArgumentError(f"a token id must be an int, got {type(token).__name__}")
    token = int(token)
    if not 0 <= token < 2**31:
        raise TokenOutOfRangeError(f"token id {token} is out of range")
    return token


@functools.lru_cache(maxsize=64)
def _special_regex(tokens: frozenset) -> "re.Pattern[str]":
    # Longest first, so that where several start at the same place the longest wins.
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


class StreamDecoder:
    """Turns token ids, one at a time, into text that never splits a character.

    ``push(token)`` returns the text completed by that token (possibly ``""``):
    the bytes of a character cut across tokens are held back until the token
    that completes it. Bytes that can never form a character become U+FFFD,
    exactly where ``bytes.decode("utf-8", errors="replace")`` puts them, so the
    concatenation of every ``push()`` and a final ``flush()`` equals
    ``tokenizer.decode(all_tokens)``.
    """

    def __init__(self, tokenizer: "Tokenizer") -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise InvalidArgumentError(f"tokenizer must be a Tokenizer, got {type(tokenizer).__name__}")
        self._native = _core.StreamDecoder(tokenizer._native)

    def push(self, token: int) -> str:
        return self._native.push(_check_token(token))

    def flush(self) -> str:
        """Whatever is held back (an incomplete character), as U+FFFD; then starts afresh."""
        return self._native.flush()

    def reset(self) -> None:
        """Drops whatever is held back."""
        self._native.reset()


class Tokenizer:
    """The gpt-oss tokenizer: byte-level BPE with the o200k pattern and the harmony special tokens.

    ``Tokenizer(path)`` is :meth:`load`; :meth:`from_tiktoken_file` reads a
    rank file whatever its name. Instances are immutable and may be shared
    between threads; encoding large inputs releases the GIL.
    """

    def __init__(self, path: PathLike) -> None:
        native = path if isinstance(path, _core.Tokenizer) else _core.Tokenizer.load(_check_path(path))
        self._native = native  # the C++ tokenizer (what other bindings, e.g. harmony, take)
        self._special_tokens = {text: token for text, token in native.special_tokens()}
        self._special_set = frozenset(self._special_tokens)

    # ---- construction -------------------------------------------------------

    @classmethod
    def load(cls, path: PathLike) -> "Tokenizer":
        """From a checkpoint directory (its ``tokenizer.json``), a ``*.json`` file
        (Hugging Face tokenizer.json) or any other file (tiktoken rank file, to
        which the harmony special tokens are added).

        Raises :class:`CheckpointNotFoundError`, :class:`CorruptCheckpointError`
        (malformed file) or :class:`UnsupportedCheckpointError` (another
        tokenizer type or pre-tokenisation pattern).
        """
        return cls(path)

    @classmethod
    def from_tiktoken_file(cls, path: PathLike) -> "Tokenizer":
        """From a tiktoken rank file (``base64(token) rank`` lines, e.g.
        ``o200k_base.tiktoken``) plus the harmony special tokens, whatever the file's name."""
        return cls(_core.Tokenizer.from_tiktoken_file(_check_path(path)))

    @classmethod
    def from_tiktoken_bytes(cls, data: bytes, origin: str = "<bytes>") -> "Tokenizer":
        """Like :meth:`from_tiktoken_file`, from the file's contents."""
        return cls(_core.Tokenizer.from_tiktoken_bytes(_as_bytes("data", data), str(origin)))

    @classmethod
    def from_tokenizer_json(cls, data: Union[str, bytes], origin: str = "<tokenizer.json>") -> "Tokenizer":
        """From the contents of a Hugging Face tokenizer.json."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        return cls(_core.Tokenizer.from_hf_json_bytes(_as_bytes("data", data), str(origin)))

    # ---- properties -----------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """One more than the largest token id (201088 for o200k_harmony); some ids may have no token."""
        return self._native.vocab_size

    @property
    def num_tokens(self) -> int:
        """How many ids have a token."""
        return self._native.num_tokens

    @property
    def special_tokens(self) -> dict:
        """Special token text -> id (a copy)."""
        return dict(self._special_tokens)

    @property
    def special_tokens_set(self) -> frozenset:
        return self._special_set

    @property
    def eot_token(self) -> int:
        """The id of ``<|endoftext|>``."""
        return self.special_token_id("<|endoftext|>")

    def special_token_id(self, text: str) -> int:
        """The id of a special token by its text (``"<|start|>"``)."""
        token = self._special_tokens.get(text)
        if token is None:
            raise InvalidArgumentError(f"{text!r} is not a special token of this tokenizer")
        return token

    def is_special(self, token: int) -> bool:
        return self._native.is_special(_check_token(token))

    # ---- encoding -------------------------------------------------------------

    def _specials_args(self, text, allowed_special, disallowed_special):
        if allowed_special == "all":
            allowed = self._special_set
        elif isinstance(allowed_special, str):
            raise InvalidArgumentError(f"allowed_special must be 'all' or a set of special tokens, "
                                       f"got {allowed_special!r}")
        else:
            try:
                allowed = frozenset(allowed_special)
            except TypeError:
                raise InvalidArgumentError(f"allowed_special must be 'all' or a set of special tokens, got "
                                           f"{type(allowed_special).__name__}") from None
            unknown = sorted(t for t in allowed if t not in self._special_tokens)
            if unknown:
                raise InvalidArgumentError(f"{unknown[0]!r} (in allowed_special) is not a special token of this "
                                           "tokenizer")
        if disallowed_special == "all":
            reject_others = True
        else:
            if isinstance(disallowed_special, str):
                raise InvalidArgumentError(f"disallowed_special must be 'all' or a collection of strings, got "
                                           f"{disallowed_special!r}")
            try:
                disallowed = frozenset(disallowed_special)
            except TypeError:
                raise InvalidArgumentError(f"disallowed_special must be 'all' or a collection, got "
                                           f"{type(disallowed_special).__name__}") from None
            reject_others = False
            if disallowed:
                if not isinstance(text, str):
                    raise InvalidArgumentError(f"text must be a str, got {type(text).__name__}")
                if disallowed == self._special_set - allowed:
                    reject_others = True
                elif match := _special_regex(disallowed).search(text):
                    self._raise_disallowed(match.group())
        whole = allowed == self._special_set and bool(allowed)
        return ([] if whole else sorted(allowed)), whole, reject_others

    @staticmethod
    def _raise_disallowed(token: str):
        raise InvalidArgumentError(
            f"Encountered text corresponding to disallowed special token {token!r}.\n"
            f"If you want this text to be encoded as a special token, pass it to `allowed_special`, e.g. "
            f"`allowed_special={{{token!r}, ...}}`.\n"
            f"If you want this text to be encoded as normal text, disable the check for this token by passing "
            f"`disallowed_special=(enc.special_tokens_set - {{{token!r}}})`.\n"
            "To disable this check for all special tokens, pass `disallowed_special=()`.\n")

    def encode(
        self,
        text: str,
        *,
        allowed_special: Union[Literal["all"], AbstractSet[str], Iterable[str]] = frozenset(),
        disallowed_special: Union[Literal["all"], Collection[str]] = "all",
    ) -> list:
        """Encodes a str into token ids, as tiktoken's ``Encoding.encode``.

        Special-token text becomes the special token's id only when the token is
        in ``allowed_special`` (``"all"``: every one). Any special-token text in
        ``disallowed_special`` (default ``"all"``: every special token not
        allowed) raises :class:`InvalidArgumentError`; pass
        ``disallowed_special=()`` to encode it as ordinary text instead.
        """
        allowed, whole, reject_others = self._specials_args(text, allowed_special, disallowed_special)
        return self._native.encode(text, allowed, whole, reject_others)

    def encode_to_numpy(
        self,
        text: str,
        *,
        allowed_special: Union[Literal["all"], AbstractSet[str], Iterable[str]] = frozenset(),
        disallowed_special: Union[Literal["all"], Collection[str]] = "all",
    ) -> np.ndarray:
        """Like :meth:`encode`, as a ``uint32`` NumPy array (as tiktoken's)."""
        allowed, whole, reject_others = self._specials_args(text, allowed_special, disallowed_special)
        return self._native.encode_to_numpy(text, allowed, whole, reject_others)

    def encode_ordinary(self, text: str) -> list:
        """Encodes a str with special-token text as ordinary text (``disallowed_special=()``)."""
        return self._native.encode(text, [], False, False)

    def encode_batch(self, texts: Iterable[str], **kwargs) -> list:
        """``[self.encode(t, **kwargs) for t in texts]``."""
        return [self.encode(t, **kwargs) for t in texts]

    def encode_bytes(self, data: bytes) -> list:
        """Encodes arbitrary bytes, as tiktoken's ``Encoding._encode_bytes``.

        Valid UTF-8 is encoded as text (special tokens as ordinary text). Otherwise
        the longest valid prefix is encoded as text; the bytes of its last piece
        (together with preceding tokens of only spaces, tabs and newlines, when
        that piece starts with such a token) and everything from the first
        invalid byte on are then byte-pair merged as a single piece.
        """
        return self._native.encode_bytes(_as_bytes("data", data))

    def encode_single_token(self, text_or_bytes: Union[str, bytes]) -> int:
        """The id of the token with exactly this text or these bytes (a special token's text included)."""
        if isinstance(text_or_bytes, str):
            if text_or_bytes in self._special_tokens:
                return self._special_tokens[text_or_bytes]
            data = text_or_bytes.encode("utf-8")
        else:
            data = _as_bytes("text_or_bytes", text_or_bytes)
        ids = self._native.encode_bytes(data)
        if len(ids) != 1 or self._native.token_bytes(ids[0]) != data:
            raise InvalidArgumentError(f"{text_or_bytes!r} is not a single token")
        return ids[0]

    # ---- decoding -------------------------------------------------------------

    def decode_bytes(self, tokens) -> bytes:
        """The concatenated bytes of the tokens (a special token's bytes are its text)."""
        if type(tokens) in (list, tuple):
            return self._native.decode_sequence_bytes(tokens)
        return self._native.decode_bytes(_as_ids(tokens))

    def decode(self, tokens, errors: str = "replace") -> str:
        """The tokens' text; bytes that are not valid UTF-8 become U+FFFD (``errors="replace"``)."""
        if errors != "replace":
            return self.decode_bytes(tokens).decode("utf-8", errors=errors)
        if type(tokens) in (list, tuple):
            return self._native.decode_sequence(tokens)
        return self._native.decode(_as_ids(tokens))

    def decode_single_token_bytes(self, token: int) -> bytes:
        return self._native.token_bytes(_check_token(token))

    def decode_tokens_bytes(self, tokens) -> list:
        """The bytes of each token."""
        return [self._native.token_bytes(int(t)) for t in _as_ids(tokens)]

    def stream_decoder(self) -> StreamDecoder:
        """A :class:`StreamDecoder` for this tokenizer."""
        return StreamDecoder(self)

    def __repr__(self) -> str:
        return f"Tokenizer(n_vocab={self.n_vocab}, tokens={self.num_tokens}, special={len(self._special_tokens)})"


__all__ = ["Tokenizer", "StreamDecoder"]
