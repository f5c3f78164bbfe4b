# Shell helpers shared by the scripts that move training runs around; source this file.
# They need PYTHON (a Python 3 interpreter) to be set.

# The step a run's checkpoint holds (the fallback copy after a kill mid-save); none: -1.
step_of() {
    local state
    for state in "$1/checkpoint/state.json" "$1/checkpoint.previous/state.json"; do
        if [[ -f $state ]]; then
            "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$state"
            return
        fi
    done
    echo -1
}
