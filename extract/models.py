"""The frozen open_clip model of Stage 1: loading it offline-friendly, recording what it is, encoding.

`load_encoder(model_name, pretrained)` accepts what open_clip accepts, resolved in this order:

- pretrained None / "": the model's published weights (`architecture.default_pretrained`: open_clip's
  `openai` tag where the model has one, else its first tag; a model without any stops with an error);
- "random" / "none": random init under `torch.manual_seed(seed)`, only when asked for by name (tests);
- an existing folder: open_clip's `local-dir:` scheme (open_clip_config.json + a weights file);
- an existing file (.bin / .pt / .pth / .safetensors): the weights of `model_name`;
- a pretrained tag of `model_name` (e.g. "laion2b_s34b_b88k"), fetched from `cache_dir` or the net;
- `model_name` "hf-hub:org/repo" or "local-dir:/path" (then `pretrained` stays empty).

Every path ends in the same two steps: open_clip builds the architecture (config and preprocessing
from the model / tag / folder, never guessed), then `open_clip.load_checkpoint` loads the one weights
file we resolved, so that `weights_sha256` is the hash of exactly the bytes that were loaded.

Preprocessing follows open_clip's own config for that model and weights (open_clip #1068: a bare
weights file used to silently get the default OpenAI preprocessing). For a bare file it is taken from
an `open_clip_config.json` next to the file, else from the model's registered tags when they all
agree, else from `preprocess_tag`; when none of those decides it, loading stops and says so.

The activation follows the weights too (architecture.py): `ViT-B-16` with `openai` builds QuickGELU,
as OpenAI trained it, says so in one log line, and records `ViT-B-16-quickgelu` and `quick_gelu`.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F

from cmdcl.core.device import resolve_device
from cmdcl.core.errors import CmdclError, WeightsError, one_line
from cmdcl.core.relocate import WEIGHT_SUFFIXES, file_sha256
from .architecture import Architecture, open_clip_registry, recorded_activation, resolve_architecture

open_clip_registry()  # our own architectures (cmdcl-tiny: tests and the demo) join open_clip's registry
log = logging.getLogger(__name__)

# fp16 / bf16: the weights themselves are cast (fastest; +38-46 % over autocast, measured on an H200).
# amp-fp16 / amp-bf16: fp32 weights under torch.autocast (the behaviour before half weights existed).
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "amp-fp16", "amp-bf16")
HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
HUB_PROBE_TIMEOUT_S = 3.0
CROP_OF_RESIZE_MODE = {"shortest": "center", "longest": "center_pad", "squash": "none"}


class FrozenEncoder:
    """An open_clip model in eval mode with gradients off, plus everything needed to reproduce it.

    `encode_frames` / `encode_texts` take tensors on any device (they are moved to the model's) and
    return float32, L2-normalised embeddings on the CPU. `precision` is what was actually used: the
    weights' dtype for fp32 / fp16 / bf16, autocast over fp32 weights for amp-fp16 / amp-bf16.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, model_name: str, pretrained: str,
                 weights_file: str, weights_sha256: str, device: torch.device, precision: str,
                 preprocess_cfg: dict[str, Any]):
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.pretrained = pretrained
        self.weights_file = weights_file
        self.weights_sha256 = weights_sha256
        self.device = device
        self.precision = precision
        self.input_dtype = HALF_DTYPES.get(precision, torch.float32)  # the dtype of the weights
        size = preprocess_cfg["size"]
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if size[0] != size[1]:
            raise CmdclError(f"model {model_name}: non-square input size {size} is not supported.")
        self.image_size = int(size[0])
        self.mean = tuple(float(m) for m in preprocess_cfg["mean"])
        self.std = tuple(float(s) for s in preprocess_cfg["std"])
        self.interpolation = str(preprocess_cfg["interpolation"])
        self.resize_mode = str(preprocess_cfg["resize_mode"])
        self.context_length = int(getattr(tokenizer, "context_length", None) or model.context_length)
        self.embed_dim = self._probe_embed_dim()  # any tower type: ask the text tower once

    # ----------------------------------------------------------------------------------- provenance

    def provenance(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "pretrained": self.pretrained,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "open_clip_version": str(open_clip.__version__),
            "torch_version": str(torch.__version__),  # plain str: TorchVersion does not store in HDF5
            "precision": self.precision,
            "weights_dtype": str(self.input_dtype).replace("torch.", ""),
            "device_type": self.device.type,
            "image_size": self.image_size,
            "preprocess": {
                "resize_mode": self.resize_mode,
                "interpolation": self.interpolation,
                "mean": list(self.mean),
                "std": list(self.std),
                "crop": CROP_OF_RESIZE_MODE.get(self.resize_mode, self.resize_mode),
            },
            "embed_dim": self.embed_dim,
            "quick_gelu": uses_quick_gelu(self.model),  # the activation built
            "random_weights": self.random_weights,
        }

    @property
    def random_weights(self) -> bool:
        """Randomly initialised (`--pretrained random`): features that carry no learned meaning."""
        return self.pretrained.startswith("random:")

    def describe(self) -> str:
        """One line for the run summary: the model built and its weights, RANDOM said plainly."""
        if self.random_weights:
            seed = self.pretrained.split("=", 1)[-1]
            return f"{self.model_name} with RANDOM weights (seed {seed}; not pretrained)"
        return f"{self.model_name} with weights {self.pretrained} (sha256 {self.weights_sha256[:12]})"

    # ------------------------------------------------------------------------------------- encoding

    def _autocast(self):
        if not self.precision.startswith("amp-"):
            return contextlib.nullcontext()  # fp32, or weights already in half precision
        return torch.autocast(device_type=self.device.type, dtype=HALF_DTYPES[self.precision[4:]])

    def _probe_embed_dim(self) -> int:
        with torch.inference_mode():
            return int(self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])

    @torch.inference_mode()
    def encode_frames(self, pixels: torch.Tensor, patch_grid: int = 0, patch_layer: int = -1):
        """(B, 3, S, S) normalised pixels -> (B, D) embeddings, or ((B, D), (B, G*G, D)) with patches.

        Patch embeddings: the patch tokens of transformer block `patch_layer` (-1: the last, -2: the
        penultimate, 0: the first; Python indexing over the image tower's blocks), average-pooled to a G x G
        grid, then sent through the same `ln_post` and `proj` as the pooled token, so they live in the joint
        space. The pooled embedding is always the last block's.
        """
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, self.image_size, self.image_size):
            raise CmdclError(f"encode_frames: expected pixels (B, 3, {self.image_size}, {self.image_size}) for "
                             f"{self.model_name}, got {tuple(pixels.shape)}.")
        pixels = pixels.to(self.device, dtype=self.input_dtype, non_blocking=True)
        with self._autocast():
            if patch_grid <= 0:
                return _l2(self.model.encode_image(pixels))
            visual = self.check_patches(patch_grid, patch_layer)
            out = visual.forward_intermediates(pixels, indices=[patch_layer], output_fmt="NCHW")
            tokens = out["image_intermediates"][-1]  # (B, width, grid_h, grid_w), before ln_post
            pooled = F.adaptive_avg_pool2d(tokens, patch_grid).flatten(2).transpose(1, 2)  # (B, G*G, width)
            patches = visual.ln_post(pooled) @ visual.proj
            return _l2(out["image_features"]), _l2(patches)

    def check_patches(self, patch_grid: int, patch_layer: int = -1):
        """The image tower, when it can give `patch_grid` x `patch_grid` patch tokens of block `patch_layer`;
        else a one-line CmdclError saying which option to change."""
        visual = self._patch_capable_visual(patch_grid)
        blocks = len(visual.transformer.resblocks)
        if not -blocks <= patch_layer < blocks:
            raise CmdclError(f"--patch-layer {patch_layer} is out of range: {self.model_name}'s image tower has "
                             f"{blocks} blocks.", fix=f"use --patch-layer between {-blocks} and {blocks - 1} "
                                                      "(-1: the last block, 0: the first).")
        return visual

    def _patch_capable_visual(self, patch_grid: int):
        visual = self.model.visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer) or visual.attn_pool is not None \
                or visual.proj is None or not hasattr(visual, "forward_intermediates"):
            raise CmdclError(f"--patch-grid needs a plain ViT image tower with a projection; {self.model_name} "
                             f"has {type(visual).__name__}.",
                             fix="use --patch-grid 0 (frame embeddings only) for this model.")
        grid = min(visual.grid_size)
        if patch_grid > grid:
            raise CmdclError(f"--patch-grid {patch_grid} exceeds the {grid}x{grid} token grid of {self.model_name}.",
                             fix=f"use --patch-grid between 1 and {grid}.")
        return visual

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text needs, special tokens included, before any truncation to context_length."""
        if isinstance(self.tokenizer, open_clip.SimpleTokenizer):
            return [len(self.tokenizer.encode(t)) + 2 for t in texts]  # + start and end tokens
        hf = getattr(self.tokenizer, "tokenizer", None)
        if hf is not None and callable(hf):
            return [len(hf(t)["input_ids"]) for t in texts]
        counts = self.tokenizer(list(texts), context_length=4096)
        return (counts != 0).sum(dim=1).tolist()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenize(texts).to(self.device)
        with self._autocast():
            return _l2(self.model.encode_text(tokens))


def _l2(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1).cpu()


# ------------------------------------------------------------------------------------------ loading


def load_encoder(model_name: str, pretrained: str | None = None, cache_dir: str | None = None,
                 device: str = "auto", precision: str = "auto", seed: int = 0, *,
                 preprocess_tag: str | None = None, quick_gelu: bool | None = None) -> FrozenEncoder:
    """Build a frozen encoder; see the module docstring for what `pretrained` may be.

    `preprocess_tag` names the pretrained tag whose preprocessing (and activation) a bare weights file
    should use when the model's tags disagree (e.g. ViT-L-14); it is ignored for every other source.
    `quick_gelu` forces the activation (None: the one the weights were trained with, architecture.py).
    """
    torch_device = resolve_device(device)
    precision = _resolve_precision(precision, torch_device)
    pretrained = "" if pretrained is None else str(pretrained)
    arch = resolve_architecture(model_name, pretrained, preprocess_tag, quick_gelu)
    if arch.note:
        log.warning("cmdcl: %s", arch.note)  # once per load, one line, no file:line prefix

    if arch.kind == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _create(arch.config_name, cache_dir, {}, arch.model_kwargs())
        weights_file, weights_sha256 = "", state_dict_sha256(model.state_dict())
        recorded = f"random:seed={seed}"
    else:
        weights_file = _weights_file(arch, cache_dir)
        model = _create(arch.config_name, cache_dir, arch.preprocess, arch.model_kwargs())
        try:
            open_clip.load_checkpoint(model, weights_file, strict=True)
        except Exception as exc:  # wrong architecture, corrupt or truncated file
            raise WeightsError(f"{weights_file}: cannot be loaded into {arch.config_name} "
                               f"({one_line(exc, limit=200)}).",
                               fix="check that --model matches the weights (see its open_clip_config.json).") from None
        weights_sha256 = file_sha256(weights_file)
        recorded = arch.source if arch.kind == "tag" else (pretrained or model_name)  # the default tag by name

    model.eval().requires_grad_(False)
    model.to(torch_device, dtype=HALF_DTYPES.get(precision, torch.float32))  # hashed above, in fp32
    try:
        tokenizer = open_clip.get_tokenizer(arch.config_name, cache_dir=cache_dir)
    except Exception as exc:
        raise WeightsError(f"tokenizer of {model_name} is not available offline ({one_line(exc, limit=200)}).",
                           fix="fill the Hugging Face cache on a machine with internet and pass --cache-dir.") from None
    return FrozenEncoder(model, tokenizer, model_name=arch.recorded_name, pretrained=recorded,
                         weights_file=weights_file, weights_sha256=weights_sha256, device=torch_device,
                         precision=precision, preprocess_cfg=open_clip.get_model_preprocess_cfg(model))


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    """Whether the built model's layers use QuickGELU (what provenance records as `quick_gelu`)."""
    return any(isinstance(m, open_clip.transformer.QuickGELU) for m in model.modules())


def encoder_for_provenance(provenance: dict[str, Any], weights: str | None = None, cache_dir: str | None = None,
                           device: str = "auto", precision: str | None = None, where: str = "") -> FrozenEncoder:
    """The frozen encoder a provenance record names (a feature file's attributes or a checkpoint's copy of them):
    the same model, activation (architecture.py) and weights, checked by SHA-256. `weights`: the weights file
    found for the record (`core.relocate.find_weights`), None for a tag or random weights (`random:seed=S`: the
    same seed). `precision`: None keeps the recorded one."""
    recorded = str(provenance.get("pretrained", ""))
    seed = 0
    if recorded.startswith("random:seed="):  # random weights (tests, demo): same seed, same weights
        recorded, seed = "random", int(recorded.split("=", 1)[1])
    encoder = load_encoder(str(provenance["model_name"]), weights or recorded, cache_dir=cache_dir, device=device,
                           precision=precision or str(provenance.get("precision") or "auto"), seed=seed,
                           quick_gelu=recorded_activation(provenance))
    sha = str(provenance.get("weights_sha256") or "")
    if sha and encoder.weights_sha256 != sha:
        raise WeightsError(f"{where}: the encoder weights ({encoder.weights_file or encoder.pretrained}) are not "
                           f"those that made its features (sha256 {sha[:12]}...).",
                           fix="pass --pretrained with the original weights file.")
    return encoder


class _DropRandomInitNotice(logging.Filter):
    """open_clip warns "initialized randomly" whenever it loads no weights itself; we load them after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


def _create(config_name: str, cache_dir: str | None, preprocess: dict[str, Any],
            model_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """The architecture with open_clip's default init, fp32 on CPU; weights are loaded by the caller.
    `model_kwargs` override the config (the activation resolved in architecture.py)."""
    notice_filter = _DropRandomInitNotice()
    logging.getLogger().addFilter(notice_filter)  # open_clip logs through the root logger
    try:
        return open_clip.create_model(config_name, pretrained=None, load_weights=False, precision="fp32",
                                      device="cpu", pretrained_image=False, pretrained_text=False,
                                      force_preprocess_cfg=preprocess or None, cache_dir=cache_dir,
                                      **(model_kwargs or {}))
    except Exception as exc:  # hf-hub / local-dir configs that cannot be read
        raise WeightsError(f"model config of {config_name} is not available ({one_line(exc, limit=200)}).",
                           fix=_fetch_fix(config_name, None, cache_dir)) from None
    finally:
        logging.getLogger().removeFilter(notice_filter)


def _weights_file(arch: Architecture, cache_dir: str | None) -> str:
    """The one weights file `arch` loads: found locally, or fetched for a tag / hf-hub repo (cache first)."""
    if arch.kind in ("folder", "local-dir"):
        return _weights_in_folder(Path(arch.source))
    if arch.kind == "file":
        return arch.source
    if arch.kind == "hf-hub":
        return _fetch(_offline_unless_reachable(
            lambda: open_clip.pretrained.download_pretrained_from_hf(arch.source, cache_dir=cache_dir), ""),
            arch.config_name, None, cache_dir)
    tag_cfg = arch.tag_cfg
    download = _offline_unless_reachable(lambda: open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir),
                                         "" if tag_cfg.get("hf_hub") else tag_cfg.get("url", ""), cache_dir)
    return os.path.abspath(_fetch(download, arch.recorded_name, arch.source, cache_dir))  # the name to fetch it with


def _fetch(download, model_name: str, tag: str | None, cache_dir: str | None) -> str:
    """Run an open_clip download; any failure (no network, empty cache) becomes one WeightsError line."""
    try:
        path = download()
    except Exception as exc:
        what = f"{model_name} pretrained={tag}" if tag else model_name
        raise WeightsError(f"weights for {what} are not available offline or could not be fetched "
                           f"({one_line(exc, limit=200)}).", fix=_fetch_fix(model_name, tag, cache_dir)) from None
    if not path or not Path(path).is_file():
        raise WeightsError(f"weights for {model_name} pretrained={tag}: open_clip resolved no file ({path!r}).",
                           fix=_fetch_fix(model_name, tag, cache_dir))
    return str(path)


def _offline_unless_reachable(download, url: str, cache_dir: str | None = None):
    """`download`, run in Hugging Face offline mode when there is no network.

    Without network huggingface_hub retries each file with backoff (about 40 s for one tag) before
    failing. Offline mode (HF_HUB_OFFLINE, or a failed probe of the host) answers from the cache at
    once: a cached file is still found, a missing one fails without a single connection attempt.
    `url` is the plain-URL download of a tag, "" for the Hugging Face hub; open_clip keeps such a
    file as `cache_dir` (default ~/.cache/clip) / its basename, which it checks before any network.
    """
    def run():
        import huggingface_hub.constants as hub

        offline = hub.HF_HUB_OFFLINE or _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
        host = urlsplit(url or hub.ENDPOINT)
        if not offline and not _reachable(host.hostname or "", host.port or (80 if host.scheme == "http" else 443)):
            offline = True
            cached = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(url)
            if url and not cached.is_file():  # open_clip's URL download has no offline mode of its own
                raise OSError(f"no network ({host.hostname} cannot be reached) and {cached} is not cached")
        if not offline:
            return download()
        saved, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
        try:
            return download()
        finally:
            hub.HF_HUB_OFFLINE = saved
    return run


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _reachable(host: str, port: int, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to `host` (or the HTTPS proxy), bounded by `timeout_s` including name lookup."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY") \
        or os.environ.get("all_proxy")
    if proxy:
        parsed = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 80
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, name="cmdcl-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)  # getaddrinfo ignores socket timeouts: bound the whole probe here
    return bool(result and result[0])


def _fetch_fix(model_name: str, tag: str | None, cache_dir: str | None) -> str:
    where = cache_dir or "/path/to/cache"
    pretrained = f", pretrained='{tag}'" if tag else ""
    return (f"on a machine with internet run `python -c \"import open_clip; open_clip.create_model_and_transforms("
            f"'{model_name}'{pretrained}, cache_dir='{where}')\"`, copy {where} here and pass --cache-dir {where} "
            f"(set HF_HUB_OFFLINE=1 on nodes without network), or pass --pretrained /path/to/weights.")


def _weights_in_folder(folder: Path) -> str:
    """The one weights file of an open_clip folder (open_clip's preferred names first)."""
    if not (folder / "open_clip_config.json").is_file():
        raise WeightsError(f"{folder}: folder has no open_clip_config.json.",
                           fix="pass the weights file itself, or a folder saved by open_clip / downloaded from its HF repo.")
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                 "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth"):
        if (folder / name).is_file():
            return os.path.abspath(folder / name)
    found = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if len(found) != 1:
        raise WeightsError(f"{folder}: expected one weights file ({'/'.join(WEIGHT_SUFFIXES)}), found "
                           f"{[p.name for p in found] or 'none'}.", fix="pass the weights file itself with --pretrained.")
    return os.path.abspath(found[0])


def _resolve_precision(precision: str, device: torch.device) -> str:
    """auto: fp16 weights on CUDA, fp32 on the CPU (where half precision is slower, not faster)."""
    if precision not in PRECISIONS:
        raise CmdclError(f"--precision {precision!r} unknown; expected one of {', '.join(PRECISIONS)}.",
                         fix="use --precision auto.")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision.endswith("fp16") and device.type != "cuda":
        raise CmdclError(f"--precision {precision} needs a CUDA device (got {device}).",
                         fix="use --precision fp32 or bf16 on the CPU.")
    return precision


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' raw bytes in key order (identifies random and in-memory weights)."""
    digest = hashlib.sha256()
    for key in state_dict:
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

