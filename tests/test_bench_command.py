"""The bench command (python -m gpt_oss_native bench): it runs every measurement
on a small model and reports consistent figures, and bad options fail before
any work. (Its speed figures are in bench/RESULTS.md; nothing here asserts a
speed.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpt_oss_native.checkpoint import write_checkpoint


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("bench") / "ckpt",
                            dict(preset="tiny", vocab_size=2048, eos_token_id=2047, pad_token_id=2046),
                            progress=False, tokenizer="none")


def _bench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "gpt_oss_native", "bench", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_bench_reports_every_figure(model_dir, tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    proc = _bench(model_dir, "--device", "cpu", "--prompt-tokens", "16,48", "--gen-tokens", "6", "--batch-sizes",
                  "1,3", "--output", out, "--plot", png, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["read_bandwidth_gb_s"] > 0 and r["load_s"] > 0
    assert [p["prompt_tokens"] for p in r["prefill"]] == [16, 48]
    for p, d in zip(r["prefill"], r["decode"]):
        assert p["ttft_ms"] > 0 and p["prefill_tok_s"] > 0
        assert d["gen_tokens"] == 6 and 0 < d["median_ms"] <= d["p90_ms"]
        assert abs(d["tok_s"] - 1000.0 / d["median_ms"]) < 1e-6 * d["tok_s"]
        assert d["pct_of_floor"] == pytest.approx(100 * d["tok_s"] / r["decode_floor_tok_s"])
    assert r["decode_floor_tok_s"] == pytest.approx(r["read_bandwidth_gb_s"] / r["decode_gb_per_token"])
    assert [b["batch"] for b in r["batched_decode"]] == [1, 3] and all(b["tok_s"] > 0 for b in r["batched_decode"])
    # Batches above 1 are measured in slices alternating with batch 1 (the ratio's median and range).
    b3 = r["batched_decode"][1]
    assert b3["slices"] == 4 and b3["batch1_tok_s"] > 0 and 0 < b3["ratio_min"] <= b3["ratio"] <= b3["ratio_max"]
    assert b3["ms_per_step"] == pytest.approx(3 / b3["tok_s"] * 1e3)
    assert "x batch 1" in proc.stdout
    assert r["peak_host_rss_gb"] > 0 and r["peak_backend_memory_gb"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "decode tok/s" in proc.stdout and "aggregate decode tok/s" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--prompt-tokens", "0"], "prompt-tokens"),
    (["--prompt-tokens", "a,b"], "prompt-tokens"),
    (["--batch-sizes", "-2"], "batch-sizes"),
    (["--gen-tokens", "0"], "gen-tokens"),
    (["--threads", "0"], "threads"),
    (["--device", "metal"], "metal"),
    (["--kv-dtype", "fp8"], "kv_dtype"),
])
def test_bench_bad_options(model_dir, args, message):
    proc = _bench(model_dir, *args, "--no-progress", timeout=120)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
