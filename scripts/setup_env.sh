#!/usr/bin/env bash
# Create ./.venv (once) and install cmdcl with its test extras into it. Sourced by demo.sh and test.sh.
# Versions are pinned by constraints.txt (what a fresh resolve gave; see its header), so a new release of a
# dependency cannot change what runs unnoticed. CMDCL_CONSTRAINTS=latest installs the newest versions
# pyproject.toml allows instead (.ci/run does so in a second venv, CMDCL_VENV=.venv-latest, to catch drift).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_DIR="$PWD"  # where the user ran demo.sh / test.sh from (they cd to ROOT after this)
VENV="${CMDCL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
CONSTRAINTS="${CMDCL_CONSTRAINTS:-$ROOT/constraints.txt}"
if [ "$CONSTRAINTS" = latest ]; then
  PINS=(--upgrade --upgrade-strategy eager)
else
  PINS=(--constraint "$CONSTRAINTS")
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# Re-install only when pyproject.toml, the constraints or the choice of them changed since the last install.
STAMP="$VENV/.cmdcl-installed"
if [ "$CONSTRAINTS" = latest ]; then
  WANT="latest $(date +%F)"  # look for new releases once a day
else
  WANT="$CONSTRAINTS $(cksum < "$CONSTRAINTS")"
fi
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "${PINS[@]}" -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"

# The last line of demo.sh and test.sh on success: this script put cmdcl on PATH for them only.
cmdcl_path_hint() {
  local activate="$VENV/bin/activate"
  if [ "$CALLER_DIR" = "$ROOT" ]; then activate="${activate#"$ROOT"/}"; fi
  echo "To run cmdcl yourself, put it on PATH: source $activate" >&2  # stderr: stdout stays what pytest or the demo printed
}
