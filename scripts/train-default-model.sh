#!/usr/bin/env bash
# Train the default model end to end: corpus, features, teacher, classifier, student,
# evaluation, and the checkpoints copied into models/default. Every stage resumes where it
# stopped, so running this again (after an interruption, or on another day) continues.
# Each stage's resumable state (checkpoint, EMA model, config, metrics) is also kept in
# $OUT/runs/<stage>, which travels with the repository: a fresh checkout rebuilds the
# corpus (the same one: synthesis and split are deterministic) and resumes from there.
#
# Settings (environment variables, with defaults):
#   WORK=data/default          corpus, prepared features and runs
#   OUT=models/default         where the finished checkpoints are copied
#   MINUTES=10                 minutes from each synthesised corpus source (the recorded
#                              speech is used whole); SOURCES: corpus sources (default: all);
#                              VOICES: flite/festival voices (default: all at 16 kHz or more;
#                              naming voices without SOURCES makes a corpus of those voices)
#   PREPARE_CONFIG, PITCH_CONFIG, TEACHER_CONFIG, CLASSIFIER_CONFIG, STUDENT_CONFIG: YAML
#       files (shipped ones by default: the lean pitch-aware teacher and student; the prepare
#       config names the speaker kept out of training)
#   PITCH_STEPS, TEACHER_STEPS, CLASSIFIER_STEPS, STUDENT_STEPS: stop after this many steps (default: the
#       config's); a later run with a higher number continues the same run. A stage's state
#       is copied to $OUT/runs when it stops at its limit, so size the limits to the time
#       a machine has, then commit $OUT/runs
#   DEVICE=auto                auto, cpu or cuda
#   EVAL_SECONDS=120           time budget for sampling clips in each evaluation
set -euo pipefail
cd "$(dirname "$0")/.."

WAVENET=${WAVENET:-.venv/bin/wavenet}
WORK=${WORK:-data/default}
OUT=${OUT:-models/default}
MINUTES=${MINUTES:-10}
SOURCES=${SOURCES:-}
VOICES=${VOICES:-}
PREPARE_CONFIG=${PREPARE_CONFIG:-training/configs/prepare.yaml}
PITCH_CONFIG=${PITCH_CONFIG:-training/configs/pitch.yaml}
TEACHER_CONFIG=${TEACHER_CONFIG:-training/configs/teacher_pitch_lean.yaml}
CLASSIFIER_CONFIG=${CLASSIFIER_CONFIG:-training/configs/classifier.yaml}
STUDENT_CONFIG=${STUDENT_CONFIG:-models/default/ablation/student_one_flow.yaml}
DEVICE=${DEVICE:-auto}
EVAL_SECONDS=${EVAL_SECONDS:-120}

# A stage's run folder has a checkpoint once it has saved one: then it resumes. Its state
# comes from $OUT/runs/<stage> when the work folder has none, and goes back there after.
train() {
    local job=$1 part=$2 steps=$3
    shift 3
    local run=$WORK/runs/$part kept=$OUT/runs/$part
    if [[ ! -d $run/checkpoint && -d $kept/checkpoint ]]; then
        mkdir -p "$run"
        cp -r "$kept/." "$run/"
    fi
    # A classifier resumed without RUN/units.npz would fit its units anew; model/ has a copy.
    if [[ -f $run/model/units.npz && ! -f $run/units.npz ]]; then
        cp "$run/model/units.npz" "$run/units.npz"
    fi
    local options=(--out "$run" --device "$DEVICE")
    [[ -d $run/checkpoint ]] && options+=(--resume)
    [[ -n $steps ]] && options+=(--steps "$steps")
    echo "== $job -> $run" >&2
    "$WAVENET" "$job" "${options[@]}" "$@"
    rm -rf "$kept"
    mkdir -p "$kept"
    cp -r "$run/checkpoint" "$run/model" "$run/config.yaml" "$run/metrics.jsonl" "$kept/"
    if [[ -d $run/best ]]; then cp -r "$run/best" "$kept/"; fi
}

# The model a stage ships: RUN/best where its config keeps the best-scoring one (keep_best),
# else RUN/model, the EMA of the last step.
shipped() {
    local run=$WORK/runs/$1
    if [[ -d $run/best ]]; then echo "$run/best"; else echo "$run/model"; fi
}

if [[ ! -f $WORK/corpus/manifest.csv ]]; then
    rm -rf "$WORK/corpus"  # an interrupted build: the corpus is made again from scratch
    # shellcheck disable=SC2086 # SOURCES and VOICES are lists of words
    "$WAVENET" corpus "$WORK/corpus" --minutes "$MINUTES" ${SOURCES:+--sources $SOURCES} \
        ${VOICES:+--voices $VOICES}
fi
# A folder prepared before F0 was tracked (no pitch_spec.json) is prepared again.
if [[ ! -f $WORK/prepared/manifest.jsonl || ! -f $WORK/prepared/pitch_spec.json ]]; then
    "$WAVENET" prepare "$WORK/corpus" "$WORK/prepared" --config "$PREPARE_CONFIG"
fi

train train-pitch pitch "${PITCH_STEPS:-}" \
    --data "$WORK/prepared" --config "$PITCH_CONFIG"
train train-teacher teacher "${TEACHER_STEPS:-}" \
    --data "$WORK/prepared" --config "$TEACHER_CONFIG"
train train-classifier classifier "${CLASSIFIER_STEPS:-}" \
    --data "$WORK/prepared" --config "$CLASSIFIER_CONFIG"
train distill student "${STUDENT_STEPS:-}" \
    --data "$WORK/prepared" --config "$STUDENT_CONFIG" \
    --teacher "$(shipped teacher)" --classifier "$(shipped classifier)"

"$WAVENET" evaluate --model "$(shipped teacher)" --data "$WORK/prepared" \
    --out "$WORK/runs/teacher/eval.json" --max-seconds "$EVAL_SECONDS" --device "$DEVICE"
"$WAVENET" evaluate --model "$WORK/runs/pitch/model" --data "$WORK/prepared" \
    --out "$WORK/runs/pitch/eval.json" --device "$DEVICE"
# A pitch-aware student is also scored with F0 from the pitch predictor (the mel-only route).
pitch_route=()
if grep -q '"excitation": {' "$(shipped student)/config.json"; then
    pitch_route=(--pitch "$WORK/runs/pitch/model")
fi
"$WAVENET" evaluate --model "$(shipped student)" --teacher "$(shipped teacher)" \
    "${pitch_route[@]}" --data "$WORK/prepared" --out "$WORK/runs/student/eval.json" \
    --max-seconds "$EVAL_SECONDS" --device "$DEVICE"

for part in pitch teacher classifier student; do
    rm -rf "${OUT:?}/$part"
    mkdir -p "$OUT/$part"
    cp "$(shipped "$part")/"* "$OUT/$part/"
done
# The reports travel with the runs they score (REPORT.md quotes them).
for part in pitch teacher student; do
    cp "$WORK/runs/$part/eval.json" "$OUT/runs/$part/"
done
echo "checkpoints copied to $OUT; reports in $WORK/runs/*/eval.json" >&2
