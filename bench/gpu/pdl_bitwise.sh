#!/usr/bin/env bash
# On the GPU machine: decoding gives the same bits with programmatic dependent launch off, with the default set
# and on every kernel (bench/gpu/pdl_bitwise.py), on two random mid-size models and the 20b preset.
#   bash bench/gpu/pdl_bitwise.sh      (needs the wheel in dist/gpu/)
set -u
export PYTHONUNBUFFERED=1
pip install -q --no-deps --force-reinstall dist/gpu/*cp312*.whl > /dev/null 2>&1 || exit 1
python3 - <<'PY'
from gpt_oss_native.checkpoint import write_checkpoint
mid = dict(preset="tiny", num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=4, hidden_size=256,
           intermediate_size=192, num_attention_heads=8, num_key_value_heads=2, head_dim=64, sliding_window=8,
           vocab_size=3000, eos_token_id=2999, pad_token_id=2998)
for s in (11, 12):
    write_checkpoint(f"/dev/shm/mid{s}", mid, format="hf", seed=s, progress=False)
PY
python3 -m gpt_oss_native make-checkpoint --preset 20b --tokenizer none --quiet /dev/shm/gon-20b
for m in /dev/shm/mid11 /dev/shm/mid12 /dev/shm/gon-20b; do
  for env in 0 DEFAULT 1; do
    if [ $env = DEFAULT ]; then unset GON_CUDA_PDL; else export GON_CUDA_PDL=$env; fi
    python3 bench/gpu/pdl_bitwise.py $m /tmp/out_$(basename $m)_$env.npy || echo "run failed: $m $env"
  done
  unset GON_CUDA_PDL
  echo "$m default vs none: $(python3 bench/gpu/pdl_bitwise.py --compare /tmp/out_$(basename $m)_0.npy /tmp/out_$(basename $m)_DEFAULT.npy)"
  echo "$m all vs none:     $(python3 bench/gpu/pdl_bitwise.py --compare /tmp/out_$(basename $m)_0.npy /tmp/out_$(basename $m)_1.npy)"
done
