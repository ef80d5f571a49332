"""Several seeds in one command (head/training/seeds.py): the layout, resume per seed, workers, evaluation of a
multi-seed folder; and the training-loss convergence rule (head/training/schedule.py: Convergence)."""
import json
import os
import signal

import pytest
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.head.model.checkpoint import load_checkpoint
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.training.schedule import Convergence
from cmdcl.head.training.seed_runs import read_seeds
from cmdcl.head.training.seeds import parse_seeds, train_seeds
from cmdcl.head.training.train import train
from cmdcl.pipelines.cli import main
from head_fixtures import order_world

QUICK = dict(method="cmdcl", sta_layers=1, epochs=2, batch_size=32, warmup_epochs=1, patience=0)
QUIET = {"progress": False, "log": lambda m: None, "deterministic": True}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return order_world(tmp_path_factory.mktemp("seeds") / "order.h5", train_per_class=12, test_per_class=4,
                       noise=0.1)


def weights(run):
    return load_checkpoint(run / "last.pt").model


def same(a, b, atol=0.0):
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0) for k in a)


def test_seeds_option_writes_the_layout_and_seeds_differ(world, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train-head", "-f", str(world), "--out", str(run), "--method", "linear", "--epochs", "2", "--device", "cpu",
          "--no-progress", "--seeds", "0,1,2"])
    out = capsys.readouterr().out
    assert read_seeds(run) == [0, 1, 2] and json.loads((run / "seeds.json").read_text())["method"] == "linear"
    for k in (0, 1, 2):
        folder = run / f"seed-{k}"
        assert {"best.pt", "last.pt", "metrics.jsonl", "config.json", "metrics_test.json"} <= {
            p.name for p in folder.iterdir()}
        assert json.loads((folder / "config.json").read_text())["config"]["seed"] == k
        assert f"seed-{k} test: top1" in out
    assert "test: mean over 3 seeds" in out
    assert not same(weights(run / "seed-0"), weights(run / "seed-1"))
    assert not same(weights(run / "seed-1"), weights(run / "seed-2"))
    # seed-K is the run `train-head --seed K` makes (validation carved with seed K too)
    main(["train-head", "-f", str(world), "--out", str(tmp_path / "single"), "--method", "linear", "--epochs", "2",
          "--device", "cpu", "--no-progress", "--no-evaluate", "--seed", "1"])
    assert same(weights(tmp_path / "single"), weights(run / "seed-1"))


def test_an_interrupted_seed_resumes_and_finished_seeds_are_kept(world, tmp_path):
    cfg = HeadConfig(**QUICK)
    full = train_seeds(world, tmp_path / "full", cfg, [0, 1, 2], **QUIET)
    assert [r["epochs_run"] for r in full["runs"]] == [2, 2, 2] and not full["interrupted"]
    calls = []

    def kill_in_seed_1(info):  # after the first step of the second seed (2 steps per epoch)
        if info["epoch"] == 0 and info["step"] == 0:
            calls.append(info)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    cut = train_seeds(world, tmp_path / "cut", cfg, [0, 1, 2], on_step=kill_in_seed_1, **QUIET)
    assert cut["interrupted"] and cut["runs"][1]["interrupted"] and cut["runs"][2] == {
        "run_dir": str(tmp_path / "cut" / "seed-2"), "interrupted": True, "started": False}
    state = load_checkpoint(tmp_path / "cut" / "seed-1" / "last.pt")
    assert (state.epoch, state.step_in_epoch) == (0, 1) and not (tmp_path / "cut" / "seed-2").exists()
    finished_seed_0 = (tmp_path / "cut" / "seed-0" / "last.pt").stat().st_mtime_ns
    resumed = train_seeds(world, tmp_path / "cut", cfg, [0, 1, 2], **QUIET)
    assert not resumed["interrupted"]
    assert (tmp_path / "cut" / "seed-0" / "last.pt").stat().st_mtime_ns == finished_seed_0  # not redone
    for k in (0, 1, 2):
        assert same(weights(tmp_path / "full" / f"seed-{k}"), weights(tmp_path / "cut" / f"seed-{k}")), k


def test_worker_processes_train_the_same_runs(world, tmp_path):
    cfg = HeadConfig(**QUICK)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count, so that both sides compute alike
    try:
        alone = train_seeds(world, tmp_path / "one", cfg, [3, 4, 5], **QUIET)
    finally:
        torch.set_num_threads(torch_threads)
    forked = train_seeds(world, tmp_path / "two", cfg, [3, 4, 5], workers=2, **QUIET)  # more jobs than workers
    assert [r["best_metric"] for r in forked["runs"]] == [r["best_metric"] for r in alone["runs"]]
    for k in (3, 4, 5):
        assert same(weights(tmp_path / "one" / f"seed-{k}"), weights(tmp_path / "two" / f"seed-{k}"), atol=1e-6)
    assert torch.get_num_threads() == torch_threads


def test_evaluate_scores_every_seed_of_a_run_folder(world, tmp_path, capsys):
    run = tmp_path / "run"
    train_seeds(world, run, HeadConfig(method="linear", epochs=1), [5, 6], progress=False, log=lambda m: None)
    capsys.readouterr()
    main(["evaluate", "--checkpoint", str(run), "-f", str(world), "--split", "test", "--device", "cpu"])
    out = capsys.readouterr().out
    for k in (5, 6):
        metrics = json.loads((run / f"seed-{k}" / "metrics_test.json").read_text())
        assert metrics["checkpoint"] == str(run / f"seed-{k}" / "best.pt")
        assert f"seed-{k} test: top1 {metrics['top1']:.4f}" in out
    assert "test: mean over 2 seeds" in out
    main(["evaluate", "--checkpoint", str(run / "seed-5"), "-f", str(world), "--device", "cpu"])  # a plain run folder
    assert "seed-5 test: top1" in capsys.readouterr().out


def test_bad_seeds_and_mixed_folders_are_one_line_errors(world, tmp_path):
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5,9") == [3, 4, 5, 9]
    for bad in ("", "a", "1,1", "-2"):
        with pytest.raises(CmdclError, match="--seeds"):
            parse_seeds(bad)
    single = tmp_path / "single"
    main(["train-head", "-f", str(world), "--out", str(single), "--method", "linear", "--epochs", "1",
          "--device", "cpu", "--no-progress", "--no-evaluate"])
    with pytest.raises(CmdclError, match="single-seed run folder"):
        train_seeds(world, single, HeadConfig(method="linear", epochs=1), [0], progress=False, log=lambda m: None)


# ---------------------------------------------------------------------------------------------- convergence

def stops_at(rule, losses, top1=1.0):
    return next((epoch for epoch, loss in enumerate(losses, 1) if rule.update(loss, epoch, top1)), None)


def test_convergence_stops_on_a_flat_training_loss_once_the_training_set_fits():
    assert stops_at(Convergence(3, 0.05), [1.0, 0.5, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]) == 6
    assert stops_at(Convergence(3, 0.05), [1.0, 0.5, 0.2, 0.2, 0.2, 0.2], top1=0.9) is None  # not fitted: a plateau
    assert stops_at(Convergence(3, 0.05), [1.0, 0.5, 0.2, 0.2, 0.2, 0.2], top1=None) == 6  # multi-label: loss alone
    # a loss already near 0 halving each epoch is not progress (falls below CONVERGE_MIN_FALL)
    assert stops_at(Convergence(2, 0.05), [0.5, 0.01, 4e-4, 2e-4, 1e-4, 5e-5]) == 5
    assert stops_at(Convergence(0, 0.05), [0.2] * 30) is None  # patience 0: off


def test_convergence_does_not_stop_while_the_training_loss_still_falls():
    falling = [2.0 * 0.9 ** e for e in range(40)]  # 10 % per epoch, above delta 5 %
    assert stops_at(Convergence(3, 0.05), falling) is None
    noisy = [1.0, 0.9, 0.92, 0.8, 0.82, 0.7, 0.72, 0.6, 0.61, 0.5]  # up, down, but each 2 epochs 10 % lower
    assert stops_at(Convergence(3, 0.05), noisy) is None
    rule = Convergence(3, 0.05)  # the state survives a checkpoint round trip (resume)
    stops_at(rule, [1.0, 0.5, 0.5, 0.5])
    again = Convergence.from_config(HeadConfig(converge_patience=3), rule.to_dict())
    assert (again.best_loss, again.stale) == (0.5, 2) and again.update(0.5, 5, 1.0)


def test_a_converged_run_stops_keeps_its_last_epoch_and_resumes_as_finished(tmp_path):
    # each class its own two actions: a linear probe fits it, then its loss flattens (one step per epoch)
    bag = order_world(tmp_path / "bag.h5", train_per_class=10, test_per_class=2, noise=0.1,
                      scripts=((0, 1), (2, 3), (4, 5)))
    cfg = HeadConfig(method="linear", min_steps=300, lr=1e-2, dropout=0.0, converge_patience=3, patience=0)
    messages = []
    summary = train(bag, tmp_path / "run", cfg, progress=False, log=messages.append)
    assert 0 < summary["converged_epoch"] == summary["epochs_run"] < 30 and summary["stopped_early"]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["converged"] and lines[-1]["best"] and lines[-1]["train_top1"] >= 0.99
    assert load_checkpoint(tmp_path / "run" / "best.pt").epoch == len(lines)
    assert any(m.startswith("converged:") for m in messages)
    exact = train(bag, tmp_path / "exact", HeadConfig(**{**cfg.to_dict(), "epochs": 40}), progress=False,
                  log=lambda m: None)
    assert exact["epochs_run"] == 40 and not exact["converged_epoch"]  # --epochs N: exactly N epochs
    again = train(bag, tmp_path / "run", cfg, progress=False, log=messages.append)
    assert again["epochs_run"] == len(lines) and "nothing to do" in messages[-1]


def test_workers_train_after_the_parent_ran_openmp_code(world, tmp_path):
    """A forked worker's KMeans used to wait forever when the parent had run OpenMP code (its own KMeans) before
    forking: the child inherits a stale copy of the thread pool. Run in a child process with a deadline, so a
    regression fails here instead of hanging the suite."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import numpy as np
        from sklearn.cluster import KMeans
        from cmdcl.head.model.config import HeadConfig
        from cmdcl.head.training.seeds import train_seeds
        KMeans(8, n_init=1, random_state=0).fit(np.random.default_rng(0).standard_normal((4000, 32)))
        runs = train_seeds({str(world)!r}, {str(tmp_path / 'run')!r}, HeadConfig(**{QUICK!r}), [0, 1], workers=2,
                           progress=False, log=lambda m: None)
        print("trained", len(runs["runs"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained 2" in done.stdout
