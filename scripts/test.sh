#!/usr/bin/env bash
# The test suite (CPU only, no network). Test files or folders given as arguments replace the whole suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
TARGETS=(tests)
for arg in "$@"; do
  case "$arg" in tests/*) TARGETS=() ;; esac
done
python -m pytest ${TARGETS[@]+"${TARGETS[@]}"} "$@"  # its failure ends the script with its exit status (set -e)
cmdcl_path_hint
