"""The synthetic world's own context vocabulary: each context factor's values in the words its captions use
(`context_text`: "in a pink kitchen with stripes, teal apron, soft warm light"), as a context vocabulary
file (docs/FORMAT.md "Context vocabularies"), so that zero-shot pseudo labels can be checked against the
true confounders the world knows (`cmdcl extract --context-vocab synthetic`, `cmdcl context-labels`).
"""
from __future__ import annotations

import json
from pathlib import Path

from cmdcl.core.errors import CmdclError
from .synthetic import CONFOUNDERS, context_text


def factor_phrases(num_values: int) -> dict[str, list[str]]:
    """factor -> the caption phrase of each of its values, in value order: the comma-separated part of
    `context_text` that changes when only that factor does."""
    base = {name: 0 for name in CONFOUNDERS}
    out = {}
    for j, name in enumerate(CONFOUNDERS):
        parts = [context_text({**base, name: v}, num_values).split(", ") for v in range(num_values)]
        if any(len(p) <= j for p in parts):
            raise CmdclError(f"synthetic captions name fewer than {len(CONFOUNDERS)} context factors; "
                             f"cannot word factor {name!r}.")
        out[name] = [p[j] for p in parts]
    return out


def vocabulary_text(root: str | Path) -> str:
    """The world at `root` as a context vocabulary file: one `factor: phrase` line per distinct phrase, in value
    order (phrases are distinct for the default 6 values, so a pseudo label's index is the value id; with many
    values two may share a hue word, and then only their first value is listed)."""
    path = Path(root) / "world.json"
    try:
        num_values = int(json.loads(path.read_text())["config"]["num_activities"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CmdclError(f"{path}: not a synthetic world ({type(exc).__name__}); the 'synthetic' context "
                         "vocabulary needs the world's folder.", fix="pass a vocabulary file instead.") from None
    lines = [f"# the context factors of the synthetic world at {root}, in its captions' words"]
    for factor, phrases in factor_phrases(num_values).items():
        lines += [f"{factor}: {phrase}" for phrase in dict.fromkeys(phrases)]
    return "\n".join(lines) + "\n"
