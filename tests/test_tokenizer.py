"""The tokenizer (gpt_oss_native.Tokenizer) against tiktoken, on the real o200k_harmony vocabulary.

Nothing is downloaded: the o200k_base ranks come from the quicktok-v1 package,
are written as a tiktoken rank file and checked against the official file's
sha256, then given both to tiktoken (an ``Encoding`` with the o200k pattern and
the harmony special tokens, exactly as tiktoken_ext defines o200k_harmony) and
to our tokenizer. Ids must be identical on a multilingual corpus and on random
text drawn fresh each run; ``encode_bytes`` must match tiktoken's
``_encode_bytes`` on random (often invalid) UTF-8; the stream decoder must
match ``bytes.decode("utf-8", errors="replace")``. A tokenizer.json converted
from the same ranks (transformers' TikTokenConverter, the structure of
gpt-oss's own file) must load and agree with the rank file and with Hugging
Face ``tokenizers``. The character classes of the pre-tokeniser are compared
with tiktoken's regex for every code point.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import unicodedata

import numpy as np
import pytest
import tiktoken

from gpt_oss_native import _core
from gpt_oss_native.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    InvalidArgumentError,
    TokenOutOfRangeError,
    UnsupportedCheckpointError,
)
from gpt_oss_native.tokenizer import StreamDecoder, Tokenizer


O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

# o200k_harmony as tiktoken_ext defines it: o200k_base's specials, the harmony
# ones, and <|reserved_N|> up to 201087 (so 200018 has two texts).
HARMONY_SPECIALS = {
    "<|endoftext|>": 199999, "<|endofprompt|>": 200018, "<|startoftext|>": 199998,
    "<|reserved_200000|>": 200000, "<|reserved_200001|>": 200001, "<|return|>": 200002, "<|constrain|>": 200003,
    "<|reserved_200004|>": 200004, "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007,
    "<|message|>": 200008, "<|reserved_200009|>": 200009, "<|reserved_200010|>": 200010,
    "<|reserved_200011|>": 200011, "<|call|>": 200012,
    **{f"<|reserved_{i}|>": i for i in range(200013, 201088)},
}
# The 21 special tokens of gpt-oss's tokenizer.json.
HF_SPECIALS = [t for t, i in sorted(HARMONY_SPECIALS.items(), key=lambda kv: kv[1])
               if i <= 200018 and t != "<|reserved_200018|>"]

# ---- the corpus ------------------------------------------------------------------

CORPUS = [
    # English, with contractions in every case
    "The quick brown fox jumps over the lazy dog. It's 5 o'clock somewhere, isn't it?\n"
    "DON'T SHOUT. We'Ll see; they'RE here, you'VE been warned, I'M sure he'D agree. Y'all can't've known.\n"
    "Mr. O'Neil's dog's bone -- and the cats' toys -- weren't where we'd left them.",
    "Numbers: 0, 7, 42, 314, 2718, 1234567890, 3.14159265358979, 6.02e23, -273.15, 1,000,000.00, "
    "$19.99, 50%, 2024-06-01T12:34:56Z, +1 (555) 010-9999, 0xDEADBEEF, 1e-9, 99999999999999999999999.",
    # French, German, Spanish, Portuguese, Polish, Turkish, Vietnamese
    "Le cœur a ses raisons que la raison ne connaît point. Où est la bibliothèque ? À bientôt, "
    "chère amie ! L'été dernier, nous étions à Noël... « Ça va ? » — Oui, très bien.",
    "Die Straße ist breit, aber der Fußgänger überquert sie trotzdem. Größenwahn und Übermut: "
    "Donaudampfschifffahrtsgesellschaftskapitän! ÄÖÜ äöü ß ẞ.",
    "¿Dónde está el niño? ¡Qué maravilla! El pingüino comió añejo jamón. "
    "Não sei se ação é coração. Zażółć gęślą jaźń. İstanbul'da ılık bir gün; ĞÜŞİÖÇ ğüşıöç. "
    "Tiếng Việt có dấu: Trường Đại học Quốc gia.",
    # Russian, Greek
    "Съешь же ещё этих мягких французских булок, да выпей чаю. МОСКВА — столица России.\n"
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΑΘΗΝΑ, Ελλάδα· ή όχι;",
    # Chinese, Japanese, Korean
    "我能吞下玻璃而不伤身体。北京是中华人民共和国的首都，人口超过两千万。今天天气很好！",
    "私はガラスを食べられます。それは私を傷つけません。東京タワーは333メートルです。カタカナとひらがな、漢字。",
    "나는 유리를 먹을 수 있어요. 그래도 아프지 않아요. 서울특별시는 대한민국의 수도입니다.",
    # Arabic, Hebrew (right to left), Persian digits
    "أنا قادر على أكل الزجاج و هذا لا يؤلمني. العربية لغة جميلة، ١٢٣٤٥٦٧٨٩٠.",
    "אני יכול לאכול זכוכית וזה לא מזיק לי. שָׁלוֹם עֲלֵיכֶם! ۱۲۳ فارسی",
    # Hindi and other Indic scripts with combining marks
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती। नमस्ते, आप कैसे हैं? क्षत्रिय ज्ञान श्री ॐ",
    "আমি কাঁচ খেতে পারি। நான் கண்ணாடி சாப்பிடுவேன். ನಾನು ಗಾಜನ್ನು ತಿನ್ನಬಲ್ಲೆ. ਮੈਂ ਗਲਾਸ ਖਾ ਸਕਦਾ ਹਾਂ।",
    # Thai, Lao, Khmer, Georgian, Armenian, Amharic
    "ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ สวัสดีครับ ຂ້ອຍກິນແກ້ວໄດ້ ខ្ញុំអាចញុំកញ្ចក់បាន "
    "მინას ვჭამ და არა მტკივა. Կրնամ ապակի ուտել: ብርጭቆ መብላት እችላለሁ።",
    # Combining marks, decomposed forms, Zalgo
    "e\u0301cole, cafe\u0301, n\u0303, a\u0308\u0304, Z\u0351\u0353a\u0352\u0317l\u0315g\u0337o\u0322\u033a, "
    "\u0301leading mark, A\u030A\u030A, \u1e9b\u0323.",
    # Emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors
    "👍 👍🏻 👍🏽 👍🏿 👨‍👩‍👧‍👦 👩🏾‍💻 🏳️‍🌈 🇫🇷🇯🇵🇺🇸 🏴󠁧󠁢󠁳󠁣󠁴󠁿 1️⃣ #️⃣ ❤️ ☺︎ 🫠🥹 😀😃😄😁😆",
    # Code
    "def fibonacci(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n"
    "    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n\nif __name__ == '__main__':\n"
    "    print(f\"{fibonacci(30):,}\")  # 832,040\n",
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; ++i) {\n"
    "\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\t}\n\treturn 0;\n}\n",
    "fn main() {\n    let v: Vec<u32> = (1..=10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n"
    "const f = async (x) => { await fetch(`/api/${x}`); return x?.y ?? null; };\n"
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;\n"
    "<div class=\"box\"><a href=\"https://example.com/path?q=1&r=2\">link</a></div>\n"
    "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}\n"
    "$ grep -rn 'TODO' src/ | wc -l && echo \"done\" // comment\n/* block */ /// doc\n",
    # Whitespace: long runs, tabs, CRLF, Unicode spaces, trailing whitespace
    "a" + " " * 40 + "b\t\t\tc\r\n\r\nd\n\n\n\n   \n \t \n" + "\u00a0\u2003\u3000\u2009x\u2028y\u2029z\u0085w"
    + "\u1680v\u202fu\u205ft" + " " * 7 + "\n" + "\t" * 9 + "end   ",
    "   leading spaces\n\n\n    indented\n\ttabbed\r\n\rcarriage returns\r\r\n" + "\n" * 12 + " " * 3,
    # Punctuation runs and symbols
    "Wait... what?!?! (yes) [no] {maybe} <tag/> -- --- ---- *** ### @@@ $$$ %%% ^^^ &&& ||| ~~~ ``` '''"
    " \"\"\" ... ??? !!! ;;; ::: /// \\\\\\ ++ == => -> <= >= != === !== ... ©®™ °±² €£¥ ←→↑↓ ∀∃∈∉ ∑∏∫ √∞ ≈≠≤≥ ",
    # Text containing special-token strings
    "<|start|>user<|message|>What is 2+2?<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>",
    "Not specials: <|endoftext <|unknown|> <||> <|start|  |start|> <|<|end|>|> <|reserved_201088|> "
    "<|reserved_200018|> <|endofprompt|> <|startoftext|><|endoftext|>",
    # Mixed scripts without spaces, long words, URLs
    "HTTPServerError XMLHttpRequest iPhone eBay McDonald's camelCaseWord snake_case_word kebab-case-word "
    "https://en.wikipedia.org/wiki/Unicode#Standardized_subsets mailto:someone@example.org "
    "Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious",
    "ǅemal ǈubljana ǋegoš ᾈ ᾉ ᾏ ß→SS ﬁﬂ ＡＢＣ ｶﾀｶﾅ ℌℑℜ 𝐀𝐁𝐂 𝔸𝔹 ⅫⅪ ½¾ ①②③ ꓮꓯ ſ'ſ it'ſ ÀÉÎ'S",
]


@pytest.fixture(scope="module")
def rank_file(o200k_rank_file):
    return o200k_rank_file


def read_rank_file(path) -> dict:
    """token bytes -> rank, from a tiktoken rank file (what tiktoken's Encoding takes)."""
    out = {}
    for line in path.read_bytes().splitlines():
        token, rank = line.split()
        out[base64.b64decode(token)] = int(rank)
    return out


@pytest.fixture(scope="module")
def ranks(rank_file):
    return read_rank_file(rank_file)


@pytest.fixture(scope="module")
def enc(ranks):
    return tiktoken.Encoding("o200k_harmony", pat_str=O200K_PATTERN, mergeable_ranks=ranks,
                             special_tokens=HARMONY_SPECIALS)


@pytest.fixture(scope="module")
def tok(rank_file):
    return Tokenizer.from_tiktoken_file(rank_file)


@pytest.fixture(scope="module")
def tokenizer_json(rank_file, tmp_path_factory):
    """A tokenizer.json converted from the ranks the way gpt-oss's was (199998 tokens, 446189 merges, 21 specials)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    mp = pytest.MonkeyPatch()
    mp.setenv("TIKTOKEN_CACHE_DIR", "")  # no cache files
    try:
        converted = TikTokenConverter(vocab_file=str(rank_file), pattern=O200K_PATTERN,
                                      extra_special_tokens=HF_SPECIALS).converted()
    finally:
        mp.undo()
    d = tmp_path_factory.mktemp("hf")
    converted.save(str(d / "tokenizer.json"))
    doc = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    assert [(t["id"], t["content"]) for t in doc["added_tokens"]] == [(HARMONY_SPECIALS[t], t) for t in HF_SPECIALS]
    assert len(doc["model"]["merges"]) == 446189 and doc["model"]["ignore_merges"] is True
    return d / "tokenizer.json"


@pytest.fixture(scope="module")
def tok_json(tokenizer_json):
    return Tokenizer.load(tokenizer_json.parent)


def random_unicode(rng: random.Random, n: int, pool: list[int]) -> str:
    return "".join(chr(rng.choice(pool)) for _ in range(n))


@pytest.fixture(scope="module")
def assigned_code_points():
    return [c for c in range(0x110000)
            if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) not in ("Cn", "Cs")]


@pytest.fixture
def prng(rng):
    return random.Random(int(rng.integers(2**63)))


# ---- the vocabulary --------------------------------------------------------------------


def test_vocabulary_and_specials(tok, enc, ranks):
    assert tok.n_vocab == enc.n_vocab == 201088
    assert tok.num_tokens == 199998 + 1090
    assert tok.special_tokens == HARMONY_SPECIALS
    assert tok.special_tokens_set == enc.special_tokens_set
    assert tok.eot_token == enc.eot_token == 199999
    for text, token in [("<|startoftext|>", 199998), ("<|return|>", 200002), ("<|constrain|>", 200003),
                        ("<|channel|>", 200005), ("<|start|>", 200006), ("<|end|>", 200007),
                        ("<|message|>", 200008), ("<|call|>", 200012), ("<|reserved_201087|>", 201087)]:
        assert tok.special_token_id(text) == token and tok.is_special(token)
    assert not tok.is_special(199997) and not tok.is_special(201088)
    for token_bytes, rank in ranks.items():
        assert tok.decode_single_token_bytes(rank) == token_bytes
    for text, token in HARMONY_SPECIALS.items():
        if text != "<|reserved_200018|>":
            assert tok.decode_single_token_bytes(token) == text.encode()
    assert tok.decode_single_token_bytes(200018) == b"<|endofprompt|>"


def test_unicode_tables_match_tiktoken():
    """Every code point's class agrees with tiktoken's regex crate (Unicode 16.0)."""
    assert _core._unicode_tables_version == "16.0.0"
    ours = _core._unicode_char_classes()
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    byte_ranks = {bytes([b]): b for b in range(256)}

    def members(cls: str) -> set[int]:
        # A pattern that matches only members: the ids of the matches spell them.
        e = tiktoken.Encoding("probe", pat_str=cls, mergeable_ranks=byte_ranks, special_tokens={})
        return {ord(c) for c in bytes(e.encode_ordinary(everything)).decode("utf-8")}

    expected = bytearray(0x110000)
    for cls, value in [(r"\p{Lu}", 1), (r"\p{Lt}", 1), (r"\p{Ll}", 2), (r"\p{Lm}", 3), (r"\p{Lo}", 3), (r"\p{M}", 4),
                       (r"\p{N}", 5), (r"\s", 6)]:
        for c in members(cls):
            expected[c] = value
    diff = [hex(c) for c in range(0x110000) if ours[c] != expected[c] and not 0xD800 <= c <= 0xDFFF]
    assert not diff, f"{len(diff)} code points differ, e.g. {diff[:10]}"
    # Case-insensitive contraction letters: only 's' has an extra fold, U+017F (handled by the scanner).
    assert members("(?i:[stmdrevl])") == {ord(c) for c in "stmdrevlSTMDREVL"} | {0x17F}


# ---- encoding against tiktoken ------------------------------------------------------------


def test_corpus_matches_tiktoken(tok, enc):
    for text in CORPUS:
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text), text[:60]
        assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all"), text[:60]
        assert tok.decode(tok.encode_ordinary(text)) == text
        for line in text.splitlines(keepends=True):
            assert tok.encode_ordinary(line) == enc.encode_ordinary(line)
    whole = "\n".join(CORPUS)
    assert tok.encode_ordinary(whole) == enc.encode_ordinary(whole)
    assert tok.encode_to_numpy(whole, disallowed_special=()).tolist() == enc.encode_ordinary(whole)


def test_random_unicode_matches_tiktoken(tok, enc, prng, assigned_code_points):
    interesting = [ord(c) for c in " \t\r\n'sStTmMdDrReEvVlL/0123456789!.\u0301\u3000\u00a0\u2028\u0085\u017f"]
    for it in range(2500):
        n = prng.randint(0, 48)
        pool = prng.choice([assigned_code_points, interesting, interesting + assigned_code_points[:700]])
        text = random_unicode(prng, n, pool)
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text), repr(text)
        assert tok.decode(tok.encode_ordinary(text)) == text


def test_unassigned_code_points_match_tiktoken(tok, enc, prng):
    """Unassigned code points and noncharacters are "other" in both (the tables are pinned to Unicode 16.0)."""
    pool = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for _ in range(500):
        text = random_unicode(prng, prng.randint(1, 30), pool)
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text), repr(text)


def test_random_ascii_matches_tiktoken(tok, enc, prng):
    for _ in range(2000):
        text = "".join(prng.choice("abcXYZ '\"-_.,!?/\\\t\r\n 0123456789sdmtlrve") for _ in range(prng.randint(0, 64)))
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text), repr(text)
        printable = "".join(chr(prng.randint(0, 127)) for _ in range(prng.randint(0, 64)))
        assert tok.encode_ordinary(printable) == enc.encode_ordinary(printable), repr(printable)


def test_long_inputs_match_tiktoken(tok, enc, prng):
    for text in ["!" * 5000, "a" * 3000, " " * 4000 + "x", "\n" * 3000, "1" * 3001, "日本" * 2000,
                 "ab" * 1500 + "\u0301" * 500, "\t " * 2000]:
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    big = "".join(prng.choice(CORPUS) for _ in range(200))
    assert tok.encode_ordinary(big) == enc.encode_ordinary(big)  # also crosses the GIL-release threshold


# ---- special tokens ---------------------------------------------------------------------------


def both(f_ours, f_theirs):
    """Runs both; returns ("ok", ids) or ("error", None), checking the error classes."""
    try:
        expected = ("ok", f_theirs())
    except ValueError:
        expected = ("error", None)
    try:
        got = ("ok", f_ours())
    except InvalidArgumentError as e:
        assert isinstance(e, ValueError)
        got = ("error", None)
    return got, expected


def test_special_token_semantics_match_tiktoken(tok, enc, prng):
    names = list(HARMONY_SPECIALS)
    fragments = ["hello ", "<|", "|>", "<|end", "start|>", " world", "\n", "<|<|", "|>|>", "日本"]
    # A few fixed sets, drawn from at random: tiktoken compiles a regex per distinct disallowed set.
    subsets = [{"<|start|>"}, {"<|end|>", "<|message|>"}, {"<|reserved_200018|>"}, {"<|endofprompt|>", "<|start|>"},
               set(names[:20]), set(prng.sample(names, 3))]
    custom = [{"<|end|>", "<|start|>"}, {"hello", "<|end|>"}, {"<|reserved_201087|>"}]
    for _ in range(600):
        parts = [prng.choice(names[:25]) if prng.random() < 0.4 else prng.choice(fragments)
                 for _ in range(prng.randint(0, 8))]
        if prng.random() < 0.2:
            parts.append(prng.choice(names))
        text = "".join(parts)
        subset = prng.choice(subsets)
        for allowed, disallowed in [(set(), "all"), ("all", "all"), (subset, "all"), (subset, ()), (set(), ()),
                                    ("all", ()), (set(), prng.choice(custom)), (subset, prng.choice(custom))]:
            got, expected = both(lambda: tok.encode(text, allowed_special=allowed, disallowed_special=disallowed),
                                 lambda: enc.encode(text, allowed_special=allowed, disallowed_special=disallowed))
            assert got == expected, (text, allowed, disallowed)


def test_special_token_errors(tok):
    with pytest.raises(InvalidArgumentError, match="<\\|start\\|>"):
        tok.encode("a <|start|> b")
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError, as tiktoken's error
        tok.encode("<|end|>", allowed_special={"<|start|>"})
    with pytest.raises(InvalidArgumentError, match="not a special token"):
        tok.encode("x", allowed_special={"<|nope|>"})  # tiktoken ignores unknown names; we refuse them
    with pytest.raises(InvalidArgumentError):
        tok.encode("x", allowed_special="some")
    with pytest.raises(InvalidArgumentError):
        tok.special_token_id("<|nope|>")
    assert tok.encode("<|reserved_200018|><|endofprompt|>", allowed_special="all") == [200018, 200018]
    assert tok.encode_single_token("<|start|>") == 200006
    assert tok.encode_single_token(b" hello") == tok.encode_ordinary(" hello")[0]
    with pytest.raises(InvalidArgumentError):
        tok.encode_single_token("hello world!")


# ---- bytes, decoding, streaming ------------------------------------------------------------------


def random_bytes(prng: random.Random) -> bytes:
    kind = prng.random()
    if kind < 0.3:
        return bytes(prng.randint(0, 255) for _ in range(prng.randint(0, 24)))
    text = prng.choice(CORPUS)
    start = prng.randint(0, max(0, len(text) - 40))
    b = bytearray(text[start:start + prng.randint(0, 60)].encode())
    for _ in range(prng.randint(0, 3)):  # cut characters, insert junk
        op = prng.random()
        if op < 0.4 and b:
            del b[prng.randint(0, len(b) - 1)]
        elif op < 0.7:
            b.insert(prng.randint(0, len(b)), prng.choice([0x80, 0xBF, 0xC0, 0xC3, 0xE6, 0xED, 0xF0, 0xF4, 0xFF]))
        elif b:
            b = b[:prng.randint(0, len(b))]
    return bytes(b)


def test_encode_bytes_matches_tiktoken(tok, enc, prng):
    for b in [b"", b"\xff", b"abc \xe6\x97", b"hello\n\n  \xf0\x9f", b"  \xe6", b"\t\t\xff\xfe", b"\xc3\xa9\xc3",
              "日本語".encode()[:-1], b"x" * 300 + b"\xff" + b"y" * 300]:
        assert tok.encode_bytes(b) == enc._encode_bytes(b), b
    for _ in range(3000):
        b = random_bytes(prng)
        assert tok.encode_bytes(b) == enc._encode_bytes(b), b
        assert tok.decode_bytes(tok.encode_bytes(b)) == b


def test_decode(tok, enc, prng):
    ids = tok.encode(CORPUS[-3], allowed_special="all")
    assert tok.decode(ids) == enc.decode(ids)
    assert tok.decode(np.array(ids, dtype=np.int32)) == tok.decode(np.array(ids, dtype=np.uint16 if max(ids) < 65536 else np.int64))
    cut = tok.encode("日本")[:1] + tok.encode_bytes(b"\xff")
    assert tok.decode(cut) == tok.decode_bytes(cut).decode("utf-8", errors="replace")
    assert tok.decode(cut, errors="ignore") == tok.decode_bytes(cut).decode("utf-8", errors="ignore")
    assert tok.decode_tokens_bytes(ids[:5]) == [enc.decode_single_token_bytes(t) for t in ids[:5]]
    for bad in [[-1], [201088], [2**40], [2**70]]:
        with pytest.raises(TokenOutOfRangeError):
            tok.decode(bad)
    with pytest.raises(TokenOutOfRangeError):
        tok.decode_single_token_bytes(201088)
    with pytest.raises(InvalidArgumentError):
        tok.decode(["a"])
    with pytest.raises(InvalidArgumentError):
        tok.decode(np.zeros((2, 2), dtype=np.int32))


def test_stream_decoder_matches_replace(tok, prng):
    pieces = [tok.encode_ordinary(t) for t in CORPUS] + [tok.encode_bytes(random_bytes(prng)) for _ in range(50)]
    byte_tokens = [tok.encode_bytes(bytes([b]))[0] for b in (0x80, 0xC3, 0xA9, 0xE6, 0x97, 0xA5, 0xF0, 0x9F, 0xED, 0xFF)]
    for _ in range(1500):
        ids = []
        for _ in range(prng.randint(0, 12)):
            if prng.random() < 0.5:
                ids.append(prng.choice(byte_tokens))
            else:
                p = prng.choice(pieces)
                if p:
                    i = prng.randint(0, len(p) - 1)
                    ids.extend(p[i:i + prng.randint(1, 4)])
        dec = tok.stream_decoder()
        out = [dec.push(t) for t in ids]
        out.append(dec.flush())
        assert "".join(out) == tok.decode_bytes(ids).decode("utf-8", errors="replace") == tok.decode(ids)
    dec = StreamDecoder(tok)
    assert dec.push(tok.encode_bytes(b"\xe6")[0]) == ""
    assert dec.flush() == "\ufffd" and dec.flush() == ""
    with pytest.raises(TokenOutOfRangeError):
        dec.push(-1)
    with pytest.raises(TokenOutOfRangeError):
        dec.push(300000)


# ---- tokenizer.json ---------------------------------------------------------------------------


def test_tokenizer_json_matches_rank_file_and_hf(tok, tok_json, tokenizer_json, prng, assigned_code_points):
    from tokenizers import Tokenizer as HfTokenizer

    hf = HfTokenizer.from_file(str(tokenizer_json))
    assert tok_json.n_vocab == 200019 and tok_json.num_tokens == 200019
    assert tok_json.special_tokens == {t: HARMONY_SPECIALS[t] for t in HF_SPECIALS}
    texts = CORPUS + [random_unicode(prng, prng.randint(0, 30), assigned_code_points) for _ in range(300)]
    for text in texts:
        ours = tok_json.encode_ordinary(text)
        assert ours == tok.encode_ordinary(text)
        # Hugging Face always matches its added (special) tokens in the text.
        assert hf.encode(text, add_special_tokens=False).ids == tok_json.encode(text, allowed_special="all"), \
            repr(text[:60])
    with pytest.raises(TokenOutOfRangeError):
        tok_json.decode([200019])  # beyond the 21 specials of the file


def test_tokenizer_json_of_other_models(tmp_path):
    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers import models, pre_tokenizers

    wp = HfTokenizer(models.WordPiece({"[UNK]": 0, "hello": 1, "##s": 2, "日本": 3}, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    wp.save(str(tmp_path / "wordpiece.json"))
    with pytest.raises(UnsupportedCheckpointError, match="WordPiece model; gpt-oss needs byte-level BPE"):
        Tokenizer.load(tmp_path / "wordpiece.json")
    uni = HfTokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0, byte_fallback=False))
    uni.save(str(tmp_path / "unigram.json"))
    with pytest.raises(UnsupportedCheckpointError, match="Unigram model"):
        Tokenizer.load(tmp_path / "unigram.json")
    # Byte-level BPE with GPT-2's pre-tokeniser instead of o200k's.
    from tokenizers import decoders

    vocab = {chr(c): i for i, c in enumerate(sorted(set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100)) | set(range(0x100, 0x144))))}
    bpe = HfTokenizer(models.BPE(vocab, []))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.save(str(tmp_path / "gpt2.json"))
    with pytest.raises(UnsupportedCheckpointError, match="pre-tokeniser"):
        Tokenizer.load(tmp_path / "gpt2.json")


def test_tokenizer_json_variants(tokenizer_json, tmp_path, tok_json):
    doc = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    # Merges as "a b" strings (older tokenizers versions) load to the same tokenizer.
    doc2 = {**doc, "model": {**doc["model"], "merges": [" ".join(m) for m in doc["model"]["merges"][:5000]]}}
    t = Tokenizer.from_tokenizer_json(json.dumps(doc2, ensure_ascii=True))
    assert t.encode_ordinary(CORPUS[0]) == tok_json.encode_ordinary(CORPUS[0])
    # Merges out of the order of the merged ids.
    doc3 = {**doc, "model": {**doc["model"], "merges": doc["model"]["merges"][:1000][::-1]}}
    with pytest.raises(UnsupportedCheckpointError, match="not in the order"):
        Tokenizer.from_tokenizer_json(json.dumps(doc3))
    # A non-special added token.
    doc4 = {**doc, "added_tokens": [{**doc["added_tokens"][0], "special": False}] + doc["added_tokens"][1:]}
    with pytest.raises(UnsupportedCheckpointError, match="not special"):
        Tokenizer.from_tokenizer_json(json.dumps(doc4))
    # Truncated.
    text = tokenizer_json.read_bytes()
    with pytest.raises(CorruptCheckpointError):
        Tokenizer.from_tokenizer_json(text[: len(text) // 2])


# ---- bad input ---------------------------------------------------------------------------------


def test_bad_text(tok):
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        tok.encode("abc\ud800def")
    with pytest.raises(InvalidArgumentError):
        tok.encode_ordinary("\udfff")
    with pytest.raises(InvalidArgumentError):
        tok.encode(b"bytes are not text")
    with pytest.raises(InvalidArgumentError):
        tok.encode_bytes("text is not bytes")
    assert tok.encode_bytes(bytearray(b"ab")) == tok.encode_bytes(memoryview(b"ab")) == tok.encode_ordinary("ab")


def test_bad_files(tmp_path, rank_file):
    good = rank_file.read_bytes()
    cases = {
        "bad_base64": (b"!!!! 5\n", "line 1: invalid base64"),
        "duplicate_token": (good + base64.b64encode(b"!") + b" 199990\n", "already appears on line"),
        "duplicate_rank": (good.replace(b"IQ== 0\n", b"IQ== 0\nIQ== 0\n", 1), "line 2"),
        "missing_byte": (b"".join(l + b"\n" for l in good.splitlines()[1:]), "no token for the byte"),
        "bad_rank": (good + b"YWJj x\n", "invalid rank"),
        "empty": (b"", "no tokens"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.tiktoken"
        path.write_bytes(data)
        with pytest.raises(CorruptCheckpointError, match=message):
            Tokenizer.from_tiktoken_file(path)
    with pytest.raises(CheckpointNotFoundError):
        Tokenizer.load(tmp_path / "missing.tiktoken")
    with pytest.raises(CheckpointNotFoundError):
        Tokenizer.load(tmp_path)  # a directory without tokenizer.json
    (tmp_path / "broken.json").write_text('{"model": ')
    with pytest.raises(CorruptCheckpointError):
        Tokenizer.load(tmp_path / "broken.json")
    with pytest.raises(InvalidArgumentError):
        Tokenizer(42)


# ---- Python API details ---------------------------------------------------------------------------


def test_numpy_and_threads(tok):
    text = "\n".join(CORPUS) * 3
    expected = tok.encode_ordinary(text)
    arr = tok.encode_to_numpy(text, disallowed_special=())
    assert arr.dtype == np.uint32 and arr.tolist() == expected
    results = [None] * 4

    def work(i):
        results[i] = tok.encode_ordinary(text)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)
    assert tok.encode_batch(CORPUS[:3], disallowed_special=()) == [tok.encode_ordinary(t) for t in CORPUS[:3]]
    assert "n_vocab=201088" in repr(tok)


def test_constructors(rank_file, tok):
    assert Tokenizer(rank_file).encode("hello") == tok.encode("hello")
    assert Tokenizer.from_tiktoken_bytes(rank_file.read_bytes()).encode("hello") == tok.encode("hello")
