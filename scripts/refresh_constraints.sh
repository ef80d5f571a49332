#!/usr/bin/env bash
# Rewrite constraints.txt with what a fresh resolve of `pip install -e .[test]` gives today (nothing is
# installed: pip's dry run with --report). Review the diff, then run .ci/run before committing it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
REPORT="$(mktemp)"
trap 'rm -f "$REPORT"' EXIT
"$PY" -m pip install --quiet --dry-run --ignore-installed --report "$REPORT" -e "$ROOT[test]"
"$PY" - "$REPORT" "$ROOT/constraints.txt" <<'PYEOF'
import datetime, json, platform, sys
report, out = sys.argv[1:]
pins = sorted(((i["metadata"]["name"], i["metadata"]["version"]) for i in json.load(open(report))["install"]
               if i["metadata"]["name"] != "cmdcl"), key=lambda pin: pin[0].lower())  # as pip freeze sorts
header = (f"# Versions CI installs with (pip install -c constraints.txt): what a fresh resolve of "
          f"`pip install -e .[test]`\n# gave on {datetime.date.today()} (Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()}). A new release of a dependency then cannot change what\n"
          f"# the suite runs against unnoticed; .ci/run also runs a subset on the newest versions pyproject.toml "
          f"allows.\n# Refresh: bash scripts/refresh_constraints.sh (then run .ci/run).\n")
open(out, "w").write(header + "".join(f"{name}=={version}\n" for name, version in pins))
print(f"{out}: {len(pins)} pins")
PYEOF
