"""The contract every entry of the method table (head/model/registry.py: METHODS) meets.

Parametrized over the table itself, so a head is tested the moment it is registered: it builds from
`build_model`, its forward returns the outputs of docs/TRAINING.md's contract ("logits" (B, C),
"representation" (B, R), the optional ones with their shapes, "frame_step_logits" (B, F, S) among them)
unchanged by padded frames, it reads only the options its entry lists (and only those are checked for it), it
is named in `cmdcl train-head --help`, and it trains a few steps, saves, loads and evaluates through the same code as every other head.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import TextBank
from cmdcl.head.model.config import RECIPE, HeadConfig
from cmdcl.head.model.factory import build_model
from cmdcl.head.model.registry import METHODS
from head_fixtures import order_world
from help_text import help_text

D, C, S, FR, B, P = 16, 3, 5, 6, 4, 4
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
    """docs/TRAINING.md, "The forward contract": the outputs training, evaluation and the report read, with
    their shapes, and none changed by padded frames (the valid frames come first, the mask after them)."""
    patches_read = "use_patches" in METHODS[method].options
    dims = {"F": FR, "D": D, "C": C, "S": steps, "P": P if patches_read else 0}
    cfg = HeadConfig(method=method, use_patches=patches_read or None, **SMALL)
    model = build_model(cfg, text_bank(steps), dims, multilabel=False).eval()
    features, mask = inputs()
    assert (mask.int().diff(dim=1) <= 0).all()  # the padding rule: valid frames, then padding
    patches = torch.randn(B, FR, P, D, generator=torch.Generator().manual_seed(1)) if patches_read else None
    padded = features.clone()
    padded[~mask] = 1000.0
    padded_patches = None if patches is None else torch.where(mask[..., None, None], patches, 1000.0)
    with torch.no_grad():
        out, again = model(features, mask, patches), model(padded, mask, padded_patches)
    assert out["logits"].shape == (B, C) and torch.isfinite(out["logits"]).all()
    assert out["representation"].shape[0] == B and out["representation"].dim() == 2  # the leakage probe reads it
    for key in out:  # padded frames are never read
        torch.testing.assert_close(out[key], again[key], msg=lambda m: f"{method} {key!r}: {m}")
    S_ = steps or C  # the class texts stand in for missing step texts
    if "step_logits" in out:
        assert out["step_logits"].shape == (B, S_)
    if "step_attention" in out:
        attention = out["step_attention"]
        assert attention.shape == (B, S_, FR) and (attention >= 0).all()
        assert (attention.permute(0, 2, 1)[~mask] == 0).all()  # nothing on padding
        torch.testing.assert_close(attention.sum(-1), torch.ones(B, S_))
    if "spatial_attention" in out:
        assert out["spatial_attention"].shape == (B, S_, FR, P) and (out["spatial_attention"] >= 0).all()
    if "debiased_text" in out:
        assert out["debiased_text"].shape == (S_, D)
    if "frame_step_logits" in out:  # the frame-level step metrics (head/metrics/frame_steps.py) read it
        assert out["frame_step_logits"].shape == (B, FR, S_) and torch.isfinite(out["frame_step_logits"]).all()
    assert ("video_summary" in out) >= hasattr(model, "refresh_memory")  # the memory refresh reads it
    if "video_summary" in out:
        assert out["video_summary"].shape[0] == B


def recording_config(**values) -> tuple[HeadConfig, set[str]]:
    """A HeadConfig that records which fields are read (outside its own check())."""
    names, read = {f.name for f in dataclasses.fields(HeadConfig)}, set()

    class Recording(HeadConfig):
        def __getattribute__(self, name):
            if name in names and not object.__getattribute__(self, "__dict__").get("_checking"):
                read.add(name)
            return object.__getattribute__(self, name)

        def check(self):
            self.__dict__["_checking"] = True
            try:
                return super().check()
            finally:
                self.__dict__["_checking"] = False

    return Recording(**values), read


@pytest.mark.parametrize("method", METHODS)
def test_reads_only_the_options_its_entry_lists(method):
    """Building and running a head reads the recipe and its entry's options, nothing else: the option checks
    and the docs' method table trust that list."""
    cfg, read = recording_config(method=method, **SMALL)
    dims = {"F": FR, "D": D, "C": C, "S": S, "P": P}
    model = build_model(cfg, text_bank(S), dims, multilabel=False)
    features, mask = inputs()
    if hasattr(model, "fit_dictionaries"):
        model.fit_dictionaries(features.numpy(), mask.numpy())
    patches = torch.randn(B, FR, P, D) if "use_patches" in METHODS[method].options else None
    model(features, mask, patches)
    model.eval()(features, mask, patches)
    assert read, "the recording config saw no read at all"
    assert not read - set(RECIPE) - set(METHODS[method].options), sorted(read - set(RECIPE))


def test_every_option_is_the_recipe_or_read_by_a_method():
    fields = {f.name for f in dataclasses.fields(HeadConfig)}
    read = set(RECIPE).union(*(entry.options for entry in METHODS.values()))
    assert fields <= read, sorted(fields - read)


# One impossible value per option that HeadConfig.check() checks for the methods that read it.
IMPOSSIBLE = {"heads": 0, "dictionary_size": 0, "sta_layers": -1, "width": -1, "init_temperature": 0.0,
              "dropout": 1.5, "grounding_loss": -1.0, "bias_estimator": "bogus", "bias_source": "bogus",
              "frontdoor_cross": "bogus", "mediator": "bogus", "classifier": "bogus"}


@pytest.mark.parametrize("method", METHODS)
def test_option_checks_apply_only_where_the_option_is_read(method):
    reads = set(METHODS[method].options)
    for name, value in IMPOSSIBLE.items():
        cfg = HeadConfig(method=method, **{name: value})
        if name in reads:
            with pytest.raises(CmdclError, match=f"--{name.replace('_', '-')}"):
                cfg.check()
        else:
            cfg.check()  # an option the head never reads cannot make its run fail
    divisible = HeadConfig(method=method, width=10, heads=3, sta_layers=1)
    if {"width", "heads", "sta_layers"} <= reads:
        with pytest.raises(CmdclError, match="--width 10 is not divisible by --heads 3"):
            divisible.check()
    else:
        divisible.check()


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
