"""`train-head` at its defaults on small worlds: the schedule in optimiser steps gives small
training sets enough steps, and the selection rule does not trust a tiny validation split.

Worlds of 90 training videos (3 classes x 30, of which 9 are carved as validation), 8 frames x 16 dims.
"""
import json

import numpy as np
import pytest
import torch

from cmdcl.head.model.checkpoint import load_checkpoint
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.data import epoch_batches, load_train_val
from cmdcl.head.training.schedule import AUTO_EPOCHS, resolve_schedule, resolve_selection
from cmdcl.pipelines.cli import main
from head_fixtures import order_world

# Order world: the same four actions in three orders (the bag of actions carries no class information).
ORDER = ((0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2))
# Bag world: each class has its own two actions (order carries nothing a mean frame would miss).
BAG = ((0, 1), (2, 3), (4, 5))
CHANCE = 1 / 3


def small_world(path, scripts):
    return order_world(path, train_per_class=30, test_per_class=10, frames=8, dim=16, noise=0.1, seed=0,
                       scripts=scripts)


@pytest.fixture(scope="module")
def order_features(tmp_path_factory):
    return small_world(tmp_path_factory.mktemp("order") / "order.h5", ORDER)


@pytest.fixture(scope="module")
def bag_features(tmp_path_factory):
    return small_world(tmp_path_factory.mktemp("bag") / "bag.h5", BAG)


def train_at_defaults(features, run, method, capsys):
    """`cmdcl train-head -f FEATS --method M` with no other training flag; returns (test top-1, stdout)."""
    main(["train-head", "--features", str(features), "--out", str(run), "--method", method, "--device", "cpu",
          "--no-progress"])
    out = capsys.readouterr().out
    return json.loads((run / "metrics_test.json").read_text())["top1"], out


@pytest.mark.parametrize("method", ["cmdcl", "transformer", "linear"])
def test_defaults_learn_order_on_a_small_order_world(order_features, tmp_path, method, capsys):
    top1, out = train_at_defaults(order_features, tmp_path / method, method, capsys)
    # 81 training videos at batch 32: 3 steps per pass; 12 passes per epoch reach min_steps 1000.
    assert "3 steps per pass x 12 passes = 36 steps per epoch, 30 epochs = 1080 steps, warm-up 72 steps" in out
    assert "best.pt = the last epoch, no early stopping (9 validation videos < --min-val-videos 100" in out
    best = load_checkpoint(tmp_path / method / "best.pt")
    lines = [json.loads(x) for x in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    # best.pt is the last epoch run, not one picked on 9 videos: epoch 30, or the epoch at which the
    # training-loss convergence rule stopped the run (only once it fits its training videos)
    assert best.epoch == len(lines) and best.finished
    assert best.schedule["total_steps"] == 1080 and best.schedule["selection"] == "last"
    assert [x["best"] for x in lines] == [False] * (len(lines) - 1) + [True]
    assert len(lines) == 30 or (lines[-1]["converged"] and lines[-1]["train_top1"] >= 0.99)
    print(method, "epochs run", len(lines))
    if method == "linear":
        assert top1 <= CHANCE + 0.2, top1  # a mean over frames cannot see order
    else:
        assert top1 >= 0.9, (method, top1)


def test_linear_learns_at_defaults_when_the_bag_of_actions_tells_the_class(bag_features, tmp_path, capsys):
    top1, _ = train_at_defaults(bag_features, tmp_path / "linear", "linear", capsys)
    assert top1 >= 0.9, top1  # so its chance-level score on the order world is about order, not the recipe


def test_default_training_is_deterministic(order_features, tmp_path):
    runs = []
    for name in ("a", "b"):
        main(["train-head", "--features", str(order_features), "--out", str(tmp_path / name), "--method", "linear",
              "--device", "cpu", "--no-progress", "--no-evaluate"])
        runs.append(load_checkpoint(tmp_path / name / "last.pt").model)
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


# ---------------------------------------------------------------------------------------------- the rules

def test_schedule_keeps_large_sets_as_they_were_and_gives_small_sets_min_steps():
    coin = resolve_schedule(HeadConfig(), 8909)  # COIN's training set: 279 steps per pass, as before
    assert (coin.steps_per_pass, coin.passes_per_epoch, coin.epochs, coin.total_steps) == (279, 1, 30, 8370)
    assert coin.warmup_steps == 2 * 279
    small = resolve_schedule(HeadConfig(), 81)
    assert (small.steps_per_pass, small.passes_per_epoch, small.total_steps) == (3, 12, 1080)
    assert small.total_steps >= HeadConfig().min_steps and small.epochs == AUTO_EPOCHS
    exact = resolve_schedule(HeadConfig(epochs=150), 81)  # an explicit --epochs is taken as asked
    assert (exact.passes_per_epoch, exact.total_steps) == (1, 450)
    assert resolve_schedule(HeadConfig(), 81, passes_per_epoch=5).passes_per_epoch == 5  # resumed runs keep theirs
    ddp = resolve_schedule(HeadConfig(batch_size=32), 8909, world=4)
    assert ddp.steps_per_pass == 279


def test_selection_trusts_only_a_large_enough_validation_split():
    cfg = HeadConfig()
    assert resolve_selection(cfg, 9, False).keep == "last"
    assert resolve_selection(cfg, 24, False).keep == "last"  # the demo's carved split
    assert resolve_selection(cfg, 100, False).keep == "best" and resolve_selection(cfg, 100, False).patience == 10
    assert resolve_selection(cfg, 500, True).keep == "last"  # scoring on the training videos selects nothing
    assert resolve_selection(HeadConfig(min_val_videos=0), 9, False).keep == "best"


def test_epoch_of_several_passes_shuffles_each_pass_and_one_pass_is_unchanged():
    rows = np.arange(10, 20)
    one = epoch_batches(rows, 4, seed=1, epoch=2)
    assert [b.tolist() for b in one] == [b.tolist() for b in epoch_batches(rows, 4, seed=1, epoch=2, passes=1)]
    three = epoch_batches(rows, 4, seed=1, epoch=2, passes=3)
    assert len(three) == 9  # 3 batches per pass (4 + 4 + 2)
    passes = [torch.cat(three[i:i + 3]).tolist() for i in (0, 3, 6)]
    assert all(sorted(p) == rows.tolist() for p in passes) and passes[0] != passes[1]


def test_carved_validation_message_states_the_true_share(tmp_path):
    # 90 classes x 3 videos: 10 % of each class rounds to 0, but every class gives one: 90 of 270 = 33 %.
    features = order_world(tmp_path / "many.h5", train_per_class=3, test_per_class=1,
                           scripts=[(i, (i + 1) % 90) for i in range(90)], dim=8, frames=4)
    messages = []
    _, train_rows, val_rows = load_train_val(features, log=messages.append)
    assert len(val_rows) == 90 and len(train_rows) == 180
    assert "carved 90 of 270 train videos as validation (33%: --val-fraction 0.1 of each of 90 classes" in messages[0]


def test_a_patch_head_on_a_file_without_patches_says_it_trains_the_frame_only_head(tmp_path, capsys):
    """cmdcl's default head reads patch tokens; given frame-only features it says, at start-up, which head it
    trains instead and how to get patches. With patches in the file, or a head that reads none, it is silent."""
    note = "holds no patch tokens (patch_grid 0), so cmdcl trains its frame-only head"
    tiny = ["--sta-layers", "1", "--heads", "2", "--width", "16", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--no-evaluate"]
    for grid, method, said in ((0, "cmdcl", True), (2, "cmdcl", False), (0, "transformer", False)):
        features = order_world(tmp_path / f"g{grid}.h5", train_per_class=3, test_per_class=1, frames=6, dim=8,
                               grid=grid)
        main(["train-head", "-f", str(features), "--method", method, "--out", str(tmp_path / f"{method}-{grid}"),
              *tiny])
        lines = [line for line in capsys.readouterr().out.splitlines() if "patch tokens" in line]
        assert bool(lines) == said, (grid, method, lines)
        if said:
            assert len(lines) == 1 and note in lines[0] and "re-extract with --patch-grid 4" in lines[0]
