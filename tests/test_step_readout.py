"""The front door through the atomic actions (head/model/step_readout.py, the per-frame step loss in
head/training/grounding_loss.py, docs/METHOD.md "Through the atomic actions").

Each test would fail if its switch did nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cmdcl.head.model.cmdcl_model import CMDCLHead
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.training.grounding_loss import frame_step_loss, resolve_step_readout, segment_losses

from test_head_modules import C, FRAMES, P, D, S, batch, unit


def head(multilabel: bool = False, **options) -> CMDCLHead:
    cfg = HeadConfig(sta_layers=options.pop("sta_layers", 1), dropout=0.0, dictionary_size=4, **options)
    model = CMDCLHead(cfg, unit(S, D, seed=10), unit(C, D, seed=11), FRAMES, P, multilabel)
    model.fit_dictionaries(unit(20, FRAMES, D, seed=5).numpy(), np.ones((20, FRAMES), bool))
    return model.eval()


def test_the_read_out_gives_the_class_from_the_frame_step_evidence_alone():
    features, mask, patches = batch()
    model = head(step_readout="gru")
    out = model(features, mask, patches)
    assert out["frame_step_logits"].shape == (3, FRAMES, S)
    assert out["logits"].shape == (3, C) and model.class_map is None
    assert out["representation"].shape == (3, 2 * model.cfg.readout_hidden)
    # the logits are a function of the evidence only: the same evidence gives the same class scores
    again, _ = model.readout(out["frame_step_logits"], mask)
    assert torch.allclose(again, out["logits"], atol=1e-6)
    # off: today's classifier s W_cls, no read-out
    old = head(step_readout="none")
    assert old.readout is None and old.class_map is not None
    assert old(features, mask, patches)["representation"].shape == (3, S * D)


def test_padded_frames_do_not_reach_the_read_out():
    features, mask, patches = batch()  # video 1 has 5 valid frames
    model = head(step_readout="gru")
    logits = torch.randn(3, FRAMES, S)
    moved = logits.clone()
    moved[1, 5:] = torch.randn(FRAMES - 5, S) * 10
    assert torch.allclose(model.readout(logits, mask)[0], model.readout(moved, mask)[0], atol=1e-6)
    moved[1, :5] = -10 * logits[1, :5]  # the valid frames do
    assert (model.readout(logits, mask)[0] - model.readout(moved, mask)[0])[1].abs().max() > 1e-3


@pytest.mark.parametrize("detach", [True, False])
def test_the_stop_gradient_keeps_the_activity_loss_off_the_step_evidence(detach):
    features, mask, patches = batch()
    model = head(step_readout="gru", readout_detach=detach).train()
    model(features, mask, patches)["logits"].sum().backward()
    grad = model.frame_evidence.proj.weight.grad
    assert (grad is None or float(grad.abs().sum()) == 0.0) == detach
    assert float(model.readout.gru.weight_ih_l0.grad.abs().sum()) > 0  # the read-out itself still learns


def test_hard_read_out_input_is_the_top_step():
    logits = torch.randn(2, FRAMES, S)
    soft = head(step_readout="gru").readout.posteriors(logits)
    hard = head(step_readout="gru", readout_input="hard").readout.posteriors(logits)
    assert torch.allclose(soft, logits.softmax(-1))
    assert set(hard.unique().tolist()) == {0.0, 1.0} and torch.equal(hard.argmax(-1), logits.argmax(-1))
    assert head(step_readout="gru", readout_hidden=7).readout.gru.hidden_size == 7


def test_frame_step_loss_contrasts_the_videos_steps_or_all_of_them():
    frame_step = torch.full((1, FRAMES), -1)
    frame_step[0, :3], frame_step[0, 3:6] = 1, 2
    mask = torch.ones(1, FRAMES, dtype=torch.bool)
    logits = torch.zeros(1, FRAMES, S)
    logits[0, :3, 1] = 2.0
    logits[0, :, 4] = 5.0  # a step not in the video scores highest everywhere
    video = float(frame_step_loss(logits, frame_step, mask, "video"))
    every = float(frame_step_loss(logits, frame_step, mask, "all"))
    assert video < every  # step 4 only competes under "all"
    # exactly: frames 0-2 choose 1 of {1, 2} with logits (2, 0); frames 3-5 choose 2 with (0, 0)
    expected = (3 * np.log1p(np.exp(-2.0)) + 3 * np.log(2.0)) / 6
    assert video == pytest.approx(expected, rel=1e-5)
    mask[0, 3:] = False  # padded frames are not scored
    alone = np.log((np.exp(2.0) + np.exp(5.0) + S - 2) / np.exp(2.0))  # frames 0-2 only, all steps compete
    assert float(frame_step_loss(logits, frame_step, mask, "all")) == pytest.approx(alone, rel=1e-5)
    assert float(frame_step_loss(logits, torch.full((1, FRAMES), -1), mask, "video")) == 0.0


def test_step_loss_weights_enter_the_segment_losses():
    features, mask, patches = batch()
    frame_step = torch.full((3, FRAMES), -1)
    frame_step[:, :4], frame_step[:, 4:] = 0, 3
    inputs = {"features": features, "frame_mask": mask, "patches": patches}

    def total(**options) -> float:
        cfg = HeadConfig(grounding_loss=0.0, **options)
        model = head(step_readout="gru")
        return float(segment_losses(cfg, model, model(features, mask, patches), inputs, frame_step).detach())

    assert total(step_loss=0.0) == 0.0
    base = total(step_loss=1.0, step_all_loss=0.0)
    assert base > 0 and total(step_loss=2.0, step_all_loss=0.0) == pytest.approx(2 * base, rel=1e-5)
    assert total(step_loss=1.0, step_all_loss=0.5) > base
    assert total(step_loss=1.0, step_contrast="all") != pytest.approx(base)


def test_auto_reads_the_steps_where_the_features_hold_segments_and_says_so_otherwise():
    lines: list[str] = []
    assert resolve_step_readout(HeadConfig(), np.zeros((2, FRAMES), np.int64), lines.append).step_readout == "gru"
    assert resolve_step_readout(HeadConfig(), None, lines.append).step_readout == "none"
    assert len(lines) == 2 and "no step segments" in lines[1]
    assert resolve_step_readout(HeadConfig(step_readout="none"), np.zeros((2, 1)), lines.append).step_readout == "none"
    # saved before these options: today's head, no evidence or read-out parameters
    old = HeadConfig.from_dict({k: v for k, v in HeadConfig().to_dict().items()
                                if k not in ("step_readout", "step_loss", "step_all_loss")})
    assert old.step_readout == "none" and old.step_loss == 0.0
    model = CMDCLHead(old, unit(S, D, seed=10), unit(C, D, seed=11), FRAMES, P, False)
    assert model.readout is None and model.frame_evidence is None
    assert "frame_step_logits" not in model(*batch())


def test_train_head_builds_the_read_out_from_segments_and_multilabel_still_trains(tmp_path):
    from head_fixtures import multilabel_world, order_world

    from cmdcl.head.model.checkpoint import load_checkpoint
    from cmdcl.head.training.train import train

    world = order_world(tmp_path / "w.h5", train_per_class=4, test_per_class=1)
    lines: list[str] = []
    train(world, tmp_path / "o", HeadConfig(epochs=1, sta_layers=1, batch_size=8), resume="never", progress=False,
          log=lines.append)
    saved = load_checkpoint(tmp_path / "o" / "last.pt")
    assert saved.config.step_readout == "gru" and "readout.gru.weight_ih_l0" in saved.model
    assert any("step segments found" in line for line in lines)
    multi = multilabel_world(tmp_path / "m.h5", videos={"train": 16, "test": 4})
    cfg = HeadConfig(epochs=1, sta_layers=1, batch_size=8, step_readout="gru")
    summary = train(multi, tmp_path / "m", cfg, resume="never", progress=False, log=lambda m: None)
    assert np.isfinite(summary["best_metric"])
    multi_saved = load_checkpoint(tmp_path / "m" / "last.pt")
    assert multi_saved.model_args.multilabel and "readout.classifier.weight" in multi_saved.model


def test_centring_removes_what_every_frame_of_the_video_shares():
    features, mask, patches = batch()
    centred = head(step_readout="gru", step_centre=True)(features, mask, patches)["frame_step_logits"]
    plain = head(step_readout="gru", step_centre=False)(features, mask, patches)["frame_step_logits"]
    assert torch.allclose(centred[1, :5].mean(0), torch.zeros(S), atol=1e-4)
    assert centred[1, 5:].abs().max() == 0  # padded frames
    assert plain[1, :5].mean(0).abs().max() > 1e-2
    assert torch.allclose(centred[0], plain[0] - plain[0].mean(0), atol=1e-4)
