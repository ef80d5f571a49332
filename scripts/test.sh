#!/usr/bin/env bash
# The test suite (CPU only, no network). Test files or folders given as arguments replace the whole suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
TARGETS=(tests)
for arg in "$@"; do
  case "$arg" in tests/*) TARGETS=() ;; esac
done
exec python -m pytest ${TARGETS[@]+"${TARGETS[@]}"} "$@"
