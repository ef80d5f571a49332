"""Label texts -> frozen CLIP text embeddings (the TextBank stored with every feature shard).

Each class or step name is put through every prompt template; the template embeddings of a name are
L2-normalised, averaged and re-normalised (CLIP's prompt ensembling). The default templates describe
what the datasets show: people doing activities in video frames, plus the bare name.

CLIP's text tower reads at most `context_length` (77) tokens and the tokenizer silently cuts longer
prompts (COIN step descriptions can be long). We count the tokens of every
prompt first, list the names that were cut in `TextBank.truncated` and log one warning line.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import TextBank

from .models import FrozenEncoder

DEFAULT_TEMPLATES = [
    "a video of a person {}.",
    "a photo of a person {}.",
    "{}.",
]

log = logging.getLogger(__name__)


def encode_label_texts(encoder: FrozenEncoder, class_names: list[str], step_names: list[str],
                       templates: list[str] | None = None, batch_size: int = 256) -> TextBank:
    templates = list(templates or DEFAULT_TEMPLATES)
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise CmdclError(f"text templates must contain exactly one '{{}}' for the name; got {bad}.")
    if batch_size <= 0:
        raise CmdclError(f"text batch_size must be positive, got {batch_size}.")

    names = list(dict.fromkeys([*class_names, *step_names]))  # each distinct name encoded once
    embeddings, truncated = _encode_names(encoder, names, templates, batch_size)
    if truncated:
        log.warning("%d label name(s) exceed CLIP's %d-token context in at least one prompt and were truncated: %s",
                    len(truncated), encoder.context_length, "; ".join(repr(n) for n in truncated))
    row = {name: i for i, name in enumerate(names)}

    def take(selected: list[str]) -> np.ndarray:
        if not selected:
            return np.zeros((0, encoder.embed_dim), np.float32)
        return embeddings[[row[n] for n in selected]]

    return TextBank(class_names=list(class_names), class_embeddings=take(list(class_names)),
                    step_names=list(step_names), step_embeddings=take(list(step_names)),
                    templates=templates, truncated=truncated)


def _encode_names(encoder: FrozenEncoder, names: list[str], templates: list[str],
                  batch_size: int) -> tuple[np.ndarray, list[str]]:
    """(N, D) float32 template-averaged embeddings of `names`, and the names whose prompts were cut."""
    if not names:
        return np.zeros((0, encoder.embed_dim), np.float32), []
    prompts = [template.format(name) for name in names for template in templates]
    counts = np.asarray(encoder.count_tokens(prompts)).reshape(len(names), len(templates))
    truncated = [name for name, c in zip(names, counts) if (c > encoder.context_length).any()]

    chunks = [encoder.encode_texts(prompts[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]
    per_prompt = torch.cat(chunks).view(len(names), len(templates), -1)  # already L2-normalised
    mean = torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)
    return mean.numpy().astype(np.float32), truncated
