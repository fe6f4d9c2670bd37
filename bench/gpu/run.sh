#!/usr/bin/env bash
# Everything the CUDA backend is checked and measured with, in one run on a GPU
# machine (the lent H200 has no network: its image has torch, triton,
# nanobind, scikit-build-core, cmake, ninja, pytest-benchmark, transformers).
#
#   bash bench/gpu/run.sh [check|sanitize|loop|cpu20b|cpu-ab|cpu-profile|check+cpu-profile|cpu-kernel-ab|bench20b|bench20b-short|bench20b-1|bench120b|profile|lab-gmma|lab-gmma+check|prefill-chunks|ab|step|bars|check+profile|check+bench20b|check+ab|all]     # logs under $OUT (default build/gpu-out)
#
# check:     installs the package (a wheel under dist/gpu/ when one matches this
#            Python, else builds here), runs the C++ op harness with CUDA, the GPU
#            tests (tests/test_cuda.py), and compute-sanitizer on a short run.
# bench20b:  writes the 20b preset into /dev/shm and runs `bench` on it.
# bench120b: the same for the 120b preset.
# bench20b-short: bench20b after 1k-token prompts only, at 1, 8 and 64 sequences (bench20b-1: batch 1 only).
# step:      bench/gpu/step_kernels.py under ncu (STEP_MODEL=20b|120b; STEP_KERNELS=regex adds full sections and
#            per-instruction stall samples of those kernels, STEP_COUNT launches of them).
# cpu20b:    issue 7's CPU decode figures on the host CPU (pytest decode benchmarks on all cores three times, then on
#            2 cores; `bench --device cpu` at batch 1 and 8 sequences twice), 20b preset in /dev/shm.
# cpu-profile: the host CPU's topology, bench/profile_cpu_decode.py at batch 1 and 8 sequences (one process, slices
#            interleaved; CPU_PROFILE_ROUNDS rounds) and bench_matmul's AVX-512 kernels on two vCPUs of one core and
#            of two cores (built here without CUDA).
# cpu-kernel-ab: bench_matmul (2 vCPUs, --peak) under each word of KERNEL_AB_ENVS, then
#            bench/profile_cpu_decode.py (all vCPUs) under each word of PROFILE_AB_ENVS (VAR=VALUE, + joining several).
# cpu-ab:    bench/profile_cpu_decode.py at batch 1 and 8 on all host cores, then 8 sequences against batch 1 under
#            each word of CPU_AB_ENVS (CPU_AB_ROUNDS rounds).
# bars:      bench20b-1 twice, then the 120b at batch 1 twice (issue 8's batch-1 bars, with their spread).
# loop:      batch-1 decode in device loops under each word of LOOP_ENVS (LOOP_ROUNDS rounds), then LOOP_THEN
#            (check sanitize bars bench20b-1) with the fastest word's settings (loop_ab).
# lab-gmma:  bench/gpu/kernel_lab.py --only gmma (GMMA_TILES="W,STAGES[,MAXNREG] ..." for other tiles).
# ab:        decode step times with the step's switches flipped in turn (GON_CUDA_MMA_MOE=0,
#            GON_CUDA_QKV_ROPE=0, GON_CUDA_PDL=1; GON_CUDA_ROUTED and GON_CUDA_SPLIT_MLP2 change batch 1
#            only with GON_CUDA_MMA_MOE=0, as in AB_ENVS="GON_CUDA_MMA_MOE=0,GON_CUDA_ROUTED=0"; AB_ENVS lists others: words of
#            VAR=VALUE, commas joining several; AB_BATCHES, AB_TOKENS).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT"
WHAT=${1:-check}
PY=${PYTHON:-python3}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/gon-triton-cache}
log() { echo "== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

preset() {  # preset <20b|120b>: writes that preset to /dev/shm/gon-<name> unless it is there (one preset at a time:
  # the machine's memory holds one comfortably)
  local model=/dev/shm/gon-$1
  [ -f $model/config.json ] && return 0
  rm -rf /dev/shm/gon-20b /dev/shm/gon-120b
  log "writing the $1 preset to $model"
  $PY -m gpt_oss_native make-checkpoint --preset $1 --tokenizer none --quiet $model
}

install() {
  if $PY -c "import gpt_oss_native" 2>/dev/null; then return 0; fi
  local wheel
  wheel=$(ls dist/gpu/*cp$($PY -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')*.whl 2>/dev/null | head -1)
  if [ -n "$wheel" ]; then
    log "installing $wheel"
    $PY -m pip install --no-deps --force-reinstall "$wheel" > "$OUT/install.log" 2>&1 || return 1
  else
    log "building the package here"
    $PY -m pip install --no-build-isolation --no-deps . > "$OUT/install.log" 2>&1 || return 1
  fi
  $PY -c "import gpt_oss_native as g; print('backends', g._core.built_backends(), 'cuda usable', g._core.cuda_usable())" \
    | tee -a "$OUT/summary.txt"
}

check() {
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  install || { log "install failed"; tail -30 "$OUT/install.log"; return 1; }
  local ops=dist/gpu/test_ops
  if [ ! -x "$ops" ]; then
    log "building the C++ op harness here"
    cmake -S . -B build/gpu-tests -G Ninja -DCMAKE_BUILD_TYPE=Release -DGON_BUILD_TESTS=ON -DGON_LTO=OFF \
      -DPython_EXECUTABLE=$(command -v $PY) > "$OUT/cmake.log" 2>&1
    cmake --build build/gpu-tests -j 16 --target test_ops gon_generate >> "$OUT/cmake.log" 2>&1
    ops=build/gpu-tests/test_ops
  fi
  log "op harness"
  timeout 150 "$ops" > "$OUT/test_ops.log" 2>&1; echo "test_ops rc=$?" | tee -a "$OUT/summary.txt"
  grep -E "FAIL|backend|failed" "$OUT/test_ops.log" | head -40 | tee -a "$OUT/summary.txt"
  log "GPU tests"
  timeout 240 $PY -m pytest tests/test_cuda.py -q -s > "$OUT/test_cuda.log" 2>&1
  echo "test_cuda rc=$?" | tee -a "$OUT/summary.txt"
  grep -E "passed|failed|Error|max\|d\|" "$OUT/test_cuda.log" | tail -25 | tee -a "$OUT/summary.txt"
}

sanitize() {
  log "compute-sanitizer"
  local model=/dev/shm/gon-small
  [ -f $model/config.json ] || $PY -m gpt_oss_native make-checkpoint --preset tiny --layers 2 --vocab 4096 --set eos_token_id=4095 --set pad_token_id=4094 --quiet $model
  # --show-backtrace device: the host backtraces compute-sanitizer collects hold the Python frames of the calls they
  # were taken in (and through them the Engine and the Model) until exit, which shows as 5 leaked allocations
  # (bench/gpu/NOTES.md, run 83); access errors still come with the kernel and its device backtrace
  timeout 150 compute-sanitizer --tool memcheck --leak-check full --show-backtrace device $PY -c "
import gpt_oss_native as gon, numpy as np
m = gon.Model('$model', device='cuda')
ctx = gon.Context(m, context_length=1024, max_batch_tokens=64)  # full layers split their keys
ctx.append(np.arange(100) % 4000); ctx.process()
for _ in range(8): ctx.sample(temperature=0.0)
for _ in range(4): ctx.sample(temperature=1.0, top_p=0.9, seed=1)
ctx.sample_many(20, temperature=0.0)  # the device loop (a WHILE conditional graph node)
ctx.sample_many(10, temperature=1.0, top_p=0.9, seed=2, stop_tokens=[4095])
e = gon.Engine(m, max_sequences=4, context_length=128, max_batch_tokens=32, text=False)
for i in range(4): e.submit(list(range(5 + 7 * i)), max_tokens=6, temperature=0.0)
e.run(); print('ok')
del e, ctx, m  # freed before exit, so the leak check sees what the runtime keeps
import gc; gc.collect()
" > "$OUT/sanitizer.log" 2>&1
  echo "sanitizer rc=$?" | tee -a "$OUT/summary.txt"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|ok$" "$OUT/sanitizer.log" | tee -a "$OUT/summary.txt"
}

bench() {  # bench <preset> <prompt-tokens> <batch-sizes>
  local name=$1 model=/dev/shm/gon-$1
  install || return 1
  preset $name
  log "bench $name"
  $PY -m gpt_oss_native bench $model --device cuda --prompt-tokens $2 --gen-tokens 64 --batch-sizes $3 \
    --no-progress --output "$OUT/bench-$name.json" > "$OUT/bench-$name.txt" 2>&1
  echo "bench rc=$?" | tee -a "$OUT/summary.txt"
  cat "$OUT/bench-$name.txt" | tee -a "$OUT/summary.txt"
}

profile() {  # per-kernel time of decode steps (GON_CUDA_PROFILE), greedy at several batch sizes, then top-p
  local model=/dev/shm/gon-20b
  install || return 1
  preset 20b
  for b in ${PROFILE_BATCHES:-1 8 16 64}; do
    log "profile 20b batch $b"
    GON_CUDA_PROFILE=1 timeout 120 $PY bench/gpu/profile.py $model --batch $b --tokens 16 > "$OUT/profile-b$b.txt" 2>&1
    head -40 "$OUT/profile-b$b.txt" | tee -a "$OUT/summary.txt"
  done
  for b in ${PROFILE_SAMPLED_BATCHES:-1 64}; do
    log "profile 20b batch $b, temperature 1, top_p 0.9"
    GON_CUDA_PROFILE=1 timeout 120 $PY bench/gpu/profile.py $model --batch $b --tokens 16 --temperature 1 --top-p 0.9 \
      > "$OUT/profile-b$b-topp.txt" 2>&1
    grep -E "^batch|sample" "$OUT/profile-b$b-topp.txt" | tee -a "$OUT/summary.txt"
  done
}

gemv_ab() {  # decode steps of 3..8 rows: split-fp32 gemm (default) against the fp32 gemv (GON_CUDA_GEMV_ROWS=8)
  local model=/dev/shm/gon-20b
  install || return 1
  preset 20b
  for b in 4 8; do
    for rows in 2 8; do
      log "batch $b, GON_CUDA_GEMV_ROWS=$rows"
      GON_CUDA_GEMV_ROWS=$rows timeout 120 $PY bench/gpu/profile.py $model --batch $b --tokens 64 2>&1 | tail -1 \
        | tee -a "$OUT/summary.txt"
    done
  done
}

switch_ab() {  # decode step time of the 20b preset with each switch of the step flipped in turn (same run)
  local model=/dev/shm/gon-20b
  install || return 1
  preset 20b
  for b in ${AB_BATCHES:-1 8 64}; do
    for env in ${AB_ENVS:-X=1 GON_CUDA_MMA_MOE=0 GON_CUDA_QKV_ROPE=0 GON_CUDA_PDL=1 X=1}; do
      log "batch $b, $env"
      env ${env//,/ } timeout 120 $PY bench/gpu/profile.py $model --batch $b --tokens ${AB_TOKENS:-128} 2>&1 | tail -1 \
        | tee -a "$OUT/summary.txt"
    done
  done
}

loop_ab() {  # batch-1 decode in device loops (profile.py --loop, 256 tokens) under each word of LOOP_ENVS (VAR=VALUE,
  # several joined by "+"), LOOP_ROUNDS rounds in turn; then the checks and the bars with the fastest word's settings
  local model=/dev/shm/gon-20b
  install || return 1
  preset 20b
  local words=${LOOP_ENVS:-"GON_CUDA_PDL=0 X=1"} r w v best
  : > "$OUT/loop.txt"
  log "loop A/B"
  for r in $(seq ${LOOP_ROUNDS:-3}); do
    for w in $words; do
      v=$(env ${w//+/ } timeout 120 $PY bench/gpu/profile.py $model --loop --tokens 256 2>&1 | tail -1)
      echo "$w $v" | tee -a "$OUT/summary.txt" "$OUT/loop.txt"
    done
  done
  awk '/ms per token$/ {t[$1] += $(NF - 3); n[$1]++} END {for (s in t) printf "mean %.4f ms  %s\n", t[s] / n[s], s}' \
    "$OUT/loop.txt" | sort | tee -a "$OUT/summary.txt"
  best=$(awk '/ms per token$/ {t[$1] += $(NF - 3); n[$1]++} END {b = ""; for (s in t) if (b == "" || t[s] / n[s] < t[b] / n[b]) b = s; print b}' "$OUT/loop.txt")
  log "fastest: $best"
  [ -n "${LOOP_THEN:-}" ] || return 0
  (export ${best//+/ }; for what in $LOOP_THEN; do
     case $what in check) check ;; sanitize) sanitize ;; bars) bars ;; bench20b-1) bench 20b 1024 1 ;; esac
   done)
}

lab_gmma() {  # the grouped tensor-core expert products (moe_gemm_mma.py) against moe.py's 16-row tiles
  install || return 1
  log "kernel_lab gmma"
  timeout 240 $PY bench/gpu/kernel_lab.py --only gmma ${GMMA_TILES:+--gmma-tiles $GMMA_TILES} > "$OUT/lab-gmma.txt" 2>&1
  tee -a "$OUT/summary.txt" < "$OUT/lab-gmma.txt"
}

prefill_chunks() {  # prefill of the 20b preset in chunks of 512 and 2048 tokens, one run
  local model=/dev/shm/gon-20b
  install || return 1
  preset 20b
  for chunk in 512 2048; do
    log "bench 20b prefill, chunks of $chunk"
    $PY -m gpt_oss_native bench $model --device cuda --prompt-tokens 1024,8192 --gen-tokens 16 --batch-sizes 1 \
      --prefill-chunk $chunk --no-progress --output "$OUT/bench-20b-chunk$chunk.json" 2>&1 | grep -E "^ +[0-9]+ " \
      | tee -a "$OUT/summary.txt"
  done
}

step_ncu() {  # the step's kernels under ncu: durations of every node (step.csv), then full sections and
  # per-instruction stall samples of the kernels matching STEP_KERNELS (step-src.csv, step-details.txt)
  local model=/dev/shm/gon-${STEP_MODEL:-20b}
  install || return 1
  preset ${STEP_MODEL:-20b}
  log "ncu durations of one step ($model)"
  timeout 240 ncu --graph-profiling node --clock-control none --metrics gpu__time_duration.sum --nvtx \
    --nvtx-include "gon_step/" --csv --log-file "$OUT/step.csv" $PY bench/gpu/step_kernels.py $model > "$OUT/step.log" 2>&1
  $PY bench/gpu/step_kernels.py --table "$OUT/step.csv" | tee -a "$OUT/summary.txt"
  [ -n "${STEP_KERNELS:-}" ] || return 0
  log "ncu sections and source of $STEP_KERNELS"
  timeout 300 ncu --graph-profiling node --clock-control none --nvtx --nvtx-include "gon_step/" \
    --kernel-name "regex:$STEP_KERNELS" --launch-count ${STEP_COUNT:-4} --set full -f -o "$OUT/step-src" \
    $PY bench/gpu/step_kernels.py $model > "$OUT/step-src.log" 2>&1
  echo "ncu rc=$?" | tee -a "$OUT/summary.txt"
  ncu -i "$OUT/step-src.ncu-rep" --page details > "$OUT/step-details.txt" 2>&1
  ncu -i "$OUT/step-src.ncu-rep" --page source --csv --print-source sass > "$OUT/step-src.csv" 2>&1
  grep -E "^  [a-z_]+|Duration|Registers|Achieved Occupancy|Waves|Memory Throughput|Warp Cycles Per Issued" \
    "$OUT/step-details.txt" | head -80 | tee -a "$OUT/summary.txt"
}

cpu20b() {  # issue 7's CPU figures on this machine's host CPU: the pytest decode benchmarks and `bench`, all cores
  # (three times; `bench` after the second and third) and 2 cores (taskset), on the 20b preset in /dev/shm
  install || { log "install failed"; tail -30 "$OUT/install.log"; return 1; }
  local model=/dev/shm/gon-20b
  lscpu > "$OUT/lscpu.txt"; grep -E "Model name|^CPU\(s\)|Thread|NUMA node\(s\)|L3" "$OUT/lscpu.txt" | tee -a "$OUT/summary.txt"
  grep -o -E "avx512_bf16|amx_bf16|avx512f " "$OUT/lscpu.txt" | sort -u | tr '\n' ' ' | tee -a "$OUT/summary.txt"; echo
  preset 20b
  for run in "all-a" "all-b" "all-c" "2cores"; do
    local pre=""; [ $run = 2cores ] && pre="taskset -c 0,1"
    log "pytest decode benchmarks ($run)"
    GON_BENCH_MODEL=$model timeout 420 $pre $PY -m pytest bench/test_bench_cpu.py --benchmark-only -q -k decode \
      --benchmark-json "$OUT/cpu-pytest-$run.json" > "$OUT/cpu-pytest-$run.log" 2>&1
    echo "pytest rc=$?" | tee -a "$OUT/summary.txt"
    grep -E "^decode_b" "$OUT/cpu-pytest-$run.log" | tee -a "$OUT/summary.txt"
    [ $run = all-b ] || [ $run = all-c ] || continue
    log "bench --device cpu ($run)"
    timeout 420 $PY -m gpt_oss_native bench $model --device cpu --prompt-tokens 128 --gen-tokens 16 --batch-sizes 1,8 \
      --no-progress --output "$OUT/cpu-20b-host-bench-$run.json" > "$OUT/cpu-bench-$run.txt" 2>&1
    echo "bench rc=$?" | tee -a "$OUT/summary.txt"
    cat "$OUT/cpu-bench-$run.txt" | tee -a "$OUT/summary.txt"
  done
  # what comes back from a lent machine is limited to a few files: keep the JSON and the bench tables (the rest is
  # in the summary printed above)
  rm -f "$OUT"/cpu-pytest-*.log "$OUT/install.log" "$OUT/lscpu.txt" "$OUT/summary.txt"
}

cpu_ab() {  # CPU decode: per-operation profile at batch 1 and 8 (all cores), then 8 sequences against batch 1 under
  # each word of CPU_AB_ENVS (VAR=VALUE, + joining several; "X=1" for no change), CPU_AB_ROUNDS rounds
  install || { log "install failed"; tail -30 "$OUT/install.log"; return 1; }
  local model=/dev/shm/gon-20b
  preset 20b
  log "profile"
  $PY bench/profile_cpu_decode.py $model --batches 1,8 --steps 8 2>&1 | tee -a "$OUT/summary.txt"
  for r in $(seq ${CPU_AB_ROUNDS:-2}); do
    for w in ${CPU_AB_ENVS:-X=1}; do
      env $(echo $w | tr + ' ') $PY -c "
import sys, gpt_oss_native as gon
from gpt_oss_native.bench import measure_batched_vs_batch1
r = measure_batched_vs_batch1(gon.Model(sys.argv[1]), 8, 64, 32)
print(f'{sys.argv[2]:40s} batch1 {r[\"batch1_tok_s\"]:.2f} tok/s  8 seq {r[\"tok_s\"]:.2f} tok/s  ratio {r[\"ratio\"]:.3f} ({r[\"ratio_min\"]:.2f}-{r[\"ratio_max\"]:.2f})')
" $model "$w" 2>&1 | tail -1 | tee -a "$OUT/summary.txt"
    done
  done
}

cpu_profile() {  # where the host CPU's decode time goes (see the header), and its kernels on one core and on two
  install || { log "install failed"; tail -30 "$OUT/install.log"; return 1; }
  local model=/dev/shm/gon-20b
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|L1d|L2|L3|MHz" | tee -a "$OUT/summary.txt"
  local sibs other
  sibs=$(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list 2>/dev/null || echo 0)
  log "cpu0's hardware threads: $sibs"
  preset 20b
  log "profile_cpu_decode"
  timeout 300 $PY bench/profile_cpu_decode.py $model --batches 1,8 --steps 8 --rounds ${CPU_PROFILE_ROUNDS:-6} 2>&1 \
    | tee -a "$OUT/summary.txt"
  build_bench_matmul || return 1
  # two vCPUs of one core (cpu0 and its sibling, where it has one) and of two cores (cpu0 and the first vCPU that is
  # not its sibling)
  other=$(for c in $(seq 1 $(($(nproc) - 1))); do
            case ",$(echo $sibs | tr '-' ',')," in (*",$c,"*) ;; (*) echo $c; break ;; esac; done)
  local pairs="0,$other"
  case $sibs in *[,-]*) pairs="0,$(echo $sibs | tr '-' ',' | cut -d, -f2) $pairs" ;; esac
  for p in $pairs; do
    log "bench_matmul on vCPUs $p"
    timeout 120 taskset -c $p build/host-bench/bench_matmul --impl avx512 --quick --case bf16 5120 2880 1,8 \
      --case bf16 2880 4096 1,8 --case mxfp4 5760 2880 1,2,8 2>&1 | tee -a "$OUT/summary.txt"
  done
}

build_bench_matmul() {
  [ -x build/host-bench/bench_matmul ] && return 0
  log "building bench_matmul (CPU only)"
  cmake -S . -B build/host-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DGON_BUILD_BENCH=ON -DGON_CUDA=OFF \
    -DGON_BUILD_PYTHON=OFF -DGON_BUILD_EXAMPLES=OFF -DGON_LTO=OFF > "$OUT/host-bench-build.log" 2>&1 &&
    cmake --build build/host-bench -j 16 --target bench_matmul >> "$OUT/host-bench-build.log" 2>&1 ||
    { log "bench_matmul build failed"; tail -20 "$OUT/host-bench-build.log"; return 1; }
}

cpu_kernel_ab() {  # see the header
  install || { log "install failed"; tail -30 "$OUT/install.log"; return 1; }
  build_bench_matmul || return 1
  local w first=1
  for w in ${KERNEL_AB_ENVS:-X=1}; do
    log "bench_matmul, $w"
    env $(echo $w | tr + ' ') timeout 120 taskset -c 0,1 build/host-bench/bench_matmul --impl ${KERNEL_AB_IMPL:-avx512} \
      --quick $([ $first = 1 ] && echo --peak) ${KERNEL_AB_CASES:---case bf16 5120 2880 1,8 --case mxfp4 5760 2880 1,2,8} \
      2>&1 | grep -v "^matmul_isa" | tee -a "$OUT/summary.txt"
    first=0
  done
  [ -n "${PROFILE_AB_ENVS:-}" ] || return 0
  preset 20b
  for w in $PROFILE_AB_ENVS; do
    log "profile_cpu_decode, $w"
    env $(echo $w | tr + ' ') timeout 200 $PY bench/profile_cpu_decode.py /dev/shm/gon-20b --batches 1,8 --steps 8 \
      --rounds ${CPU_PROFILE_ROUNDS:-4} 2>&1 | grep -v -E "^  [a-z()_]+ +[0-9.]+ s |^GON_PROFILE" | tee -a "$OUT/summary.txt"
  done
}

bars() {  # issue 8's batch-1 bars: 20b and 120b after 1k prompts, batch 1, twice each (the 120b preset replaces the 20b)
  for r in a b; do
    bench 20b 1024 1 > /dev/null || return 1
    cp "$OUT/bench-20b.txt" "$OUT/bench-20b-$r.txt"; cp "$OUT/bench-20b.json" "$OUT/bench-20b-$r.json"
    grep -E "^ +1024 |^ +1 " "$OUT/bench-20b-$r.txt" | tee -a "$OUT/summary.txt"
  done
  for r in a b; do
    bench 120b 1024 1 > /dev/null || return 1
    cp "$OUT/bench-120b.txt" "$OUT/bench-120b-$r.txt"; cp "$OUT/bench-120b.json" "$OUT/bench-120b-$r.json"
    grep -E "^ +1024 |^ +1 " "$OUT/bench-120b-$r.txt" | tee -a "$OUT/summary.txt"
  done
}

case "$WHAT" in
  check) check; sanitize ;;
  sanitize) install && sanitize ;;
  bench20b) bench 20b 1024,8192 1,8,16,32,64 ;;
  bench120b) bench 120b 1024 1,8,64 ;;
  bench20b-short) bench 20b 1024 1,8,64 ;;
  bench20b-1) bench 20b 1024 1 ;;
  profile) profile ;;
  prefill-chunks) prefill_chunks ;;
  check+profile) check; sanitize; profile ;;
  check+bench20b) check; sanitize; gemv_ab; bench 20b 1024,8192 1,8,16,32,64 ;;
  check+ab) check; sanitize; switch_ab ;;
  ab) switch_ab ;;
  loop) loop_ab ;;
  step) step_ncu ;;
  bars) bars ;;
  cpu20b) cpu20b ;;
  cpu-ab) cpu_ab ;;
  cpu-profile) cpu_profile ;;
  cpu-kernel-ab) cpu_kernel_ab ;;
  check+cpu-profile) check; sanitize; cpu_profile ;;
  lab-gmma) lab_gmma ;;
  lab-gmma+check) lab_gmma; check; sanitize ;;
  all) check; sanitize; bench 20b 1024,8192 1,8,16,32,64; bench 120b 1024 1,8,64 ;;
  *) echo "unknown: $WHAT"; exit 2 ;;
esac
log "done"
