#!/usr/bin/env bash
# Train stages of the default model on a GPU machine lent by the `device` tool, within a
# wall-clock budget, and leave their resumable state in $OUT, the folder the tool brings back.
# It runs in the repository root there, on what scripts/device-pack.sh put in .carry and .whl
# here; scripts/device-unpack.sh then puts what came back into models/default/runs.
#
#   1. Install the carried wheels; check that torch sees the GPU and that the jobs import.
#   2. `wavenet prepare` the carried FLAC corpus with the carried config: the features, F0
#      (tracked with Praat, as here) and held-out split of the machine that packed it.
#   3. Each stage resumes from RUNS/<stage> (a fresh run where there is none), as
#      scripts/train-default-model.sh does, until its share of the budget is over: then
#      `timeout` sends SIGTERM, the loop finishes its step, saves a checkpoint and exits 143.
#      GRACE_S later it is killed, and its last periodic checkpoint stands.
#   4. Each stage's state (checkpoint/, model/, config.yaml, metrics.jsonl, units.npz) goes to
#      $OUT as one tar cut into parts of PART_BYTES: the tool brings back at most 8 files of
#      16 MiB, and a teacher's checkpoint (weights, EMA, Adam's moments) alone is 17 MiB.
#
# Settings (environment variables, with defaults):
#   OUT                  required: the folder whose files come back
#   BUDGET_S=480         wall-clock seconds for all of it, from the install to the last part
#   STAGES=teacher       some of: teacher classifier student (trained in that order); a stage
#                        gets an equal share of the time left when it starts
#   TEACHER_CONFIG=training/configs/teacher_pitch_lean_gpu.yaml  the lean pitch-aware
#                        teacher that scripts/train-default-model.sh trains on a CPU, so a
#                        lent GPU continues the committed runs/teacher (teacher_pitch_gpu.yaml:
#                        the full-size teacher, which needs a run of its own)
#   CLASSIFIER_CONFIG=training/configs/classifier.yaml
#   STUDENT_CONFIG=training/configs/student_cpu_pitch.yaml  (neither the teacher nor the
#                        student needs the pitch predictor, which is not trained here)
#   TEACHER_STEPS, CLASSIFIER_STEPS, STUDENT_STEPS: stop at this step (default: the config's)
#   DEVICE=cuda          or cpu, for the tests
#   CARRY=.carry  WHEELS=.whl  RUNS=models/default/runs  WORK=data/device  PYTHON=python3
#   GRACE_S=30  PACK_S=20 (kept for packing)  MIN_STAGE_S=30  PART_BYTES=15728640 (15 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."

: "${OUT:?set OUT to the folder whose files come back}"
BUDGET_S=${BUDGET_S:-480}
STAGES=${STAGES:-teacher}
TEACHER_CONFIG=${TEACHER_CONFIG:-training/configs/teacher_pitch_lean_gpu.yaml}
CLASSIFIER_CONFIG=${CLASSIFIER_CONFIG:-training/configs/classifier.yaml}
STUDENT_CONFIG=${STUDENT_CONFIG:-training/configs/student_cpu_pitch.yaml}
DEVICE=${DEVICE:-cuda}
CARRY=${CARRY:-.carry}
WHEELS=${WHEELS:-.whl}
RUNS=${RUNS:-models/default/runs}
WORK=${WORK:-data/device}
PYTHON=${PYTHON:-python3}
GRACE_S=${GRACE_S:-30}
PACK_S=${PACK_S:-20}
MIN_STAGE_S=${MIN_STAGE_S:-30}
PART_BYTES=${PART_BYTES:-15728640}
# Python's output as it happens, so the log holds what a stage did even if it is killed.
# (The progress bar redraws after every step: about 150 bytes a step in the log.)
export PYTHONUNBUFFERED=1

# Everything printed also goes to OUT/device-train.log; at exit, tee is let finish writing.
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device-train.log") 2>&1
tee_pid=$!
trap 'exec >&- 2>&-; wait "$tee_pid"' EXIT

read -ra stages <<<"$STAGES"
for stage in "${stages[@]}"; do
    [[ $stage =~ ^(teacher|classifier|student)$ ]] || { echo "unknown stage: $stage"; exit 2; }
done

# shellcheck source=scripts/run-state.sh
source scripts/run-state.sh  # step_of

# A trained model for distillation: this machine's run, else the committed one.
model_of() {
    if [[ -d $WORK/runs/$1/model ]]; then echo "$WORK/runs/$1/model"; else echo "$RUNS/$1/model"; fi
}

echo "== setup"
if [[ -d $WHEELS ]]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ $DEVICE == cuda ]]; then
    "$PYTHON" -c "import torch; print(torch.cuda.get_device_name())"
fi
# parselmouth: prepare tracks F0 with it, and imports it only when it starts tracking.
"$PYTHON" -c "import torch, sklearn, soundfile, parselmouth, training.train_teacher
import training.train_classifier, training.distill
print('torch', torch.__version__, 'on', '$DEVICE', 'ready')"

if [[ ! -f $WORK/prepared/manifest.jsonl ]]; then
    corpus=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["corpus"])' \
        "$CARRY/carried.json")
    "$PYTHON" -m wavenet.cli prepare "$CARRY/$corpus" "$WORK/prepared" \
        --config "$CARRY/prepare.yaml"
fi

failed=0
summary=()
for index in "${!stages[@]}"; do
    stage=${stages[$index]}
    left=$((BUDGET_S - SECONDS - PACK_S))
    seconds=$((left / (${#stages[@]} - index) - GRACE_S))
    if ((seconds < MIN_STAGE_S)); then
        echo "== $stage: skipped, ${seconds}s would be left for it"
        continue
    fi
    run=$WORK/runs/$stage
    rm -rf "$run"
    mkdir -p "$run"
    [[ -d $RUNS/$stage ]] && cp -r "$RUNS/$stage/." "$run/"
    # Resumed without RUN/units.npz, a classifier would fit new units on this corpus subset.
    if [[ -f $run/model/units.npz && ! -f $run/units.npz ]]; then
        cp "$run/model/units.npz" "$run/units.npz"
    fi
    case $stage in
        teacher) job=(train-teacher --config "$TEACHER_CONFIG") steps=${TEACHER_STEPS:-} ;;
        classifier) job=(train-classifier --config "$CLASSIFIER_CONFIG") steps=${CLASSIFIER_STEPS:-} ;;
        student)
            job=(distill --config "$STUDENT_CONFIG" --teacher "$(model_of teacher)"
                --classifier "$(model_of classifier)")
            steps=${STUDENT_STEPS:-}
            ;;
    esac
    job+=(--data "$WORK/prepared" --out "$run" --device "$DEVICE")
    [[ $(step_of "$run") -ge 0 ]] && job+=(--resume)
    [[ -n $steps ]] && job+=(--steps "$steps")
    before=$(step_of "$run")
    echo "== $stage: ${seconds}s from step $before"
    status=0
    # --foreground: the signal goes to the training process alone, as a `kill` would.
    timeout --foreground --preserve-status -s TERM -k "$GRACE_S" "$seconds" \
        "$PYTHON" -m wavenet.cli "${job[@]}" || status=$?
    after=$(step_of "$run")
    summary+=("$stage: step $before -> $after (exit $status)")
    # 0: it reached its steps; 143: stopped by the budget; 137: killed GRACE_S after that.
    if [[ ! $status =~ ^(0|143|137)$ ]]; then
        failed=1
        break # a later stage would start from this one's unfinished model
    fi
done

echo "== packing"
for stage in "${stages[@]}"; do
    run=$WORK/runs/$stage
    [[ $(step_of "$run") -ge 0 ]] || continue
    items=()
    for item in checkpoint checkpoint.previous model config.yaml metrics.jsonl units.npz; do
        [[ -e $run/$item ]] && items+=("$item")
    done
    tar -cf - -C "$run" "${items[@]}" | split -b "$PART_BYTES" -d -a 2 - "$OUT/$stage.tar."
done

for line in "${summary[@]}"; do echo "$line"; done
for stage in "${stages[@]}"; do
    metrics=$WORK/runs/$stage/metrics.jsonl
    [[ -s $metrics ]] && echo "$stage, last metrics: $(tail -n 1 "$metrics")"
done
# The tool's limits on what comes back: at most 8 files of at most 16 MiB.
files=$(find "$OUT" -type f | wc -l)
largest=$(find "$OUT" -type f -printf '%s\n' | sort -n | tail -n 1)
echo "== $files file(s) in OUT, the largest $largest bytes, after ${SECONDS}s:"
ls -l "$OUT"
if ((files > 8 || largest > 16777216)); then
    echo "error: more than the tool brings back (8 files of 16 MiB)"
    failed=1
fi
exit "$failed"
