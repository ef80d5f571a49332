"""`train-head --config FILE` (pipelines/config_file.py): a run's config.json repeats it exactly, YAML files set
any subset of the options, typed flags override the file, and bad files are one-line errors naming file and key."""
import json

import pytest
import torch

from cmdcl.head.model.checkpoint import load_checkpoint
from cmdcl.pipelines import cmd_head
from cmdcl.pipelines.cli import main
from head_fixtures import order_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return order_world(tmp_path_factory.mktemp("order") / "order.h5", train_per_class=10, test_per_class=2)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_config_json_repeats_the_run_exactly(world, tmp_path):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    main(["train-head", "-f", str(world), "--out", str(run_a), "--method", "cmdcl", "--sta-layers", "1", "--epochs",
          "2", "--lr", "3e-3", "--seed", "5", "--no-static-split", "--deterministic", "--device", "cpu",
          "--no-progress", "--no-evaluate"])
    # no --features: the file names them; the resolved device and the other records of run a are ignored
    main(["train-head", "--config", str(run_a / "config.json"), "--out", str(run_b), "--no-progress",
          "--no-evaluate"])
    a, b = (json.loads((run / "config.json").read_text()) for run in (run_a, run_b))
    assert a["config"] == b["config"] and b["deterministic"] and b["config"]["seed"] == 5
    assert b["config"]["static_split"] is False and b["features"] == a["features"]
    weights_a, weights_b = (load_checkpoint(run / "last.pt").model for run in (run_a, run_b))
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]  # noqa: E731
    assert drop(read_jsonl(run_a / "metrics.jsonl")) == drop(read_jsonl(run_b / "metrics.jsonl"))


@pytest.fixture
def captured(monkeypatch):
    """train-head's resolved options, without training."""
    seen = {}
    monkeypatch.setattr(cmd_head, "_train_head", lambda cfg, **run: seen.update(cfg=cfg, **run))
    return seen


def test_yaml_sets_options_and_typed_flags_win(tmp_path, captured):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: transformer\nsta-layers: 3\nlr: 3e-3   # YAML 1.1 reads this as a string\n"
                      "epochs: 7\nuse_patches: null\nseeds: [0, 1, 2]\nreport_to: tensorboard\n"
                      "features: [a.h5, b.h5]\ndeterministic: true\n")
    main(["train-head", "--config", str(recipe), "--epochs", "2", "--lr", "0.001", "--no-deterministic"])
    cfg = captured["cfg"]
    assert (cfg.method, cfg.sta_layers, cfg.use_patches) == ("transformer", 3, None)  # from the file
    assert (cfg.epochs, cfg.lr) == (2, 0.001)  # typed, even where equal to the default (lr)
    assert captured["deterministic"] is False  # typed --no-deterministic (the default) beats the file
    assert captured["seeds"] == "0,1,2" and captured["report_to"] == "tensorboard"
    assert captured["features"] == ["a.h5", "b.h5"]
    main(["train-head", "--config", str(recipe), "-f", "c.h5"])
    assert captured["features"] == ["c.h5"] and captured["cfg"].lr == 3e-3 and captured["deterministic"]


def test_a_nested_config_block_as_in_config_json(tmp_path, captured):
    path = tmp_path / "old.json"  # a config.json written before the learned mediator: the head it trained
    path.write_text(json.dumps({"config": {"method": "cmdcl", "epochs": 3}, "method": "cmdcl", "device": "cuda:3",
                                "data_mode": "memmap", "code_version": "abc", "schedule": {"epochs": 3}}))
    main(["train-head", "--config", str(path), "-f", "x.h5"])
    assert captured["cfg"].mediator == "cosine" and captured["cfg"].data_mode == "auto"
    assert captured["device"] == "auto"  # the recorded (resolved) device is not an option


def _error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cmdcl: error: "), err
    return err


@pytest.mark.parametrize("text, words", [
    ("sta_layer: 2\n", ["unknown key 'sta_layer'", "did you mean sta_layers"]),
    ("epochs: two\n", ["epochs: expected an integer, got 'two'"]),
    ("use_tci: 1\n", ["use_tci: expected true or false"]),
    ("method: svm\n", ["--method 'svm' is not one of"]),
    ("lr: -1\n", ["--lr must be > 0"]),
    ("seed_workers: [1]\n", ["seed_workers: expected an integer"]),
    ("- method\n", ["expected a mapping"]),
    ("method: [unclosed\n", ["not valid YAML"]),
    ('{"config": {"sta_layerz": 1}}', ["unknown key 'config.sta_layerz'", "did you mean sta_layers"]),
    ('{"config": {"epochs": 1}, "epochs": 2}', ["epochs is given twice"]),
])
def test_bad_files_are_one_line_errors_naming_file_and_key(tmp_path, capsys, text, words):
    path = tmp_path / ("bad.json" if text.startswith("{") else "bad.yaml")
    path.write_text(text)
    err = _error(["train-head", "--config", str(path), "-f", "x.h5"], capsys)
    assert str(path) in err and all(w in err for w in words), err


def test_missing_config_and_missing_features(tmp_path, capsys):
    assert "no such file" in _error(["train-head", "--config", str(tmp_path / "none.yaml")], capsys)
    empty = tmp_path / "empty.yaml"
    empty.write_text("method: linear\n")
    assert "no features given" in _error(["train-head", "--config", str(empty)], capsys)


def test_demo_and_ablation_rows_from_files(tmp_path):
    import importlib.util
    from pathlib import Path

    from cmdcl.pipelines.config_file import read_row_configs
    from cmdcl.pipelines.demo import DemoConfig, _head_config, demo_runs

    row = tmp_path / "row.yaml"
    row.write_text("method: cmdcl\nuse_tci: false\nsta_layers: 1\ndevice: cuda\n")  # device: a run option, not a row's
    rows = read_row_configs([f"mine={row}"], cmd_head.TRAIN_RUN_OPTIONS)  # as `cmdcl demo --row-config` reads it
    assert rows == {"mine": {"method": "cmdcl", "use_tci": False, "sta_layers": 1}}
    cfg = DemoConfig(epochs=4, rows=rows)
    head = _head_config(cfg, "mine", seed=2)
    assert (head.use_tci, head.sta_layers, head.epochs, head.seed) == (False, 1, 4, 2)
    assert demo_runs(cfg)["mine"]["method"] == "cmdcl" and "linear" in demo_runs(cfg)
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "ablation.py"
    spec = importlib.util.spec_from_file_location("ablation", script)
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    table = {**ablation.ROWS, **ablation.row_configs([f"mine={row}"])}
    head = ablation.row_config("mine", 3, sta_layers=2, epochs=5, table=table)
    assert (head.use_tci, head.sta_layers, head.epochs, head.seed) == (False, 1, 5, 3)
    assert ablation.main(["--features", "x.h5", "--out", str(tmp_path), "--row-config", "mine"]) == 2
