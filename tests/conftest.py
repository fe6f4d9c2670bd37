import os
import sys

# Tests import helper modules such as `oracle` by plain name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# transformers (the oracle) must never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import base64
import hashlib

import numpy as np
import pytest

O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

# A small model used by the API and error tests (the oracle tests write their own).
SMALL_CONFIG = dict(
    preset="tiny", num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, hidden_size=64,
    intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
    vocab_size=1000, eos_token_id=999, pad_token_id=998,
)


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory):
    from gpt_oss_native.checkpoint import write_checkpoint

    seed = int(np.random.SeedSequence().entropy % (2**31))
    return write_checkpoint(tmp_path_factory.mktemp("small") / "ckpt", SMALL_CONFIG, format="both", seed=seed,
                            progress=False)


@pytest.fixture(scope="session")
def small_model(small_model_path):
    import gpt_oss_native as gon

    return gon.Model(small_model_path)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory):
    """random_model(config, name): a Model of `config` (a write_checkpoint config, HF layout) whose weights come
    from fresh entropy, written to a new temporary directory."""
    import gpt_oss_native as gon
    from gpt_oss_native.checkpoint import write_checkpoint

    def make(config, name="model"):
        seed = int(np.random.SeedSequence().entropy % (2**31))
        return gon.Model(write_checkpoint(tmp_path_factory.mktemp(name) / "ckpt", config, format="hf", seed=seed,
                                          progress=False))

    return make


@pytest.fixture
def rng(request):
    """A generator with fresh entropy, printed when the test fails."""
    entropy = np.random.SeedSequence().entropy
    request.node.user_properties.append(("entropy", entropy))
    print(f"rng entropy: {entropy}")
    return np.random.default_rng(entropy)


@pytest.fixture(scope="session")
def o200k_rank_file(tmp_path_factory):
    """OpenAI's o200k_base.tiktoken, rebuilt offline from the quicktok-v1 package and checked
    byte for byte (sha256) against the official file, in a directory of its own."""
    import quicktok

    enc = quicktok.get_encoding("o200k_base")
    lines = []
    for i in range(enc.n_vocab):
        if enc.is_special_token(i):
            continue
        try:
            b = enc.decode_single_token_bytes(i)
        except KeyError:  # a gap in the ids
            continue
        lines.append(base64.b64encode(b) + b" " + str(i).encode() + b"\n")
    data = b"".join(lines)
    assert hashlib.sha256(data).hexdigest() == O200K_BASE_SHA256, "quicktok-v1's o200k_base differs from the official file"
    path = tmp_path_factory.mktemp("o200k") / "o200k_base.tiktoken"
    path.write_bytes(data)
    return path
