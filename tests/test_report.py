"""`cmdcl report`: figures and HTML of tiny trained runs (CPU, a few seconds)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmdcl.core.errors import CmdclError
from cmdcl.head.model.baselines import CLIP_LOGIT_SCALE
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.report import (DPI, FIGSIZE, activity_steps, build_report, matching_probabilities,
                               normalised_similarity)
from cmdcl.head.training.train import train
from cmdcl.pipelines.cmd_report import read_video_frames

from head_fixtures import multilabel_world, order_world, write_records
from store_fixtures import base_attrs, make_record, make_text
from video_fixtures import write_test_video

PER_VIDEO = ("text_similarity", "temporal_attention", "matching")


def tiny_config(**options) -> HeadConfig:
    return HeadConfig(sta_layers=1, heads=2, dictionary_size=4, epochs=options.pop("epochs", 2), batch_size=8,
                      warmup_epochs=0, dropout=0.0, **options)


def fit(features: Path, out: Path, cfg: HeadConfig) -> Path:
    train(features, out, cfg, device="cpu", progress=False, log=lambda message: None)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    world = order_world(root / "order.h5", train_per_class=6, test_per_class=3, frames=8, dim=16)
    labels = multilabel_world(root / "multi.h5", videos={"train": 16, "test": 8}, num_classes=4, frames=4, dim=16)

    # Patch tokens and a real (tiny) video file behind every record, so frames can be overlaid.
    video = write_test_video(root / "clip.mp4", num_frames=12, height=48, width=64)
    records = []
    for i in range(24):
        record = make_record(f"{'train' if i < 18 else 'test'}-{i:02d}", "train" if i < 18 else "test", i % 3,
                             frames=6, dim=8, seed=i, grid=2)
        record.path = str(video)
        records.append(record)
    patches = write_records(root / "patches.h5", records, make_text(dim=8), base_attrs(grid=2))

    return {
        "cmdcl": fit(world, root / "cmdcl", tiny_config()),
        "linear": fit(world, root / "linear", HeadConfig(method="linear", epochs=2, batch_size=8)),
        "patches": fit(patches, root / "patches", tiny_config(epochs=1, use_patches=True)),
        "multilabel": fit(labels, root / "multilabel", tiny_config(epochs=1)),
    }


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_report(page: Path, expected: set[str]) -> tuple[dict, str]:
    """Every expected figure exists, is a PNG of its fixed size and is referenced by the page; no other is."""
    folder = page.parent
    text = page.read_text()
    summary = json.loads((folder / "report.json").read_text())
    drawn = {key for key, name in summary["figures"].items() if name}
    assert drawn == expected
    for key in expected:
        name = summary["figures"][key]
        width, height = FIGSIZE[key]
        assert png_size(folder / name) == (round(width * DPI), round(height * DPI)), key
        assert f'src="{name}"' in text
    assert {p.name for p in folder.glob("*.png")} == {summary["figures"][k] for k in expected}
    return summary, text


def test_cmdcl_report_has_every_figure_but_spatial(runs):
    page = build_report(runs["cmdcl"], device="cpu")
    assert page == runs["cmdcl"] / "report" / "report.html"
    summary, text = check_report(page, {"curves", "confusion", *PER_VIDEO})
    assert summary["video"] == "test-0-000"  # the first test video
    assert "no patch tokens" in text  # why the spatial figure is missing
    assert summary["steps_annotated"]
    matching = summary["matching"]
    assert matching["activity_a"] == "script 0-1-2-3" and matching["activity_a_is"] == "true"
    assert matching["activity_b"] != matching["activity_a"]
    for key in ("before", "after"):
        assert sum(matching[key]) == pytest.approx(1.0, abs=1e-3)
    # The order world stores step segments: grounding is scored and fig. 7 draws the true segments.
    metrics = summary["metrics"]
    assert metrics["grounding_instances"] > 0 and 0 <= metrics["grounding_mass"] <= 1
    assert "annotated segments of each tracked action" in text


def test_chosen_video_and_actions_are_drawn(runs, tmp_path):
    page = build_report(runs["cmdcl"], out=tmp_path / "chosen", video="test-2-001", actions=["step 3", "STEP 1"],
                        device="cpu")
    summary, _ = check_report(page, {"curves", "confusion", *PER_VIDEO})
    assert summary["video"] == "test-2-001"
    assert summary["similarity_actions"] == summary["tracked_actions"] == ["step 3", "step 1"]
    assert summary["matching"]["activity_a"] == "script 1-0-3-2"


def test_baseline_report_skips_what_it_cannot_draw(runs):
    summary, text = check_report(build_report(runs["linear"], device="cpu"), {"curves", "confusion"})
    for key in (*PER_VIDEO, "spatial_attention"):
        assert f'id="{key}"' in text and summary["notes"][key][0].startswith("Skipped")
    assert not any(k.startswith("grounding") for k in summary["metrics"])  # no step attention to score


def test_patch_run_overlays_spatial_attention_on_decoded_frames(runs):
    summary, text = check_report(build_report(runs["patches"], device="cpu", read_frames=read_video_frames),
                                 {"curves", "confusion", "spatial_attention", *PER_VIDEO})
    assert "spatial_attention" not in summary["notes"]  # frames decoded: no "drawn alone" note
    assert "Frames not shown" not in text


def test_patch_grid_drawn_alone_when_the_video_is_missing(runs, tmp_path):
    run = runs["patches"]
    video = Path(json.loads((run / "report" / "report.json").read_text())["features"][0]).parent / "clip.mp4"
    moved = video.rename(tmp_path / "elsewhere.mp4")
    try:
        summary, text = check_report(build_report(run, out=tmp_path / "no-video", device="cpu",
                                                  read_frames=read_video_frames),
                                     {"curves", "confusion", "spatial_attention", *PER_VIDEO})
    finally:
        moved.rename(video)
    assert "Frames not shown" in text and "drawn alone" in summary["notes"]["spatial_attention"][0]
    assert "not readable here" in summary["notes"]["spatial_attention"][0]


def test_patch_grid_drawn_alone_without_a_frame_reader(runs, tmp_path):
    summary, _ = check_report(build_report(runs["patches"], out=tmp_path / "no-reader", device="cpu"),
                              {"curves", "confusion", "spatial_attention", *PER_VIDEO})
    assert "no frame reader" in summary["notes"]["spatial_attention"][0]


def test_head_never_imports_the_extraction_stage():
    """The report gets video frames from a reader its caller injects: no head -> extract import."""
    import ast

    head = Path(__file__).resolve().parents[1] / "head"
    offenders = []
    for source in head.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{source.name}: {n}" for n in names if n.startswith("cmdcl.extract")]
    assert offenders == []


def test_multilabel_report_draws_per_class_ap(runs):
    summary, _ = check_report(build_report(runs["multilabel"], device="cpu"), {"curves", "per_class_ap", *PER_VIDEO})
    assert "mAP" in summary["metrics"]


def test_bad_inputs_are_one_line_errors(runs, tmp_path):
    with pytest.raises(CmdclError, match="--actions"):
        build_report(runs["cmdcl"], out=tmp_path / "a", actions=["no such step"], device="cpu")
    with pytest.raises(CmdclError, match="--video"):
        build_report(runs["cmdcl"], out=tmp_path / "b", video="missing", device="cpu")
    with pytest.raises(CmdclError, match="split"):
        build_report(runs["cmdcl"], out=tmp_path / "c", split="val", device="cpu")
    with pytest.raises(CmdclError, match="no best.pt"):
        build_report(tmp_path, out=tmp_path / "d", device="cpu")


def test_cli_writes_the_report_and_stays_light(runs, tmp_path):
    from cmdcl.pipelines.cli import main

    out = tmp_path / "cli"
    main(["report", str(runs["cmdcl"]), "--out", str(out), "--actions", "step 2,step 0", "--device", "cpu"])
    summary = json.loads((out / "report.json").read_text())
    assert summary["tracked_actions"] == ["step 2", "step 0"]
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs["cmdcl"]), "--out", str(out), "--actions", "nope"])
    assert exit_info.value.code == 2
    probe = "import sys, cmdcl.pipelines.cmd_report; print(sorted({'torch', 'matplotlib', 'h5py'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# ------------------------------------------------------------------ pieces

def test_normalised_similarity_rescales_off_diagonal():
    text = np.random.default_rng(0).standard_normal((5, 8))
    scaled, low, high = normalised_similarity(text)
    off = scaled[~np.eye(5, dtype=bool)]
    assert off.min() == pytest.approx(0) and off.max() == pytest.approx(1)
    assert np.allclose(np.diag(scaled), 1) and np.allclose(scaled, scaled.T)
    unit = text / np.linalg.norm(text, axis=1, keepdims=True)
    assert low == pytest.approx((unit @ unit.T)[~np.eye(5, dtype=bool)].min())


class FakeFeatures:
    def __init__(self, split, labels, steps):
        self.index = {"split": np.array(split), "labels": np.array(labels, np.uint8), "steps": np.array(steps, np.uint8)}

    def __len__(self):
        return len(self.index["split"])


def test_activity_steps_from_annotations_else_text_similarity():
    labels = [[1, 0], [1, 0], [0, 1], [0, 1]]
    annotated = FakeFeatures(["train", "train", "train", "test"], labels, [[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]])
    class_text, step_text = np.eye(3)[:2], np.eye(3)
    steps, is_annotated = activity_steps(annotated, class_text, step_text)
    assert is_annotated
    assert steps[0].tolist() == [0, 1]  # step 0 in both class-0 videos, step 1 in one: most frequent first
    assert steps[1].tolist() == [2]  # test videos do not count
    bare = FakeFeatures(["train"] * 4, labels, np.zeros((4, 3)))
    steps, is_annotated = activity_steps(bare, class_text, np.array([[0, 1, 0], [1, 0, 0], [0.9, 0.1, 0]]), top_k=2)
    assert not is_annotated
    assert steps[0].tolist() == [1, 2]  # the step texts closest to class 0's text


def test_matching_probabilities_before_is_clip_softmax():
    step_text = np.eye(4)
    frame = np.array([0.6, 0.8, 0.0, 0.0])
    view = {"logits": np.array([0.1, 2.0, 1.0]), "labels": np.array([1, 0, 0]), "label": 0, "video_id": "v",
            "mean_frame": frame, "step_logits": np.array([3.0, 0.0, 1.0, 2.0])}
    activities = [np.array([0, 1]), np.array([2]), np.array([3, 0])]
    m = matching_probabilities(view, step_text, activities, ["a", "b", "c"], multilabel=False)
    assert (m["class_a"], m["class_b"]) == (0, 1)  # true class; highest-scored other class
    assert m["rows"].tolist() == [0, 1, 2]
    expected = np.exp(CLIP_LOGIT_SCALE * frame[:3]) / np.exp(CLIP_LOGIT_SCALE * frame[:3]).sum()
    assert np.allclose(m["before"], expected)
    assert np.allclose(m["after"], np.exp([3.0, 0.0, 1.0]) / np.exp([3.0, 0.0, 1.0]).sum())
    assert m["member_a"].tolist() == [True, True, False] and m["member_b"].tolist() == [False, False, True]


def test_temporal_attention_draws_one_lane_of_true_segments_per_tracked_action(tmp_path):
    from cmdcl.head.report import plot_temporal_attention

    attention = np.zeros((3, 6))
    attention[0, :2], attention[1, 2:4], attention[2, 4:] = 0.5, 0.5, 0.5
    view = {"video_id": "v", "frame_mask": np.arange(6) < 5, "timestamps_s": np.arange(6.0),
            "step_attention": attention,
            "segments": np.array([[0, 0, 2], [1, 2, 4], [2, 4, 6], [1, 5, 6]], np.float32)}
    figure = plot_temporal_attention(view, [0, 1], ["a", "b", "c"], tmp_path / "t.png")
    assert "annotated segments" in figure.caption
    assert png_size(tmp_path / "t.png") == tuple(round(v * DPI) for v in FIGSIZE["temporal_attention"])
    view["segments"] = np.array([[2, 4, 6]], np.float32)  # only an untracked action has segments: no lanes
    assert "annotated segments" not in plot_temporal_attention(view, [0, 1], ["a", "b", "c"], tmp_path / "u.png").caption


def test_segment_lanes_sit_below_zero_in_the_actions_colours():
    from matplotlib.figure import Figure as MplFigure

    from cmdcl.head.report.video_figures import _draw_segments

    ax = MplFigure().subplots()
    segments = np.array([[0, 0, 2], [1, 2, 4], [1, 5, 6], [2, 4, 6]], np.float32)
    assert _draw_segments(ax, segments, {0: "#ff0000", 1: "#00ff00"}, np.full((3, 5), 0.5))
    bars = [c for c in ax.collections]
    assert len(bars) == 2  # one lane per tracked action with segments
    lane_b = bars[1]
    spans = sorted((p.get_extents().x0, p.get_extents().x1) for p in lane_b.get_paths())
    assert [(round(a, 3), round(b, 3)) for a, b in spans] == [(2.0, 4.0), (5.0, 6.0)]
    assert all(p.get_extents().y1 < 0 for c in bars for p in c.get_paths())
    assert ax.get_ylim()[0] < 0 and min(ax.get_yticks()) >= 0


def test_report_shows_a_comparison_given_or_found(runs, tmp_path):
    from cmdcl.head.comparison.compare import compare_runs, write_outputs
    from cmdcl.head.metrics.evaluate import evaluate_splits
    from cmdcl.head.report.comparison import find_comparison

    world = runs["cmdcl"].parent / "order.h5"
    for name in ("linear", "cmdcl"):  # predictions into copies: the shared run folders stay as they are
        evaluate_splits(runs[name] / "best.pt", world, ["test"], tmp_path / "runs" / name, device="cpu")
    comparison = compare_runs([tmp_path / "runs" / "linear", tmp_path / "runs" / "cmdcl"], "test", n_resamples=199)
    write_outputs(comparison, tmp_path / "runs" / "compare-test")

    folder = tmp_path / "runs" / "compare-test"
    page = build_report(runs["cmdcl"], out=tmp_path / "report", device="cpu", compare=folder)
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["figures"]["comparison"] == "compare_forest.png"
    assert png_size(tmp_path / "report" / "compare_forest.png")[0] == 800
    assert summary["comparison"]["reference"] == "linear" and "(reference)" in page.read_text()
    # Found without --compare when RUN/../compare-<split>/compare.json compares RUN; not for another run.
    assert find_comparison(tmp_path / "runs" / "cmdcl", "test", None) == folder / "compare.json"
    assert find_comparison(tmp_path / "runs" / "other", "test", None) is None
    assert find_comparison(tmp_path / "runs" / "cmdcl", "val", None) is None
    with pytest.raises(CmdclError, match="--compare .*no compare.json"):
        build_report(runs["cmdcl"], out=tmp_path / "r2", device="cpu", compare=tmp_path / "nothing")
