#!/usr/bin/env bash
# The test suite (CPU only, no network).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec python -m pytest tests "$@"
