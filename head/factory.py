"""One place that turns (HeadConfig, label texts, feature dims) into a head module."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import TextBank
from cmdcl.head.config import CHOICES, HeadConfig


def text_tensors(text: TextBank) -> tuple[torch.Tensor, torch.Tensor]:
    """(class_text (C, D), step_text (S, D)) as float32 tensors.

    Without atomic-action texts (S = 0) the class texts stand in for them: when the labels are the
    atomic actions themselves (Charades), the per-action scores are the logits (method.md §5).
    """
    class_text = torch.from_numpy(np.asarray(text.class_embeddings, np.float32))
    step_text = torch.from_numpy(np.asarray(text.step_embeddings, np.float32))
    if step_text.numel() == 0:
        step_text = class_text  # the same tensor: CMDCLHead then scores the classes directly
    return class_text, step_text


def build_model(cfg: HeadConfig, text: TextBank, dims: dict, multilabel: bool) -> nn.Module:
    """The head named by `cfg.method`.

    dims: {"F": frames the model sees (after --frames), "D": embedding size, "C": classes, "S": steps,
    "P": patches per frame (0 unless --use-patches)}.
    """
    class_text, step_text = text_tensors(text)
    if class_text.shape[1] != dims["D"]:
        raise CmdclError(f"label text embeddings are {class_text.shape[1]}-d but the features are {dims['D']}-d.")
    method = cfg.method
    if method == "cmdcl":
        from cmdcl.head.cmdcl_model import CMDCLHead  # imported lazily: written alongside, heavier

        return CMDCLHead(cfg, step_text, class_text, frames=dims["F"],
                         patches_per_frame=dims.get("P", 0) if cfg.use_patches is not False else 0, multilabel=multilabel)
    if method == "linear":
        from cmdcl.head.baselines import LinearProbeHead

        return LinearProbeHead(dims["D"], class_text.shape[0], dropout=cfg.dropout)
    if method == "transformer":
        from cmdcl.head.baselines import TemporalTransformerHead

        return TemporalTransformerHead(cfg, class_text, frames=dims["F"])
    if method == "zeroshot":
        from cmdcl.head.baselines import ZeroShotHead

        return ZeroShotHead(class_text, step_text if len(text.step_names) else None)
    raise CmdclError(f"--method {method!r} is not one of {', '.join(CHOICES['method'])}.")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
