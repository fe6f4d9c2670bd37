set -u
python3 -m pip install --no-deps --force-reinstall dist/gpu/*.whl > $OUT/i.log 2>&1
python3 -c "import gpt_oss_native as g; print('isa', g._core.cpu_kernel_isa())"
[ -f /dev/shm/gon-20b/config.json ] || python3 -m gpt_oss_native make-checkpoint --preset 20b --tokenizer none --quiet /dev/shm/gon-20b
for e in ${AMX_ENVS:-X=1}; do echo "== $e"; env $(echo $e | tr + ' ') timeout 100 python3 bench/profile_cpu_decode.py /dev/shm/gon-20b --batches 1,8 --steps 8 --rounds ${ROUNDS:-3} 2>&1 | grep -E "qkv|out\)|unembed  |moe  |wall per|aggregate|rror" | grep -v " s "; done
[ -n "${PYTESTS:-}" ] && { timeout 240 python3 -m pytest -x -q -k "not text" $PYTESTS > $OUT/pt.log 2>&1; echo pytest rc=$?; tail -4 $OUT/pt.log; }
true
