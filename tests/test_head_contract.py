"""The contract every entry of the method table (head/model/registry.py: METHODS) meets.

Parametrized over the table itself, so a head is tested the moment it is registered: it builds from
`build_model`, its forward returns "logits" (B, C) (and "step_logits" (B, S) only when it scores atomic
actions) unchanged by padded frames, it is named in `cmdcl train-head --help`, and it trains a few steps,
saves, loads and evaluates through the same code as every other head.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import TextBank
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.model.factory import build_model
from cmdcl.head.model.registry import METHODS
from head_fixtures import order_world
from help_text import help_text

D, C, S, FR, B = 16, 3, 5, 6, 4
# Small sizes for every head (each reads the ones it declares); the recipe is the shared one.
SMALL = dict(sta_layers=1, heads=2, dictionary_size=4, dropout=0.0)


def text_bank(steps: int) -> TextBank:
    rng = np.random.default_rng(0)
    return TextBank(class_names=[f"c{i}" for i in range(C)],
                    class_embeddings=rng.standard_normal((C, D)).astype(np.float32),
                    step_names=[f"s{i}" for i in range(steps)],
                    step_embeddings=rng.standard_normal((steps, D)).astype(np.float32).reshape(steps, D),
                    templates=[])


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(B, FR, D, generator=g)
    mask = torch.ones(B, FR, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, 1:] = False
    return features, mask


@pytest.mark.parametrize("steps", [S, 0], ids=["steps", "no-steps"])
@pytest.mark.parametrize("method", METHODS)
def test_forward_contract(method, steps):
    dims = {"F": FR, "D": D, "C": C, "S": steps, "P": 0}
    model = build_model(HeadConfig(method=method, **SMALL), text_bank(steps), dims, multilabel=False).eval()
    features, mask = inputs()
    padded = features.clone()
    padded[~mask] = 1000.0
    with torch.no_grad():
        out, again = model(features, mask), model(padded, mask, None)
    assert out["logits"].shape == (B, C) and torch.isfinite(out["logits"]).all()
    torch.testing.assert_close(out["logits"], again["logits"])  # padded frames are never read
    if "step_logits" in out and steps:
        assert out["step_logits"].shape == (B, S)


@pytest.mark.parametrize("method", METHODS)
def test_declared_options_are_headconfig_fields(method):
    fields = {f.name for f in dataclasses.fields(HeadConfig)}
    assert set(METHODS[method].options) <= fields, set(METHODS[method].options) - fields


@pytest.mark.parametrize("method", METHODS)
def test_named_in_train_head_help(method):
    text = help_text("train-head")
    assert f"{method}: {' '.join(METHODS[method].help.split())}" in text


def test_unknown_method_lists_every_registered_one():
    with pytest.raises(CmdclError, match="--method 'svm'") as info:
        HeadConfig(method="svm").check()
    assert all(name in str(info.value) for name in METHODS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return order_world(tmp_path_factory.mktemp("contract") / "w.h5", train_per_class=6, test_per_class=2)


@pytest.mark.parametrize("method", METHODS)
def test_trains_saves_loads_and_evaluates(method, world, tmp_path):
    from cmdcl.head.metrics.evaluate import evaluate
    from cmdcl.head.training.train import train

    steps = []
    cfg = HeadConfig(method=method, epochs=2, batch_size=8, **SMALL)
    train(world, tmp_path / "run", cfg, device="cpu", progress=False, log=lambda m: None,
          on_step=steps.append)
    best = tmp_path / "run" / "best.pt"
    assert best.is_file() and (tmp_path / "run" / "last.pt").is_file()
    metrics = evaluate(best, world, "test", device="cpu")
    assert metrics["num_videos"] == 2 * 4 and 0.0 <= metrics["top1"] <= 1.0
    trainable = any(p.requires_grad for p in build_model(cfg, _text(world), _dims(world), False).parameters())
    assert bool(steps) == trainable  # heads with parameters take optimiser steps; the others are only scored
    with torch.no_grad():
        out = build_model(cfg, _text(world), _dims(world), False).eval()(*inputs_for(world))
    assert ("step_mAP" in metrics) == ("step_logits" in out)  # step scores switch on the atomic-action mAP


def _text(world) -> TextBank:
    from cmdcl.core.store import FeatureSet

    return FeatureSet(world).text


def _dims(world) -> dict:
    from cmdcl.core.store import FeatureSet

    fs = FeatureSet(world)
    return {**fs.dims, "P": 0}


def inputs_for(world) -> tuple[torch.Tensor, torch.Tensor]:
    dims = _dims(world)
    return torch.randn(2, dims["F"], dims["D"]), torch.ones(2, dims["F"], dtype=torch.bool)
