"""`cmdcl --help` (and every sub-command's --help) must not import the heavy stack."""
import subprocess
import sys

HEAVY = ("torch", "decord", "open_clip", "av", "h5py")

PROBE = """
import sys
from cmdcl.pipelines.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED", [m for m in {heavy!r} if m in sys.modules])
"""


def _loaded(args):
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                         timeout=60).stdout
    line = [l for l in out.splitlines() if l.startswith("LOADED")][-1]
    return line


def test_help_is_light():
    assert _loaded(["--help"]) == "LOADED []"
    for command in ("extract", "train-head", "evaluate", "inspect", "merge", "verify", "demo", "synth", "report",
                    "predict", "compare", "context-labels", "confounding", "scene-split"):
        assert _loaded([command, "--help"]) == "LOADED []", command
