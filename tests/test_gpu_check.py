"""benchmarks/gpu_check.sh plans every step and writes its summary; encoder_rates.py reports each precision.

The GPU run itself needs a GPU node (docs/BENCHMARKS.md, "GPU"); here the script's plan (--dry-run) and
the encoder-rate script at toy size on the CPU are checked.
"""
import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_dry_run_plans_every_step_and_writes_the_summary(tmp_path):
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), str(tmp_path), "--dry-run"], capture_output=True,
                          text=True, timeout=300, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    steps = json.loads((tmp_path / "summary.json").read_text())["steps"]
    names = [s["step"] for s in steps]
    assert names[:4] == ["suite", "encoder", "train-data", "train-epoch"]
    extract = [n for n in names if n.startswith("extract-ViT")]
    for model in ("ViT-L-14", "ViT-B-16"):
        for decoder in ("pyav", "decord", "nvdec"):
            assert any(n.startswith(f"extract-{model}-{decoder}-") for n in extract), (model, decoder)
    assert all(s["status"] in ("dry-run", "skipped") for s in steps)
    assert "--device cuda --precision fp16" in done.stdout and "--device cuda" in done.stdout.split("train-epoch")[-1]


def test_unknown_mode_is_refused(tmp_path):
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), str(tmp_path), "--fast"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "usage" in done.stderr


def test_encoder_rates_tiny_reports_each_precision_against_fp32(tmp_path):
    out = tmp_path / "rates.json"
    subprocess.run([sys.executable, str(BENCHMARKS / "encoder_rates.py"), "--tiny", "--json", str(out)], check=True,
                   capture_output=True, timeout=300)
    results = json.loads(out.read_text())["results"]
    assert [r["precision"] for r in results] == ["fp32", "amp-bf16", "bf16"]
    assert [r["weights_dtype"] for r in results] == ["float32", "float32", "bfloat16"]
    assert all(r["images_per_s"] > 0 and r["device"] == "cpu" for r in results)
    assert "cosine_to_fp32_min" not in results[0]
    assert all(0.999 <= r["cosine_to_fp32_min"] <= 1.0001 for r in results[1:])
