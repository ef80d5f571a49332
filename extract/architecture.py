"""What cmdcl builds for a model name and its weights, decided without building or downloading anything.

open_clip records with each pretrained tag how its weights were trained: the preprocessing (mean, std,
interpolation, resize mode) and, for some tags, the activation (`quick_gelu`, the only architecture flag
a tag records in open_clip 3.3.0). 27 of its 196 (model, tag) pairs need QuickGELU under a model name
without the `-quickgelu` suffix: every `openai` tag, and e.g. `dfn2b`, `dfn5b`, `metaclip_*`. Built
from the name alone, such weights run with GELU and every embedding silently differs from the model's.
`resolve_architecture` therefore takes the activation from the tag (else from a bare
file's `open_clip_config.json` or its `preprocess_tag`), and names the result by its `-quickgelu` twin
when open_clip registers one, so that `ViT-B-16` and `ViT-B-16-quickgelu` with `openai` give the same
model and the same provenance.

open_clip (and torch with it) is imported on first use: `activation_mismatch` runs in `cmdcl inspect`
and `cmdcl verify`, which only need it for files written before the activation was recorded.
"""
from __future__ import annotations

import difflib
import importlib.resources
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from cmdcl.core.errors import CmdclError, WeightsError, one_line
from cmdcl.core.provenance import comparable
from cmdcl.core.relocate import WEIGHT_SUFFIXES

# Our own architectures (cmdcl-tiny: tests and the demo) join open_clip's registry on first use.
MODEL_CONFIG_DIR = Path(str(importlib.resources.files("cmdcl.extract") / "model_configs"))
# Random weights only when asked for by name; no `--pretrained` means the model's published weights.
RANDOM_TAGS = ("random", "none")
PREFERRED_TAG = "openai"  # the weights CLIP was published with, where open_clip has them for the model
HF_HUB_PREFIX, LOCAL_DIR_PREFIX = "hf-hub:", "local-dir:"
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
QUICKGELU_SUFFIX = "-quickgelu"
_registered: list[bool] = []


def open_clip_registry():
    """open_clip, with cmdcl's model configs added once."""
    import open_clip

    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered.append(True)
    return open_clip


@dataclass(frozen=True)
class Architecture:
    """Where a model comes from and what is built: `kind` is random / file / folder / tag / hf-hub / local-dir.

    `config_name` is what open_clip builds (a built-in name in open_clip's spelling, or hf-hub:/local-dir:);
    `quick_gelu` the activation to build, None where the source's own config decides (folders, hf-hub);
    `recorded_name` the model_name stored in provenance; `note` one line to tell the user, when cmdcl
    built something other than the name typed suggests.
    """

    kind: str
    config_name: str
    recorded_name: str
    quick_gelu: bool | None = None
    image_size: Any = None  # int or (h, w) from the model config; None where the source's config decides
    preprocess: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the weights file, the folder or the tag
    tag_cfg: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def model_kwargs(self) -> dict[str, Any]:
        """open_clip model overrides: the activation, where it differs from the config's."""
        if self.quick_gelu is None:
            return {}
        if not self.config_name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)) \
                and self.quick_gelu == _config_quick_gelu(self.config_name):
            return {}  # (not every model class takes the argument: pass it only to change something)
        return {"quick_gelu": self.quick_gelu}


def resolve_architecture(model_name: str, pretrained: str | None = "", preprocess_tag: str | None = None,
                         quick_gelu: bool | None = None) -> Architecture:
    """The architecture and preprocessing for `model_name` with `pretrained` (see models.load_encoder).

    `quick_gelu` forces the activation (a head's checkpoint reproducing the features it was trained on);
    None takes it from the weights' tag or config, else the model config.
    """
    pretrained = "" if pretrained is None else str(pretrained)
    if model_name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        return _schema_source(model_name, pretrained, quick_gelu)
    config_name = check_model_name(model_name)
    pretrained = pretrained or default_pretrained(config_name)
    if is_random(pretrained):
        return _with_activation(Architecture("random", config_name, config_name, image_size=_image_size(config_name)),
                                quick_gelu, "")
    path = Path(pretrained).expanduser()
    if path.is_dir():
        _check_folder_matches(config_name, path)
        return Architecture("folder", LOCAL_DIR_PREFIX + str(path), config_name, quick_gelu, source=str(path))
    if path.is_file():
        return _file_source(config_name, path, preprocess_tag, quick_gelu)
    open_clip = open_clip_registry()
    if open_clip.is_pretrained_cfg(config_name, pretrained):
        tag_cfg = open_clip.get_pretrained_cfg(config_name, pretrained)
        arch = Architecture("tag", config_name, config_name, image_size=_image_size(config_name),
                            preprocess={k: tag_cfg[k] for k in PREPROCESS_KEYS if k in tag_cfg},
                            source=pretrained, tag_cfg=dict(tag_cfg))
        return _with_activation(arch, quick_gelu, f"pretrained={pretrained}", tag_cfg.get("quick_gelu"))
    if path.suffix in WEIGHT_SUFFIXES or os.sep in pretrained:
        raise WeightsError(f"{pretrained}: weights file not found.", fix="pass an existing file or folder to --pretrained.")
    tags = open_clip.list_pretrained_tags_by_model(config_name)
    close = difflib.get_close_matches(pretrained.lower().replace("-", "_"), tags, n=4, cutoff=0.3) or tags[:6]
    raise CmdclError(f"unknown pretrained tag {pretrained!r} for {config_name}; known tags include: "
                     f"{', '.join(close) if close else '(none)'}.",
                     fix="pass a known tag, a weights file or folder, or 'random'.")


def is_random(pretrained: str | None) -> bool:
    """Whether `pretrained` asks for random weights by name (`random` / `none`, any case)."""
    return str(pretrained or "").strip().lower() in RANDOM_TAGS


def default_pretrained(config_name: str) -> str:
    """The weights `config_name` gets when none are named: open_clip's `openai` tag where the model has one,
    else the first tag open_clip lists for it; a model without published weights (e.g. cmdcl-tiny) stops."""
    tags = open_clip_registry().list_pretrained_tags_by_model(config_name)
    if PREFERRED_TAG in tags:
        return PREFERRED_TAG
    if tags:
        return tags[0]
    raise CmdclError(f"model {config_name} has no published weights, so --pretrained must name them.",
                     fix="pass --pretrained /path/to/weights (a file or folder), or --pretrained random for random "
                         "weights (tests only: their features carry no meaning).")


def _schema_source(model_name: str, pretrained: str, quick_gelu: bool | None) -> Architecture:
    """hf-hub:org/repo and local-dir:/path name their own config and weights."""
    if is_random(pretrained):
        return Architecture("random", model_name, model_name, quick_gelu)
    if pretrained:
        raise CmdclError(f"--pretrained {pretrained!r} cannot be combined with model {model_name}, which "
                         f"names its own weights.", fix="leave --pretrained empty.")
    kind = "local-dir" if model_name.startswith(LOCAL_DIR_PREFIX) else "hf-hub"
    return Architecture(kind, model_name, model_name, quick_gelu, source=model_name.split(":", 1)[1])


def _file_source(config_name: str, path: Path, preprocess_tag: str | None, quick_gelu: bool | None) -> Architecture:
    """A bare weights file: preprocessing and activation from its open_clip_config.json, else its tag."""
    arch = Architecture("file", config_name, config_name, image_size=_image_size(config_name),
                        preprocess=_preprocess_for_file(config_name, path, preprocess_tag),
                        source=os.path.abspath(path))
    sidecar = path.parent / "open_clip_config.json"
    trained: bool | None = None
    if sidecar.is_file() and "model_cfg" in _read_folder_config(path.parent):  # a full config: GELU unless it says
        trained = bool(_read_folder_config(path.parent)["model_cfg"].get("quick_gelu", False))
    elif preprocess_tag:
        trained = open_clip_registry().get_pretrained_cfg(config_name, preprocess_tag).get("quick_gelu")
    arch = _with_activation(arch, quick_gelu, f"weights {path.name}", trained)
    if trained is None and quick_gelu is None:
        arch = replace(arch, note=_undecided_activation(config_name, path))
    return arch


def _with_activation(arch: Architecture, forced: bool | None, what: str, trained: bool | None = None) -> Architecture:
    """`arch` with the activation forced, else the one its weights were trained with, else the config's."""
    config_value = _config_quick_gelu(arch.config_name)
    value = forced if forced is not None else (config_value if trained is None else bool(trained))
    arch = replace(arch, quick_gelu=value, recorded_name=quickgelu_twin(arch.config_name, value))
    if forced is None and value != config_value:
        arch = replace(arch, note=f"{arch.config_name} {what} was trained with {_act(value)}: building "
                                  f"{arch.recorded_name} ({_act(value)}), as the weights expect.")
    return arch


def quickgelu_twin(config_name: str, quick_gelu: bool) -> str:
    """The registered name of `config_name` built with `quick_gelu` (ViT-B-16 -> ViT-B-16-quickgelu), or
    `config_name` itself where its activation already matches or open_clip registers no such twin."""
    if quick_gelu == _config_quick_gelu(config_name):
        return config_name
    twin = config_name + QUICKGELU_SUFFIX if quick_gelu else config_name.removesuffix(QUICKGELU_SUFFIX)
    get = open_clip_registry().get_model_config
    ours, theirs = get(config_name), get(twin) if twin != config_name else None
    if ours is None or theirs is None:
        return config_name
    return twin if {**ours, "quick_gelu": quick_gelu} == {**theirs, "quick_gelu": quick_gelu} else config_name


def _config_quick_gelu(config_name: str) -> bool:
    cfg = open_clip_registry().get_model_config(config_name) if not config_name.startswith(
        (HF_HUB_PREFIX, LOCAL_DIR_PREFIX)) else None
    return bool((cfg or {}).get("quick_gelu", False))


def _image_size(config_name: str) -> Any:
    return (open_clip_registry().get_model_config(config_name) or {}).get("vision_cfg", {}).get("image_size")


def _act(quick_gelu: bool) -> str:
    return "QuickGELU" if quick_gelu else "GELU"


def _undecided_activation(config_name: str, path: Path) -> str:
    """A note when the model's tags were trained with different activations and nothing says which fits."""
    open_clip = open_clip_registry()
    ours = _config_quick_gelu(config_name)
    others = [t for t in open_clip.list_pretrained_tags_by_model(config_name)
              if open_clip.get_pretrained_cfg(config_name, t).get("quick_gelu", ours) != ours]
    if not others:
        return ""
    return (f"{path.name}: built {config_name} with {_act(ours)} (its config); its tags {', '.join(others[:4])} were "
            f"trained with {_act(not ours)}: if these weights are such, use --model "
            f"{quickgelu_twin(config_name, not ours)} or name the tag with preprocess_tag.")


def check_model_name(model_name: str) -> str:
    """`model_name` in open_clip's spelling ("ViT-B/16" -> "ViT-B-16"), or a one-line error with close names."""
    name = model_name.replace("/", "-")
    models = open_clip_registry().list_models()
    if name in models:
        return name
    close = difflib.get_close_matches(name, models, n=5, cutoff=0.5)
    raise CmdclError(f"unknown open_clip model {model_name!r}; close names: {', '.join(close) or '(none)'}.",
                     fix="see `python -c \"import open_clip; print(open_clip.list_models())\"`, "
                         "or use hf-hub:org/repo / local-dir:/path.")


# ------------------------------------------- files made before cmdcl took the activation from the tag

def recorded_activation(attrs: Mapping[str, Any]) -> bool | None:
    """The activation a feature file's (or checkpoint's) model was built with: the recorded `quick_gelu`,
    or for files written before it was recorded, the model config's (cmdcl then never changed it)."""
    if "quick_gelu" in attrs:
        return comparable(attrs["quick_gelu"]).lower() in ("true", "1")
    name = comparable(attrs.get("model_name", ""))
    if not name or name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        return None
    return _config_quick_gelu(name) if name in open_clip_registry().list_models() else None


def activation_mismatch(attrs: Mapping[str, Any]) -> str | None:
    """One line when a feature file's features came from a model whose activation is not the one its
    pretrained tag was trained with (files written before cmdcl resolved it), else None."""
    if "quick_gelu" in attrs:  # written by a cmdcl that builds what the tag says
        return None
    name, tag = comparable(attrs.get("model_name", "")), comparable(attrs.get("pretrained", ""))
    if not name or not tag or tag.startswith("random") or name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        return None
    open_clip = open_clip_registry()
    if name not in open_clip.list_models() or not open_clip.is_pretrained_cfg(name, tag):
        return None
    built, trained = recorded_activation(attrs), resolve_architecture(name, tag).quick_gelu
    if built == trained:
        return None
    return (f"features made by {name} with {_act(bool(built))}, but its pretrained={tag} weights were trained "
            f"with {_act(bool(trained))} (a file from before cmdcl built the tag's activation): they differ from the "
            f"model's own embeddings; re-extract them (cmdcl now builds {quickgelu_twin(name, bool(trained))}).")


# ------------------------------------------------------------------------- preprocessing of local files

def _read_folder_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{folder / 'open_clip_config.json'}: unreadable ({one_line(exc, limit=200)}).") from None


def _check_folder_matches(config_name: str, folder: Path) -> None:
    """A folder brings its own architecture; refuse one that contradicts --model."""
    if not (folder / "open_clip_config.json").is_file():
        return  # models._weights_in_folder explains what is missing
    theirs = _read_folder_config(folder).get("model_cfg", {})
    ours = open_clip_registry().get_model_config(config_name) or {}
    for key in ("embed_dim",):
        if key in theirs and theirs[key] != ours.get(key):
            raise CmdclError(f"{folder}: its open_clip_config.json has {key}={theirs[key]} but model {config_name} "
                             f"has {ours.get(key)}.", fix=f"pass the model the folder was saved from, or local-dir:{folder}.")


def _preprocess_for_file(config_name: str, path: Path, preprocess_tag: str | None) -> dict[str, Any]:
    """Preprocessing for a bare weights file, never open_clip's silent default (open_clip #1068)."""
    open_clip = open_clip_registry()
    sidecar = path.parent / "open_clip_config.json"
    if sidecar.is_file():  # an HF snapshot or an open_clip export: the file's own preprocessing
        cfg = _read_folder_config(path.parent).get("preprocess_cfg", {})
        if cfg:
            return {k: cfg[k] for k in PREPROCESS_KEYS if k in cfg}
    tags = open_clip.list_pretrained_tags_by_model(config_name)
    if preprocess_tag:
        if preprocess_tag not in tags:
            raise CmdclError(f"preprocess tag {preprocess_tag!r} is not a pretrained tag of {config_name}; "
                             f"known: {', '.join(tags) or '(none)'}.")
        cfg = open_clip.get_pretrained_cfg(config_name, preprocess_tag)
        return {k: cfg[k] for k in PREPROCESS_KEYS if k in cfg}
    variants: dict[str, list[str]] = {}
    for tag in tags:
        cfg = open_clip.get_pretrained_cfg(config_name, tag)
        variants.setdefault(json.dumps({k: cfg.get(k) for k in PREPROCESS_KEYS}, sort_keys=True), []).append(tag)
    if len(variants) > 1:
        groups = "; ".join(f"{', '.join(v[:3])} -> {k}" for k, v in variants.items())
        raise CmdclError(f"{path}: the pretrained tags of {config_name} use different preprocessing ({groups}), "
                         f"so a bare weights file does not say which applies.",
                         fix="put the file next to its open_clip_config.json, or name its tag with preprocess_tag.")
    if variants:
        return {k: v for k, v in json.loads(next(iter(variants))).items() if v is not None}
    return {}  # an architecture without registered weights (e.g. cmdcl-tiny): its config's defaults
