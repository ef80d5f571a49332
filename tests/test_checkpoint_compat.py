"""A checkpoint written before head/ was split into subpackages still loads and scores the same.

tests/fixtures/pre_move/ holds what `cmdcl train-head` wrote when head/ was one flat package: a tiny cmdcl
head (width 16, 1 layer, 2x2 patches) trained one epoch on the order world, its features, and the per-video
predictions that `evaluate` made then. The checkpoint is a plain dict (weights_only), so it names no module
path; this test keeps it that way.
"""
import shutil
from pathlib import Path

import numpy as np

from cmdcl.head.metrics.evaluate import evaluate
from cmdcl.head.metrics.predictions import load_predictions

FIXTURE = Path(__file__).parent / "fixtures" / "pre_move"


def test_a_checkpoint_from_before_the_move_scores_as_it_did(tmp_path):
    shutil.copy(FIXTURE / "best.pt", tmp_path / "best.pt")
    metrics = evaluate(tmp_path / "best.pt", FIXTURE / "feats.h5", split="test", device="cpu")
    then = load_predictions(FIXTURE / "predictions_test.npz", "test")
    now = load_predictions(tmp_path / "predictions_test.npz", "test")
    assert list(now.video_id) == list(then.video_id)
    np.testing.assert_allclose(now.scores, then.scores, rtol=1e-5, atol=1e-6)
    assert metrics["top1"] == np.mean(then.scores.argmax(1) == then.label)
