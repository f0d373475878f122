#!/usr/bin/env bash
# Reproduces models/: the teacher, every distilled student, the no-KD baseline, then the model cards and README tables.
# Run from the repository root with the dev requirements installed. Data: ../shared/datasets (train/ and val/).
# Times below are from the 2-core CPU development machine (no GPU was available); see models/README.md.
set -euo pipefail
DATA=${DATA:-../shared/datasets/train}
VAL=${VAL:-../shared/datasets/val}
RUNS=${RUNS:-runs}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# 1. Teacher: NAFNet (width 16, 676K parameters) on random 96 px crops, degraded on the fly with "mix+presets"
#    (half the random training mix, half the four named presets). ~48 min at ~2.4 steps/s on one core.
#    The shipped teacher's first 1000 steps ran under a 12000-step schedule (2 threads, slowed by other jobs) before
#    the run was resumed from runs/teacher/last.pt with the command below; the cosine schedule is recomputed on resume.
sharpkd train-teacher --model nafnet --data "$DATA" --val "$VAL" --out "$RUNS/teacher" \
  --steps 7000 --batch-size 8 --patch-size 96 --lr 1e-3 --warmup 300 --val-every 1000

# 2. Students, distilled from the teacher's outputs on one fixed pool of 12000 degraded crops (the teacher runs once;
#    every student and the no-KD baseline see the same data). Loss: Charbonnier to ground truth + L1 to the teacher.
POOL="--cache-teacher 12000 --cache-file $RUNS/teacher_cache.pt"
COMMON="--teacher $RUNS/teacher/final.pt --data $DATA --val $VAL --patch-size 96 --warmup 200 --val-every 1000"
sharpkd distill $COMMON $POOL --model rt      --out "$RUNS/student"       --val-every 2000 --steps 20000 --batch-size 16 --lr 1e-3 --losses l1=1,kd=1
# the same architecture, data and budget on ground truth alone: measures what distillation adds
sharpkd distill $COMMON $POOL --model rt      --out "$RUNS/student-nokd"  --val-every 2000 --steps 20000 --batch-size 16 --lr 1e-3 --losses l1=1
sharpkd distill $COMMON $POOL --model conv4   --out "$RUNS/conv4"         --steps 3000 --batch-size 16 --lr 2e-3 --losses l1=1,kd=1
sharpkd distill $COMMON $POOL --model sepunet --out "$RUNS/sepunet"       --steps 2000 --batch-size 16 --lr 2e-3 --losses l1=1,kd=1
sharpkd distill $COMMON $POOL --model resattn --out "$RUNS/resattn"       --steps 1500 --batch-size 8  --lr 1e-3 --losses l1=1,kd=1

# 3. Ship: final.pt holds the best-validation weights plus provenance (command, steps, wall time, hardware).
for name in teacher student student-nokd conv4 sepunet resattn; do
  cp "$RUNS/$name/final.pt" "models/$name.pt"
done

# 4. Every number in models/*.json, models/README.md and the README's results section.
sharpkd cards --out models/ --data "$VAL" --bench --bench-backends torch,onnx --bench-repeats 15 --threads 2 --readme README.md
