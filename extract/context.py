"""Context vocabularies -> the frozen text features stored in a feature file's /context group, from which
per-video zero-shot pseudo context labels are read (head/metrics/pseudo_labels.py).

A vocabulary spec is a built-in name or a file:
- `places365`: the 365 Places365 scene categories (factor `scene`; extract/vocabularies/places365.txt);
- `appearance`: lighting and clothing colour as prompt lists (extract/vocabularies/appearance.txt);
- `synthetic`: the synthetic world's own factors in its captions' words (needs the world's folder);
- a file: `factor: text` lines, or bare lines (the factor is the file's name without suffix).
A text holding "{}" is a prompt template of its factor, any other text one of its values; a factor without
templates uses each value as its whole prompt. `#` starts a comment line. docs/FORMAT.md "Context vocabularies".

At extraction (`cmdcl extract --context-vocab places365,FILE`) or afterwards on a finished file
(`cmdcl context-labels FEATS --vocab ...`, `add_context_labels`): the same open_clip model as the file's
provenance encodes every prompt, templates averaged as for the label texts (extract/text.py).
"""
from __future__ import annotations

import importlib.resources
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import ContextVocab

BUILTIN = {"places365": "places365.txt", "appearance": "appearance.txt"}
SYNTHETIC = "synthetic"
FILE_FACTOR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:\s*(.+)$")  # "factor: text"; no spaces in the name

log = logging.getLogger(__name__)


@dataclass
class VocabSpec:
    """One factor of a parsed vocabulary, before encoding."""

    factor: str
    names: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    source: str = ""


def parse_vocabulary(text: str, default_factor: str, source: str) -> list[VocabSpec]:
    """The factors of one vocabulary file's text (see the module docstring), in order of first appearance."""
    factors: dict[str, VocabSpec] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = FILE_FACTOR.match(line)
        factor, value = (match.group(1), match.group(2).strip()) if match else (default_factor, line)
        spec = factors.setdefault(factor, VocabSpec(factor, source=source))
        if "{}" in value:
            if value.count("{}") != 1:
                raise CmdclError(f"{source} line {number}: template {value!r} must hold exactly one '{{}}'.")
            spec.templates.append(value)
        elif value in spec.names:
            raise CmdclError(f"{source} line {number}: {factor!r} lists {value!r} twice.",
                             fix="keep one line per value (a pseudo label is the index of its value).")
        else:
            spec.names.append(value)
    if not factors:
        raise CmdclError(f"{source}: the context vocabulary lists no values.")
    for spec in factors.values():
        if len(spec.names) < 2:
            raise CmdclError(f"{source}: factor {spec.factor!r} has {len(spec.names)} value(s); zero-shot labels "
                             "need at least 2.")
        spec.templates = spec.templates or ["{}"]
    return list(factors.values())


def read_vocabularies(specs: Sequence[str], world_root: str | Path | None = None) -> list[VocabSpec]:
    """Parse every spec (built-in name, `synthetic`, or file); a factor may be defined by one spec only."""
    out: list[VocabSpec] = []
    for spec in specs:
        spec = str(spec).strip()
        if spec in BUILTIN:
            resource = importlib.resources.files("cmdcl.extract.vocabularies") / BUILTIN[spec]
            parsed = parse_vocabulary(resource.read_text(encoding="utf-8"), spec, spec)
        elif spec == SYNTHETIC:
            from .datasets.synthetic_context import vocabulary_text

            if not world_root:
                raise CmdclError("context vocabulary 'synthetic' needs the synthetic world's folder.",
                                 fix="extract with --dataset synthetic, or pass a vocabulary file.")
            parsed = parse_vocabulary(vocabulary_text(world_root), SYNTHETIC, SYNTHETIC)
        else:
            path = Path(spec).expanduser()
            if not path.is_file():
                raise CmdclError(f"context vocabulary {spec!r}: neither a built-in ({', '.join([*BUILTIN, SYNTHETIC])}) "
                                 "nor a file.", fix="pass a built-in name or an existing vocabulary file.")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CmdclError(f"{path}: cannot read the context vocabulary ({type(exc).__name__}).") from None
            parsed = parse_vocabulary(text, path.stem, str(path))
        for vocab in parsed:
            if any(v.factor == vocab.factor for v in out):
                raise CmdclError(f"context factor {vocab.factor!r} is defined by two vocabularies ({spec} and an "
                                 "earlier one).", fix="rename the factor in one of the files.")
            out.append(vocab)
    return out


def encode_context(encoder: Any, vocabularies: Sequence[VocabSpec], batch_size: int = 256) -> dict[str, ContextVocab]:
    """factor -> its values' text features under `encoder` (a FrozenEncoder), templates averaged."""
    from .text import _encode_names

    out = {}
    for vocab in vocabularies:
        embeddings, truncated = _encode_names(encoder, vocab.names, vocab.templates, batch_size)
        if truncated:
            log.warning("context factor %s: %d value(s) exceed CLIP's %d-token context and were truncated",
                        vocab.factor, len(truncated), encoder.context_length)
        out[vocab.factor] = ContextVocab(vocab.factor, list(vocab.names), list(vocab.templates), embeddings,
                                         source=vocab.source, truncated=truncated)
    return out


def add_context_labels(features: str | Path | Sequence[str | Path], specs: Sequence[str], pretrained: str | None = None,
                       cache_dir: str | None = None, device: str = "auto", replace: bool = False) -> dict[str, Any]:
    """Store the vocabularies in every file of a finished feature set, encoded by the model its provenance names
    (weights found beside the features or given as `pretrained`, SHA-256 checked)."""
    from cmdcl.core.relocate import find_weights
    from cmdcl.core.store import FeatureSet, read_context, write_context

    from .models import encoder_for_provenance

    fs = FeatureSet(features)
    where = str(fs.paths[0])
    prov = fs.provenance()
    vocabularies = read_vocabularies(specs, world_root=prov.get("dataset_root") or None)
    for path in fs.paths if not replace else []:
        stored = [v.factor for v in vocabularies if v.factor in read_context(path)]
        if stored:
            raise CmdclError(f"{path}: context factor {stored[0]!r} is already stored.",
                             fix="pass --replace to overwrite it.")
    weights = find_weights(prov, [p.parent for p in fs.paths], pretrained, where)
    encoder = encoder_for_provenance(prov, weights, cache_dir, device, precision="auto", where=where)
    if int(encoder.embed_dim) != fs.dims["D"]:
        raise CmdclError(f"{where}: the encoder gives {encoder.embed_dim}-d text features, the file holds "
                         f"{fs.dims['D']}-d frames.")
    vocabs = encode_context(encoder, vocabularies)
    for path in fs.paths:
        write_context(path, vocabs, replace=replace)
    return {"files": [str(p) for p in fs.paths], "factors": {k: len(v.names) for k, v in vocabs.items()}}
