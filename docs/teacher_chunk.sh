#!/usr/bin/env bash
# One chunk of the long teacher run: resume from the committed training checkpoint, train for MINUTES, and copy the
# new checkpoint back so it can be committed (the next chunk resumes from it). Usage: docs/teacher_chunk.sh [MINUTES]
# Run from the repository root with the dev requirements installed; data in ../shared/datasets.
set -euo pipefail
MINUTES=${1:-150}
KEEP=models/training/teacher            # committed: last.pt (weights, optimizer, EMA, step), best.pt, metrics.jsonl
RUN=${RUN:-runs/teacher6}               # working folder (ignored by git)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUN" "$KEEP"
if [ -f "$KEEP/last.pt" ] && [ ! -f "$RUN/last.pt" ]; then cp "$KEEP"/{last.pt,best.pt,metrics.jsonl} "$RUN"/; fi
# The flags below are those of the run's first chunk; keep them (the cosine schedule spans all 150000 steps).
# STEPS=N recomputes that schedule to end at step N instead: an annealing chunk (the learning rate drops to the
# cosine's tail at once and decays to its floor by step N). A later chunk with the default STEPS restarts it warm.
STEPS=${STEPS:-150000}
sharpkd train-teacher --model nafnet --data ../shared/datasets/train --val ../shared/datasets/val --out "$RUN" \
  --steps "$STEPS" --batch-size 8 --patch-size 128 --lr 5e-4 --warmup 200 --val-every 1000 --losses psnr=1 \
  --ema 0.999 --seed 2 --max-minutes "$MINUTES" || rc=$?
# Ctrl-C or SIGTERM stops the run after the current step with last.pt written (exit 130): keep that chunk too.
if [ "${rc:-0}" -ne 0 ] && [ "${rc:-0}" -ne 130 ]; then exit "$rc"; fi
cp "$RUN"/{last.pt,best.pt,metrics.jsonl} "$KEEP"/
echo "copied $RUN -> $KEEP; commit $KEEP to keep this chunk"
