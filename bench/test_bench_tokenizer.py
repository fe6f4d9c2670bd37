"""Tokenizer benchmarks: encode throughput (MB/s) of ours against tiktoken on the
same text, and vocabulary load times.

    pytest bench/test_bench_tokenizer.py --benchmark-only

Both encoders run single-threaded (tiktoken's ``encode_ordinary``, ours the
same call); the text is the multilingual corpus of tests/test_tokenizer.py
(and two slices of it) repeated to about 4 MB. The vocabulary is o200k_base
from quicktok-v1, written as a tiktoken rank file (nothing is downloaded).
Derived figures (MB/s, milliseconds) go to each benchmark's extra_info and the
end-of-run summary; nothing here asserts a speed. This module needs no
checkpoint (it does not request the model fixtures).
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from conftest import record
from gpt_oss_native.tokenizer import Tokenizer

import tiktoken  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "_tokenizer_tests", pathlib.Path(__file__).resolve().parents[1] / "tests" / "test_tokenizer.py")
_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests)

TARGET_BYTES = 4 << 20
ROUNDS = 5


def _repeat(texts: list[str]) -> str:
    unit = "\n".join(texts) + "\n"
    n = max(1, TARGET_BYTES // len(unit.encode()))
    return unit * n


CJK = [t for t in _tests.CORPUS if any("\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in t)]
LATIN = [t for t in _tests.CORPUS if all(ord(c) < 0x250 for c in t)]
TEXTS = {"all": _repeat(_tests.CORPUS), "latin_and_code": _repeat(LATIN), "cjk": _repeat(CJK)}


@pytest.fixture(scope="module")
def rank_file(tmp_path_factory):
    from gpt_oss_native._vocab import rank_file_bytes, real_o200k_ranks

    ranks = real_o200k_ranks()  # from quicktok-v1, checked against the official sha256
    assert ranks is not None, "the benchmark needs the quicktok-v1 package (pip install '.[test]')"
    path = tmp_path_factory.mktemp("o200k") / "o200k_base.tiktoken"
    path.write_bytes(rank_file_bytes(ranks))
    return path


@pytest.fixture(scope="module")
def ranks(rank_file):
    return _tests.read_rank_file(rank_file)


def _tiktoken(ranks):
    return tiktoken.Encoding("o200k_harmony", pat_str=_tests.O200K_PATTERN, mergeable_ranks=ranks,
                             special_tokens=_tests.HARMONY_SPECIALS)


@pytest.fixture(scope="module")
def enc(ranks):
    return _tiktoken(ranks)


@pytest.fixture(scope="module")
def tok(rank_file):
    return Tokenizer.from_tiktoken_file(rank_file)


@pytest.fixture(scope="module")
def tokenizer_json(rank_file, tmp_path_factory):
    from transformers.convert_slow_tokenizer import TikTokenConverter

    mp = pytest.MonkeyPatch()
    mp.setenv("TIKTOKEN_CACHE_DIR", "")
    try:
        converted = TikTokenConverter(vocab_file=str(rank_file), pattern=_tests.O200K_PATTERN,
                                      extra_special_tokens=_tests.HF_SPECIALS).converted()
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    converted.save(str(path))
    return path


# ---- encode throughput ---------------------------------------------------------------------


@pytest.mark.parametrize("corpus", list(TEXTS))
def test_encode_ours(benchmark, tok, enc, corpus):
    text = TEXTS[corpus]
    assert tok.encode_ordinary(text[:200000]) == enc.encode_ordinary(text[:200000])
    nbytes = len(text.encode())
    ids = benchmark.pedantic(tok.encode_ordinary, args=(text,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    best = benchmark.stats.stats.min
    record(benchmark, f"encode ours [{corpus}]", mb_per_s=nbytes / best / 1e6, bytes=nbytes, tokens=len(ids),
           bytes_per_token=nbytes / len(ids))


@pytest.mark.parametrize("corpus", list(TEXTS))
def test_encode_tiktoken(benchmark, enc, corpus):
    text = TEXTS[corpus]
    nbytes = len(text.encode())
    ids = benchmark.pedantic(enc.encode_ordinary, args=(text,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    best = benchmark.stats.stats.min
    record(benchmark, f"encode tiktoken [{corpus}]", mb_per_s=nbytes / best / 1e6, bytes=nbytes, tokens=len(ids))


def test_encode_ours_numpy(benchmark, tok):
    """Without building a Python list of ints (the C++ encoder plus a copy-free array)."""
    text = TEXTS["all"]
    nbytes = len(text.encode())
    benchmark.pedantic(tok.encode_to_numpy, args=(text,), kwargs={"disallowed_special": ()}, rounds=ROUNDS,
                       iterations=1, warmup_rounds=1)
    record(benchmark, "encode ours to numpy [all]", mb_per_s=nbytes / benchmark.stats.stats.min / 1e6)


def test_decode_ours(benchmark, tok):
    ids = tok.encode_ordinary(TEXTS["all"])
    benchmark.pedantic(tok.decode, args=(ids,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record(benchmark, "decode ours [all]", mb_per_s=len(TEXTS["all"].encode()) / benchmark.stats.stats.min / 1e6)


# ---- vocabulary load times ------------------------------------------------------------------------


def test_load_ours_rank_file(benchmark, rank_file):
    benchmark.pedantic(Tokenizer.from_tiktoken_file, args=(rank_file,), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    record(benchmark, "load ours (rank file)", ms=benchmark.stats.stats.min * 1e3)


def test_load_ours_tokenizer_json(benchmark, tokenizer_json):
    benchmark.pedantic(Tokenizer.load, args=(tokenizer_json,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record(benchmark, "load ours (tokenizer.json)", ms=benchmark.stats.stats.min * 1e3)


def test_load_tiktoken_encoding(benchmark, ranks):
    """tiktoken's Encoding construction from ranks already in memory."""
    benchmark.pedantic(_tiktoken, args=(ranks,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record(benchmark, "load tiktoken (Encoding from ranks in memory)", ms=benchmark.stats.stats.min * 1e3)


def test_load_tiktoken_rank_file(benchmark, rank_file):
    """tiktoken's rank-file reader plus Encoding construction."""
    from tiktoken.load import load_tiktoken_bpe

    def load():
        mp = pytest.MonkeyPatch()
        mp.setenv("TIKTOKEN_CACHE_DIR", "")
        try:
            return _tiktoken(load_tiktoken_bpe(str(rank_file)))
        finally:
            mp.undo()

    benchmark.pedantic(load, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record(benchmark, "load tiktoken (rank file)", ms=benchmark.stats.stats.min * 1e3)


def test_load_hf_tokenizers_json(benchmark, tokenizer_json):
    """Hugging Face tokenizers reading the same tokenizer.json, for reference."""
    from tokenizers import Tokenizer as HfTokenizer

    benchmark.pedantic(HfTokenizer.from_file, args=(str(tokenizer_json),), rounds=3, iterations=1)
    record(benchmark, "load HF tokenizers (tokenizer.json)", ms=benchmark.stats.stats.min * 1e3)
