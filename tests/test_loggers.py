"""`--report-to tensorboard,wandb` (head/training/loggers.py): what the loggers wrote, read back, equals
metrics.jsonl and metrics_test.json; W&B runs offline and groups the seeds of a run; a logger that is not
installed is a one-line error before anything is trained."""
import glob
import json
import struct

import pytest

from cmdcl.head.model.config import HeadConfig
from cmdcl.head.training.loggers import RunLoggers, scalars, wandb_mode
from cmdcl.head.training.seeds import train_seeds
from cmdcl.head.training.train import train
from cmdcl.pipelines.cli import main
from head_fixtures import order_world

QUIET = {"progress": False, "log": lambda m: None, "device": "cpu"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return order_world(tmp_path_factory.mktemp("order") / "order.h5", train_per_class=8, test_per_class=2)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tensorboard_events_equal_metrics_jsonl(world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = tmp_path / "run"
    result = train(world, run, HeadConfig(method="cmdcl", sta_layers=1, epochs=2, lr=2e-3), report_to="tensorboard",
                   evaluate=["test"], **QUIET)
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    records = read_jsonl(run / "metrics.jsonl")
    assert {"train/loss", "train/top1", "val/top1", "val/loss", "lr", "time/epoch_seconds"} <= set(events.Tags()["scalars"])
    for record in records:
        for tag, value in scalars(record).items():
            logged = {e.step: e.value for e in events.Scalars(tag)}
            assert logged[record["epoch"]] == pytest.approx(value, rel=1e-6), tag
    test = json.loads((run / "metrics_test.json").read_text())
    assert test["grounding_mass"] is not None  # the order world's features hold step segments
    for key in ("top1", "grounding_mass", "grounding_pointing"):
        (event,) = events.Scalars(f"test/{key}")
        assert (event.step, event.value) == (result["best_epoch"], pytest.approx(test[key], rel=1e-6))
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["config/lr"].number_value == pytest.approx(2e-3)
    assert start.hparams["config/method"].string_value == "cmdcl"
    assert start.hparams["schedule/epochs"].number_value == 2


def items(entries):
    """{key: value} of a record's items (the key is in `key` or, in newer versions, `nested_key`)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in entries}


def wandb_records(run_file):
    """The records of an offline W&B run file: the W&B header, then LevelDB log records (32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    data = open(run_file, "rb").read()
    assert data[:4] == b":W&B"
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def test_wandb_offline_run_is_grouped_and_equals_metrics_jsonl(world, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    (tmp_path / "wandb-dir").mkdir()
    out = tmp_path / "multi"
    summary = train_seeds(world, out, HeadConfig(method="linear", epochs=2), [3], report_to="wandb,tensorboard",
                          evaluate=["test"], **QUIET)
    (run_file,) = glob.glob(str(tmp_path / "wandb-dir" / "wandb" / "offline-run-*" / "run-*.wandb"))
    history, final, runs = {}, {}, []
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = items(record.history.item)
            history[row["_step"]] = row
        elif kind == "summary":
            final.update(items(record.summary.update))
        elif kind == "run":
            runs.append(record.run)
    assert runs[0].run_group == "multi" and runs[0].display_name == "multi/seed-3"
    assert runs[0].run_id == (out / "seed-3" / "wandb-id.txt").read_text().strip()
    config = items(runs[0].config.update)
    assert config["config/seed"] == 3 and config["config/method"] == "linear"
    records = read_jsonl(out / "seed-3" / "metrics.jsonl")
    assert sorted(history) == [r["epoch"] for r in records] == [1, 2]
    for record in records:
        for tag, value in scalars(record).items():
            assert history[record["epoch"]][tag] == pytest.approx(value), tag
    test = summary["runs"][0]["metrics"]["test"]
    assert final["test/top1"] == pytest.approx(test["top1"])
    assert list((out / "seed-3" / "tb").glob("events.out.tfevents.*"))  # both at once


def test_wandb_is_offline_without_a_key(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_unknown_or_missing_logger_is_a_one_line_error_before_training(world, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    for value, words in (("wandb", "pip install 'cmdcl[wandb]'"), ("tensorboard,mlflow", "'mlflow' is not one of")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train-head", "-f", str(world), "--out", str(tmp_path / "run"), "--report-to", value])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "run").exists()
    assert RunLoggers("none").names == () and RunLoggers("TensorBoard, none").names == ("tensorboard",)
