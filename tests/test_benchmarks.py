"""The benchmark scripts run end to end at tiny sizes and report what they promise (no speed is asserted)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import benchmarks/common.py as `common`
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_generated_videos_have_the_spec_length_rate_and_keyframe_interval(tmp_path):
    import av

    common = load_script("common")
    specs = common.draw_specs(3, seed=7, seconds=(2, 3), sizes=((48, 64), (72, 96)), gop_s=(0.5, 1))
    assert specs == common.draw_specs(3, seed=7, seconds=(2, 3), sizes=((48, 64), (72, 96)), gop_s=(0.5, 1))
    paths = common.video_set(specs, tmp_path, log=lambda m: None)
    for spec, path in zip(specs, paths):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.height, stream.codec_context.width) == (spec.height, spec.width)
            assert float(stream.average_rate) == spec.fps and stream.codec_context.name == "h264"
            keys, pts = [], []
            for packet in container.demux(stream):
                if packet.size:
                    keys.append(packet.is_keyframe)
                    pts.append(packet.pts)
        order = np.argsort(pts)  # B-frames: packets come in decode order
        keyframes = np.flatnonzero(np.asarray(keys)[order])
        assert len(keys) == spec.frames
        assert keyframes.tolist() == list(range(0, spec.frames, spec.gop))
    before = [p.stat().st_mtime_ns for p in paths]
    assert [p.stat().st_mtime_ns for p in common.video_set(specs, tmp_path, log=lambda m: None)] == before  # cached


def test_extract_throughput_tiny_reports_every_measurement(tmp_path, capsys):
    bench = load_script("extract_throughput")
    report = bench.main(["--tiny", "--out", str(tmp_path), "--json", str(tmp_path / "extract.json")])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "extract.json").read_text())
    assert saved["speedup_over_naive"] == report["speedup_over_naive"]
    frames = report["videos"]["videos"] * report["frames_per_video"]
    for name in ("cmdcl", "naive", "decode_limit", "encode_limit"):
        assert report[name]["frames"] == frames, name  # every pipeline saw the same sampled frames
        assert report[name]["seconds"] > 0 and report[name]["frames_per_s"] > 0, name
    assert report["speedup_over_naive"] > 0 and report["overlap_efficiency"] > 0
    assert report["bottleneck"] in ("decode", "encode")
    machine = saved["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and len(machine["load_average"]) == 3
    assert {"torch", "open_clip", "av", "decord", "torch_threads"} <= set(machine)
    for line in ("cmdcl (run_extraction)", "naive (per video)", "limit: decode only", "limit: encode only",
                 "cmdcl / naive", "overlap efficiency"):
        assert line in printed
    assert not (tmp_path / "extract-runs").exists()  # scratch outputs are removed


def test_extract_throughput_compare_seek_times_both_modes(tmp_path, capsys):
    bench = load_script("extract_throughput")
    report = bench.main(["--tiny", "--compare-seek", "--out", str(tmp_path), "--json", str(tmp_path / "seek.json")])
    printed = capsys.readouterr().out
    exact, keyframe = report["seek_exact"], report["seek_keyframe"]
    assert (exact["seek"], keyframe["seek"]) == ("exact", "keyframe")
    assert exact["frames"] == report["videos"]["videos"] * report["frames_per_video"]  # every sampled frame
    assert 0 < keyframe["frames"] <= exact["frames"]  # samples sharing a keyframe are stored once
    assert report["keyframe_speedup"] == exact["seconds"] / keyframe["seconds"]
    assert json.loads((tmp_path / "seek.json").read_text())["keyframe_speedup"] == report["keyframe_speedup"]
    assert "--seek keyframe" in printed and "keyframe / exact wall time" in printed


def test_decoder_choice_times_every_backend_per_container(tmp_path, capsys):
    bench = load_script("decoder_choice")
    report = bench.main(["--containers", "mp4", "avi", "--videos", "1", "--seconds", "2", "--gop-s", "0.5",
                         "--frames", "4", "--repeat", "1", "--seek", "exact", "keyframe", "--out", str(tmp_path)])
    rates = report["rates"]
    assert {key.split("/")[1] for key in rates} == set(report["args"]["backends"])
    for key, row in rates.items():
        assert row["frames"] > 0 and row["seconds"] > 0, key
        assert row["frames"] == 4 or key.endswith("/keyframe"), key  # exact: F frames of a 50-frame video
    assert "mp4" in capsys.readouterr().out


def test_scaling_tiny_writes_json_and_a_three_panel_plot(tmp_path, capsys):
    from PIL import Image

    bench = load_script("scaling")
    report = bench.main(["--tiny", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "scaling.json").read_text())
    assert [r["length_s"] for r in saved["length"]] == bench.TINY["lengths"]
    assert [r["frames"] for r in saved["frames"]] == bench.TINY["frames"]
    assert [r["videos"] for r in saved["training"]] == bench.TINY["train_sizes"]
    for row in saved["length"] + saved["frames"]:
        assert row["videos"] == bench.TINY["per_length"] and row["seconds_per_video"] > 0
    for row in saved["frames"]:
        assert row["frames_encoded"] == bench.TINY["per_length"] * row["frames"]  # the videos are longer than F
    assert all(r["epoch_s"] > 0 and 0 < r["train_videos"] <= r["videos"] for r in saved["training"])
    with Image.open(report["plot"]) as image:
        width, height = image.size
    assert width > 2 * height  # three panels side by side
    assert "training" in capsys.readouterr().out


def test_synthetic_world_tiny_times_every_stage(tmp_path, capsys):
    bench = load_script("synthetic_world")
    result = bench.main(["--tiny", "--sample", "10", "--json", str(tmp_path / "w.json")])
    # + train_unconfounded (as many as train); every (42 // 10)-th video is timed
    assert result["videos"] == 6 * (5 + 2) and result["timed"] == len(range(0, 42, 42 // 10))
    assert set(result["seconds_world"]) == {"render", "boxes", "write"}
    assert json.loads((tmp_path / "w.json").read_text())["frames"] == result["frames"]
    assert "ms/video" in capsys.readouterr().out


def test_gpu_sampler_parses_nvidia_smi(tmp_path, monkeypatch):
    """The GPU section cannot run here; its nvidia-smi sampling is checked against a stand-in."""
    import os
    import time

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '57, 1234'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    common = load_script("common")
    with common.GpuSampler(interval_s=0.05) as gpu:
        deadline = time.time() + 10
        while len(gpu.samples) < 2 and time.time() < deadline:
            time.sleep(0.05)
    summary = gpu.summary()
    assert gpu.available and summary["samples"] >= 2
    assert summary["mean_util"] == 57.0 and summary["max_memory_mib"] == 1234.0


def test_ablation_writes_seed_runs_and_the_demo_table(tmp_path, capsys):
    from head_fixtures import order_world

    from cmdcl.head.training.seed_runs import seed_dirs

    world = order_world(tmp_path / "w.h5", train_per_class=4, test_per_class=2, grid=2, extra_splits=("test_ood",))
    ablation = load_script("ablation")
    out = tmp_path / "abl"
    assert ablation.main(["--features", str(world), "--out", str(out), "--rows", "cmdcl,zeroshot",
                          "--seeds", "0,1", "--epochs", "1", "--sta-layers", "1"]) == 0
    assert [p.name for p in seed_dirs(out / "cmdcl")] == ["seed-0", "seed-1"]
    for row in ("cmdcl", "zeroshot"):
        for run in seed_dirs(out / row):
            assert (run / "best.pt").is_file() and (run / "metrics_test_ood.json").is_file()
    printed = capsys.readouterr().out
    assert "OOD - cmdcl [95% CI]" in printed and (out / "table.txt").read_text().strip() in printed
    assert "(reference)" in next(line for line in printed.splitlines() if line.startswith("cmdcl "))
    assert (out / "compare-test_ood" / "compare.json").is_file()
    assert ablation.row_config("cmdcl-legacy", 0, 2, 0).mediator == "cosine"


def test_oracle_cost_tiny_times_both_parts_of_world_and_extraction(tmp_path, capsys):
    cost = load_script("oracle_cost")
    assert cost.main(["--tiny", "--out", str(tmp_path / "cost")]) == 0
    record = json.loads((tmp_path / "cost" / "cost.json").read_text())
    # 6 classes x (train 2 + test 1 + test_ood 1 + pretrain 1) rendered first, then train_unconfounded 2 per class
    assert record["world"]["others_videos"] == 6 * 5 and record["world"]["oracle_videos"] == 6 * 2
    assert record["extraction"]["others_videos"] == 6 * 4 and record["extraction"]["oracle_videos"] == 6 * 2
    assert "added:" in capsys.readouterr().out
