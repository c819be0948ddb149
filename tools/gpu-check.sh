#!/usr/bin/env bash
# tools/gpu-check.sh -- the CUDA trainer on a real GPU, in one call of a few
# minutes (docs/cuda.md says what it checks that the CPU emulation cannot):
#   1. the device: nvidia-smi names it and its architecture (else nvcc's
#      __nvcc_device_query gives the architecture)
#   2. builds the trainer's tests for that architecture alone:
#      make O=build-gpu/sm_NN CUDA=yes CUDA_ARCH=NN CUDA_EMU=no DEVELOPER=0
#      build-gpu/sm_NN/test-cnn (no emulation: any C++ compiler will do)
#   3. cuda_vs_cpu on the device (CNN_TEST_RUNS, default 4x50,32x20,128x10);
#      a SKIP is a failure here
#   4. one epoch of IMAGES synthetic images (default 50000, the size of
#      %mkdata's default set) at batch 4, 32 and 128 on the GPU, then on the
#      CPU backend of the same machine for scale: images/s (test-cnn --epoch,
#      which needs nothing but the trainer)
#   5. where pipekernel builds too (a bare GPU machine may lack its
#      libraries), `%train --epochs 1 --device cuda` on %mkdata's default set
#      at the same batch sizes: the stage's images/s
#   6. one summary block (also in OUT/summary.txt, the logs beside it)
#
# Options: --arch NN     build for sm_NN without asking the device
#          --out DIR     logs and summary (default build-gpu/check)
#          --images N    images per epoch (default 50000)
#          --emulated    a rehearsal without a GPU: the same steps through the
#                        CPU emulation (cuda_emu_vs_cpu, --epoch cuda-emu,
#                        %train --device cpu on a set of IMAGES, default 64);
#                        its figures say nothing of a GPU
# Environment: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc),
#          CNN_TEST_RUNS, CNN_TEST_SEED (tests/cnn/test_cnn.c).
# Exit: 0 every check passed; 1 a check failed; 2 nothing was checked (no
# nvcc, no device answered, the build failed); 64 a bad option.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 2
# its own builds, whatever make (make check, say) runs it
unset MAKEFLAGS MFLAGS MAKELEVEL

ARCH="" OUT=build-gpu/check IMAGES="" EMULATED=0
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --arch|--out|--images)
      [ $# -ge 2 ] || { echo "gpu-check: $1 needs a value" >&2; exit 64; }
      case "$1" in --arch) ARCH="$2" ;; --out) OUT="$2" ;; --images) IMAGES="$2" ;; esac
      shift 2 ;;
    --emulated) EMULATED=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown option $1 (--help lists them)" >&2; exit 64 ;;
  esac
done
[[ -z "$ARCH" || "$ARCH" =~ ^[1-9][0-9]{1,2}$ ]] ||
  { echo "gpu-check: --arch takes a number like 90 (for sm_90), not '$ARCH'" >&2; exit 64; }
[ -n "$IMAGES" ] || IMAGES=$([ $EMULATED = 1 ] && echo 64 || echo 50000)
[[ "$IMAGES" =~ ^[1-9][0-9]{0,5}$ ]] ||
  { echo "gpu-check: --images takes a count from 1 to 999999, not '$IMAGES'" >&2; exit 64; }
[ -n "$OUT" ] && mkdir -p "$OUT" || { echo "gpu-check: cannot make the folder '$OUT'" >&2; exit 2; }
T0=$SECONDS

say() { printf '== %s\n' "$*"; }
# Nothing could be checked: the reason, exit 2.
stop() {
  printf 'gpu-check: %s\n' "$*" >&2
  printf 'gpu-check: NOT RUN: %s\n' "$*" >"$OUT/summary.txt"
  exit 2
}

# ---- 1. the toolkit and the device --------------------------------------------
DEVICE="" DRIVER="" MEM="" CUDA_VER=""
if [ $EMULATED = 1 ]; then
  DEVICE="none: the CPU emulation (stages/train/cnn_cuda_emu.h)"
  O=build-gpu/emulated
  MAKEVARS=(CUDA=no CUDA_EMU=yes)
  TEST=cuda_emu_vs_cpu GPU=cuda-emu STAGE_DEV=cpu
  RUNS="${CNN_TEST_RUNS:-4x4,32x2}"
else
  NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
  [ -x "$NVCC" ] || stop "no nvcc ($NVCC): install the CUDA toolkit or set NVCC=/path/to/nvcc"
  CUDA_VER=$("$NVCC" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  smi="not found" query_said="not run"
  if command -v nvidia-smi >/dev/null 2>&1; then
    q=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total \
         --format=csv,noheader 2>&1 | head -n 1)
    if [[ "$q" == *,*,*,* ]]; then
      IFS=, read -r DEVICE cap DRIVER MEM <<<"$q"
      DEVICE="${DEVICE# }" cap="${cap# }" DRIVER="${DRIVER# }" MEM="${MEM# }"
      [[ -z "$ARCH" && "$cap" =~ ^[0-9]+\.[0-9]$ ]] && ARCH="${cap/./}"
      smi="$DEVICE, compute capability $cap"
    else
      smi="${q:-no answer}"
    fi
  fi
  if [ -z "$ARCH" ]; then
    query="$(dirname "$NVCC")/__nvcc_device_query"
    query_said="not found"
    [ -x "$query" ] && query_said=$("$query" 2>&1 | head -n 1)
    [[ "$query_said" =~ ^([1-9][0-9]+) ]] && ARCH="${BASH_REMATCH[1]}" ||
      stop "no CUDA device answered (nvidia-smi: $smi; __nvcc_device_query: $query_said)"
  fi
  "$NVCC" --list-gpu-arch 2>/dev/null | grep -qx "compute_$ARCH" ||
    stop "nvcc ${CUDA_VER:-?} does not build for sm_$ARCH (nvcc --list-gpu-arch lists what it does)"
  DEVICE="${DEVICE:-unnamed} (sm_$ARCH${DRIVER:+, driver $DRIVER}${MEM:+, $MEM}), nvcc ${CUDA_VER:-?}"
  O="build-gpu/sm_$ARCH"
  MAKEVARS=(CUDA=yes CUDA_ARCH="$ARCH" CUDA_EMU=no NVCC="$NVCC")
  TEST=cuda_vs_cpu GPU=cuda STAGE_DEV=cuda
  RUNS="${CNN_TEST_RUNS:-4x50,32x20,128x10}"
fi
say "device: $DEVICE"

# ---- 2. build ----------------------------------------------------------------------
BIN="$O/test-cnn"
say "build: make O=$O ${MAKEVARS[*]} DEVELOPER=0 $BIN (log $OUT/build.log)"
tb=$SECONDS
timeout 240 make -j"$(nproc 2>/dev/null || echo 2)" O="$O" "${MAKEVARS[@]}" DEVELOPER=0 "$BIN" \
  >"$OUT/build.log" 2>&1 ||
  { tail -n 20 "$OUT/build.log" >&2; stop "the build failed or ran over 240 s: $OUT/build.log"; }
BUILT="built $BIN in $((SECONDS - tb)) s"
PK="$O/pipekernel"
tb=$SECONDS
if timeout 240 make -j"$(nproc 2>/dev/null || echo 2)" O="$O" "${MAKEVARS[@]}" DEVELOPER=0 "$PK" \
     >"$OUT/build-pipekernel.log" 2>&1; then
  BUILT="$BUILT, $PK in $((SECONDS - tb)) s"
  STAGE_NOTE=""
else
  STAGE_NOTE="pipekernel did not build here ($OUT/build-pipekernel.log), so no %train figures"
  say "$STAGE_NOTE"
fi

# ---- 3. the backend against the CPU's ---------------------------------------------
say "$TEST: CNN_TEST_RUNS=$RUNS $BIN $TEST (log $OUT/$TEST.log)"
CNN_TEST_RUNS="$RUNS" timeout 240 "$BIN" "$TEST" >"$OUT/$TEST.log" 2>&1
rc=$?
cat "$OUT/$TEST.log"
FAILED=0
if grep -q -- '-> SKIP' "$OUT/$TEST.log"; then
  stop "$TEST was skipped: $(sed -n 's/.*-> SKIP: //p' "$OUT/$TEST.log")"
elif [ $rc = 0 ] && grep -q -- '-> ok' "$OUT/$TEST.log"; then
  VS="passed"
else
  VS="FAILED (exit $rc$([ $rc = 124 ] && echo ', over 240 s'))"
  FAILED=1
fi

# ---- 4. one epoch per batch size, GPU then CPU --------------------------------------
declare -A RATE
for bs in 4 32 128; do
  for be in "$GPU" cpu; do
    line=$(timeout 120 "$BIN" --epoch "$be" "$bs" "$IMAGES" 2>&1 | tee -a "$OUT/epochs.log" | tail -n 1)
    r=$?
    echo "$line"
    if [ $r = 0 ] && [[ "$line" =~ ,\ ([0-9]+)\ images/s\; ]]; then
      RATE[$be,$bs]=${BASH_REMATCH[1]}
    else
      RATE[$be,$bs]="failed"
      FAILED=1
    fi
  done
done

# ---- 5. the stage on %mkdata's default set --------------------------------------------
declare -A STAGE
if [ -z "$STAGE_NOTE" ]; then
  if [ $EMULATED = 1 ]; then
    DATA="$O/set-$IMAGES" MK="%mkdata $O/set-$IMAGES --no-gzip --train-batches 1 --images-per-batch $IMAGES"
  else
    DATA="$O/default-set" MK="%mkdata $O/default-set --no-gzip"
  fi
  if [ ! -f "$DATA/cifar-10-batches-py/test_batch" ] &&
     ! timeout 120 "$PK" run "$MK" >"$OUT/mkdata.log" 2>&1; then
    STAGE_NOTE="$MK failed ($OUT/mkdata.log)"
  fi
fi
for bs in 4 32 128; do
  [ -z "$STAGE_NOTE" ] || break
  cell="%train --epochs 1 --batch-size $bs --log-every 1000000 --device $STAGE_DEV --seed 1"
  timeout 180 "$PK" run "%load $DATA --no-md5" "$cell" >"$OUT/train-$bs.log" 2>&1
  r=$?
  line=$(grep '^train: 1 epoch' "$OUT/train-$bs.log" | tail -n 1)
  echo "$cell: ${line:-failed}"
  if [ $r = 0 ] && [[ "$line" =~ \(([0-9]+)\ images/s\)\;\ $STAGE_DEV ]]; then
    STAGE[$bs]=${BASH_REMATCH[1]}
  else
    STAGE[$bs]="failed"
    FAILED=1
  fi
done

# ---- 6. the summary -------------------------------------------------------------------
{
  echo "== gpu-check summary$([ $EMULATED = 1 ] && echo ' (EMULATED: no GPU was used)')"
  printf '%-16s %s\n' device "$DEVICE" build "$BUILT" "$TEST" "$VS (runs $RUNS)"
  sed -n 's/^  \(batch .*\)/                 \1/p' "$OUT/$TEST.log"
  printf '%-16s %s\n' epoch "images/s of training, lr 0.001, momentum 0.9: $GPU and cpu on" \
    "" "$IMAGES synthetic images (test-cnn --epoch), %train --device $STAGE_DEV on ${DATA:-no set}"
  [ -z "$STAGE_NOTE" ] || printf '%-16s %s\n' "" "$STAGE_NOTE"
  printf '                 %6s %12s %12s %12s\n' batch "$GPU" cpu "%train"
  for bs in 4 32 128; do
    printf '                 %6s %12s %12s %12s\n' "$bs" "${RATE[$GPU,$bs]}" "${RATE[cpu,$bs]}" "${STAGE[$bs]:--}"
  done
  printf '%-16s %s\n' result "$([ $FAILED = 0 ] && echo PASS || echo FAIL) in $((SECONDS - T0)) s"
} | tee "$OUT/summary.txt"
exit $FAILED
