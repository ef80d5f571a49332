"""Two CPU processes (gloo, launched by torchrun) train to the same weights as one process with the same
global batch: the rank batches at each step partition the single-process batch, DDP averages gradients."""
import json
import os
import subprocess
import sys

import torch

from cmdcl.core.store import FeatureSet
from cmdcl.head.model.checkpoint import load_checkpoint
from cmdcl.head.model.factory import build_model
from cmdcl.pipelines.cli import main
from head_fixtures import order_world


def test_two_process_ddp_matches_single_process(tmp_path):
    # 48 training videos = 3 global batches of 16 (8 per rank); an explicit val split, no carving.
    features = order_world(tmp_path / "w.h5", train_per_class=12, val_per_class=2, test_per_class=1, noise=0.1)
    args = ["train-head", "--features", str(features), "--method", "cmdcl", "--sta-layers", "1", "--epochs", "2",
            "--batch-size", "16", "--dropout", "0", "--lr", "3e-3", "--warmup-epochs", "1", "--patience", "0",
            "--device", "cpu", "--no-progress", "--no-evaluate"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "cmdcl.pipelines.cli", *args, "--out", str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "2 processes" in launched.stdout

    main([*args, "--out", str(tmp_path / "single")])  # one torch thread, as the DDP ranks (conftest)

    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    single = load_checkpoint(tmp_path / "single" / "last.pt")
    assert ddp.model.keys() == single.model.keys()
    for key, value in single.model.items():
        other = ddp.model[key]
        if key.endswith("in_proj_bias"):
            # The attention key bias cannot change any softmax, so its true gradient is 0 and what it gets
            # is rounding noise, which Adam rescales to lr-sized steps: compare it loosely, q and v strictly.
            dim = value.shape[0] // 3
            torch.testing.assert_close(other[dim:2 * dim], value[dim:2 * dim], rtol=0, atol=1e-3, msg=key)
            other, value = torch.cat([other[:dim], other[2 * dim:]]), torch.cat([value[:dim], value[2 * dim:]])
        torch.testing.assert_close(other, value, rtol=1e-4, atol=1e-5, msg=key)
    initial = build_model(single.config, FeatureSet(features).text,
                          single.model_args.dims, False)
    moved = [k for k, p in initial.named_parameters() if not torch.equal(p.detach(), single.model[k])]
    assert len(moved) > 10  # training changed the weights: the comparison is not vacuous
    ddp_config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert ddp_config["world_size"] == 2 and ddp_config["train_videos"] == 48
    lines = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    single_lines = [json.loads(x) for x in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]  # only rank 0 wrote
    for a, b in zip(lines, single_lines):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and a["val_top1"] == b["val_top1"]
