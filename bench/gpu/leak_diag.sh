#!/usr/bin/env bash
# Whether an Engine and its Model outlive `del` + gc (bench/gpu/leak_diag.py): without a tool, then under
# compute-sanitizer's leak check with its default host backtraces (which hold Python frames: 5 records) and with
# --show-backtrace device (what run.sh's sanitize uses: none expected). Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/gpu-out}; mkdir -p "$OUT"; PY=${PYTHON:-python3}
if ! $PY -c "import gpt_oss_native" 2>/dev/null; then
  wheel=$(ls dist/gpu/*cp$($PY -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')*.whl | head -1)
  $PY -m pip install --no-deps --force-reinstall "$wheel" > "$OUT/install.log" 2>&1 || { tail "$OUT/install.log"; exit 1; }
fi
model=/dev/shm/gon-small
[ -f $model/config.json ] || $PY -m gpt_oss_native make-checkpoint --preset tiny --layers 2 --vocab 4096 \
  --set eos_token_id=4095 --set pad_token_id=4094 --quiet $model
echo "== no tool"; $PY bench/gpu/leak_diag.py $model cuda 2>&1 | tail -20
for opt in "--show-backtrace yes" "--show-backtrace device"; do
  echo "== compute-sanitizer $opt"
  timeout 200 compute-sanitizer --tool memcheck --leak-check full $opt $PY bench/gpu/leak_diag.py $model cuda \
    > "$OUT/leak${opt##* }.log" 2>&1
  grep -vE "^=========     Host Frame|^========= *$|Saved host backtrace|^=========         " "$OUT/leak${opt##* }.log" \
    | head -30
done
