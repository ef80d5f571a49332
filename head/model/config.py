"""Every option of the head in one dataclass, so checkpoints store and restore it whole.

Defaults follow docs/METHOD.md (our reading of the paper), which marks our own choices [ours].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional, Sequence

from cmdcl.core.errors import CmdclError

from .registry import METHODS, TableNames, method_entry, methods_help, reads

# The allowed values of the string-valued options: the one list, checked by `check_choice` (used by
# `HeadConfig.check()` and by the head modules' constructors).
CHOICES: dict[str, Sequence[str]] = {
    "method": TableNames(METHODS),  # the heads of head/model/registry.py, read when checked
    "bias_estimator": ("attention", "sinkhorn"),
    "bias_source": ("prior", "video", "dictionary"),
    "frontdoor_cross": ("sample", "dictionary", "none"),
    "mediator": ("learned", "cosine"),
    "classifier": ("similarity", "attention"),
    "data_mode": ("auto", "memory", "memmap"),
    "patch_contrast": ("video", "all"),
    "step_readout": ("auto", "gru", "none"),
    "step_contrast": ("video", "all"),
    "readout_input": ("soft", "hard"),
}


def check_choice(name: str, value: str) -> None:
    """Raise a one-line CmdclError when `value` is not an allowed value of option `name` (CHOICES)."""
    if value not in CHOICES[name]:
        raise CmdclError(f"--{name.replace('_', '-')} {value!r} is not one of {', '.join(CHOICES[name])}.")


def option(default: Any, help: str, flag: str | None = None) -> Any:
    """A dataclass field with its command-line help (and flag, when not --field-name): the one source of
    each option's default and help, read by pipelines/config_options.py."""
    return field(default=default, metadata={"help": help, **({"flag": flag} if flag else {})})


@dataclass
class HeadConfig:
    method: str = option("cmdcl", methods_help())
    # --- CMDCL switches (docs/METHOD.md)
    use_tci: bool = option(True, "Textual causal (back-door) intervention.", flag="--tci/--no-tci")
    use_vci: bool = option(True, "Visual causal (front-door) intervention.", flag="--vci/--no-vci")
    sta_layers: int = option(6, "H spatio-temporal attention blocks (transformer: layers); paper's best 6 or 8.")
    frames: int = option(0, "Keep this many frames per video, spread over its valid frames (0 = all cached).")
    bias_estimator: str = option("attention", "attention | sinkhorn.")
    # 5 iterations leave row sums ~37% off at S=48, F=64; 50 converge (eps 0.1): docs/METHOD.md
    sinkhorn_iters: int = option(50, "Sinkhorn iterations (bias estimator sinkhorn).")
    sinkhorn_eps: float = option(0.1, "Entropic regularisation of the Sinkhorn plan.")
    bias_source: str = option("prior", "prior (back-door over confounder prototypes weighted by P(z); T' does not "
                                       "depend on the video) | video (the video's own frames) | dictionary (frame "
                                       "prototypes).")
    frontdoor_cross: str = option("sample", "sample (the sample's own mediator queries a global dictionary with "
                                            "priors, CATT) | dictionary (queried by the text) | none.")
    dictionary_size: int = option(32, "K prototypes of the bias dictionary and the front-door memory.")
    use_patches: Optional[bool] = option(None, "Patch tokens: on, off, or unset = on when the features hold them.",
                                         flag="--use-patches/--no-use-patches")
    mediator: str = option("learned", "learned (Q/K projections, patches mediated before the deep stack) | cosine "
                                      "(the old cosine mediator after divided space/time attention).")
    patch_frame_context: bool = option(False, "Add the whole-frame embedding to every patch token (old behaviour).")
    static_split: bool = option(True, "[ours] The mediator reads each frame/patch token minus its video mean.")
    # 0.5: chosen on the dev world (seed 1), docs/METHOD.md; off by itself where the features hold no segments
    grounding_loss: float = option(0.5, "[ours] Weight of -log(temporal attention mass in the annotated step's "
                                        "segments); used when the features hold step segments, 0 = off.")
    patch_contrast: str = option("video", "Which steps compete in the patch grounding loss: video (the steps of the "
                                          "same video) | all (every step).")
    mediator_frames: bool = option(True, "[ours] The learned mediator adds each frame's token (the deep stack's, the "
                                         "whole frame) to its attended patches; off: it reads the attended patches "
                                         "alone (no frame-level context, props or scene enter V').",
                                   flag="--mediator-frames/--no-mediator-frames")
    patch_grounding: float = option(0.0, "[ours] Weight of the patch-level grounding loss from step segments: on a "
                                          "step's frames, the patch token pooled under the step's spatial attention "
                                          "must predict that step among the video's steps; 0 = off.")
    tci_debias: float = option(0.0, "[ours] Weight of a loss that makes each T'_i equally similar to every confounder "
                                     "prototype of the back door (the prior-weighted variance of cos(T'_i, z_k) "
                                     "over k): text that prefers no scene; needs bias source prior or dictionary.")
    # --- the front door through the atomic actions (docs/METHOD.md, "Through the atomic actions")
    step_readout: str = option("auto", "[ours] How the class is read: gru (a bidirectional GRU over the per-frame "
                                       "step posteriors, nothing else) | none (s W_cls from V' and T') | auto = gru "
                                       "where the training features hold step segments, else none.")
    step_loss: float = option(1.0, "[ours] Weight of the dense per-frame step cross-entropy from step segments "
                                   "(frame_step_logits at every annotated frame); 0 = off.")
    step_contrast: str = option("video", "Which steps compete in the per-frame step loss: video (the steps annotated "
                                         "in the same video) | all (every step).")
    step_all_loss: float = option(0.1, "[ours] Weight of an all-step cross-entropy added to a video-contrast step "
                                       "loss: ties the steps of different activities to one scale, so that the "
                                       "all-step posteriors the read-out sees at test time are not dominated by one "
                                       "activity's steps; 0 = off.")
    step_centre: bool = option(True, "[ours] Subtract from each step's frame evidence its mean over the video's "
                                      "valid frames: an offset shared by all frames of a video (the context, the "
                                      "same in every frame) cannot favour one activity's steps.",
                               flag="--step-centre/--no-step-centre")
    readout_detach: bool = option(True, "[ours] Stop the activity loss's gradient at the step posteriors: the "
                                        "read-out cannot train the step evidence to carry the context.",
                                  flag="--readout-detach/--no-readout-detach")
    readout_input: str = option("soft", "What the GRU read-out reads per frame: soft (the all-step softmax "
                                        "posteriors) | hard (one-hot of the frame's top step).")
    readout_hidden: int = option(32, "Hidden size of each direction of the GRU read-out.")
    tci_residual: bool = option(True, "T' = T + [T;B]W_B (residual) or [T;B]W_B.")
    classifier: str = option("similarity", "similarity | attention: how V', T' give per-step evidence.")
    # --- shared model sizes
    width: int = option(0, "Hidden width (0 = embedding size).")
    heads: int = option(4, "Attention heads.")
    dropout: float = option(0.1, "Dropout.")
    init_temperature: float = option(0.07, "Initial temperature of the learnable logit scales.")
    aux_step_loss: float = option(0.5, "Weight of the step-presence BCE (when steps are annotated).")
    # --- optimisation. Schedule and selection: head/training/schedule.py, docs/TRAINING.md; one recipe for every method.
    epochs: int = option(0, "0 = auto: 30 epochs with >= --min-steps steps in all (small sets: several passes "
                            "per epoch); N = exactly N one-pass epochs.")
    min_steps: int = option(1000, "Fewest optimiser steps of the automatic schedule.")
    batch_size: int = option(32, "Global batch size (split over DDP ranks).")
    lr: float = option(1e-3, "Peak learning rate (AdamW).")
    weight_decay: float = option(0.05, "AdamW weight decay (matrices only).")
    warmup_epochs: int = option(2, "Linear warm-up over this many epochs' steps.")
    grad_clip: float = option(1.0, "Gradient-norm clipping (0 = off).")
    patience: int = option(10, "Early stopping patience in epochs (0 = off).")
    min_val_videos: int = option(100, "Fewer validation videos: no early stopping, best.pt = last epoch.")
    converge_patience: int = option(5, "Stop once the TRAINING loss has not fallen by --converge-delta (relative) "
                                       "for this many epochs (0 = off; automatic schedule only): docs/TRAINING.md.")
    converge_delta: float = option(0.05, "Relative fall of the best training loss that counts as progress.")
    val_fraction: float = option(0.1, "Carved from the training split when there is no val split (always, with "
                                      "another --train-split).")
    train_split: str = option("train", "Split to train on, e.g. train_unconfounded (the synthetic world's split "
                                       "with the context at chance); validation is carved from it (a 'val' split "
                                       "is used only with the default, train).")
    seed: int = option(0, "Seed of the head, the data order and the carved validation.")
    refresh_memory: bool = option(True, "EMA-refresh the front-door memory after each epoch.")
    # --- data path (head/data.py)
    data_mode: str = option("auto", "auto | memory | memmap (larger than RAM).")
    eval_batch_size: int = option(0, "Validation batch size (0 = 2 x batch size).")

    def check(self) -> "HeadConfig":
        """Raise a one-line CmdclError naming the first option with an impossible value (the one place that
        validates options; checks that need the data, e.g. patches present, are made where it is read). A
        method's own options are checked only for the methods that read them (their `METHODS` entry):
        `--heads 3 --width 100` is no error for a linear probe, which reads neither."""
        check_choice("method", self.method)
        read = set(RECIPE) | set(method_entry(self.method).options)
        for name in CHOICES:
            if name in read:
                check_choice(name, getattr(self, name))
        for names, broken, message in _RULES:
            if set(names) <= read and broken(self):
                raise CmdclError(message.format(**self.to_dict()))
        return self

    def patches_wanted(self) -> bool | None:
        """What to read the features with: use_patches, where unset (None) means "the file's patches" for
        the heads that read them (their `METHODS` entry lists use_patches), and no patches for the others (they
        would only cost memory)."""
        return False if self.use_patches is None and not reads(self.method, "use_patches") else self.use_patches

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        """A saved config; options it predates take the value that reproduces the old head (LEGACY)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "mediator" not in values:  # saved before the learned mediator: the old defaults throughout
            values = {**LEGACY, **values}
        return cls(**{**ADDED_LATER, **values})


# What a config saved before the learned mediator meant for the options added with it (and for the
# defaults that changed with them), so old checkpoints rebuild the head they were trained with.
LEGACY: dict[str, Any] = {"mediator": "cosine", "patch_frame_context": True, "static_split": False,
                          "grounding_loss": 0.0, "bias_source": "video", "frontdoor_cross": "dictionary",
                          "use_patches": False}


# The training recipe: the fields the loop reads for every method (docs/TRAINING.md, "Which options a baseline
# reads"); every other field is read only by the methods whose METHODS entry lists it.
RECIPE: tuple[str, ...] = (
    "method", "epochs", "min_steps", "batch_size", "lr", "weight_decay", "warmup_epochs", "grad_clip", "patience",
    "min_val_videos", "converge_patience", "converge_delta", "val_fraction", "seed", "frames", "aux_step_loss",
    "data_mode", "eval_batch_size", "train_split")

# (the fields a rule reads, is the value impossible?, the message): HeadConfig.check() applies a rule when the
# method reads all of its fields (the recipe's always).
_RULES: tuple[tuple[tuple[str, ...], Callable[[HeadConfig], bool], str], ...] = (
    *(((name,), lambda c, n=name: getattr(c, n) < 1, f"--{name.replace('_', '-')} must be >= 1, got {{{name}}}.")
      for name in ("batch_size", "heads", "dictionary_size")),
    *(((name,), lambda c, n=name: getattr(c, n) < 0, f"--{name.replace('_', '-')} must be >= 0, got {{{name}}}.")
      for name in ("epochs", "min_steps", "min_val_videos", "sta_layers", "frames", "width", "patience",
                   "warmup_epochs", "eval_batch_size", "converge_patience")),
    (("lr",), lambda c: c.lr <= 0, "--lr must be > 0, got {lr}."),
    (("init_temperature",), lambda c: c.init_temperature <= 0,
     "--init-temperature must be > 0, got {init_temperature}."),
    (("width", "heads", "sta_layers"), lambda c: bool(c.width) and c.sta_layers > 0 and c.width % c.heads != 0,
     "--width {width} is not divisible by --heads {heads}."),
    (("val_fraction",), lambda c: not 0.0 <= c.val_fraction < 1.0,
     "--val-fraction must be in [0, 1), got {val_fraction}."),
    (("converge_delta",), lambda c: not 0.0 <= c.converge_delta < 1.0,
     "--converge-delta must be in [0, 1), got {converge_delta}."),
    *(((name,), lambda c, n=name: getattr(c, n) < 0, f"--{name.replace('_', '-')} must be >= 0, got {{{name}}}.")
      for name in ("grounding_loss", "patch_grounding", "tci_debias", "step_loss", "step_all_loss")),
    (("readout_hidden",), lambda c: c.readout_hidden < 1, "--readout-hidden must be >= 1, got {readout_hidden}."),
    (("mediator", "frontdoor_cross"), lambda c: c.mediator == "cosine" and c.frontdoor_cross == "sample",
     "--frontdoor-cross sample needs --mediator learned (the cosine mediator has no sample-queried term)."),
    (("dropout",), lambda c: not 0.0 <= c.dropout < 1.0, "--dropout must be in [0, 1), got {dropout}."),
)

# Options added after the learned mediator, with the value a config saved before them meant (the head they
# built has no parameters for them), so that their checkpoints still load whatever the new default is.
ADDED_LATER: dict[str, Any] = {"patch_grounding": 0.0, "patch_contrast": "video", "tci_debias": 0.0,
                               "mediator_frames": True, "train_split": "train",
                               "step_readout": "none", "step_loss": 0.0, "step_contrast": "video", "step_all_loss": 0.0,
                               "readout_detach": True, "readout_input": "soft", "readout_hidden": 32, "step_centre": False}
