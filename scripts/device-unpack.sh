#!/usr/bin/env bash
# Put the training state that scripts/device-train.sh sent back from a GPU machine into
# models/default/runs, where scripts/train-default-model.sh (and the next GPU call) resume it
# and from where it is committed.
#
# Usage: scripts/device-unpack.sh FROM [RUNS]
#   FROM   the folder the tool's reply names as files_at (read-only; searched for the parts
#          <stage>.tar.00, .01, ...)
#   RUNS   models/default/runs by default
# A stage's folder is replaced only by a checkpoint at a later step than the one it holds.
# Settings: PYTHON=python3 (reads the step from a checkpoint's state.json).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 FROM [RUNS]" >&2
    exit 2
fi
FROM=$1
RUNS=${2:-$(dirname "$0")/../models/default/runs}
PYTHON=${PYTHON:-python3}

# shellcheck source=scripts/run-state.sh
source "$(dirname "$0")/run-state.sh"  # step_of

mkdir -p "$RUNS"
# Unpacked beside RUNS, so that moving a stage into place is a rename.
scratch=$(mktemp -d "$RUNS/.unpack.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

mapfile -t firsts < <(find "$FROM" -name '*.tar.00' | sort)
if [[ ${#firsts[@]} -eq 0 ]]; then
    echo "error: $FROM holds no <stage>.tar.00" >&2
    exit 1
fi
for first in "${firsts[@]}"; do
    stage=$(basename "$first" .tar.00)
    mkdir "$scratch/$stage"
    cat "${first%.00}".[0-9][0-9] | tar -xf - -C "$scratch/$stage"
    new=$(step_of "$scratch/$stage")
    old=$(step_of "$RUNS/$stage")
    if ((new <= old)); then
        echo "$stage: kept $RUNS/$stage at step $old (came back at step $new)"
        continue
    fi
    rm -rf "$RUNS/.$stage.old"
    [[ -d $RUNS/$stage ]] && mv "$RUNS/$stage" "$RUNS/.$stage.old"
    mv "$scratch/$stage" "$RUNS/$stage"
    rm -rf "$RUNS/.$stage.old"
    echo "$stage: $RUNS/$stage now at step $new (was $old)"
done
