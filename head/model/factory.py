"""One place that turns (HeadConfig, label texts, feature dims) into a head module: `build_model` looks the
method up in head/model/registry.py (`METHODS`) and calls its builder with a `HeadInputs`.

The builders of the built-in heads are here; a new head's builder may be its class itself, when its
constructor takes (cfg, inputs) (docs/TRAINING.md, "Adding a head").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import TextBank
from .config import HeadConfig

from .registry import method_entry


@dataclass(frozen=True)
class HeadInputs:
    """What a builder gets besides the HeadConfig."""
    class_text: torch.Tensor  # (C, D) float32 CLIP embeddings of the class names
    step_text: torch.Tensor  # (S, D) of the atomic actions; the very `class_text` tensor when none are named
    has_steps: bool  # the features name atomic actions (S > 0): "step_logits" is then scored and trained
    dims: dict  # {"F": frames, "D": embedding size, "C": classes, "S": steps, "P": patches per frame}
    multilabel: bool  # the labels are multi-hot (BCE) rather than one class per video (CE)


def text_tensors(text: TextBank) -> tuple[torch.Tensor, torch.Tensor]:
    """(class_text (C, D), step_text (S, D)) as float32 tensors.

    Without atomic-action texts (S = 0) the class texts stand in for them: when the labels are the
    atomic actions themselves (Charades), the per-action scores are the logits (docs/METHOD.md, Inputs).
    """
    class_text = torch.from_numpy(np.asarray(text.class_embeddings, np.float32))
    step_text = torch.from_numpy(np.asarray(text.step_embeddings, np.float32))
    if step_text.numel() == 0:
        step_text = class_text  # the same tensor: CMDCLHead then scores the classes directly
    return class_text, step_text


def build_model(cfg: HeadConfig, text: TextBank, dims: dict, multilabel: bool) -> nn.Module:
    """The head named by `cfg.method` (an entry of head/model/registry.py's METHODS).

    dims: {"F": frames the model sees (after --frames), "D": embedding size, "C": classes, "S": steps,
    "P": patches per frame (0 unless --use-patches)}.
    """
    build = method_entry(cfg.method).build_function()
    class_text, step_text = text_tensors(text)
    if class_text.shape[1] != dims["D"]:
        raise CmdclError(f"label text embeddings are {class_text.shape[1]}-d but the features are {dims['D']}-d.")
    inputs = HeadInputs(class_text, step_text, has_steps=len(text.step_names) > 0, dims=dict(dims),
                        multilabel=multilabel)
    return build(cfg, inputs)


def build_cmdcl(cfg: HeadConfig, inputs: HeadInputs) -> nn.Module:
    from .cmdcl_model import CMDCLHead  # imported lazily: the heaviest head

    # use_patches None (auto) takes the file's patches; train-head resolves it and says so (head/training/train.py)
    patches = inputs.dims.get("P", 0) if cfg.use_patches is not False else 0
    return CMDCLHead(cfg, inputs.step_text, inputs.class_text, frames=inputs.dims["F"], patches_per_frame=patches,
                     multilabel=inputs.multilabel)


def build_linear(cfg: HeadConfig, inputs: HeadInputs) -> nn.Module:
    from .baselines import LinearProbeHead

    return LinearProbeHead(inputs.dims["D"], inputs.class_text.shape[0], dropout=cfg.dropout)


def build_transformer(cfg: HeadConfig, inputs: HeadInputs) -> nn.Module:
    from .baselines import TemporalTransformerHead

    return TemporalTransformerHead(cfg, inputs.class_text, frames=inputs.dims["F"])


def build_zeroshot(cfg: HeadConfig, inputs: HeadInputs) -> nn.Module:
    from .baselines import ZeroShotHead

    return ZeroShotHead(inputs.class_text, inputs.step_text if inputs.has_steps else None)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
