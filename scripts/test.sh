#!/usr/bin/env bash
# The test suite (CPU only, no network). Test files or folders given as arguments replace the whole suite;
# --fast runs the subset CI also runs on the newest allowed versions (usage errors, dataset readers with an
# end-to-end extraction, store, models, evaluation). Other arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
FAST=(tests/test_cli_errors.py tests/test_cli_light.py tests/test_datasets.py tests/test_store.py
      tests/test_models.py tests/test_evaluate.py)
TARGETS=(tests)
ARGS=()
for arg in "$@"; do
  case "$arg" in
    --fast) TARGETS=("${FAST[@]}") ;;
    tests/*) TARGETS=(); ARGS+=("$arg") ;;
    *) ARGS+=("$arg") ;;
  esac
done
python -m pytest ${TARGETS[@]+"${TARGETS[@]}"} ${ARGS[@]+"${ARGS[@]}"}  # its failure ends the script with its exit status (set -e)
cmdcl_path_hint
