"""Calibration: ECE and NLL against hand-computed values, and `cmdcl compare --metric ece|nll` pairing them
(per-resample recomputation, per-seed t interval, brute-force permutation p)."""
import itertools
import math

import numpy as np
import pytest

from cmdcl.core.errors import CmdclError
from cmdcl.head.comparison.compare import compare_runs, format_table
from cmdcl.head.comparison.stats import WeightedECE, counts, t_interval
from cmdcl.head.metrics.calibration import (binary_nll, calibration_metrics, expected_calibration_error,
                                            top1_terms)
from cmdcl.head.metrics.predictions import Predictions

from test_compare import write_run

# Four videos, three classes; probabilities chosen away from the bin edges (k / 15).
PROBS = np.array([[0.90, 0.05, 0.05],   # label 0: confidence 0.90, right   -> bin 13
                  [0.90, 0.05, 0.05],   # label 1: confidence 0.90, wrong   -> bin 13
                  [0.65, 0.25, 0.10],   # label 0: confidence 0.65, right   -> bin 9
                  [0.20, 0.50, 0.30]])  # label 2: confidence 0.50, wrong   -> bin 7
LABEL = np.array([0, 1, 0, 2])
# ECE = (|1 + 0 - 0.9 - 0.9| + |1 - 0.65| + |0 - 0.5|) / 4 = (0.8 + 0.35 + 0.5) / 4
HAND_ECE = 1.65 / 4
HAND_NLL = -(math.log(0.9) + math.log(0.05) + math.log(0.65) + math.log(0.3)) / 4


def logits_of(probs: np.ndarray, shift: float = 3.0) -> np.ndarray:
    """Logits whose softmax is `probs` (a per-row shift changes nothing)."""
    return np.log(probs) + shift * np.arange(len(probs))[:, None]


def test_ece_nll_and_bins_by_hand():
    logits = logits_of(PROBS)
    metrics = calibration_metrics(logits, LABEL, np.eye(3, dtype=np.uint8)[LABEL], multilabel=False)
    assert metrics["ece"] == pytest.approx(HAND_ECE) and metrics["nll"] == pytest.approx(HAND_NLL)
    bins = metrics["calibration_bins"]
    assert bins["bins"] == 15 and sum(bins["count"]) == 4
    assert [i for i, c in enumerate(bins["count"]) if c] == [7, 9, 13] and bins["count"][13] == 2
    assert bins["confidence"][13] == pytest.approx(0.9) and bins["accuracy"][13] == pytest.approx(0.5)
    assert bins["accuracy"][9] == 1.0 and bins["accuracy"][7] == 0.0 and bins["accuracy"][0] is None
    # Unlabelled videos (-1) are left out, as in top-1.
    padded = calibration_metrics(np.vstack([logits, logits[:1]]), np.append(LABEL, -1), None, multilabel=False)
    assert padded["ece"] == pytest.approx(HAND_ECE) and padded["nll"] == pytest.approx(HAND_NLL)
    # A perfectly calibrated bin: 0.75 confidence, right on 3 of 4 -> ECE 0.
    confident = np.tile([[0.75, 0.25]], (4, 1))
    assert expected_calibration_error(*top1_terms(np.log(confident), np.array([0, 0, 0, 1]))[:2]) == \
        pytest.approx(0.0, abs=1e-12)


def test_multilabel_nll_is_the_mean_binary_cross_entropy_and_has_no_ece():
    logits = np.array([[0.0, 2.0], [-1.0, 3.0]])
    labels = np.array([[1, 0], [0, 1]], np.uint8)
    p = 1 / (1 + np.exp(-logits))
    hand = -np.mean([[math.log(p[0, 0]), math.log(1 - p[0, 1])], [math.log(1 - p[1, 0]), math.log(p[1, 1])]])
    metrics = calibration_metrics(logits, np.full(2, -1), labels, multilabel=True)
    assert metrics == {"nll": pytest.approx(hand)}
    assert binary_nll(np.array([[800.0, -800.0]]), np.array([[1, 0]]))[0] == pytest.approx(0.0)  # no overflow


def test_weighted_ece_recomputes_ece_on_each_resample():
    rng = np.random.default_rng(0)
    confidence, correct = rng.uniform(0.3, 1.0, 20), (rng.random(20) < 0.6).astype(float)
    metric = WeightedECE(confidence, correct)
    assert metric(np.ones((1, 20)))[0] == pytest.approx(expected_calibration_error(confidence, correct))
    index = rng.integers(0, 20, (5, 20))
    expected = [expected_calibration_error(confidence[i], correct[i]) for i in index]
    np.testing.assert_allclose(metric(counts(index, 20)), expected)


def stored(probs: np.ndarray) -> np.ndarray:
    """The logits as a predictions file stores them (float32)."""
    return logits_of(probs).astype(np.float32)


def predictions(logits: np.ndarray, ids: list[str]) -> Predictions:
    return Predictions(np.asarray(ids), np.asarray(logits, np.float32), LABEL, np.eye(3, dtype=np.uint8)[LABEL],
                       False)


IDS = ["a", "b", "c", "d"]
# B: the same predictions made less confident (right and wrong alike).
B_PROBS = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.45, 0.35, 0.20], [0.30, 0.42, 0.28]])
B_ECE = (abs(1 + 0 - 0.5 - 0.5) + abs(1 + 0 - 0.45 - 0.42)) / 4  # bin 7: both 0.5s; bin 6: 0.45 and 0.42


def test_compare_pairs_ece_with_the_brute_force_permutation_p(tmp_path):
    a = write_run(tmp_path / "A", {None: predictions(logits_of(PROBS), IDS)})
    b = write_run(tmp_path / "B", {None: predictions(logits_of(B_PROBS), IDS)})
    c = compare_runs([b, a], "test", metric="ece")
    rows = {r.run: r for r in c.rows}
    assert c.metric == "ece" and c.ci_method == "recentred" and c.num_videos == 4
    assert rows["A"].mean == pytest.approx(HAND_ECE) and rows["B"].mean == pytest.approx(B_ECE)
    assert rows["A"].diff == pytest.approx(HAND_ECE - B_ECE)
    assert rows["A"].diff_low <= rows["A"].diff <= rows["A"].diff_high
    assert "lower is better" in format_table(c)
    # All 2**4 swaps of which run predicted which video, ECE recomputed on each from scratch.
    terms = {k: top1_terms(stored(p), LABEL)[:2] for k, p in (("A", PROBS), ("B", B_PROBS))}

    def ece(rows_from: np.ndarray, run: str, other: str) -> float:
        conf = np.where(rows_from, terms[other][0], terms[run][0])
        right = np.where(rows_from, terms[other][1], terms[run][1])
        return expected_calibration_error(conf, right)

    null = np.array([ece(np.array(s), "A", "B") - ece(np.array(s), "B", "A")
                     for s in itertools.product([False, True], repeat=4)])
    observed = HAND_ECE - B_ECE
    expected_p = min(1.0, 2 * min(np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12)))
    assert rows["A"].p == pytest.approx(expected_p)


def test_compare_ece_and_nll_over_seeds_use_the_t_interval(tmp_path):
    mixes = {0: 0.0, 1: 0.1, 2: 0.2}  # each seed of A moves PROBS a little further toward B_PROBS
    blend = {s: (1 - w) * PROBS + w * B_PROBS for s, w in mixes.items()}
    a = write_run(tmp_path / "A", {s: predictions(logits_of(p), IDS) for s, p in blend.items()})
    b = write_run(tmp_path / "B", {s: predictions(logits_of(B_PROBS), IDS) for s in mixes})
    for metric, per_video in (("ece", None), ("nll", lambda p: -np.log(p[np.arange(4), LABEL]).mean())):
        c = compare_runs([b, a], "test", metric=metric)
        row = {r.run: r for r in c.rows}["A"]
        if per_video is None:
            per_seed = [expected_calibration_error(*top1_terms(stored(p), LABEL)[:2]) for p in blend.values()]
            reference = B_ECE
        else:
            per_seed, reference = [per_video(p) for p in blend.values()], per_video(B_PROBS)
        assert row.per_seed == pytest.approx(per_seed, abs=1e-6) and row.ci_kind == "t over seeds"
        _, low, high = t_interval([v - reference for v in per_seed])
        assert row.diff_seed_ci == pytest.approx((low, high), abs=1e-6) and row.pairing == "video and seed"
        assert c.ci_method == ("recentred" if metric == "ece" else "BCa")


def test_multilabel_predictions_have_no_ece(tmp_path):
    labels = np.array([[1, 0], [0, 1]], np.uint8)
    p = Predictions(np.array(["x", "y"]), np.zeros((2, 2), np.float32), np.full(2, -1), labels, True)
    run = write_run(tmp_path / "M", {None: p})
    with pytest.raises(CmdclError, match="--metric ece: .* multi-label"):
        compare_runs([run], "test", metric="ece")
    assert compare_runs([run], "test", metric="nll").rows[0].mean == pytest.approx(math.log(2))
