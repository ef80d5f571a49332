"""`cmdcl compare`: per-run intervals, paired differences and p-values on hand-made prediction files
(no training: the predictions_<split>.npz files are written directly)."""
import itertools
import json
import math
from math import factorial
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cmdcl.core.errors import CmdclError
from cmdcl.head.comparison.compare import compare_runs, format_table, write_outputs
from cmdcl.head.metrics.predictions import Predictions, load_predictions, predictions_path, save_predictions
from cmdcl.head.training.seed_runs import seed_dir, write_seeds
from cmdcl.head.comparison.stats import WeightedMAP, counts, t_interval
from cmdcl.pipelines.cli import main

NUM_CLASSES = 3


def single_label(ids, label, right, order=None) -> Predictions:
    """Predictions that are right exactly on the videos where `right` is True."""
    label = np.asarray(label)
    pred = np.where(right, label, (label + 1) % NUM_CLASSES)
    scores = np.eye(NUM_CLASSES, dtype=np.float32)[pred]
    p = Predictions(np.asarray(ids), scores, label, np.eye(NUM_CLASSES, dtype=np.uint8)[label], False)
    return p.take(np.asarray(order)) if order is not None else p


def write_run(folder: Path, seeds_predictions: dict, split: str = "test") -> Path:
    """A single run (one entry, key None) or a multi-seed run (seeds.json + seed-K/)."""
    if list(seeds_predictions) == [None]:
        save_predictions(predictions_path(folder, split), seeds_predictions[None])
        return folder
    write_seeds(folder, list(seeds_predictions), "cmdcl")
    for seed, p in seeds_predictions.items():
        save_predictions(predictions_path(seed_dir(folder, seed), split), p)
    return folder


IDS = [f"v{i}" for i in range(10)]
LABEL = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
# A right on 7 (v0-v6), B right on 5 (v0-v3 and v7): A - B per video = +1 on v4, v5, v6, -1 on v7, 0 elsewhere.
A_RIGHT = np.arange(10) < 7
B_RIGHT = (np.arange(10) < 4) | (np.arange(10) == 7)


def exact_bootstrap_quantiles(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Quantiles of the exact bootstrap distribution of mean(d) for d in {-1, 0, 1}: a multinomial."""
    n = len(d)
    p_plus, p_minus = np.mean(d == 1), np.mean(d == -1)
    dist = {}
    for kp in range(n + 1):
        for km in range(n + 1 - kp):
            k0 = n - kp - km
            prob = factorial(n) / (factorial(kp) * factorial(km) * factorial(k0)) * p_plus ** kp * p_minus ** km * (
                1 - p_plus - p_minus) ** k0
            key = round((kp - km) / n, 9)
            dist[key] = dist.get(key, 0.0) + prob
    values = np.array(sorted(dist))
    cdf = np.cumsum([dist[v] for v in values])
    tail = (1 - confidence) / 2
    return float(values[np.searchsorted(cdf, tail)]), float(values[np.searchsorted(cdf, 1 - tail)])


def test_hand_computed_top1_difference_interval_and_exact_p(tmp_path):
    a = write_run(tmp_path / "A", {None: single_label(IDS, LABEL, A_RIGHT)})
    # B's file lists the videos in another order: pairing must go by video id, not by position.
    shuffled = np.random.default_rng(1).permutation(10)
    b = write_run(tmp_path / "B", {None: single_label(IDS, LABEL, B_RIGHT, order=shuffled)})
    (a / "config.json").write_text(json.dumps({"config": {"seed": 3}}))  # another seed: still paired by video
    c = compare_runs([a, b], "test", reference="B", ci_method="percentile")
    rows = {r.run: r for r in c.rows}
    assert rows["A"].seeds == [3] and rows["A"].pairing == "video" and not c.notes
    assert c.metric == "top1" and c.num_videos == 10 and c.reference == "B"
    assert rows["A"].mean == pytest.approx(0.7) and rows["B"].mean == pytest.approx(0.5)
    assert rows["A"].diff == pytest.approx(0.2) and rows["B"].diff is None

    d = A_RIGHT.astype(float) - B_RIGHT.astype(float)
    low, high = exact_bootstrap_quantiles(d)
    assert (low, high) == (-0.2, 0.6)  # the exact paired bootstrap, by enumeration
    assert rows["A"].diff_low == pytest.approx(low) and rows["A"].diff_high == pytest.approx(high)
    # 2**10 sign patterns <= 9999: scipy enumerates them all. The 4 non-zero differences sum to 2; |sum| >= 2
    # for 1 + 4 + 4 + 1 of their 16 sign patterns.
    assert rows["A"].p == pytest.approx(10 / 16)

    # Swapping the reference mirrors everything (same resamples: the interval is paired).
    swapped = {r.run: r for r in compare_runs([a, b], "test", ci_method="percentile").rows}["B"]
    assert swapped.diff == pytest.approx(-0.2) and swapped.p == pytest.approx(10 / 16)
    assert (swapped.diff_low, swapped.diff_high) == pytest.approx((-high, -low))


def test_weighted_map_is_sklearn_ap_on_resamples_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (12, 4)).astype(np.float32)  # many tied scores
    targets = (rng.random((12, 4)) < 0.4).astype(np.uint8)
    metric = WeightedMAP(scores, targets)
    for _ in range(5):
        idx = rng.integers(0, 12, 12)
        t = targets[idx]
        expected = np.mean([average_precision_score(t[:, j], scores[idx][:, j]) for j in range(4) if t[:, j].any()])
        assert metric(counts(idx[None], 12))[0] == pytest.approx(expected)


def multilabel(ids, scores, labels) -> Predictions:
    labels = np.asarray(labels, np.uint8)
    return Predictions(np.asarray(ids), np.asarray(scores, np.float32), np.full(len(ids), -1), labels, True)


def test_multilabel_map_difference_and_brute_force_permutation_p(tmp_path):
    rng = np.random.default_rng(3)
    n, classes = 8, 3
    ids = [f"c{i}" for i in range(n)]
    labels = (rng.random((n, classes)) < 0.4).astype(np.uint8)
    labels[0] = 1  # every class has a positive
    good = labels + rng.normal(0, 0.6, (n, classes))
    bad = rng.normal(0, 1.0, (n, classes))
    a = write_run(tmp_path / "good", {None: multilabel(ids, good, labels)})
    b = write_run(tmp_path / "bad", {None: multilabel(ids, bad, labels)})
    c = compare_runs([b, a], "test")
    assert c.metric == "mAP" and c.reference == "bad"

    def m_ap(scores):
        return np.mean([average_precision_score(labels[:, j], scores[:, j]) for j in range(classes)])

    row = {r.run: r for r in c.rows}["good"]
    assert row.mean == pytest.approx(m_ap(good)) and row.diff == pytest.approx(m_ap(good) - m_ap(bad))
    assert row.diff_low <= row.diff <= row.diff_high
    # A resample repeats videos and so lifts mAP; the recentred interval still holds the observed value.
    assert c.ci_method == "recentred"
    assert all(r.ci_kind == "bootstrap over videos" and r.ci_low <= r.mean <= r.ci_high for r in c.rows)
    # All 2**8 swaps of which run scored which video, each scored with scikit-learn.
    observed = m_ap(good) - m_ap(bad)
    null = []
    for swap in itertools.product([False, True], repeat=n):
        swap = np.array(swap)[:, None]
        null.append(m_ap(np.where(swap, bad, good)) - m_ap(np.where(swap, good, bad)))
    null = np.array(null)
    expected_p = min(1.0, 2 * min(np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12)))
    assert row.p == pytest.approx(expected_p)


def test_multi_seed_mean_and_t_interval_by_hand(tmp_path):
    # Seeds 0, 1, 2 right on 6, 7, 8 of 10 videos: top-1 0.6, 0.7, 0.8, mean 0.7, sd 0.1.
    runs = {s: single_label(IDS, LABEL, np.arange(10) < 6 + s) for s in (0, 1, 2)}
    a = write_run(tmp_path / "three", runs)
    b = write_run(tmp_path / "base", {s: single_label(IDS, LABEL, np.arange(10) < 5) for s in (0, 1, 2)})
    single = write_run(tmp_path / "one", {None: single_label(IDS, LABEL, np.arange(10) < 5)})
    c = compare_runs([b, a, single], "test")
    rows = {r.run: r for r in c.rows}
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    three = rows["three"]
    assert three.per_seed == pytest.approx([0.6, 0.7, 0.8]) and three.mean == pytest.approx(0.7)
    assert (three.ci_low, three.ci_high) == pytest.approx((0.7 - half, 0.7 + half))
    assert three.ci_kind == "t over seeds" and t_interval([0.6, 0.7, 0.8])[1] == pytest.approx(0.7 - half)
    assert three.diff == pytest.approx(0.2) and three.pairing == "video and seed"
    assert three.diff_seed_ci == pytest.approx((0.2 - half, 0.2 + half))  # per-seed differences 0.1, 0.2, 0.3
    one = rows["one"]
    assert one.ci_kind == "bootstrap over videos" and one.ci_low < 0.5 < one.ci_high
    assert one.pairing.startswith("video (per-video scores averaged") and any("one: seeds" in n for n in c.notes)
    assert "n=1" in format_table(c) and "* n=1: one seed" in format_table(c)


def test_mismatched_video_sets_are_a_one_line_error(tmp_path):
    a = write_run(tmp_path / "A", {None: single_label(IDS, LABEL, A_RIGHT)})
    b = write_run(tmp_path / "B", {None: single_label(IDS[:9] + ["other"], LABEL, B_RIGHT)})
    with pytest.raises(CmdclError, match="are not the 10 of A") as info:
        compare_runs([a, b], "test")
    assert "\n" not in str(info.value) and "predictions_test.npz" in str(info.value)
    with pytest.raises(CmdclError, match=r"run `cmdcl evaluate .*--split val`"):
        compare_runs([a, b], "val")
    with pytest.raises(CmdclError, match="two runs are named .A. .the folder .* is given twice"):
        compare_runs([a, a], "test")
    good = write_run(tmp_path / "G", {None: single_label(IDS, LABEL, B_RIGHT)})
    with pytest.raises(CmdclError, match="--reference C: not one of the runs"):
        compare_runs([a, good], "test", reference="C")


def test_cli_end_to_end_writes_table_json_and_png(tmp_path, capsys):
    a = write_run(tmp_path / "runs" / "cmdcl", {s: single_label(IDS, LABEL, np.arange(10) < 7 + s % 2)
                                                 for s in (0, 1)})
    b = write_run(tmp_path / "runs" / "linear", {None: single_label(IDS, LABEL, B_RIGHT)})
    main(["compare", str(a), str(b), "--split", "test", "--reference", "linear", "--resamples", "999"])
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("run"))
    for column in ("seeds", "mean", "95% CI", "diff vs ref", "95% CI of diff", "p"):
        assert column in header
    assert "(reference)" in out and "n=2" in out
    folder = tmp_path / "runs" / "compare-test"
    record = json.loads((folder / "compare.json").read_text())
    assert record["reference"] == "linear" and record["metric"] == "top1" and record["num_videos"] == 10
    cmdcl = next(r for r in record["rows"] if r["run"] == "cmdcl")
    assert cmdcl["diff"] == pytest.approx(0.75 - 0.5) and cmdcl["seeds"] == [0, 1] and 0 <= cmdcl["p"] <= 1
    assert (folder / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "compare.txt").read_text().strip() == record["table"]


def test_cli_missing_predictions_is_one_line(tmp_path, capsys):
    a = write_run(tmp_path / "A", {None: single_label(IDS, LABEL, A_RIGHT)})
    (tmp_path / "B").mkdir()
    with pytest.raises(SystemExit) as info:
        main(["compare", str(a), str(tmp_path / "B"), "--split", "test"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert "predictions_test.npz" in err and "cmdcl evaluate" in err and "--split test" in err


def test_predictions_round_trip(tmp_path):
    p = single_label(IDS, LABEL, A_RIGHT)
    p.step_scores, p.steps = np.ones((10, 4), np.float32), np.zeros((10, 4), np.uint8)
    q = load_predictions(save_predictions(tmp_path / "predictions_test.npz", p))
    assert q.video_id.tolist() == IDS and q.pred.tolist() == p.pred.tolist() and not q.multilabel
    assert q.step_scores.shape == (10, 4) and q.steps.dtype == np.uint8
    with np.load(tmp_path / "predictions_test.npz") as f:
        assert f["pred"].dtype == np.int64 and f["scores"].dtype == np.float32 and f["multilabel"].shape == ()


def test_one_method_trained_on_two_splits_pairs_by_seed_and_video(tmp_path):
    """Two runs of one method (same folder name, e.g. runs/oracle/cmdcl vs runs/demo/cmdcl), trained on two
    splits and scored on the same test split: named apart by their parent folders, paired over videos and
    seeds, and the table says what each was trained on."""
    runs = {}
    for parent, split, extra in (("demo", "train", 0), ("oracle", "train_unconfounded", 2)):
        folder = write_run(tmp_path / parent / "cmdcl", {s: single_label(IDS, LABEL, np.arange(10) < 5 + s + extra)
                                                         for s in (0, 1)})
        for s in (0, 1):
            (seed_dir(folder, s) / "config.json").write_text(json.dumps({"config": {"seed": s, "train_split": split}}))
        runs[parent] = folder
    c = compare_runs([runs["demo"], runs["oracle"]], "test", reference="demo/cmdcl")
    rows = {r.run: r for r in c.rows}
    assert set(rows) == {"demo/cmdcl", "oracle/cmdcl"}
    oracle = rows["oracle/cmdcl"]
    assert oracle.diff == pytest.approx(0.2) and oracle.pairing == "video and seed"
    assert oracle.diff_seed_ci is not None and not c.notes  # seeds matched: no note
    assert (rows["demo/cmdcl"].train_split, oracle.train_split) == ("train", "train_unconfounded")
    assert "trained on: demo/cmdcl train, oracle/cmdcl train_unconfounded." in format_table(c)
    # through the CLI, with the default reference (the first run)
    main(["compare", str(runs["demo"]), str(runs["oracle"]), "--split", "test", "--resamples", "999",
          "--out", str(tmp_path / "cmp")])
    record = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert record["reference"] == "demo/cmdcl" and [r["train_split"] for r in record["rows"]] == \
        ["train", "train_unconfounded"]
