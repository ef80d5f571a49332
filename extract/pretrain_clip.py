"""Contrastive (CLIP) pre-training of a small open_clip model on captioned frames of an annotated dataset.

Real CLIP weights cannot be downloaded everywhere, and a randomly initialised encoder gives text and frame
embeddings that are unrelated, so nothing text-guided can work on top of it. This module trains one the way
CLIP is trained, on data we have: sampled frames of one split, each paired with a caption built from the
annotation at that frame's time, like the alt-text of a web image:

- the atomic action under way (the step segment that holds the frame's timestamp) and the activity (class);
- in a fraction `context_rate` of the captions, the scene, from the manifest's optional `context` column.

Everything else is open_clip's own: the architecture (`open_clip.create_model`), the tokenizer, the loss
(`open_clip.ClipLoss`: symmetric InfoNCE with the model's learnable logit scale). Frames are decoded once with
the project's decoders and preprocessing (the same as `cmdcl extract`) and kept in memory.

Output: the state dict (`--out`, loadable by `open_clip.create_model(name, pretrained=FILE)` and by
`cmdcl extract --pretrained FILE`), `open_clip_config.json` beside it (architecture and preprocessing) and
`<stem>.provenance.json` (data, split, seed, epochs, losses, code version, SHA-256 of the weights).
Deterministic for a seed: fixed threads, torch's deterministic algorithms, one seeded generator.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import open_clip
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.core.lr import warmup_cosine
from . import models  # noqa: F401  (registers cmdcl-tiny with open_clip)
from .datasets.base import DatasetIndex

PROVENANCE_FORMAT = "cmdcl-pretrain-clip"
# Caption templates. Each names the action, the activity or both; "{context}" is added to some of them.
BOTH_TEMPLATES = ("a person {step} to {activity}.", "{activity}: a person {step}.", "a video of a person {step} "
                  "while they {activity}.")
STEP_TEMPLATES = ("a person {step}.", "a photo of a person {step}.", "{step}.")
ACTIVITY_TEMPLATES = ("a person {activity}.", "a video of a person {activity}.", "{activity}.")


@dataclass
class PretrainConfig:
    dataset: str
    root: str
    out: str
    split: str = "pretrain"
    model: str = "cmdcl-tiny"
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    frames_per_video: int = 16  # frames sampled uniformly from each video
    context_rate: float = 0.3  # share of captions that also describe the scene (when the manifest has one)
    seed: int = 0
    threads: int = 1  # torch threads: results are reproducible for a given thread count
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> "PretrainConfig":
        for name in ("epochs", "batch_size", "frames_per_video", "threads"):
            if getattr(self, name) < 1:
                raise CmdclError(f"pretrain-clip: --{name.replace('_', '-')} {getattr(self, name)} must be >= 1.")
        if self.batch_size < 2:
            raise CmdclError("pretrain-clip: --batch-size must be >= 2 (the loss contrasts pairs in a batch).")
        if not 0.0 <= self.context_rate <= 1.0:
            raise CmdclError(f"pretrain-clip: --context-rate {self.context_rate} must be in [0, 1].")
        if self.lr <= 0:
            raise CmdclError(f"pretrain-clip: --lr {self.lr} must be positive.")
        return self


@dataclass
class CaptionedFrames:
    """Preprocessed frames of one split held in memory, and what is annotated at each frame's time."""
    pixels: torch.Tensor  # (N, 3, S, S) float32, normalised like the model's inference transform
    step: np.ndarray  # (N,) step index under way at the frame's time, -1 when none
    activity: np.ndarray  # (N,) class index of the video, -1 when none
    context: list[str]  # (N,) the video's scene description ("" when the manifest has none)
    step_names: list[str]
    class_names: list[str]
    videos: int

    def __len__(self) -> int:
        return len(self.step)

    def caption(self, i: int, rng: np.random.Generator, context_rate: float) -> str:
        """One alt-text-like caption of frame i; which parts it mentions is drawn from `rng`."""
        step = self.step_names[self.step[i]] if self.step[i] >= 0 else None
        activity = self.class_names[self.activity[i]] if self.activity[i] >= 0 else None
        kind = rng.random()
        if step and activity:
            templates = BOTH_TEMPLATES if kind < 0.5 else STEP_TEMPLATES if kind < 0.75 else ACTIVITY_TEMPLATES
        else:
            templates = STEP_TEMPLATES if step else ACTIVITY_TEMPLATES
        text = templates[int(rng.integers(len(templates)))].format(step=step, activity=activity)
        if self.context[i] and rng.random() < context_rate:
            text = f"{text[:-1]}, {self.context[i]}."
        return text


def step_at(segments: list[tuple[int, float, float]], t: float) -> int:
    """The step whose segment holds time t (s): the latest-starting one; -1 when no segment does."""
    holding = [(start, step) for step, start, end in segments if start <= t < end]
    return max(holding)[1] if holding else -1


def load_frames(index: DatasetIndex, image_size: int, preprocess_cfg: dict[str, Any], frames_per_video: int,
                log: Callable[[str], None] = print) -> CaptionedFrames:
    """Decode `frames_per_video` uniformly sampled frames of every video once, preprocess them, annotate each."""
    from .preprocess import FramePreprocessor
    from .decode_pool import DecodeFailure, DecodeSettings, DecodeTask, decode_task
    from .sampler import FrameSampler

    resize_mode = preprocess_cfg.get("resize_mode", "shortest")
    # backend None: each video by its container's default decoder, as `cmdcl extract` decodes it
    settings = DecodeSettings(FrameSampler(frames_per_video, "uniform"), image_size, resize_mode, None, fallback=True)
    preprocess = FramePreprocessor(image_size, preprocess_cfg["mean"], preprocess_cfg["std"],
                                   interpolation=preprocess_cfg.get("interpolation", "bicubic"),
                                   resize_mode=resize_mode)
    pixels, steps, activities, contexts, failed = [], [], [], [], []
    for key, item in enumerate(index.items):
        clip = decode_task(DecodeTask(key, item.video_id, item.path), settings)
        if isinstance(clip, DecodeFailure):
            failed.append(f"{item.video_id} ({clip.error})")
            continue
        pixels.append(preprocess(clip.frames))
        steps += [step_at(item.segments, float(ms) / 1000.0) for ms in clip.timestamps_ms]
        activities += [item.label] * len(clip.frames)
        contexts += [item.context] * len(clip.frames)
    if failed:
        log(f"pretrain-clip: {len(failed)} video(s) could not be decoded and are left out: {'; '.join(failed[:5])}")
    frames = CaptionedFrames(torch.cat(pixels) if pixels else torch.zeros(0), np.asarray(steps, np.int64),
                             np.asarray(activities, np.int64), contexts, list(index.step_names),
                             list(index.class_names), videos=len(pixels))
    usable = int(((frames.step >= 0) | (frames.activity >= 0)).sum())
    if usable < 2:
        raise CmdclError(f"{index.root}: the chosen split has {usable} frame(s) with an action or activity "
                         "annotation; contrastive pre-training needs at least 2.",
                         fix="pick another --split, or add labels / timed step segments to the manifest.")
    return frames


def build_model(model_name: str, seed: int) -> torch.nn.Module:
    """open_clip's architecture with its default initialisation drawn under `seed`, fp32 on CPU."""
    from .architecture import check_model_name
    from .models import _create

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _create(check_model_name(model_name), None, {})


class _TokenCache:
    """Tokenize each distinct caption once; a batch's texts are encoded once per distinct caption."""

    def __init__(self, tokenizer):
        self.tokenizer, self.tokens = tokenizer, {}

    def batch(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        distinct = list(dict.fromkeys(captions))
        new = [c for c in distinct if c not in self.tokens]
        if new:
            self.tokens.update(zip(new, self.tokenizer(new)))
        row = {c: i for i, c in enumerate(distinct)}
        return torch.stack([self.tokens[c] for c in distinct]), torch.tensor([row[c] for c in captions])


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text(tokens, normalize=True)` computed on the tokens up to the batch's longest caption.

    CLIP's text tower is causal and pools at the end-of-text token, so the padding after it cannot change
    the result; skipping it makes short captions several times cheaper than the full 77-token context.
    Other towers (no causal mask, e.g. CustomTextCLIP) get the plain call.
    """
    if not isinstance(model, open_clip.model.CLIP) or model.attn_mask is None \
            or model.text_pool_type not in ("argmax", "eos"):
        return model.encode_text(tokens, normalize=True)
    length = int((tokens != 0).any(dim=0).nonzero().max()) + 1 if tokens.any() else 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = open_clip.transformer.text_global_pool(x, tokens, model.text_pool_type,
                                               eos_token_id=getattr(model, "text_eos_id", None))
    x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def train_clip(model: torch.nn.Module, tokenizer, frames: CaptionedFrames, cfg: PretrainConfig,
               log: Callable[[str], None] = print) -> list[float]:
    """CLIP training of `model` in place on `frames`; returns the mean loss of every epoch."""
    usable = np.flatnonzero((frames.step >= 0) | (frames.activity >= 0))
    rng = np.random.default_rng([cfg.seed, 7])
    loss_fn = open_clip.ClipLoss()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    batch = min(cfg.batch_size, len(usable))
    per_epoch = max(1, len(usable) // batch)  # full batches only: every step contrasts `batch` pairs
    total, step, losses, tokens = cfg.epochs * per_epoch, 0, [], _TokenCache(tokenizer)
    lr_factor = warmup_cosine(cfg.warmup_steps, total)
    model.train()
    for epoch in range(cfg.epochs):
        order = rng.permutation(usable)
        epoch_loss = 0.0
        for b in range(per_epoch):
            rows = order[b * batch:(b + 1) * batch]
            text, which = tokens.batch([frames.caption(int(i), rng, cfg.context_rate) for i in rows])
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step)
            image_features = model.encode_image(frames.pixels[torch.from_numpy(rows)], normalize=True)
            text_features = encode_text_trimmed(model, text)[which]
            loss = loss_fn(image_features, text_features, model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # CLIP clamps the learnable temperature at 100
                model.logit_scale.clamp_(0, math.log(100))
            epoch_loss += float(loss.detach())
            step += 1
        losses.append(epoch_loss / per_epoch)
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {losses[-1]:.4f}  logit scale {model.logit_scale.exp():.1f}")
    model.eval()
    return losses


@contextlib.contextmanager
def deterministic_torch(threads: int):
    """Fixed thread count and deterministic kernels inside; the caller's settings restored after."""
    old_threads, old_mode = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_mode)
        torch.set_num_threads(old_threads)


def provenance_path(weights: str | Path) -> Path:
    weights = Path(weights)
    return weights.with_name(weights.stem + ".provenance.json")


def save_outputs(model: torch.nn.Module, cfg: PretrainConfig, record: dict[str, Any]) -> dict[str, Any]:
    """Weights (written to a temporary name, then renamed), open_clip_config.json, then the provenance record."""
    from .models import file_sha256

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out)
    config = {"model_cfg": open_clip.get_model_config(cfg.model),
              "preprocess_cfg": open_clip.get_model_preprocess_cfg(model)}
    (out.parent / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    record = {**record, "weights_file": str(out.absolute()), "weights_sha256": file_sha256(out)}
    provenance_path(out).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _record_config(cfg: PretrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items() if k not in ("out", "root", "dataset")}


def reusable_weights(cfg: PretrainConfig) -> dict[str, Any] | None:
    """The provenance record of `cfg.out` when those weights were trained with this exact request, else None.

    Same data (root and a fingerprint of the split's annotations), same options (seed, epochs, ...), and the
    file on disk is the one the record hashed. Training is deterministic, so retraining would give them again.
    """
    from .datasets.registry import load_dataset
    from .models import file_sha256

    out, record_path = Path(cfg.out), provenance_path(cfg.out)
    if not (out.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except ValueError:
        return None
    index = load_dataset(cfg.dataset, cfg.root, splits=[cfg.split], **cfg.dataset_options)
    wanted = {"format": PROVENANCE_FORMAT, "dataset": cfg.dataset, "data_root": str(Path(cfg.root).absolute()),
              "config": json.loads(json.dumps(_record_config(cfg))), "data_fingerprint": _data_fingerprint(index)}
    if any(record.get(k) != v for k, v in wanted.items()) or record.get("weights_sha256") != file_sha256(out):
        return None
    return record


def pretrain_clip(cfg: PretrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Load the split, decode and caption its frames, train, save; returns the provenance record."""
    return train_and_save(cfg, log)[1]


def train_and_save(cfg: PretrainConfig, log: Callable[[str], None] = print) -> tuple[torch.nn.Module, dict[str, Any]]:
    """`pretrain_clip`, also returning the trained model (in eval mode) as it is in memory."""
    from cmdcl.core.version import code_version
    from .datasets.registry import load_dataset

    cfg.check()
    started = time.perf_counter()
    index = load_dataset(cfg.dataset, cfg.root, splits=[cfg.split], **cfg.dataset_options)
    log(index.report())
    with deterministic_torch(cfg.threads):
        model = build_model(cfg.model, cfg.seed)
        preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
        size = preprocess_cfg["size"]
        frames = load_frames(index, int(size[0] if isinstance(size, (list, tuple)) else size), preprocess_cfg,
                             cfg.frames_per_video, log)
        log(f"pretrain-clip: {len(frames)} frames of {frames.videos} videos ({cfg.split}); "
            f"{cfg.epochs} epochs of batch {cfg.batch_size}, {cfg.threads} thread(s)")
        losses = train_clip(model, open_clip.get_tokenizer(cfg.model), frames, cfg, log)
    record = {
        "format": PROVENANCE_FORMAT, "model_name": cfg.model, "dataset": cfg.dataset,
        "data_root": str(Path(cfg.root).absolute()), "split": cfg.split, "seed": cfg.seed, "epochs": cfg.epochs,
        "config": _record_config(cfg),
        "videos": frames.videos, "frames": len(frames), "final_loss": losses[-1], "losses": losses,
        "data_fingerprint": _data_fingerprint(index), "code_version": code_version(),
        "torch_version": str(torch.__version__), "open_clip_version": str(open_clip.__version__),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return model, save_outputs(model, cfg, record)


def _data_fingerprint(index: DatasetIndex) -> str:
    """SHA-256 of what was trained on: video ids, labels, segments and contexts (not the pixels)."""
    import hashlib

    rows = [[i.video_id, i.label, [list(s) for s in i.segments], i.context] for i in index.items]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
