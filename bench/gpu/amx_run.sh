# temporary: the AMX kernel set's checks and A/B on the host CPU (one call)
set -u
S=$OUT/summary.txt
python3 -m pip install --no-deps --force-reinstall dist/gpu/*.whl > $OUT/i.log 2>&1
python3 -c "import gpt_oss_native as g; print('isa', g._core.cpu_kernel_isa())" | tee -a $S
[ -f /dev/shm/gon-20b/config.json ] || python3 -m gpt_oss_native make-checkpoint --preset 20b --tokenizer none --quiet /dev/shm/gon-20b
timeout 150 python3 -m pytest -x -q -k "not text" tests/test_engine.py tests/test_engine_random.py tests/test_context_random.py > $OUT/pt.log 2>&1; echo "pytest rc=$?" | tee -a $S; tail -2 $OUT/pt.log | tee -a $S
best=""; bw=1e9
for e in ${AMX_ENVS:-X=1}; do
  echo "== $e" | tee -a $S
  env $(echo $e | tr + ' ') timeout 100 python3 bench/profile_cpu_decode.py /dev/shm/gon-20b --batches 1,8 --steps 8 --rounds 3 > $OUT/p.txt 2>&1
  grep -E "qkv|out\)|unembed  |moe  |wall per|aggregate|rror" $OUT/p.txt | grep -v " s " | tee -a $S
  w=$(awk '/wall per step/ {print $4}' $OUT/p.txt)
  case $e in *avx512bf16*) ;; *) if awk "BEGIN{exit !($w < $bw)}"; then bw=$w; best=$e; fi ;; esac
done
echo "best: $best ($bw ms at batch 1)" | tee -a $S
env $(echo $best | tr + ' ') GON_BENCH_MODEL=/dev/shm/gon-20b timeout 150 python3 -m pytest bench/test_bench_cpu.py --benchmark-only -q -k decode > $OUT/pb.log 2>&1; echo "bench pytest rc=$?" | tee -a $S
grep -E "^decode_b" $OUT/pb.log | tee -a $S
env $(echo $best | tr + ' ') timeout 120 python3 -m gpt_oss_native bench /dev/shm/gon-20b --device cpu --prompt-tokens 128 --gen-tokens 16 --batch-sizes 1,8 --no-progress --output $OUT/cpu-20b-amx-bench.json > $OUT/b.txt 2>&1; echo "bench rc=$?" | tee -a $S; cat $OUT/b.txt | tee -a $S
