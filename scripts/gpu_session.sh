#!/usr/bin/env bash
# What a session lent a GPU runs there, in one call: the GPU check of issue 18
# (benchmarks/gpu_check.sh), then the default prior's training (issue 19) until END_S seconds
# after the start, then the EMA weights exported to $OUT. Written from the hand-made version run on
# 2026-12-04 (docs/measurements.md, "The GPU check, run"); this file itself has not run on a GPU yet.
#
# Here, first (needs PyPI once, then the extracted wallpaper packages and the training state):
#     bash benchmarks/gpu_check.sh --prepare                                  # gpu_wheels/
#     echo /gpu_train/ >> .git/info/exclude
#     python scripts/gpu_training_data.py /work/data/extracted gpu_train/data   # ~18 MB
#     python scripts/train_default_prior.py --state /work/train_state --export gpu_train/init.safetensors
# There (the device tool; 15 minutes of device time in all, the start included):
#     run(command="END_S=500 bash scripts/gpu_session.sh", carry=["gpu_wheels", "gpu_train"], timeout_s=600)
# SKIP_CHECK=1 trains only. PRECISION=bfloat16 trains under bfloat16 autocast (the training script's
# --precision; measured faster on the CPU only, docs/measurements.md: on a GPU set STEPS_PER_S to
# its rate there, or the run finishes its steps early and leaves device time unused). To chain runs, copy the returned weights to gpu_train/init.safetensors. Back here: train on from the returned weights with --init-from into a
# fresh --state (the optimizer state does not travel: the state file is over the 16 MiB a
# returned file may have).
set -uo pipefail
T0=$(date +%s)
PY=${PYTHON:-python3}
OUTDIR=${OUT:-/tmp}
if [[ "${SKIP_CHECK:-0}" == 1 ]]; then
    bash benchmarks/gpu_check.sh --install-only || exit 1
else
    bash benchmarks/gpu_check.sh
fi
E=$(( $(date +%s) - T0 ))
MIN=$("$PY" -c "print(max(0.5, (${END_S:-500} - $E - 45) / 60))")
# Steps that fit the time at STEPS_PER_S (10.2 measured at 128x32 on the H200, 2026-12-04; a little
# under it so the decay finishes), the learning rate cosine-decayed over the last DECAY (0.4) of them
# to LR_MIN (the constant-rate run of 2026-12-04 looked level over its last 1,500 steps in the noisy
# 20-step log means; docs/default_prior.md).
STEPS=$("$PY" -c "print(int(${STEPS_PER_S:-9} * $MIN * 60))")
DECAY=$("$PY" -c "print(int(${DECAY:-0.4} * $STEPS))")
echo "== training: $E s so far, training for $MIN min: $STEPS steps, the last $DECAY decaying to ${LR_MIN:-2e-5}"
rm -rf /tmp/gpu_state  # a warm machine keeps it: --init-from would be ignored and the log appended to
export PYTHONUNBUFFERED=1
"$PY" scripts/train_default_prior.py --data gpu_train/data --state /tmp/gpu_state --init-from gpu_train/init.safetensors \
    --no-skimage --no-eval-check --device cuda --threads 8 --seed "${SEED:-3}" --curriculum "${CURRICULUM:-0:128x32}" --precision "${PRECISION:-float32}" \
    --more-steps "$STEPS" --decay-steps "$DECAY" --lr-min "${LR_MIN:-2e-5}" --max-minutes "$MIN" --save-every 1000 --log-every 100 2>&1 | tail -n 40 || { echo "training failed"; exit 1; }
"$PY" scripts/train_default_prior.py --state /tmp/gpu_state --export "$OUTDIR/gpu_weights.safetensors" || exit 1
cp /tmp/gpu_state/log.jsonl "$OUTDIR/gpu_train_log.jsonl" || exit 1
echo "== done after $(( $(date +%s) - T0 )) s"
