#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic dataset: generate, extract, train CMDCL + baselines, report.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec cmdcl demo "$@"
