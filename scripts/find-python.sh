#!/usr/bin/env bash
# Print the path of a working Python X.Y interpreter (`scripts/find-python.sh 3.13`), or nothing (exit 1) when
# this machine has none. Tried in order: pythonX.Y on PATH, pyenv's versions/X.Y*, uv's managed
# Pythons. Each is run once to check its version: a pyenv shim is on PATH for every version pyenv knows but runs
# only the ones `pyenv version` selects, so finding the name is not enough.
set -uo pipefail

want="${1:?usage: scripts/find-python.sh X.Y}"
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
uv_root="${UV_PYTHON_INSTALL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/uv/python}"

candidates=("python$want")
for dir in "$pyenv_root"/versions/"$want"* "$uv_root"/cpython-"$want".*; do
    [[ -x "$dir/bin/python$want" ]] && candidates+=("$dir/bin/python$want")
done

for candidate in "${candidates[@]}"; do
    path="$("$candidate" -c "import sys; print(sys.executable if '%d.%d' % sys.version_info[:2] == '$want' else '')" \
        2>/dev/null)" || continue
    if [[ -n "$path" ]]; then
        echo "$path"
        exit 0
    fi
done
exit 1
