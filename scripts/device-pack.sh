#!/usr/bin/env bash
# Pack what scripts/device-train.sh needs on a GPU machine lent by the `device` tool, besides
# the repository: the corpus audio as lossless FLAC in .carry (`python -m training.carry`: a
# deterministic subset when all of it does not fit) and, in .whl, wheels of the Python
# packages that machine's image lacks. Both folders are git-ignored; the call names them in
# its `carry` list. Run it in the checkout the tool sends (the session's own), once
# WORK/prepared exists, and again whenever the corpus or the committed runs change.
#
# A call moves at most LIMIT_MIB: the files git tracks, the untracked files it does not
# ignore, shared/, and the carried folders. The corpus gets what the rest leaves, less
# MARGIN_MIB for what may be committed between packing and the call.
#
# Settings (environment variables, with defaults):
#   WORK=data/default      corpus/ and prepared/, as scripts/train-default-model.sh made them
#   CARRY=.carry  WHEELS=.whl
#   LIMIT_MIB=64  MARGIN_MIB=4
#   PYTHON=.venv/bin/python  the environment whose package versions the wheels copy
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-data/default}
CARRY=${CARRY:-.carry}
WHEELS=${WHEELS:-.whl}
LIMIT_MIB=${LIMIT_MIB:-64}
MARGIN_MIB=${MARGIN_MIB:-4}
PYTHON=${PYTHON:-.venv/bin/python}
# The image has torch, torchaudio, numpy, safetensors, tqdm, pyyaml, scikit-learn and
# tensorboard (.library/device/KINDS.md), not pydantic, soundfile or praat-parselmouth (the
# F0 tracker of `wavenet prepare`; it needs only numpy): these and their needs.
# typing-extensions travels too: pydantic needs a newer one than the image may hold.
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions
    soundfile cffi pycparser praat-parselmouth)

mib() { awk -v bytes="$1" 'BEGIN { printf "%.1f", bytes / 1048576 }'; }

# Bytes of the files the tool sends whatever `carry` says (a deleted tracked file is skipped).
tree_bytes() {
    {
        git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- \
            2>/dev/null || true
        if [[ -d shared ]]; then find shared -type f -printf '%s\n'; fi
    } | awk '{ total += $1 } END { print total + 0 }'
}

folder_bytes() { find "$1" -type f -printf '%s\n' | awk '{ total += $1 } END { print total + 0 }'; }

# The wheels: cp312 x86-64 builds, as the device README asks, of the versions installed here,
# so the device runs what the tests here ran. An existing folder is kept (delete it to renew).
if [[ ! -d $WHEELS ]]; then
    mapfile -t pins < <("$PYTHON" -c 'import importlib.metadata as m, sys
for name in sys.argv[1:]:
    print(f"{name}=={m.version(name)}")' "${PACKAGES[@]}")
    rm -rf "$WHEELS.partial"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$WHEELS.partial" "${pins[@]}"
    mv "$WHEELS.partial" "$WHEELS"
fi

tree=$(tree_bytes)
wheels=$(folder_bytes "$WHEELS")
budget=$(awk -v limit="$LIMIT_MIB" -v margin="$MARGIN_MIB" -v used=$((tree + wheels)) \
    'BEGIN { printf "%.2f", limit - margin - used / 1048576 }')
echo "repository $(mib "$tree") MiB + wheels $(mib "$wheels") MiB: $budget MiB left for" \
    "the corpus under ${LIMIT_MIB} MiB less ${MARGIN_MIB} MiB of margin" >&2
if awk -v budget="$budget" 'BEGIN { exit !(budget <= 0) }'; then
    echo "error: nothing is left for the corpus; the repository and wheels fill the limit" >&2
    exit 1
fi
"$PYTHON" -m training.carry "$WORK/corpus" "$WORK/prepared" "$CARRY" --max-mib "$budget"
carried=$(folder_bytes "$CARRY")
echo "a call carrying $WHEELS and $CARRY sends $(mib $((tree + wheels + carried))) MiB" \
    "(repository $(mib "$tree"), wheels $(mib "$wheels"), corpus $(mib "$carried"))" >&2
