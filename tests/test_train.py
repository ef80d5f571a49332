import json
import os
import signal

import numpy as np
import pytest
import torch

from cmdcl.core.errors import CheckpointError, CmdclError
from cmdcl.core.store import FeatureSet
from cmdcl.head.model.checkpoint import load_checkpoint
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.data import FeatureData, carve_validation, epoch_batches, frame_subsample_index, load_train_val
from cmdcl.head.training.train import train
from cmdcl.pipelines.cli import main
from head_fixtures import ORDER_SCRIPTS, order_world

CHANCE = 1 / len(ORDER_SCRIPTS)



@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return order_world(tmp_path_factory.mktemp("order") / "order.h5", noise=0.1)


@pytest.fixture(scope="module")
def patch_world(tmp_path_factory):
    return order_world(tmp_path_factory.mktemp("patches") / "patches.h5", train_per_class=6, test_per_class=2,
                       grid=2, noise=0.1)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- data path

def test_frame_subsample_spreads_over_valid_frames():
    mask = np.array([[True] * 8, [True] * 6 + [False] * 2, [True] * 2 + [False] * 6])
    index, new_mask = frame_subsample_index(mask, 4)
    assert index.tolist() == [[1, 3, 5, 7], [0, 2, 3, 5], [0, 1, 1, 1]]
    assert new_mask.tolist() == [[True] * 4, [True] * 4, [True, True, False, False]]


def test_ddp_rank_batches_union_is_the_single_process_batch():
    rows = np.arange(100, 148)
    single = epoch_batches(rows, 16, seed=3, epoch=2)
    ranks = [epoch_batches(rows, 8, seed=3, epoch=2, rank=r, world=2) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 3
    for k, batch in enumerate(single):
        assert sorted(batch.tolist()) == sorted(ranks[0][k].tolist() + ranks[1][k].tolist())
    assert [b.tolist() for b in epoch_batches(rows, 16, seed=3, epoch=2)] == [b.tolist() for b in single]
    assert single[0].tolist() != epoch_batches(rows, 16, seed=3, epoch=3)[0].tolist()
    uneven = [epoch_batches(np.arange(5), 2, seed=0, epoch=0, rank=r, world=2) for r in range(2)]
    assert [sum(len(b) for b in r) for r in uneven] == [3, 3]  # padded by wrap-around


def test_carve_validation_is_stratified_and_seeded():
    label = np.repeat(np.arange(4), [10, 10, 10, 2])
    train_rows, val_rows = carve_validation(label, 0.2, seed=1)
    assert np.bincount(label[val_rows]).tolist() == [2, 2, 2, 1]
    assert sorted(np.concatenate([train_rows, val_rows]).tolist()) == list(range(len(label)))
    assert np.array_equal(val_rows, carve_validation(label, 0.2, seed=1)[1])
    assert not np.array_equal(val_rows, carve_validation(label, 0.2, seed=2)[1])


def test_memory_and_memmap_modes_give_the_same_batches(world):
    messages = []
    data, train_rows, val_rows = load_train_val(world, frames=4, log=messages.append)
    assert "carved 16 of 160" in messages[0] and len(val_rows) == 16 and len(train_rows) == 144
    mapped = FeatureData(FeatureSet(world), ["train"], frames=4, mode="memmap")
    rows = np.array([5, 0, 77, 3])
    a, b = data.batch(rows), mapped.batch(rows)
    assert a["features"].shape == (4, 4, 16) and a["features"].dtype == torch.float32
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert list(data.video_id) == sorted(data.video_id)  # rows follow video_id, not the stored order
    stored = FeatureSet(world).read_array("features", data.positions[[5]])[0]
    index, _ = frame_subsample_index(FeatureSet(world).index["frame_mask"][data.positions[[5]]], 4)
    assert np.array_equal(a["features"][0].numpy(), stored[index[0]].astype(np.float32))


def test_too_many_frames_and_missing_patches_are_one_line_errors(world):
    with pytest.raises(CmdclError, match="--frames 9 but .* holds only 8 frames"):
        FeatureData(world, "train", frames=9)
    with pytest.raises(CmdclError, match="no patch tokens"):
        FeatureData(world, "train", use_patches=True)


# ---------------------------------------------------------------------------------------------- CLI + order world

@pytest.mark.parametrize("method,options", [
    ("linear", ["--epochs", "20", "--lr", "1e-2"]),
    ("transformer", ["--epochs", "20", "--lr", "1e-2", "--sta-layers", "1"]),
    ("cmdcl", ["--epochs", "30", "--lr", "1e-2", "--sta-layers", "2"]),
    ("zeroshot", []),
])
def test_each_method_trains_and_evaluates_from_cli(world, tmp_path, method, options, capsys):
    run = tmp_path / method
    main(["train-head", "--features", str(world), "--out", str(run), "--method", method, "--batch-size", "32",
          "--warmup-epochs", "2", "--patience", "0", "--seed", "0", "--no-progress", *options])
    for name in ("best.pt", "last.pt", "metrics.jsonl", "config.json", "provenance.json", "metrics_test.json"):
        assert (run / name).exists(), name
    lines = read_jsonl(run / "metrics.jsonl")
    epochs = int(options[1]) if options else 0
    assert [x["epoch"] for x in lines] == (list(range(1, epochs + 1)) if epochs else [0])
    assert json.loads((run / "provenance.json").read_text())["model_name"] == "tiny-world"
    test_top1 = json.loads((run / "metrics_test.json").read_text())["top1"]

    main(["evaluate", "--checkpoint", str(run / "best.pt"), "--features", str(world), "--out", str(run / "e.json")])
    assert json.loads((run / "e.json").read_text())["top1"] == test_top1
    # The order world: every class has the same bag of steps, so only order-aware heads can solve it.
    if method in ("cmdcl", "transformer"):
        assert test_top1 >= 0.9, (method, test_top1)
        assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    if method == "linear":
        assert test_top1 <= CHANCE + 0.2, test_top1
    assert "top1" in capsys.readouterr().out


@pytest.mark.parametrize("method,base,switched,relation", [
    ("cmdcl", [], ["--no-tci"], "<"),
    ("cmdcl", [], ["--no-vci"], "<"),
    ("cmdcl", [], ["--sta-layers", "0"], "<"),
    ("cmdcl", [], ["--frames", "4"], "<"),
    ("cmdcl", [], ["--classifier", "attention"], ">"),
    ("cmdcl", [], ["--bias-source", "dictionary", "--bias-estimator", "sinkhorn", "--frontdoor-cross", "none"], "!="),
    ("transformer", [], ["--sta-layers", "0"], "<"),
    ("cmdcl", ["--use-patches"], ["--use-patches", "--no-vci"], "<"),
])
def test_switches_change_parameter_counts_and_still_train(world, patch_world, tmp_path, method, base, switched,
                                                          relation):
    features = patch_world if "--use-patches" in base else world
    counts = []
    for i, options in enumerate((base, switched)):
        run = tmp_path / f"run{i}"
        main(["train-head", "--features", str(features), "--out", str(run), "--method", method, "--epochs", "1",
              "--sta-layers", "1", "--no-progress", "--no-evaluate", *options])
        config = json.loads((run / "config.json").read_text())
        counts.append(config["parameters"])
        loss = read_jsonl(run / "metrics.jsonl")[0]["train_loss"]
        assert np.isfinite(loss) and loss > 0
    if "--frames" in switched:
        assert config["dims"]["F"] == 4
    if relation == "!=":
        assert config["config"]["bias_source"] == "dictionary" and config["config"]["frontdoor_cross"] == "none"
    assert {"<": counts[1] < counts[0], ">": counts[1] > counts[0], "!=": counts[1] != counts[0]}[relation], counts


# ---------------------------------------------------------------------------------------------- kill and resume

def test_sigterm_mid_epoch_then_resume_matches_uninterrupted_run(world, tmp_path):
    cfg = dict(method="cmdcl", sta_layers=1, epochs=3, batch_size=32, lr=3e-3, dropout=0.2, warmup_epochs=1,
               patience=0)
    quiet = {"progress": False, "log": lambda m: None, "deterministic": True}
    full = train(world, tmp_path / "full", HeadConfig(**cfg), **quiet)

    def kill_mid_epoch(info):
        if info["epoch"] == 1 and info["step"] == 1:  # after 2 of the 5 steps of the second epoch
            os.kill(os.getpid(), signal.SIGTERM)

    messages = []
    first = train(world, tmp_path / "cut", HeadConfig(**cfg), on_step=kill_mid_epoch, progress=False,
                  log=messages.append, deterministic=True)
    assert first["interrupted"] and "SIGTERM: saved" in messages[-1]
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (state.epoch, state.step_in_epoch) == (1, 2)
    assert len(read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after the run

    resumed = train(world, tmp_path / "cut", HeadConfig(**cfg), resume="auto", **quiet)
    assert not resumed["interrupted"] and resumed["best_metric"] == full["best_metric"]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]  # noqa: E731
    assert drop(read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == drop(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    a = load_checkpoint(tmp_path / "full" / "last.pt").model
    b = load_checkpoint(tmp_path / "cut" / "last.pt").model
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = train(world, tmp_path / "cut", HeadConfig(**cfg), resume="auto", **quiet)
    assert again["epochs_run"] == 3 and len(read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == 3  # nothing redone


# ---------------------------------------------------------------------------------------------- bad checkpoints

@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained")
    train(world, run, HeadConfig(method="linear", epochs=1), progress=False, log=lambda m: None)
    return run / "best.pt"


def _cli_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_corrupt_and_truncated_checkpoints_are_refused(trained, world, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained.read_bytes()[: trained.stat().st_size // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    for path, reason in ((garbage, "not a readable cmdcl checkpoint"), (truncated, "not a readable cmdcl checkpoint"),
                         (foreign, "not a cmdcl checkpoint"), (tmp_path / "none.pt", "does not exist")):
        err = _cli_error(["evaluate", "--checkpoint", str(path), "--features", str(world)], capsys)
        assert str(path) in err and reason in err


def test_mismatched_features_are_refused(trained, tmp_path, capsys):
    wide = order_world(tmp_path / "wide.h5", train_per_class=2, test_per_class=1, dim=32)
    err = _cli_error(["evaluate", "--checkpoint", str(trained), "--features", str(wide)], capsys)
    assert "16-d embeddings" in err and "32-d" in err
    renamed = order_world(tmp_path / "renamed.h5", train_per_class=2, test_per_class=1,
                          scripts=((0, 1, 2, 3), (3, 2, 1, 0), (1, 0, 3, 2), (2, 3, 1, 0)))
    err = _cli_error(["evaluate", "--checkpoint", str(trained), "--features", str(renamed)], capsys)
    assert "label vocabulary (class_names)" in err and "entry 3" in err
    fewer = order_world(tmp_path / "fewer.h5", train_per_class=2, test_per_class=1, scripts=ORDER_SCRIPTS[:3])
    with pytest.raises(CheckpointError, match="3 vs 4 names|4 vs 3 names"):
        train(fewer, trained.parent, HeadConfig(method="linear", epochs=2), resume=str(trained), progress=False,
              log=lambda m: None)
    err = _cli_error(["train-head", "--features", str(trained.parent), "--method", "svm"], capsys)
    assert "--method 'svm' is not one of" in err


def test_throughput_benchmark_runs_small(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--small", "--in-process", "--out", str(tmp_path)])
    assert report["fast"]["videos"] == report["naive"]["videos"] == 230  # the train split of 256 videos
    assert report["cmdcl"]["videos"] == 64 and report["speedup"] > 0
    assert "speed-up" in capsys.readouterr().out
    assert FeatureSet(report["file"]).summary()["splits"] == {"test": 26, "train": 230}


def test_cli_sigterm_exits_75_with_a_resumable_checkpoint(world, tmp_path):
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = ["train-head", "--features", str(world), "--out", str(run), "--method", "linear", "--epochs", "100000",
            "--patience", "0", "--device", "cpu", "--no-progress", "--no-evaluate"]
    child = subprocess.Popen([sys.executable, "-m", "cmdcl.pipelines.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=60)
    assert child.returncode == 75, output
    assert "SIGTERM: saved" in output and "--resume auto" in output
    state = load_checkpoint(run / "last.pt")
    assert not state.finished and state.epoch >= 1
    done = len(read_jsonl(run / "metrics.jsonl"))
    epochs = args.index("--epochs") + 1
    main([*args[:epochs], str(state.epoch + 2), *args[epochs + 1:]])  # resume: 2 more epochs, to the end
    assert [x["epoch"] for x in read_jsonl(run / "metrics.jsonl")] == list(range(1, state.epoch + 3))
    assert done == state.epoch and load_checkpoint(run / "last.pt").finished


def test_train_split_trains_on_that_split_with_validation_carved_from_it(tmp_path, capsys):
    """--train-split train_unconfounded: training and validation videos are that split's (carved from it
    even though the file has a 'val' split, which belongs to 'train'); the run records it; a split the file
    lacks is a one-line error."""
    path = order_world(tmp_path / "w.h5", train_per_class=6, test_per_class=5, val_per_class=2,
                       extra_splits=("train_unconfounded",))
    data, train_rows, val_rows = load_train_val(path, val_fraction=0.2, seed=0, train_split="train_unconfounded",
                                                log=lambda m: None)
    assert set(data.split[train_rows]) == set(data.split[val_rows]) == {"train_unconfounded"}
    assert len(train_rows) + len(val_rows) == 5 * len(ORDER_SCRIPTS) and len(val_rows) == len(ORDER_SCRIPTS)
    default = load_train_val(path, log=lambda m: None)
    assert set(default[0].split[default[2]]) == {"val"} and set(default[0].split[default[1]]) == {"train"}
    main(["train-head", "--features", str(path), "--out", str(tmp_path / "run"), "--method", "linear",
          "--epochs", "1", "--train-split", "train_unconfounded", "--device", "cpu"])
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["train_split"] == "train_unconfounded"
    assert record["train_videos"] + record["val_videos"] == 5 * len(ORDER_SCRIPTS)
    with pytest.raises(CmdclError, match="no 'oracle' split to train on .--train-split.; splits in the file: test, "
                                         "train, train_unconfounded, val") as info:
        load_train_val(path, train_split="oracle", log=lambda m: None)
    assert "\n" not in str(info.value)
