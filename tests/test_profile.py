"""GON_PROFILE's running sums (gon._core.profile_totals), which bench/profile_cpu_decode.py reads.

The runtime reads GON_PROFILE once per process, so each case runs in a child process."""

import json
import os
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, sys
import numpy as np
import gpt_oss_native as gon
path, prompt, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = gon.Model(path)
t0 = gon._core.profile_totals()
ctx = gon.Context(model, context_length=64, max_batch_tokens=prompt)
ctx.append(np.arange(prompt) % 100)
ctx.process(logits="none")
t1 = gon._core.profile_totals()
for _ in range(steps):
    ctx.sample(temperature=0.0)
t2 = gon._core.profile_totals()
print(json.dumps({"enabled": gon._core.profile_enabled(), "layers": model.config["num_layers"],
                  "t0": t0, "t1": t1, "t2": t2}))
"""


def run_child(path, env_value, prompt, steps):
    env = dict(os.environ)
    env.pop("GON_PROFILE", None)
    if env_value is not None:
        env["GON_PROFILE"] = env_value
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(prompt), str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_profile_totals_count_every_operation(small_model_path):
    rng = np.random.default_rng()
    prompt, steps = int(rng.integers(3, 20)), int(rng.integers(2, 9))
    r, stderr = run_child(small_model_path, "1", prompt, steps)
    assert r["enabled"]
    layers = r["layers"]
    t0, t1, t2 = r["t0"], r["t1"], r["t2"]
    assert all(v == [0.0, 0, 0] for v in t0.values())  # nothing ran before the first forward pass

    def delta(a, b, op):
        return [b[op][i] - a[op][i] for i in range(3)]

    # The prompt: one forward pass over `prompt` tokens, no logits (so no unembedding and no sampling).
    for op in ("linear(qkv)", "attention", "linear(out)", "router", "moe"):
        seconds, calls, tokens = delta(t0, t1, op)
        assert calls == layers and tokens == layers * prompt and seconds > 0, op
    assert delta(t0, t1, "unembed")[1] == 0 and delta(t0, t1, "sample")[1] == 0
    # Each sample(): the pending token through every layer, then one row of logits and one draw.
    for op in ("linear(qkv)", "moe"):
        seconds, calls, tokens = delta(t1, t2, op)
        assert calls == layers * steps and tokens == layers * steps and seconds > 0, op
    assert delta(t1, t2, "unembed")[1:] == [steps, steps]
    assert delta(t1, t2, "sample")[1:] == [steps, steps]
    # The table printed at exit holds the same sums.
    assert "GON_PROFILE: time per operation" in stderr
    qkv_line = next(line for line in stderr.splitlines() if line.strip().startswith("linear(qkv)"))
    assert int(qkv_line.split()[4]) == t2["linear(qkv)"][1]


def test_profile_totals_stay_zero_when_off(small_model_path):
    for value in (None, "0", ""):
        r, stderr = run_child(small_model_path, value, 5, 3)
        assert not r["enabled"]
        assert all(v == [0.0, 0, 0] for v in r["t2"].values())
        assert "GON_PROFILE" not in stderr


def test_profile_script_runs_each_variant_in_one_process(small_model_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "profile_cpu_decode.py")
    base = [sys.executable, script, str(small_model_path), "--batches", "1,3", "--steps", "2", "--rounds", "2",
            "--prompt-tokens", "5"]
    out = subprocess.run(base + ["--variants", "- GON_TEST_A=1+GON_TEST_B=x=y"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert [line for line in out if line.startswith("--- variant")] == ["--- variant -",
                                                                        "--- variant GON_TEST_A=1+GON_TEST_B=x=y"]
    ratios = [line for line in out if line.startswith("aggregate decode at 3 sequences / batch 1:")]
    assert len(ratios) == 2 and all(float(line.split(":")[1].split("x")[0]) > 0 for line in ratios)
    # Per variant, the operations' sum is part of the wall time of the same slices.
    sums = [line.split()[-2:] for line in out if line.strip().startswith("sum of ops")]
    walls = [line.split()[-2:] for line in out if line.strip().startswith("wall per step")]
    assert len(sums) == len(walls) == 2
    for s, w in zip(sums, walls):
        assert all(0 < float(a) <= float(b) * 1.01 + 0.05 for a, b in zip(s, w))
    bad = subprocess.run(base + ["--variants", "- oops"], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not VAR=VALUE" in bad.stderr
