#!/usr/bin/env bash
# Profile-guided optimisation of the Python package, in three steps:
#   1. an instrumented build (GON_PGO=GENERATE) writing profiles into $GON_PGO_DIR;
#   2. a training run: the bench command on a 2-layer model with gpt-oss-20b's
#      layer shapes (prefill, decode, batched decode, sampling: the hot paths);
#   3. the optimised build (GON_PGO=USE) from those profiles, installed.
# Compare with bench/RESULTS.md's "Build options" section for what it changes.
#
#   bash bench/pgo.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILES=${GON_PGO_DIR:-$PWD/build/pgo-profiles}
MODEL=${GON_PGO_MODEL:-$PWD/build/pgo-model}
rm -rf "$PROFILES"
mkdir -p "$PROFILES"

pip install --no-build-isolation . -C cmake.define.GON_PGO=GENERATE -C "cmake.define.GON_PGO_DIR=$PROFILES" \
    -C build-dir=build/pgo-generate
if [ ! -f "$MODEL/config.json" ]; then
  python -m gpt_oss_native make-checkpoint --preset 20b --layers 2 --vocab 32768 --set eos_token_id=32767 \
      --set pad_token_id=32766 --tokenizer none --quiet "$MODEL"
fi
python -m gpt_oss_native bench "$MODEL" --device cpu --prompt-tokens 64,512 --gen-tokens 24 --batch-sizes 1,8 \
    --no-progress
pip install --no-build-isolation . -C cmake.define.GON_PGO=USE -C "cmake.define.GON_PGO_DIR=$PROFILES" \
    -C build-dir=build/pgo-use
echo "installed the profile-optimised build (profiles in $PROFILES)"
