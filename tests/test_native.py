"""The C++ side, driven from pytest so the README's one test command runs it all:

* the C++ tests built with AddressSanitizer and UndefinedBehaviorSanitizer;
* the kernel micro-benchmark (bench_matmul) built in the same tree and run on
  small cases over every kernel set the CPU has, so it keeps compiling and
  stays memory-safe although only local builds use it;
* the safetensors and JSON parsers fuzzed for a bounded time (libFuzzer when
  clang is installed, the built-in mutation driver otherwise), also sanitized;
* the library installed as a CMake package, the example program built against
  it with find_package() and run on a checkpoint, its tokens compared with the
  Python API's.

Build trees live under build/native-* and are reused between runs. Set
GON_FUZZ_SECONDS to change the fuzzing time per target (default 60).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import gpt_oss_native as gon

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
FUZZ_SECONDS = int(os.environ.get("GON_FUZZ_SECONDS", "60"))
JOBS = str(max(1, os.cpu_count() or 1))


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def _generator():
    return ["-G", "Ninja"] if shutil.which("ninja") else []


@pytest.fixture(scope="module")
def sanitized_build():
    clang = shutil.which("clang++")
    build = BUILD / ("native-asan-clang" if clang else "native-asan-gcc")
    cmd = ["cmake", "-S", ROOT, "-B", build, *_generator(), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
           "-DGON_SANITIZE=ON", "-DGON_BUILD_TESTS=ON", "-DGON_BUILD_FUZZERS=ON", "-DGON_BUILD_EXAMPLES=OFF",
           "-DGON_BUILD_BENCH=ON"]
    if clang:
        cmd.append(f"-DCMAKE_CXX_COMPILER={clang}")
    _run(cmd)
    _run(["cmake", "--build", build, "-j", JOBS], timeout=3600)
    return build


def test_cpp_tests_under_asan_and_ubsan(sanitized_build, o200k_rank_file):
    # GON_O200K_BASE: the real vocabulary, for the C++ harmony test against openai-harmony's tokens.
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1", "GON_O200K_BASE": str(o200k_rank_file)}
    proc = _run(["ctest", "--test-dir", sanitized_build, "--output-on-failure", "-j", "1"], env=env, timeout=3600)
    assert "tests passed" in proc.stdout
    names = {p.name for p in sanitized_build.glob("test_*") if p.is_file()}
    assert {"test_context", "test_matmul", "test_json", "test_safetensors", "test_ops"} <= names
    # ctest shows no output of passing tests: check directly that the real-vocabulary test ran.
    harmony = _run([str(sanitized_build / "test_harmony")], env=env, timeout=600)
    assert "[PASS] real_vocabulary_when_available" in harmony.stdout
    assert "skipped" not in harmony.stdout


def test_bench_matmul_runs_every_kernel_set(sanitized_build):
    # Tiny cases (timings meaningless under the sanitizers): every set the CPU
    # has, both formats, odd N, M = 1 and a multi-tile M, the runtime's work
    # units, file-mapped weights and activations cycled through copies.
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "halt_on_error=1"}
    exe = sanitized_build / "bench_matmul"
    out = _run([exe, "--impl", "all", "--quick", "--no-baseline", "--units", "--file", "--cold-x", "--case", "bf16", "997",
                "2880", "1,3", "--case", "mxfp4", "1001", "2880", "1,9"], env=env, timeout=900).stdout
    isa = out.splitlines()[0].split("matmul_isa() = ")[1].split(";")[0]
    rows = [line.split() for line in out.splitlines() if line.startswith(("bf16 ", "mxfp4 "))]
    for fmt, shape, ms in (("bf16", "997x2880", ("1", "3")), ("mxfp4", "1001x2880", ("1", "9"))):
        for m in ms:
            sets = {r[3] for r in rows if r[0] == fmt and r[1] == shape and r[2] == f"M={m}"}
            assert {isa, "generic"} <= sets, (fmt, m, sets, out)
    bad = subprocess.run([str(exe), "--impl", "nosuchset"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown kernel set" in bad.stderr


@pytest.mark.parametrize("target,corpus", [("fuzz_safetensors", "safetensors"), ("fuzz_json", "json"),
                                           ("fuzz_tokenizer", "tokenizer")])
def test_fuzz_parsers(sanitized_build, target, corpus, tmp_path):
    exe = sanitized_build / target
    work = tmp_path / "corpus"
    shutil.copytree(ROOT / "cpp" / "fuzz" / "corpus" / corpus, work)
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"}
    args = [str(exe), f"-max_total_time={FUZZ_SECONDS}", f"-artifact_prefix={tmp_path}/", "-max_len=65536"]
    if sanitized_build.name.endswith("clang"):
        # libFuzzer: guide mutations with the format's tokens. Its RSS limit is
        # off because getrusage() reports the peak RSS of the process before
        # exec (this pytest process, with torch loaded) as the fuzzer's own;
        # single allocations are still capped.
        args += [f"-dict={ROOT / 'cpp' / 'fuzz' / 'safetensors.dict'}", "-rss_limit_mb=0", "-malloc_limit_mb=1024"]
    proc = subprocess.run([*args, str(work)], capture_output=True, text=True, env=env,
                          timeout=FUZZ_SECONDS * 3 + 300)
    findings = sorted(p.name for p in tmp_path.glob("crash-*")) + sorted(p.name for p in tmp_path.glob("timeout-*"))
    assert proc.returncode == 0 and not findings, f"{findings}\n{proc.stderr[-6000:]}"


def test_cpp_package_and_example(tmp_path, small_model_path, rng):
    build, prefix, example_build = BUILD / "native-release", tmp_path / "prefix", tmp_path / "example"
    _run(["cmake", "-S", ROOT, "-B", build, *_generator(), "-DCMAKE_BUILD_TYPE=Release"])
    _run(["cmake", "--build", build, "-j", JOBS], timeout=3600)
    _run(["cmake", "--install", build, "--prefix", prefix])
    assert (prefix / "include" / "gpt_oss_native" / "gpt_oss_native.hpp").exists()
    _run(["cmake", "-S", ROOT / "cpp" / "examples", "-B", example_build, *_generator(),
          "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", example_build])
    prompt = rng.integers(0, 1000, size=9).tolist()
    out = _run([example_build / "gon_generate", small_model_path, "--tokens", ",".join(map(str, prompt)),
                "--max-tokens", "7", "--temperature", "0.7", "--seed", "9", "--threads", "2"], timeout=600).stdout
    line = next(l for l in out.splitlines() if l.startswith("generated:"))
    generated = [int(t) for t in line.split()[1:]]
    model = gon.Model(small_model_path)
    ctx = gon.Context(model, context_length=64)
    ctx.append(prompt)
    assert generated == [ctx.sample(temperature=0.7, seed=9)[0] for _ in range(7)]
    assert "tok/s" in out
    bad = subprocess.run([str(example_build / "gon_generate"), str(tmp_path / "missing")], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "file_not_found" in bad.stderr

    # Text in, text out through the C++ API (tokenizer + streaming Generator).
    from gpt_oss_native.checkpoint import write_checkpoint

    text_model = write_checkpoint(tmp_path / "text", dict(preset="tiny", hidden_size=64, intermediate_size=32),
                                  progress=False, tokenizer="real")
    prompt = "<|start|>user<|message|>Bonjour, ça va?<|end|><|start|>assistant"
    out = _run([example_build / "gon_generate", text_model, "--prompt", prompt, "--max-tokens", "12",
                "--temperature", "0.8", "--seed", "3"], timeout=600).stdout
    printed = out.split("text: ", 1)[1].split("\nfinish: ", 1)[0]
    expected = gon.Model(text_model).generate(prompt, max_tokens=12, temperature=0.8, seed=3)
    assert printed == "".join(expected)
