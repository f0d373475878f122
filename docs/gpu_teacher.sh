#!/usr/bin/env bash
# A NAFNet teacher (width 32) trained for MINUTES on one GPU: bf16 autocast, channels_last, 256 px patches, batch 32,
# batch building in DataLoader workers. See docs/gpu.md.
#
#   docs/gpu_teacher.sh --prepare        here, once: pack gpu_data/ (train/, val/ and PyAV as pyav.tar.xz), sized
#                                        so that the working tree plus gpu_data/ travel in 64 MiB
#   docs/gpu_teacher.sh OUTDIR [MINUTES] on the GPU machine, from the repository root: train, stop after MINUTES
#                                        (default 8), leave best.pt, last.pt, final.pt, metrics.jsonl, train.log in OUTDIR
#
# The GPU machine is assumed to have a python3 with torch (CUDA), numpy, pillow, opencv, tqdm and scikit-image, no
# network and no sharpkd install: sharpkd runs from the checkout (python3 -m sharpkd), and PyAV (the h264/vp8
# degradations), when missing, is unpacked from the carried gpu_data/pyav.tar.xz into /tmp. Every setting can be
# overridden through the environment (names below), which is also how the CPU smoke run in docs/gpu.md shrinks it.
set -euo pipefail

PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi  # the dev venv, where there is one
PACKED=${PACKED:-gpu_data}  # ignored by git; travels as a carried folder

prepare() {
  local src=${DATA_SRC:-../shared/datasets/train} val_src=${VAL_SRC:-../shared/datasets/val}
  local limit=$((64 * 1024 * 1024)) margin=$((1024 * 1024)) tmp used budget
  mkdir -p "$PACKED"
  if [ ! -f "$PACKED/pyav.tar.xz" ]; then  # the installed wheel, xz-packed: 25 MB instead of the wheel's 36
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$tmp" \
      "av==$("$PY" -c "import av; print(av.__version__)")"
    unzip -q "$tmp"/av-*.whl -d "$tmp/site"
    tar -C "$tmp/site" -cf - . | xz -6 >"$PACKED/pyav.tar.xz"
    rm -rf "$tmp"
  fi
  if [ ! -d "$PACKED/val" ]; then  # whole images, already at train-teacher's --val-max-side 256: identical validation
    "$PY" -m sharpkd pack-data "$val_src" "$PACKED/val" --max-mb 5 --crop 0 --max-side 256 --min-side 8 --format png
  fi
  used=$(travel_bytes)
  if [ ! -d "$PACKED/train" ]; then  # 384 px tiles at JPEG 95 (4:4:4), as many as fit in what is left of 64 MiB
    budget=$((limit - used - margin))
    if [ "$budget" -gt 60000000 ]; then budget=60000000; fi
    if [ "$budget" -le 0 ]; then echo "no room left for $PACKED/train: $used bytes travel already" >&2; exit 2; fi
    "$PY" -m sharpkd pack-data "$src" "$PACKED/train" --max-mb "$(awk -v b="$budget" 'BEGIN {print b / 1e6}')"
    used=$(travel_bytes)
  fi
  echo "travels: $used of $limit bytes (the tree plus $PACKED); carry [\"$PACKED\"]"
  if [ "$used" -gt "$limit" ]; then echo "over the limit: delete $PACKED/train and run --prepare again" >&2; exit 2; fi
}

travel_bytes() {  # tracked + untracked-not-ignored files, plus the carried folder
  { git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null || true
    find "$PACKED" -type f -printf '%s\n'; } | awk '{s += $1} END {print s + 0}'
}

if [ "${1:-}" = "--prepare" ]; then prepare; exit 0; fi

OUTDIR=${1:?usage: docs/gpu_teacher.sh OUTDIR [MINUTES] | --prepare}
MINUTES=${2:-8}
DATA=${DATA:-$PACKED/train}
VAL=${VAL:-$PACKED/val}
WIDTH=${WIDTH:-32}            # the committed teacher is width 16: its weights do not fit, so training starts fresh
PATCH=${PATCH:-256}
BATCH=${BATCH:-32}
STEPS=${STEPS:-6000}          # the cosine schedule's length; MINUTES usually ends the run first (see docs/gpu.md)
LR=${LR:-1e-3}
WARMUP=${WARMUP:-300}
VAL_EVERY=${VAL_EVERY:-500}   # validation, best.pt and last.pt every N steps (and at the end)
DEVICE=${DEVICE:-cuda}
AMP=${AMP:-bf16}
WORKERS=${WORKERS:-$(($(nproc) > 2 ? $(nproc) - 2 : 1))}
GRACE=${GRACE:-75}            # seconds past MINUTES before the run is interrupted (last.pt of the last validation stays)
INIT=${INIT:-}                # optional --init checkpoint (only one of the same width loads)
SPLIT_MB=${SPLIT_MB:-0}       # >0: split .pt files bigger than this many MiB into parts (transports with a file limit)
EXTRA=${EXTRA:-}              # more train-teacher flags

export PYTHONUNBUFFERED=1 TQDM_DISABLE=${TQDM_DISABLE:-1}  # a readable log: validation lines, no per-step bar

train() {
  set -e
  if ! "$PY" -c "import av" 2>/dev/null; then  # PyAV (the h264/vp8 presets) from the carried archive
    if [ ! -f "$PACKED/pyav.tar.xz" ]; then
      echo "PyAV is missing and $PACKED/pyav.tar.xz is not here: run docs/gpu_teacher.sh --prepare, carry $PACKED" >&2
      return 2
    fi
    mkdir -p /tmp/sharpkd-site && tar -xJf "$PACKED/pyav.tar.xz" -C /tmp/sharpkd-site
    export PYTHONPATH=/tmp/sharpkd-site${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "import av; print('PyAV', av.__version__, 'from $PACKED/pyav.tar.xz')"
  fi
  if [ ! -d "$DATA" ]; then
    echo "no training data at $DATA: run docs/gpu_teacher.sh --prepare, carry $PACKED" >&2
    return 2
  fi
  local val_args=() init_args=() dmon="" limit_s status=0 f
  if [ -d "$VAL" ]; then val_args=(--val "$VAL"); else echo "note: no $VAL; validating on the built-in sample photos"; fi
  if [ -n "$INIT" ]; then init_args=(--init "$INIT"); fi
  if [ "$DEVICE" = cuda ]; then
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device (DEVICE=cpu to run anyway)')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    nvidia-smi dmon -s u -d 30 >/tmp/sharpkd-gpu-util.txt 2>/dev/null &
    dmon=$!
  fi
  "$PY" -c "import torch; print('torch', torch.__version__)"
  limit_s=$(awk -v m="$MINUTES" -v g="$GRACE" 'BEGIN {print int(m * 60 + g)}')
  echo "training $MINUTES min (interrupted after ${limit_s} s at the latest), $WORKERS workers, data $DATA -> $OUTDIR"

  # shellcheck disable=SC2086  # EXTRA is a list of flags
  timeout --signal=INT --kill-after=30 "$limit_s" "$PY" -m sharpkd train-teacher --model nafnet --set "width=$WIDTH" \
    --data "$DATA" "${val_args[@]}" --out "$OUTDIR" --steps "$STEPS" --batch-size "$BATCH" --patch-size "$PATCH" \
    --lr "$LR" --warmup "$WARMUP" --val-every "$VAL_EVERY" --losses psnr=1 --ema 0.999 --seed 0 \
    --amp "$AMP" --channels-last --workers "$WORKERS" --device "$DEVICE" --max-minutes "$MINUTES" \
    "${init_args[@]}" $EXTRA || status=$?

  if [ -n "$dmon" ]; then
    kill "$dmon" 2>/dev/null || true
    echo "GPU utilisation (nvidia-smi dmon, every 30 s):"
    cat /tmp/sharpkd-gpu-util.txt || true
  fi
  if [ -f "$OUTDIR/metrics.jsonl" ]; then  # the throughput and the validation curve, from the run's own log
    "$PY" - "$OUTDIR/metrics.jsonl" <<'EOF' || true
import json, sys
for r in map(json.loads, open(sys.argv[1])):
    rate = r["step"] / max(r["elapsed"], 1e-9)
    print(f"step {r['step']:6d} {r['elapsed']:6.0f} s {rate:6.2f} steps/s  val PSNR {r['mean/psnr']:.2f} dB "
          f"(input {r['mean/input_psnr']:.2f}, gain {r['mean/gain']:+.2f})")
EOF
  fi
  if [ "$SPLIT_MB" != 0 ]; then
    for f in "$OUTDIR"/*.pt; do
      if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt $((SPLIT_MB * 1024 * 1024)) ]; then
        split -b "${SPLIT_MB}M" -d -a 1 "$f" "$f.part" && rm "$f"
        echo "split $f into $(basename "$f").part*; rejoin: cat $(basename "$f").part* > $(basename "$f")"
      fi
    done
  fi
  return "$status"
}

mkdir -p "$OUTDIR"
set +e
train 2>&1 | tee -a "$OUTDIR/train.log"  # the pipeline waits for tee, so the log is complete below
status=${PIPESTATUS[0]}
ls -l "$OUTDIR"
exit "$status"
