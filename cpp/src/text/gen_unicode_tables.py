#!/usr/bin/env python3
r"""Generates the Unicode character-class tables of the o200k pre-tokeniser.

Why this exists: the tokenizer's scanner (pretokenizer.cpp) implements the
o200k_base split pattern by hand, and that pattern asks about \p{L}, \p{Lu},
\p{Lt}, \p{Lm}, \p{Lo}, \p{Ll}, \p{M}, \p{N} and \s of every code point. This
script turns Python's `unicodedata` into a compact two-stage lookup table that
the build (CMake add_custom_command) writes to
${PROJECT_BINARY_DIR}/generated/gon_unicode_tables.inc and the scanner includes.

    python3 gen_unicode_tables.py OUTPUT.inc

Only what the pattern distinguishes is kept, one class per code point:
  0 other   (no letter, mark, number or White_Space)
  1 Lu/Lt   (in [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] only)
  2 Ll      (in [\p{Ll}\p{Lm}\p{Lo}\p{M}] only)
  3 Lm/Lo   (in both letter classes)
  4 M       (in both letter classes, but not \p{L})
  5 N
  6 White_Space (Rust regex's \s; NOT Python's str.isspace: U+001C..U+001F are
    not White_Space, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029,
    U+202F, U+205F and U+3000 are). White_Space has been these 25 code points
    since Unicode 6.3.

Unicode version. tiktoken runs the pattern with Rust's fancy-regex/regex
crates; the regex-syntax crate in tiktoken 0.14 carries Unicode 16.0.0 tables
(checked by probing tiktoken itself: every code point, every class above, plus
the case-insensitive letters of the contractions). Python's unicodedata is
older on most interpreters (3.11: 14.0.0, 3.12: 15.0.0, 3.13: 15.1.0, 3.14:
16.0.0). So that the tables do not depend on the interpreter that happens to run
the build, ADDITIONS below lists every code point whose class changed in
Unicode 15.0, 15.1 and 16.0 (all of them newly assigned characters; no assigned
code point changed class in those versions), and the script applies the
versions newer than its unicodedata: the result is Unicode 16.0.0 on any
Python from 3.11 on. (The lists were derived by diffing the unicodedata of
Python 3.11/3.12/3.13 and tiktoken 0.14's regex classes; tests/test_tokenizer.py
re-checks the whole table against the installed tiktoken.) An interpreter whose
unicodedata is newer than 16.0.0 would add the characters of later versions,
which tiktoken 0.14 treats as unassigned; the script then warns, and the
version it reports is that newer one.
"""

from __future__ import annotations

import sys
import unicodedata

TARGET_VERSION = "16.0.0"

WHITE_SPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000]

CLASS_OF_CATEGORY = {"Lu": 1, "Lt": 1, "Ll": 2, "Lm": 3, "Lo": 3, "Mn": 4, "Mc": 4, "Me": 4,
                     "Nd": 5, "Nl": 5, "No": 5}
# Class names used in ADDITIONS ("Lo" stands for Lm or Lo, which the pattern treats alike).
CLASS_OF_NAME = {"Lu": 1, "Ll": 2, "Lo": 3, "M": 4, "N": 5}

# (first, last, class) of the code points that became letters, marks or numbers in each version.
ADDITIONS = {
    "15.0.0": [
        (0x00CF3, 0x00CF3, "M"), (0x00ECE, 0x00ECE, "M"), (0x10EFD, 0x10EFF, "M"), (0x1123F, 0x11240, "Lo"),
        (0x11241, 0x11241, "M"), (0x11F00, 0x11F01, "M"), (0x11F02, 0x11F02, "Lo"), (0x11F03, 0x11F03, "M"),
        (0x11F04, 0x11F10, "Lo"), (0x11F12, 0x11F33, "Lo"), (0x11F34, 0x11F3A, "M"), (0x11F3E, 0x11F42, "M"),
        (0x11F50, 0x11F59, "N"), (0x1342F, 0x1342F, "Lo"), (0x13440, 0x13440, "M"), (0x13441, 0x13446, "Lo"),
        (0x13447, 0x13455, "M"), (0x1B132, 0x1B132, "Lo"), (0x1B155, 0x1B155, "Lo"), (0x1D2C0, 0x1D2D3, "N"),
        (0x1DF25, 0x1DF2A, "Ll"), (0x1E030, 0x1E06D, "Lo"), (0x1E08F, 0x1E08F, "M"), (0x1E4D0, 0x1E4EB, "Lo"),
        (0x1E4EC, 0x1E4EF, "M"), (0x1E4F0, 0x1E4F9, "N"), (0x2B739, 0x2B739, "Lo"), (0x31350, 0x323AF, "Lo"),
    ],
    "15.1.0": [
        (0x2EBF0, 0x2EE5D, "Lo"),
    ],
    "16.0.0": [
        (0x00897, 0x00897, "M"), (0x01C89, 0x01C89, "Lu"), (0x01C8A, 0x01C8A, "Ll"), (0x0A7CB, 0x0A7CC, "Lu"),
        (0x0A7CD, 0x0A7CD, "Ll"), (0x0A7DA, 0x0A7DA, "Lu"), (0x0A7DB, 0x0A7DB, "Ll"), (0x0A7DC, 0x0A7DC, "Lu"),
        (0x105C0, 0x105F3, "Lo"), (0x10D40, 0x10D49, "N"), (0x10D4A, 0x10D4F, "Lo"), (0x10D50, 0x10D65, "Lu"),
        (0x10D69, 0x10D6D, "M"), (0x10D6F, 0x10D6F, "Lo"), (0x10D70, 0x10D85, "Ll"), (0x10EC2, 0x10EC4, "Lo"),
        (0x10EFC, 0x10EFC, "M"), (0x11380, 0x11389, "Lo"), (0x1138B, 0x1138B, "Lo"), (0x1138E, 0x1138E, "Lo"),
        (0x11390, 0x113B5, "Lo"), (0x113B7, 0x113B7, "Lo"), (0x113B8, 0x113C0, "M"), (0x113C2, 0x113C2, "M"),
        (0x113C5, 0x113C5, "M"), (0x113C7, 0x113CA, "M"), (0x113CC, 0x113D0, "M"), (0x113D1, 0x113D1, "Lo"),
        (0x113D2, 0x113D2, "M"), (0x113D3, 0x113D3, "Lo"), (0x113E1, 0x113E2, "M"), (0x116D0, 0x116E3, "N"),
        (0x11BC0, 0x11BE0, "Lo"), (0x11BF0, 0x11BF9, "N"), (0x11F5A, 0x11F5A, "M"), (0x13460, 0x143FA, "Lo"),
        (0x16100, 0x1611D, "Lo"), (0x1611E, 0x1612F, "M"), (0x16130, 0x16139, "N"), (0x16D40, 0x16D6C, "Lo"),
        (0x16D70, 0x16D79, "N"), (0x18CFF, 0x18CFF, "Lo"), (0x1CCF0, 0x1CCF9, "N"), (0x1E5D0, 0x1E5ED, "Lo"),
        (0x1E5EE, 0x1E5EF, "M"), (0x1E5F0, 0x1E5F0, "Lo"), (0x1E5F1, 0x1E5FA, "N"),
    ],
}

BLOCK_SHIFT = 7  # 128 code points per second-stage block


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def classes() -> tuple[bytearray, str, str]:
    table = bytearray(0x110000)
    for cp in range(0x110000):
        table[cp] = CLASS_OF_CATEGORY.get(unicodedata.category(chr(cp)), 0)
    for cp in WHITE_SPACE:
        assert table[cp] == 0, hex(cp)
        table[cp] = 6
    have = version_tuple(unicodedata.unidata_version)
    applied = []
    for version, ranges in ADDITIONS.items():
        if version_tuple(version) <= have:
            continue
        applied.append(version)
        for first, last, name in ranges:
            for cp in range(first, last + 1):
                table[cp] = CLASS_OF_NAME[name]
    if have > version_tuple(TARGET_VERSION):
        print(f"gen_unicode_tables.py: warning: Python's unicodedata is Unicode {unicodedata.unidata_version}, "
              f"newer than tiktoken's {TARGET_VERSION}: characters assigned since then will be classified "
              "as letters/marks/numbers here but not by tiktoken", file=sys.stderr)
        version = unicodedata.unidata_version
    else:
        version = TARGET_VERSION
    source = f"Python {sys.version.split()[0]} unicodedata {unicodedata.unidata_version}"
    if applied:
        source += " + the built-in additions of Unicode " + ", ".join(applied)
    return table, version, source


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: gen_unicode_tables.py OUTPUT.inc")
    table, version, source = classes()
    block = 1 << BLOCK_SHIFT
    blocks: dict[bytes, int] = {}
    stage1 = []
    for start in range(0, 0x110000, block):
        b = bytes(table[start:start + block])
        stage1.append(blocks.setdefault(b, len(blocks)))
    assert len(blocks) < 65536
    out = [
        "// Generated by cpp/src/text/gen_unicode_tables.py at build time; do not edit.",
        f"// Unicode {version} character classes of the o200k pre-tokeniser ({source}).",
        "// Class per code point: 0 other, 1 Lu/Lt, 2 Ll, 3 Lm/Lo, 4 M, 5 N, 6 White_Space.",
        f'#define GON_UNICODE_VERSION "{version}"',
        f"static constexpr int kUnicodeBlockShift = {BLOCK_SHIFT};",
        f"static const uint16_t kUnicodeStage1[{len(stage1)}] = {{",
    ]
    for i in range(0, len(stage1), 24):
        out.append("  " + ",".join(str(x) for x in stage1[i:i + 24]) + ",")
    out.append("};")
    out.append(f"static const uint8_t kUnicodeStage2[{len(blocks) * block}] = {{")
    for b in blocks:
        for i in range(0, block, 64):
            out.append("  " + ",".join(str(x) for x in b[i:i + 64]) + ",")
    out.append("};")
    text = "\n".join(out) + "\n"
    try:
        with open(sys.argv[1], encoding="ascii") as f:
            if f.read() == text:
                return  # unchanged: keep the timestamp, no rebuild
    except OSError:
        pass
    with open(sys.argv[1], "w", encoding="ascii") as f:
        f.write(text)


if __name__ == "__main__":
    main()
