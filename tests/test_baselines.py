import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import TextBank
from torch import nn

from cmdcl.head.model.baselines import LinearProbeHead, TemporalTransformerHead, TextScoredHead, ZeroShotHead
from cmdcl.head.model.visual import mean_over_valid_frames
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.model.factory import build_model
from cmdcl.head.model.registry import METHODS, MethodEntry
from cmdcl.head.training.train import param_groups, warmup_cosine

D, C, S, FR = 16, 3, 5, 6



def text_bank(seed=0) -> TextBank:
    rng = np.random.default_rng(seed)
    return TextBank(class_names=[f"c{i}" for i in range(C)],
                    class_embeddings=rng.standard_normal((C, D)).astype(np.float32),
                    step_names=[f"s{i}" for i in range(S)],
                    step_embeddings=rng.standard_normal((S, D)).astype(np.float32), templates=[])


def inputs(batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, FR, D, generator=g)
    mask = torch.ones(batch, FR, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, 1:] = False
    return features, mask


def test_masked_mean_ignores_padding_and_empty_rows():
    x = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = mean_over_valid_frames(x, mask)
    assert torch.equal(out[0], torch.tensor([1.0, 2.0]))  # mean of rows [0,1] and [2,3]
    assert torch.equal(out[1], torch.zeros(2))


def test_zeroshot_is_clip_cosine_times_100():
    text = text_bank()
    head = ZeroShotHead(torch.from_numpy(text.class_embeddings), torch.from_numpy(text.step_embeddings))
    features, mask = inputs()
    out = head(features, mask)
    frames = F.normalize(features, dim=-1)
    video = torch.stack([frames[i][mask[i]].mean(0) for i in range(len(frames))])
    expected = 100 * F.normalize(video, dim=-1) @ F.normalize(torch.from_numpy(text.class_embeddings), dim=-1).T
    torch.testing.assert_close(out["logits"], expected)
    assert out["step_logits"].shape == (4, S)
    assert sum(p.numel() for p in head.parameters()) == 0


# Every registered head's forward contract (padding, shapes): tests/test_head_contract.py.


def test_linear_probe_is_order_blind_and_transformer_is_not():
    features, _ = inputs()
    mask = torch.ones(4, FR, dtype=torch.bool)
    reversed_ = features.flip(1)
    linear = LinearProbeHead(D, C).eval()
    torch.testing.assert_close(linear(features, mask)["logits"], linear(reversed_, mask)["logits"])
    cfg = HeadConfig(method="transformer", sta_layers=1, dropout=0.0)
    transformer = TemporalTransformerHead(cfg, torch.from_numpy(text_bank().class_embeddings), FR).eval()
    with torch.no_grad():
        forward, backward = transformer(features, mask)["logits"], transformer(reversed_, mask)["logits"]
    assert not torch.allclose(forward, backward, atol=1e-4)


def test_transformer_classifier_is_frozen_and_temperature_learnable():
    cfg = HeadConfig(method="transformer", sta_layers=2, init_temperature=0.05)
    head = TemporalTransformerHead(cfg, torch.from_numpy(text_bank().class_embeddings), FR)
    names = dict(head.named_parameters())
    assert "class_text" not in names and "class_text" in dict(head.named_buffers())
    assert math.isclose(names["logit_scale"].exp().item(), 20.0, rel_tol=1e-5)
    without = TemporalTransformerHead(HeadConfig(method="transformer", sta_layers=0), torch.zeros(C, D) + 1, FR)
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in head.parameters())
    with pytest.raises(CmdclError, match="heads"):
        TemporalTransformerHead(HeadConfig(method="transformer", heads=3), torch.ones(C, D), FR)


class RecordingHead(nn.Module):
    """A head whose constructor is its builder (it takes (cfg, inputs)): it keeps what it was given."""

    def __init__(self, cfg: HeadConfig, inputs):
        super().__init__()
        self.cfg, self.inputs = cfg, inputs


def test_factory_builds_the_table_entry_and_refuses_unknown_methods(monkeypatch):
    dims = {"F": FR, "D": D, "C": C, "S": S, "P": 0}
    monkeypatch.setitem(METHODS, "probe", MethodEntry(f"{__name__}:RecordingHead", "a test entry"))
    head = build_model(HeadConfig(method="probe"), text_bank(), dims, False)
    assert isinstance(head, RecordingHead) and head.cfg.method == "probe"
    assert head.inputs.dims == dims and head.inputs.has_steps and head.inputs.step_text.shape == (S, D)
    with pytest.raises(CmdclError, match="--method 'svm' is not one of cmdcl, .*probe"):
        build_model(HeadConfig(method="svm"), text_bank(), dims, False)


def test_shared_text_classifier_scale_is_clamped_at_clip_100():
    head = TextScoredHead()
    head.init_text_classifier(torch.eye(3, D), torch.eye(2, D), init_temperature=0.001)
    out = head.text_logits(torch.eye(1, D))
    torch.testing.assert_close(out["logits"], torch.tensor([[100.0, 0.0, 0.0]]))
    assert out["step_logits"].shape == (1, 2) and dict(head.named_parameters()).keys() == {"logit_scale"}


def test_no_weight_decay_on_biases_norms_temperatures():
    cfg = HeadConfig(method="transformer", sta_layers=1)
    head = TemporalTransformerHead(cfg, torch.ones(C, D), FR)
    decay, no_decay = param_groups(head, 0.05)
    decayed = {id(p) for p in decay["params"]}
    for name, p in head.named_parameters():
        expected = p.ndim >= 2
        assert (id(p) in decayed) == expected, name
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_warmup_cosine_schedule():
    factor = warmup_cosine(4, 20)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0
    assert math.isclose(factor(12), 0.5)
    assert factor(20) == 0.0 and factor(25) == 0.0
