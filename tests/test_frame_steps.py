"""Frame-level step metrics (head/metrics/frame_steps.py): per-frame step top-1 and the leakage probe read
from the step evidence, by hand and end to end through `evaluate`, `compare` and the demo table."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cmdcl.core.store import FeatureSet
from cmdcl.head.metrics.frame_steps import frame_step_scores, step_evidence
from cmdcl.head.metrics.leakage import probe_factor
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.model.registry import METHODS, MethodEntry
from head_fixtures import order_world

HEADS = {"frame-oracle": "throwaway_head:FrameStepHead", "frame-contrary": "throwaway_head:ContraryFrameStepHead"}


def test_frame_step_top1_by_hand():
    # two videos, 4 frames, 3 steps; video 0: frames 0-2 annotated (steps 0, 1, 1), frame 3 padding;
    # video 1: no annotated frame
    logits = np.zeros((2, 4, 3))
    logits[0, 0, 0] = logits[0, 1, 2] = logits[0, 2, 1] = 5.0  # right, wrong, right
    logits[0, 3, 2] = 9.0  # padding: never read
    step_ids = np.array([[0, 1, 1, 1], [-1, -1, -1, -1]])
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    top1, hits, count = frame_step_scores(logits, step_ids, mask)
    assert top1[0] == pytest.approx(2 / 3) and math.isnan(top1[1])
    assert hits.tolist() == [2, 0] and count.tolist() == [3, 0]
    evidence = step_evidence(logits, mask)
    assert evidence.shape == (2, 3) and np.allclose(evidence.sum(1), 1.0)
    assert evidence[1] == pytest.approx(np.full(3, 1 / 3))  # all-zero logits: uniform over the steps


def test_frame_step_top1_averages_videos_not_frames():
    """A long video counts once: (1/1 + 0/3) / 2 = 0.5 over videos, 1/4 pooled over frames."""
    logits = np.zeros((2, 3, 2))
    logits[:, :, 0] = 1.0  # always step 0
    step_ids = np.array([[0, -1, -1], [1, 1, 1]])
    top1, hits, count = frame_step_scores(logits, step_ids, np.ones((2, 3), bool))
    assert np.nanmean(top1) == 0.5 and hits.sum() / count.sum() == 0.25


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Each throwaway frame head and zeroshot (no frame output) scored on a world with segments and one without:
    {(head, "segments" | "no-segments"): (metrics by split, run folder)}."""
    from cmdcl.head.metrics.evaluate import evaluate_splits
    from cmdcl.head.training.train import train

    root = tmp_path_factory.mktemp("frame-steps")
    found = {}
    for world_name, segments in (("segments", True), ("no-segments", False)):
        world = order_world(root / f"{world_name}.h5", train_per_class=4, test_per_class=3, noise=0.0,
                            extra_splits=("test_ood",), context=2, segments=segments)
        with pytest.MonkeyPatch.context() as patch:
            for head in [*HEADS, "zeroshot"]:
                if head in HEADS:
                    patch.setitem(METHODS, head, MethodEntry(HEADS[head], "a throwaway frame-step head", cost=0))
                run = root / world_name / head
                train(world, run, HeadConfig(method=head, epochs=1), device="cpu", progress=False, log=lambda m: None)
                found[head, world_name] = (evaluate_splits(run / "best.pt", world, ["test", "test_ood"], run,
                                                           device="cpu"), run, world)
    return found


def test_every_frame_right_is_one_and_every_frame_wrong_is_zero(scored):
    for split in ("test", "test_ood"):
        right, wrong = scored["frame-oracle", "segments"][0][split], scored["frame-contrary", "segments"][0][split]
        assert right["frame_step_top1"] == 1.0 and right["frame_step_frame_top1"] == 1.0
        assert wrong["frame_step_top1"] == 0.0 and wrong["frame_step_frame_top1"] == 0.0
        assert right["frame_step_videos"] == wrong["frame_step_videos"] == 12  # every video of the split
        assert right["frame_step_frames"] == 12 * 8 - 4 * 2  # valid frames only (video 0 of each class: 2 padded)


def test_no_output_or_no_segments_gives_no_value_and_a_dash(scored):
    from cmdcl.pipelines.demo_table import compare_splits, format_demo_table

    assert "frame_step_top1" not in scored["zeroshot", "segments"][0]["test"]  # no "frame_step_logits"
    assert "step_leakage" not in scored["zeroshot", "segments"][0]["test"]
    no_segments = scored["frame-oracle", "no-segments"][0]["test"]
    assert "frame_step_top1" not in no_segments and "step_leakage" in no_segments  # the probe needs no segments
    out = scored["zeroshot", "segments"][1].parent
    rows = ["frame-oracle", "frame-contrary", "zeroshot"]
    lines = format_demo_table(out, rows, compare_splits(out, rows), {}, chance=0.25).splitlines()
    header = lines[0]
    assert "fs-iid" in header and "fs-ood" in header
    at = header.index("fs-ood") + len("fs-ood")
    cell = (lambda row: next(line for line in lines if line.startswith(row + " "))[at - 6:at])
    assert cell("frame-oracle") == " 1.000" and cell("frame-contrary") == " 0.000" and cell("zeroshot") == "     -"


def test_compare_pairs_frame_step_top1_per_video(scored):
    from cmdcl.head.comparison.compare import compare_runs

    runs = [scored["frame-oracle", "segments"][1], scored["frame-contrary", "segments"][1]]
    comparison = compare_runs(runs, "test_ood", metric="frame_step_top1", n_resamples=200)
    assert [r.mean for r in comparison.rows] == [1.0, 0.0] and comparison.rows[1].diff == -1.0
    assert comparison.num_videos == 12 and comparison.ci_method == "BCa"


def test_step_leakage_is_the_probe_on_the_mean_frame_softmax(scored):
    """The probe of head/metrics/leakage.py on the video mean of softmax(100 cos(frame, step text)) over the
    valid frames, computed here from the feature file."""
    metrics, run, world = scored["frame-oracle", "segments"]
    fs = FeatureSet(world)
    rows = np.flatnonzero(fs.index["split"] == "test_ood")
    frames = np.asarray(fs.read_array("features", rows), np.float64)
    frames /= np.linalg.norm(frames, axis=-1, keepdims=True)
    text = np.asarray(fs.text.step_embeddings, np.float64)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    mask = fs.index["frame_mask"][rows]
    expected = probe_factor(step_evidence(100.0 * frames @ text.T, mask), fs.read_confounders(rows)[:, 0])
    found = metrics["test_ood"]["step_leakage"]["room"]
    assert found["accuracy"] == pytest.approx(expected["accuracy"]) and found["videos"] == expected["videos"]
    saved = json.loads((run / "metrics_test_ood.json").read_text())["step_leakage"]["room"]
    assert saved["accuracy"] == found["accuracy"]
