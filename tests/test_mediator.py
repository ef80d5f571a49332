"""The learned patch mediator and the switches added with it (head/model/mediator.py, docs/METHOD.md, "The
learned patch mediator").

Each test would fail if its switch did nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cmdcl.head.model.cmdcl_model import CMDCLHead
from cmdcl.head.model.config import LEGACY, HeadConfig
from cmdcl.head.training.grounding_loss import grounding_loss, patch_grounding_loss
from cmdcl.head.model.mediator import LearnedMediator, static_split
from cmdcl.head.model.visual import VideoEncoder

from test_head_modules import C, FRAMES, P, D, S, batch, unit


def head(**options) -> CMDCLHead:
    cfg = HeadConfig(sta_layers=options.pop("sta_layers", 1), dropout=0.0, dictionary_size=4, **options)
    model = CMDCLHead(cfg, unit(S, D, seed=10), unit(C, D, seed=11), FRAMES, P, False)
    train = unit(20, FRAMES, D, seed=5).numpy()
    model.fit_dictionaries(train, np.ones((20, FRAMES), bool))
    return model.eval()


def test_defaults_are_the_learned_patch_mediator():
    model = head()
    assert model.use_patches and isinstance(model.mediator, LearnedMediator)  # auto: a grid was given
    assert model.dictionaries_fitted
    # cheap by design: the deep stack never attends over space (patches are mediated before it)
    assert all(block.spatial is None for block in model.sta.blocks)
    assert not model.encoder.frame_context
    features, mask, patches = batch()
    out = model(features, mask, patches)
    spatial = out["spatial_attention"]
    assert spatial.shape == (3, S, FRAMES, P)
    assert torch.allclose(spatial[0].sum(-1), torch.ones(S, FRAMES), atol=1e-5)
    assert torch.allclose(spatial[1, :, :5].sum(-1), torch.ones(S, 5), atol=1e-5)
    assert spatial[1, :, 5:].abs().max() == 0 and out["step_attention"][1, :, 5:].abs().max() == 0
    assert out["representation"].shape == (3, S * D)


def test_patch_tokens_without_frame_context_ignore_the_frame_embedding():
    features, _, patches = batch()
    other = unit(3, FRAMES, D, seed=99)
    torch.manual_seed(0)
    without = VideoEncoder(D, D, FRAMES, P, frame_context=False)
    torch.manual_seed(0)
    with_context = VideoEncoder(D, D, FRAMES, P, frame_context=True)
    assert torch.equal(without(features, patches), without(other, patches))
    assert not torch.allclose(with_context(features, patches), with_context(other, patches))
    assert not torch.allclose(without(features, patches), with_context(features, patches))
    # patch_tokens (the learned mediator's path) is the frame-context-free token
    assert torch.allclose(without.patch_tokens(patches), without(features, patches), atol=1e-6)


def test_spatial_attention_uses_learned_projections():
    features, mask, patches = batch()
    model = head()
    before = model(features, mask, patches)["spatial_attention"]
    with torch.no_grad():
        model.mediator.spatial_query.weight.mul_(-3.0)
    after = model(features, mask, patches)["spatial_attention"]
    assert not torch.allclose(before, after, atol=1e-4)
    loss = model(features, mask, patches)["logits"].sum()
    loss.backward()
    assert model.mediator.spatial_key.weight.grad.abs().sum() > 0
    assert model.mediator.temporal_query.weight.grad.abs().sum() > 0


def test_sample_queried_cross_term_changes_with_the_sample():
    mediator = LearnedMediator(D, D, cross="sample", memory_size=4)
    mediator.set_memory(unit(4, D, seed=3), torch.tensor([0.4, 0.3, 0.2, 0.1]))
    m = unit(2, S, D, seed=4) * 3
    cross = mediator.sample_cross_term(m)
    assert cross.shape == (2, S, D)
    assert not torch.allclose(cross[0], cross[1], atol=1e-4)
    # the priors weigh the prototypes: a zero prior removes one
    mediator.set_memory(unit(4, D, seed=3), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(mediator.sample_cross_term(m), unit(4, D, seed=3)[0].expand(2, S, D), atol=1e-5)
    # the text-queried variant gives every sample the same term
    text_queried = head(frontdoor_cross="dictionary").mediator
    t = unit(S, D, seed=6)
    assert torch.allclose(text_queried.cross_term(t.expand(2, S, D))[0], text_queried.cross_term(t.expand(2, S, D))[1])


def test_prior_back_door_text_does_not_depend_on_the_video():
    features, mask, patches = batch()
    other = unit(3, FRAMES, D, seed=42)
    prior = head(bias_source="prior")
    assert bool(prior.tci.fitted) and prior.tci.priors.sum() > 0.99
    t1 = prior(features, mask, patches)["debiased_text"]
    t2 = prior(other, mask, patches)["debiased_text"]
    assert t1.shape == (S, D) and torch.equal(t1, t2)
    assert not torch.allclose(t1, prior.tci.text)  # the adjustment does something
    video = head(bias_source="video")
    assert not torch.allclose(video.tci(features, mask), video.tci(other, mask))


@pytest.mark.parametrize("patched", [True, False])
def test_static_split_makes_the_mediator_invariant_to_a_constant_per_video(patched):
    features, mask, patches = batch()
    shift = unit(3, 1, D, seed=7)  # one context vector per video, the same in every frame and patch
    moved = (features + shift, patches + shift[:, :, None, :]) if patched else (features + shift, None)
    options = dict(use_tci=False, use_patches=patched)
    split = head(static_split=True, **options)
    kept = head(static_split=False, **options)
    given = patches if patched else None
    for model, invariant in ((split, True), (kept, False)):
        before = model(features, mask, given)["step_logits"]
        after = model(moved[0], mask, moved[1])["step_logits"]
        assert torch.allclose(before, after, atol=1e-4) == invariant


def test_static_split_is_per_patch_position_and_zero_on_padding():
    features, mask, patches = batch()
    out = static_split(patches, mask)
    valid = mask[..., None, None].float()
    assert torch.allclose((out * valid).sum(1), torch.zeros(3, P, D), atol=1e-5)
    assert out[1, 5:].abs().max() == 0


def test_grounding_loss_rewards_attention_inside_the_segment():
    frame_step = torch.full((1, FRAMES), -1)
    frame_step[0, 2:4] = 1  # step 1 happens on frames 2, 3
    uniform = torch.full((1, S, FRAMES), 1.0 / FRAMES)
    focused = uniform.clone()
    focused[0, 1] = 0
    focused[0, 1, 2:4] = 0.5
    assert grounding_loss(focused, frame_step) < grounding_loss(uniform, frame_step)
    assert float(grounding_loss(focused, frame_step)) == pytest.approx(0.0, abs=1e-6)
    assert float(grounding_loss(uniform, torch.full((1, FRAMES), -1))) == 0.0


def test_patch_grounding_loss_rewards_attention_on_the_steps_object_not_on_a_prop():
    """Frames 0-3 show step 1's object in patch 0, frames 4-7 step 2's; patch 1 holds a prop that moves
    (a different vector each frame) but is the same whatever the step: attending to it cannot tell the steps
    apart, attending to the object can."""
    model = head(patch_grounding=1.0)
    text = model.patch_probe.weight.detach()
    patches = torch.zeros(1, FRAMES, P, D)
    frame_step = torch.full((1, FRAMES), -1)
    frame_step[0, :4], frame_step[0, 4:8] = 1, 2
    patches[0, :4, 0], patches[0, 4:8, 0] = text[1], text[2]
    patches[0, :, 1] = unit(FRAMES, D, seed=3)  # the prop
    mask = torch.ones(1, FRAMES, dtype=torch.bool)

    def loss_of(patch: int) -> float:
        spatial = torch.zeros(1, S, FRAMES, P)
        spatial[..., patch] = 1.0
        return float(patch_grounding_loss(model, spatial, patches, mask, frame_step).detach())

    assert loss_of(0) < 0.1 and loss_of(1) > 0.6  # the prop's patch: about log 2 (two steps)
    assert loss_of(0) < float(patch_grounding_loss(model, torch.full((1, S, FRAMES, P), 1 / P), patches, mask,
                                                   frame_step).detach())  # focus beats uniform
    assert float(patch_grounding_loss(model, torch.full((1, S, FRAMES, P), 1 / P), patches, mask,
                                      torch.full((1, FRAMES), -1))) == 0.0  # no segment: no loss
    assert head().patch_probe is None  # off: no probe parameters
    every = head(patch_grounding=1.0, patch_contrast="all")
    every.patch_probe.load_state_dict(model.patch_probe.state_dict())
    spatial = torch.zeros(1, S, FRAMES, P)
    spatial[..., 1] = 1.0
    assert float(patch_grounding_loss(every, spatial, patches, mask, frame_step).detach()) > loss_of(1)  # S steps


def test_patch_grounding_changes_training_and_old_configs_leave_it_off(tmp_path):
    from head_fixtures import order_world

    from cmdcl.head.model.checkpoint import load_checkpoint
    from cmdcl.head.training.train import train

    world = order_world(tmp_path / "w.h5", train_per_class=4, test_per_class=1, grid=2)
    weights, logs = {}, {}
    for weight in (0.0, 5.0):
        lines: list[str] = []
        cfg = HeadConfig(epochs=1, sta_layers=1, patch_grounding=weight, batch_size=8)
        train(world, tmp_path / f"p{weight}", cfg, resume="never", progress=False, log=lines.append)
        logs[weight] = "\n".join(lines)
        weights[weight] = load_checkpoint(tmp_path / f"p{weight}" / "last.pt").model
    assert "patch grounding 5.0" in logs[5.0] and "patch_probe.weight" in weights[5.0]
    assert "patch_probe.weight" not in weights[0.0]
    key = "mediator.spatial_query.weight"
    assert not torch.allclose(weights[0.0][key], weights[5.0][key])
    assert HeadConfig.from_dict({k: v for k, v in HeadConfig(patch_grounding=2.0).to_dict().items()
                                 if k != "patch_grounding"}).patch_grounding == 0.0  # saved before the option


def test_tci_debias_measures_and_lowers_the_texts_preference_for_a_context(tmp_path):
    from head_fixtures import order_world

    from cmdcl.head.model.checkpoint import load_checkpoint
    from cmdcl.head.metrics.evaluate import model_from_checkpoint
    from cmdcl.head.training.train import train

    model = head()
    prototypes = model.tci.prototypes
    centre = prototypes.mean(0)
    # a text orthogonal to every prototype prefers none of them; one equal to a prototype prefers it
    neutral = torch.linalg.svd(prototypes, full_matrices=True)[2][-1:]
    assert float(model.tci.context_spread(neutral)) < 1e-10
    assert float(model.tci.context_spread(prototypes[:1])) > 0.01
    assert float(head(bias_source="video").tci.context_spread(centre[None])) == 0.0  # no prototypes
    world = order_world(tmp_path / "w.h5", train_per_class=4, test_per_class=1, grid=2)
    spread = {}
    for weight in (0.0, 50.0):
        cfg = HeadConfig(epochs=1, sta_layers=1, tci_debias=weight, batch_size=8)
        train(world, tmp_path / f"d{weight}", cfg, resume="never", progress=False, log=lambda m: None)
        trained, _ = model_from_checkpoint(load_checkpoint(tmp_path / f"d{weight}" / "last.pt"))
        with torch.no_grad():
            text = trained.tci(torch.zeros(1, 1, trained.embed_dim), torch.ones(1, 1, dtype=torch.bool))
            spread[weight] = float(trained.tci.context_spread(text))
    assert spread[50.0] < spread[0.0]


def test_without_mediator_frames_the_mediator_reads_only_the_patches():
    features, mask, patches = batch()
    other = unit(3, FRAMES, D, seed=98)
    alone = head(mediator_frames=False, use_tci=False)
    assert torch.allclose(alone(features, mask, patches)["logits"], alone(other, mask, patches)["logits"], atol=1e-5)
    both = head(use_tci=False)
    assert not torch.allclose(both(features, mask, patches)["logits"], both(other, mask, patches)["logits"], atol=1e-5)


def test_old_configs_rebuild_the_old_head():
    old = HeadConfig.from_dict({"method": "cmdcl", "use_patches": True})  # saved before these options
    assert old.mediator == "cosine" and old.patch_frame_context and not old.static_split
    assert old.bias_source == LEGACY["bias_source"] and old.frontdoor_cross == LEGACY["frontdoor_cross"]
    model = CMDCLHead(HeadConfig.from_dict({**old.to_dict(), "sta_layers": 1, "dropout": 0.0}),
                      unit(S, D, seed=10), unit(C, D, seed=11), FRAMES, P, False)
    assert any(block.spatial is not None for block in model.sta.blocks)  # divided space/time as before
    assert HeadConfig.from_dict(HeadConfig().to_dict()) == HeadConfig()  # new configs round-trip


def test_folded_patch_scores_equal_the_explicit_token_attention():
    # The mediator never builds patch tokens or keys (head/model/mediator.py); check it against building them.
    features, mask, patches = batch()
    model = head(use_tci=False, static_split=False, frontdoor_cross="none")
    out = model(features, mask, patches)
    med, enc, text = model.mediator, model.encoder, model.frozen_text
    tokens = enc.patch_tokens(patches)  # (B, F, P, W): patch + spatial position + time
    logits = torch.einsum("sk,bfpk->bsfp", med.spatial_query(text), med.spatial_key(tokens))
    logits = logits * med.spatial_log_scale.exp()
    expected = logits.softmax(-1) * mask[:, None, :, None]
    assert torch.allclose(out["spatial_attention"], expected, atol=1e-5)
    frames = model.sta(enc.frame_tokens(features), mask)
    u = torch.einsum("bsfp,bfpw->bsfw", expected, tokens) + frames[:, None]
    temporal = torch.einsum("sk,bsfk->bsf", med.temporal_query(text), med.temporal_key(u))
    temporal = temporal * med.temporal_log_scale.exp()
    temporal = temporal.masked_fill(~mask[:, None, :], -1e4).softmax(-1) * mask[:, None, :]
    assert torch.allclose(out["step_attention"], temporal, atol=1e-5)


def test_grounding_loss_is_used_in_training_when_segments_exist(tmp_path):
    from head_fixtures import order_world

    from cmdcl.head.model.checkpoint import load_checkpoint
    from cmdcl.head.training.train import train

    world = order_world(tmp_path / "w.h5", train_per_class=4, test_per_class=1, grid=2)
    weights, logs = {}, {}
    for weight in (0.0, 5.0):
        lines: list[str] = []
        cfg = HeadConfig(epochs=1, sta_layers=1, grounding_loss=weight, batch_size=8)
        train(world, tmp_path / f"g{weight}", cfg, resume="never", progress=False, log=lines.append)
        logs[weight] = "\n".join(lines)
        weights[weight] = load_checkpoint(tmp_path / f"g{weight}" / "last.pt").model
    assert "segment losses on (grounding 5.0," in logs[5.0] and "segment losses on (grounding 0.0," in logs[0.0]
    assert "--use-patches unset (auto): patches on, P=4" in logs[5.0]  # auto: the file holds a 2x2 grid
    key = "mediator.temporal_query.weight"
    assert not torch.allclose(weights[0.0][key], weights[5.0][key])
