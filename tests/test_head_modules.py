"""Unit tests of the CMDCL head modules (tiny sizes, CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmdcl.core.errors import CmdclError
from cmdcl.head.model.cmdcl_model import CMDCLHead
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.model.textual import TextualBackdoor, build_frame_dictionary, sinkhorn_plan
from cmdcl.head.model.visual import FrontdoorMediator, SpatioTemporalAttention, VideoEncoder

D, S, C, FRAMES, P = 32, 6, 3, 8, 4


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def batch(b: int = 3, seed: int = 1):
    features = unit(b, FRAMES, D, seed=seed)
    mask = torch.ones(b, FRAMES, dtype=torch.bool)
    mask[1, 5:] = False  # a short video, padded at the end
    patches = unit(b, FRAMES, P, D, seed=seed + 1)
    return features, mask, patches


def head(seed: int = 0, multilabel: bool = False, **options) -> CMDCLHead:
    # use_patches defaults to auto (on when a grid is given): these tests ask for patches explicitly.
    cfg = HeadConfig(sta_layers=options.pop("sta_layers", 1), dropout=options.pop("dropout", 0.0),
                     use_patches=options.pop("use_patches", False), dictionary_size=4, seed=seed, **options)
    return CMDCLHead(cfg, unit(S, D, seed=10), unit(C, D, seed=11), FRAMES, P, multilabel)


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ textual back-door

def test_sinkhorn_plan_marginals_match():
    log_affinity = torch.randn(2, 5, 7).log_softmax(-1)
    plan = sinkhorn_plan(log_affinity, iters=100, eps=0.5)
    assert torch.allclose(plan.sum(-1), torch.full((2, 5), 1 / 5), atol=1e-3)
    assert torch.allclose(plan.sum(-2), torch.full((2, 7), 1 / 7), atol=1e-3)


def test_sinkhorn_plan_respects_column_weights():
    weights = torch.tensor([1.0, 1.0, 0.0, 2.0])  # a removed column and an uneven one
    plan = sinkhorn_plan(torch.randn(3, 4).log_softmax(-1), iters=100, eps=0.5, col_weights=weights)
    assert torch.allclose(plan.sum(-2), weights / weights.sum(), atol=1e-3)
    assert torch.allclose(plan.sum(-1), torch.full((3,), 1 / 3), atol=1e-3)
    assert plan[:, 2].abs().max() == 0


def test_tci_shapes_per_source():
    features, mask, _ = batch()
    video = TextualBackdoor(unit(S, D), bias_source="video")
    assert video(features, mask).shape == (3, S, D)
    dictionary = TextualBackdoor(unit(S, D), bias_source="dictionary", dictionary_size=4)
    dictionary.set_dictionary(unit(4, D), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert dictionary(features, mask).shape == (S, D)
    assert torch.isclose(dictionary.priors.sum(), torch.tensor(1.0))


def test_one_hot_affinity_bias_is_the_aligned_frame():
    # Frames are orthonormal basis vectors; text i equals frame j = perm[i] and is orthogonal to the rest.
    frames = torch.eye(D)[:FRAMES].unsqueeze(0)
    perm = torch.tensor([3, 0, 7, 5, 1, 2])
    tci = TextualBackdoor(torch.eye(D)[perm], init_temperature=0.01)
    bias = tci.bias_proxy(frames, torch.ones(1, FRAMES, dtype=torch.bool))
    assert torch.allclose(bias[0], frames[0, perm], atol=1e-4)


@pytest.mark.parametrize("estimator", ["attention", "sinkhorn"])
def test_tci_padded_frames_get_zero_affinity(estimator):
    features, mask, _ = batch()
    tci = TextualBackdoor(unit(S, D), bias_estimator=estimator)
    affinity = tci.affinity(features, mask)
    assert affinity[1, :, 5:].abs().max() == 0
    assert torch.allclose(affinity.sum(-1), torch.ones(3, S), atol=1e-5)


def test_tci_gradients_reach_learnables_not_dictionary():
    features, mask, _ = batch()
    tci = TextualBackdoor(unit(S, D), bias_source="dictionary", dictionary_size=4)
    tci.set_dictionary(unit(4, D, seed=5), torch.ones(4))
    tci(features, mask).pow(2).sum().backward()
    for name in ("text", "log_scale", "approximator.weight"):
        assert tci.get_parameter(name).grad.abs().sum() > 0, name
    assert not tci.prototypes.requires_grad and tci.prototypes.grad is None


def test_tci_residual_switch_starts_near_the_clip_text():
    features, mask, _ = batch()
    text = unit(S, D)
    for residual in (True, False):
        out = TextualBackdoor(text, residual=residual)(features, mask)
        assert (out - text).norm(dim=-1).max() < 0.5  # near-identity approximator, not a random map


def test_build_frame_dictionary_priors_and_padding():
    frames = np.random.default_rng(0).normal(size=(200, D)).astype(np.float16)
    prototypes, priors = build_frame_dictionary(frames, k=5, seed=0)
    assert prototypes.shape == (5, D) and priors.shape == (5,)
    assert abs(priors.sum() - 1) < 1e-6 and (priors > 0).all()
    few, few_priors = build_frame_dictionary(frames[:3], k=5, seed=0)  # fewer rows than k
    assert few.shape == (5, D) and abs(few_priors.sum() - 1) < 1e-6 and (few_priors == 0).sum() == 2


# ------------------------------------------------------------------ visual front-door

def test_video_encoder_shapes_and_identity_start():
    features, _, patches = batch()
    encoder = VideoEncoder(D, 48, FRAMES, patches_per_frame=P)
    assert encoder(features).shape == (3, FRAMES, 48)
    assert encoder(features, patches).shape == (3, FRAMES, P, 48)
    assert encoder(features[:, :4]).shape == (3, 4, 48)  # fewer frames: the first positions
    with pytest.raises(ValueError, match=f"built for {FRAMES}"):
        encoder(torch.cat([features, features], dim=1))
    # in_proj / to_embedding start as inverse maps, so the head starts in CLIP space.
    assert torch.allclose(encoder.to_embedding(encoder.in_proj(features)), features, atol=1e-5)


def test_sta_shapes_and_padding_does_not_leak():
    features, mask, patches = batch()
    sta = SpatioTemporalAttention(D, heads=4, layers=2)
    out = sta(features, mask)
    assert out.shape == features.shape
    divided = SpatioTemporalAttention(D, heads=4, layers=2, divided=True)
    assert divided(patches, mask).shape == patches.shape
    assert param_count(divided) > param_count(sta)  # spatial attention only when dividing
    changed = features.clone()
    changed[1, 5:] = unit(3, D, seed=9)  # alter only padded frames of video 1
    assert torch.allclose(sta(changed, mask)[1, :5], out[1, :5], atol=1e-5)
    assert len(SpatioTemporalAttention(D, 4, 0).blocks) == 0


def test_mediator_attention_masks_and_shapes():
    features, mask, patches = batch()
    mediator = FrontdoorMediator(D, cross="dictionary", memory_size=4)
    mediator.set_memory(unit(4, D, seed=3))
    visual, attention, spatial = mediator(unit(S, D), features, mask)
    assert visual.shape == (3, S, D) and attention.shape == (3, S, FRAMES) and spatial is None
    assert attention[1, :, 5:].abs().max() == 0
    assert torch.allclose(attention.sum(-1), torch.ones(3, S), atol=1e-5)
    visual, attention, spatial = mediator(unit(3, S, D), patches, mask)
    assert visual.shape == (3, S, D) and spatial.shape == (3, S, FRAMES, P)
    valid = mask[:, None, :].expand(-1, S, -1)
    assert torch.allclose(spatial.sum(-1)[valid], torch.ones(int(valid.sum())), atol=1e-5)
    assert spatial[1, :, 5:].abs().max() == 0 and attention[1, :, 5:].abs().max() == 0


def test_mediator_gradients_reach_learnables_not_memory():
    features, mask, _ = batch()
    mediator = FrontdoorMediator(D, cross="dictionary", memory_size=4)
    mediator.set_memory(unit(4, D, seed=3))
    text = unit(S, D).requires_grad_()
    mediator(text, features.requires_grad_(), mask)[0].pow(2).sum().backward()
    for name in ("log_scale", "approximator.weight", "cross_query.weight"):
        assert mediator.get_parameter(name).grad.abs().sum() > 0, name
    assert text.grad.abs().sum() > 0 and features.grad.abs().sum() > 0
    assert mediator.memory.grad is None


def test_mediator_memory_kmeans_then_ema():
    mediator = FrontdoorMediator(D, memory_size=4)
    summaries = unit(20, D, seed=4)
    mediator.update_memory(summaries)  # empty memory: KMeans
    assert bool(mediator.fitted)
    before = mediator.memory.clone()
    target = before[0] * 3  # same direction as prototype 0, so all rows are assigned to it
    mediator.update_memory(target.expand(5, D), momentum=0.5)
    assert torch.allclose(mediator.memory[0], 0.5 * before[0] + 0.5 * target)
    assert torch.equal(mediator.memory[1:], before[1:])


# ------------------------------------------------------------------ the whole head

def test_head_outputs_and_padded_frames():
    features, mask, patches = batch()
    out = head()(features, mask)
    assert out["logits"].shape == (3, C) and out["step_logits"].shape == (3, S)
    assert out["step_attention"].shape == (3, S, FRAMES) and out["debiased_text"].shape == (S, D)
    assert out["video_summary"].shape == (3, D) and "spatial_attention" not in out
    assert out["step_attention"][1, :, 5:].abs().max() == 0
    out = head(use_patches=True)(features, mask, patches)
    spatial = out["spatial_attention"]
    assert spatial.shape == (3, S, FRAMES, P)
    assert torch.allclose(spatial[0].sum(-1), torch.ones(S, FRAMES), atol=1e-5)
    assert spatial[1, :, 5:].abs().max() == 0


def test_head_sees_the_frames_it_is_given():
    # --frames subsamples in FeatureData (tests/test_train.py); the head takes what it is given, no second pass.
    features, mask, _ = batch()
    attention = head(frames=4)(features, mask)["step_attention"]
    assert attention.shape == (3, S, FRAMES)
    assert torch.equal(attention, head()(features, mask)["step_attention"])  # cfg.frames does not act here
    assert torch.allclose(attention[0].sum(-1), torch.ones(S), atol=1e-5)


def test_head_gradients_and_frozen_text_without_tci():
    features, mask, _ = batch()
    model = head()
    model(features, mask)["logits"].logsumexp(-1).sum().backward()
    for name in ("tci.text", "tci.approximator.weight", "mediator.approximator.weight", "encoder.in_proj.weight",
                 "encoder.temporal_position", "sta.blocks.0.temporal.attn.in_proj_weight", "class_map.weight",
                 "step_evidence.log_scale"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    frozen = head(use_tci=False)
    assert frozen.tci is None and not frozen.frozen_text.requires_grad
    assert not any(p is frozen.frozen_text for p in frozen.parameters())
    frozen(features, mask)["logits"].sum().backward()
    assert frozen.frozen_text.grad is None


def test_switches_change_parameter_counts():
    base = param_count(head())
    for options in (dict(use_tci=False), dict(use_vci=False), dict(sta_layers=0), dict(sta_layers=2),
                    dict(frontdoor_cross="none"), dict(use_tci=False, use_vci=False)):
        assert param_count(head(**options)) != base, options


def test_no_vci_pools_uniformly():
    features, mask, _ = batch()
    attention = head(use_vci=False)(features, mask)["step_attention"]
    assert torch.allclose(attention[1, :, :5], torch.full((S, 5), 0.2))
    assert attention[1, :, 5:].abs().max() == 0


def test_fit_dictionaries_sets_buffers_in_state_dict():
    features, mask, _ = batch(b=6)
    features[1, 5:] = 50.0  # padded frames hold garbage that must not enter the dictionaries
    model = head(bias_source="dictionary")
    assert not model.dictionaries_fitted
    model.fit_dictionaries(features.half().numpy(), mask.numpy())
    assert model.dictionaries_fitted
    state = model.state_dict()
    assert state["tci.prototypes"].shape == (4, D) and state["mediator.memory"].shape == (4, D)
    assert torch.isclose(state["tci.priors"].sum(), torch.tensor(1.0))
    # Prototypes are means of valid (unit-norm) frames / video means: norm <= 1 unless padding leaked in.
    assert state["tci.prototypes"].norm(dim=-1).max() <= 1 + 1e-3
    assert state["mediator.memory"].norm(dim=-1).max() <= 1 + 1e-3
    restored = head(bias_source="dictionary")
    restored.load_state_dict(state)
    assert restored.dictionaries_fitted
    assert torch.equal(restored(features, mask)["logits"], model(features, mask)["logits"])


def test_classes_as_steps_and_missing_step_vocabulary():
    features, mask, _ = batch()
    steps = unit(S, D, seed=10)
    multilabel = CMDCLHead(HeadConfig(sta_layers=0), steps, steps, FRAMES, 0, multilabel=True)
    out = multilabel(features, mask)
    assert multilabel.class_map is None and torch.equal(out["logits"], out["step_logits"])
    no_steps = CMDCLHead(HeadConfig(sta_layers=0), torch.zeros(0, D), unit(C, D), FRAMES, 0, multilabel=False)
    assert no_steps(features, mask)["step_logits"].shape == (3, C)


def test_attention_classifier_and_bad_options():
    features, mask, _ = batch()
    assert head(classifier="attention")(features, mask)["logits"].shape == (3, C)
    with pytest.raises(CmdclError):
        head(bias_estimator="ot")
    with pytest.raises(CmdclError):
        CMDCLHead(HeadConfig(use_patches=True), unit(S, D), unit(C, D), FRAMES, 0, False)


def test_head_overfits_a_tiny_batch():
    torch.manual_seed(0)
    features, mask, _ = batch(b=6, seed=7)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    model = head(bias_estimator="sinkhorn")
    model.fit_dictionaries(features.numpy(), mask.numpy())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = F.cross_entropy(model(features, mask)["logits"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_same_seed_same_outputs():
    features, mask, _ = batch()
    state = torch.random.get_rng_state()
    a, b, c = head(seed=3, dropout=0.1), head(seed=3, dropout=0.1), head(seed=4, dropout=0.1)
    a.eval(), b.eval(), c.eval()
    assert torch.equal(a(features, mask)["logits"], b(features, mask)["logits"])
    assert not torch.equal(a(features, mask)["logits"], c(features, mask)["logits"])
    assert torch.equal(torch.random.get_rng_state(), state)  # construction left the global RNG alone
    a.train(), b.train()
    torch.manual_seed(0)
    first = a(features, mask)["logits"]
    torch.manual_seed(0)
    assert torch.equal(first, b(features, mask)["logits"])
