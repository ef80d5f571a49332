"""The CMDCL head: textual back-door (T'), visual front-door (V'), cross-modal classifier (docs/METHOD.md).

    T' = TCI(T, V_P)                        head/model/textual.py   (T' = frozen CLIP T0 with --no-tci)
    V_s = STA^H(VideoEncoder(V_P - mean))   head/model/visual.py    (static_split: minus the video's mean frame)
    V' = Mediator(T', V_s, patches)         head/model/mediator.py  (learned; patches mediated beside the stack)
                                            head/model/visual.py    (cosine, the old one; V' = mean_F V_s with --no-vci)
    s_i = <norm V'_i, norm T'_i> * scale    per-atomic-action evidence (B, S)
    logits = s W_cls + b                    (B, C); logits = s when the classes are the atomic actions
  or, with step_readout gru [ours]:         head/model/step_readout.py
    e_f = <norm proj(V_s,f), norm T'>       per-frame step evidence (B, F, S), trained by the dense step loss
    logits = GRU(softmax(e).detach())       the class from the step evidence over time alone
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmdcl.core.errors import CmdclError
from .config import HeadConfig, check_choice
from .textual import TextualBackdoor, build_frame_dictionary, clamped_scale, logit_scale_parameter
from .visual import FrontdoorMediator, SpatioTemporalAttention, VideoEncoder, masked_mean, safe_frame_mask
from .visual import video_means
from .mediator import LearnedMediator, PatchStepProbe, frame_deviations, static_split
from .step_readout import FrameStepEvidence, StepReadout

MAX_DICTIONARY_ROWS = 20_000  # frames (bias dictionary) or videos (memory) given to KMeans


class StepEvidence(nn.Module):
    """Per-atomic-action evidence s_i from V' and T' (docs/METHOD.md, "Classifier").

    "similarity": s_i = <norm V'_i, norm T'_i> * scale.
    "attention": T' queries all of V' (keys/values), o = V' + Attn(T', V', V'); s_i = <norm o_i, norm T'_i>
    * scale, so evidence for one action can borrow from related ones. Its output map starts at zero,
    i.e. it starts as "similarity".
    """

    def __init__(self, dim: int, kind: str, heads: int, init_temperature: float):
        super().__init__()
        check_choice("classifier", kind)
        self.kind = kind
        self.log_scale = logit_scale_parameter(init_temperature)
        if kind == "attention":
            if dim % heads:
                raise CmdclError(f"classifier='attention' needs the embedding size {dim} divisible by heads={heads}.")
            self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
            nn.init.zeros_(self.attention.out_proj.weight)

    def forward(self, text: Tensor, visual: Tensor) -> Tensor:
        if self.kind == "attention":
            visual = visual + self.attention(text, visual, visual, need_weights=False)[0]
        return (F.normalize(visual, dim=-1) * F.normalize(text, dim=-1)).sum(-1) * clamped_scale(self.log_scale)


def class_map_init(class_text: Tensor, step_text: Tensor, temperature: float) -> Tensor:
    """(C, S) weights: each class starts as a softmax-weighted average of the step scores most similar
    to its name, so class logits are sensible before training."""
    similarity = F.normalize(class_text, dim=-1) @ F.normalize(step_text, dim=-1).T
    return (similarity / temperature).softmax(-1)


class CMDCLHead(nn.Module):
    """CMDCL on cached CLIP features. See docs/METHOD.md for every option and equation.

    features (B, F, D), frame_mask (B, F) bool, patches (B, F, P, D) or None ->
    {"logits" (B, C), "step_logits" (B, S), "step_attention" (B, S, F), "debiased_text" (S, D),
     "video_summary" (B, D), "representation" (B, S*D) (V' flattened; (B, D) with --no-vci),
     ["spatial_attention" (B, S, F, P) when patches are used],
     ["frame_step_logits" (B, F, S) with step_readout gru or step_loss > 0]}.
    With step_readout gru, "logits" come from the GRU read-out over the frame-step posteriors and
    "representation" is what its linear layer reads (B, 2H).
    Attention maps are over the input's F frames (those FeatureData kept for cfg.frames): zero on
    padded frames.
    """

    def __init__(self, cfg: HeadConfig, step_text: Tensor, class_text: Tensor, frames: int,
                 patches_per_frame: int, multilabel: bool):
        super().__init__()
        _check_config(cfg, patches_per_frame)
        self.cfg = cfg
        self.multilabel = multilabel
        same_texts = class_text is step_text
        class_text = torch.as_tensor(class_text).detach().float()
        steps = torch.as_tensor(step_text).detach().float()
        self.steps_are_classes = (steps.shape[0] == 0 or same_texts
                                  or (multilabel and steps.shape[0] == class_text.shape[0]))
        if steps.shape[0] == 0:  # no step vocabulary: the class names are the atomic texts
            steps = class_text
        if steps.shape[-1] != class_text.shape[-1]:
            raise CmdclError(f"step texts have size {steps.shape[-1]} but class texts {class_text.shape[-1]}.")
        steps = F.normalize(steps, dim=-1)
        dim, width = steps.shape[-1], cfg.width or steps.shape[-1]
        self.num_steps, self.num_classes, self.embed_dim = steps.shape[0], class_text.shape[0], dim
        # use_patches None (auto): on when the caller gives a patch grid (train resolves it from the file)
        self.use_patches = patches_per_frame > 0 if cfg.use_patches is None else bool(cfg.use_patches)
        learned = cfg.mediator == "learned"
        self.learned = learned

        # Build under the config's seed without disturbing the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.use_tci:
                self.tci = TextualBackdoor(
                    steps, cfg.bias_estimator, cfg.bias_source, cfg.tci_residual, cfg.dictionary_size,
                    cfg.sinkhorn_iters, cfg.sinkhorn_eps, cfg.init_temperature)
            else:
                self.tci = None
                self.register_buffer("frozen_text", steps.clone())  # T' = T0, frozen CLIP texts
            self.encoder = VideoEncoder(dim, width, frames, patches_per_frame if self.use_patches else 0,
                                        cfg.dropout, frame_context=cfg.patch_frame_context)
            # The learned mediator reads the patches itself, before the stack: the stack sees F tokens only.
            self.sta = SpatioTemporalAttention(width, cfg.heads, cfg.sta_layers, cfg.dropout,
                                               divided=self.use_patches and not learned)
            if not cfg.use_vci:
                self.mediator = None
            elif learned:
                self.mediator = LearnedMediator(dim, width, cfg.frontdoor_cross, cfg.dictionary_size,
                                                cfg.init_temperature, key_init=self.encoder.to_embedding.weight)
            else:
                self.mediator = FrontdoorMediator(dim, cfg.frontdoor_cross, cfg.dictionary_size, cfg.init_temperature)
            self.step_evidence = StepEvidence(dim, cfg.classifier, cfg.heads, cfg.init_temperature)
            # the patch-level grounding loss's reader (training only): needs the learned mediator's patch maps
            grounded = cfg.patch_grounding > 0 and learned and cfg.use_vci and self.use_patches
            self.patch_probe = PatchStepProbe(steps, cfg.init_temperature) if grounded else None
            self._build_step_path(cfg, width, dim)
            if self.steps_are_classes or self.readout is not None:
                self.class_map = None
            else:
                self.class_map = nn.Linear(self.num_steps, self.num_classes)
                with torch.no_grad():
                    self.class_map.weight.copy_(class_map_init(class_text, steps, cfg.init_temperature))
                    self.class_map.bias.zero_()

    def _build_step_path(self, cfg: HeadConfig, width: int, dim: int) -> None:
        """[ours] The per-frame step evidence (when read or trained) and the GRU read-out. train-head makes
        step_readout "auto" concrete from the features' segments before building the head; a head built
        from "auto" without that (no data seen) is today's classifier, as without segments."""
        check_choice("step_readout", cfg.step_readout)
        readout = cfg.step_readout == "gru"
        self.frame_evidence = (FrameStepEvidence(width, dim, cfg.init_temperature, init=self.encoder.to_embedding)
                               if readout or cfg.step_loss > 0 else None)
        self.readout = (StepReadout(self.num_steps, self.num_classes, cfg.readout_hidden, cfg.readout_detach,
                                    cfg.readout_input) if readout else None)

    # ---------------------------------------------------------------- dictionaries
    @property
    def dictionaries_fitted(self) -> bool:
        """False while a dictionary this config uses is still empty (call fit_dictionaries)."""
        needed = []
        if self.tci is not None and self.tci.bias_source != "video":
            needed.append(self.tci.fitted)
        if self.mediator is not None and self.mediator.cross != "none":
            needed.append(self.mediator.fitted)
        return all(bool(flag) for flag in needed)

    @torch.no_grad()
    def fit_dictionaries(self, frame_features: np.ndarray, frame_mask: np.ndarray) -> None:
        """Build the bias dictionary and the front-door memory from the training set (KMeans).

        frame_features (N, F, D) float16/32, frame_mask (N, F) bool; at most 20k rows per KMeans, drawn
        with cfg.seed. Back door: "dictionary" clusters valid frames, "prior" the per-video mean frames
        (the static context z), both with cluster-frequency priors P(z_k). Front door: "dictionary"
        clusters per-video means (refreshed by refresh_memory); "sample" clusters the frames the mediator
        reads (minus their video mean with static_split), with priors. Results live in buffers.
        """
        if frame_features.ndim != 3 or frame_features.shape[-1] != self.embed_dim:
            raise CmdclError(f"fit_dictionaries needs (N, F, {self.embed_dim}) features, got {frame_features.shape}.")
        frame_mask = np.asarray(frame_mask, bool)
        rng = np.random.default_rng(self.cfg.seed)
        k, seed = self.cfg.dictionary_size, self.cfg.seed
        videos = np.arange(len(frame_features))
        if len(videos) > MAX_DICTIONARY_ROWS:
            videos = np.sort(rng.choice(videos, MAX_DICTIONARY_ROWS, replace=False))
        source = self.tci.bias_source if self.tci is not None else "video"
        if source == "dictionary":
            valid = np.flatnonzero(frame_mask.reshape(-1))
            if len(valid) > MAX_DICTIONARY_ROWS:
                valid = np.sort(rng.choice(valid, MAX_DICTIONARY_ROWS, replace=False))
            frames = np.asarray(frame_features.reshape(-1, self.embed_dim)[valid], np.float32)
            self.tci.set_dictionary(*map(torch.from_numpy, build_frame_dictionary(frames, k, seed)))
        elif source == "prior":
            means = video_means(frame_features[videos], frame_mask[videos])
            self.tci.set_dictionary(*map(torch.from_numpy, build_frame_dictionary(means, k, seed)))
        cross = self.mediator.cross if self.mediator is not None else "none"
        if cross == "dictionary":
            summaries = video_means(frame_features[videos], frame_mask[videos])
            self.mediator.set_memory(torch.from_numpy(build_frame_dictionary(summaries, k, seed)[0]))
        elif cross == "sample":
            # one KMeans start: thousands of frames, and the dictionary only has to cover them (fit time)
            self.mediator.set_memory(*map(torch.from_numpy, build_frame_dictionary(
                self._mediator_frames(frame_features, frame_mask, rng), k, seed, n_init=1)))

    def _mediator_frames(self, frame_features: np.ndarray, frame_mask: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
        """Up to 20k valid training frames as the mediator reads them (minus the video mean with
        static_split), float32 (n, D), gathered over a random subset of videos so memory stays bounded."""
        per_video = max(1, int(frame_mask.sum(1).mean()))
        videos = np.arange(len(frame_features))
        wanted = max(1, MAX_DICTIONARY_ROWS // per_video)
        if len(videos) > wanted:
            videos = np.sort(rng.choice(videos, wanted, replace=False))
        feats, mask = np.asarray(frame_features[videos], np.float32), frame_mask[videos]
        return frame_deviations(feats, mask) if self.cfg.static_split else feats[mask]

    @property
    def refreshes_memory(self) -> bool:
        """Whether refresh_memory moves anything: only the text-queried memory of video summaries does, so
        training skips the pass over the training set otherwise."""
        return self.mediator is not None and self.mediator.cross == "dictionary"

    @torch.no_grad()
    def refresh_memory(self, summaries: Tensor, momentum: float = 0.9) -> None:
        """EMA refresh of the front-door memory with outputs' "video_summary" rows (N, D), e.g. between
        epochs. No-op without a front-door memory."""
        if self.mediator is not None:
            self.mediator.update_memory(summaries, momentum=momentum, seed=self.cfg.seed)

    def patch_step_logits(self, patches: Tensor, frame_mask: Tensor, video: Tensor) -> Tensor:
        """(n, F, P, S) step logits of every patch of video `video[i]` as the mediator reads it (minus the
        video's mean with static_split), from the patches and frame_mask given to forward: the patch
        grounding loss's per-patch evidence (head/training/grounding_loss.py)."""
        if self.patch_probe is None:
            raise CmdclError("patch_step_logits needs patch_grounding > 0 (with the learned mediator and patches).")
        patches = patches.to(self.encoder.in_proj.weight.dtype)
        if self.cfg.static_split:
            patches = static_split(patches, safe_frame_mask(frame_mask.bool()))
        return self.patch_probe(patches)[video]  # once per video, then one copy per (video, step) pair

    # ---------------------------------------------------------------- forward
    @property
    def atomic_text(self) -> Tensor:
        """T: the learnable atomic-action texts (or the frozen CLIP ones with --no-tci), (S, D)."""
        return self.tci.text if self.tci is not None else self.frozen_text

    def forward(self, features: Tensor, frame_mask: Tensor, patches: Tensor | None = None) -> dict[str, Tensor]:
        batch = features.shape[0]
        if self.use_patches and patches is None:
            raise CmdclError("use_patches is set but no patch features were given.",
                             fix="extract with a patch grid, or train without --use-patches.")
        dtype = self.encoder.in_proj.weight.dtype
        frames = features.to(dtype)  # V_P: the frames FeatureData kept (--frames)
        mask = safe_frame_mask(frame_mask.bool())
        patch_in = patches.to(dtype) if self.use_patches else None

        text = self.tci(frames, mask) if self.tci is not None else self.frozen_text  # T'
        visual, attention, spatial, summary, tokens = self._visual(text, frames, patch_in, mask)
        text_b = text.expand(batch, *text.shape) if text.dim() == 2 else text
        step_logits = self.step_evidence(text_b, visual)
        logits = step_logits if self.class_map is None else self.class_map(step_logits)
        frame_step_logits = None
        if self.frame_evidence is not None:
            frame_step_logits = self.frame_evidence(tokens, text)
            if self.cfg.step_centre:  # [ours] what every frame of the video shares (the context) goes
                frame_step_logits = static_split(frame_step_logits, mask)
        read = None
        if self.readout is not None:
            logits, read = self.readout(frame_step_logits, mask)
        out = {
            "logits": logits,
            "step_logits": step_logits,
            "step_attention": attention,
            "debiased_text": text.mean(0) if text.dim() == 3 else text,
            "video_summary": summary,
            # V' flattened: the evidence the classifier reads. Without the front door every V'_i is the
            # same summary: it stands for them all (flattening S copies would only cost memory).
            "representation": visual.reshape(batch, -1) if self.mediator is not None else summary,
        }
        if read is not None:  # the read-out's classifier reads the step evidence over time, not V'
            out["representation"] = read
        if frame_step_logits is not None:
            out["frame_step_logits"] = frame_step_logits
        if spatial is not None:
            out["spatial_attention"] = spatial
        return out

    def _visual(self, text: Tensor, frames: Tensor, patches: Tensor | None,
                mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """V' (B, S, D), temporal attention (B, S, F), spatial attention (B, S, F, P) or None, summary (B, D)."""
        if self.mediator is not None and self.cfg.static_split:  # [ours] the mediator reads the dynamic part
            frames = static_split(frames, mask)
            patches = static_split(patches, mask) if patches is not None else None
        if self.learned:
            stack = self.sta(self.encoder.frame_tokens(frames), mask)
            summary = masked_mean(self.encoder.to_embedding(stack), mask)
            if self.mediator is not None:
                tokens = stack
                if patches is not None and self.cfg.patch_frame_context:  # old: the frame embedding in every patch
                    tokens = tokens + frames @ self.encoder.in_proj.weight.T
                if patches is not None and not self.cfg.mediator_frames:  # [ours] the attended patches alone
                    tokens = torch.zeros_like(tokens)
                return (*self.mediator(text, tokens, patches, mask, self.encoder), summary, stack)
        else:
            stack = self.sta(self.encoder(frames, patches), mask)
            tokens = self.encoder.to_embedding(stack)  # V_s
            stack = stack.mean(2) if stack.dim() == 4 else stack
            summary = masked_mean(tokens, mask)
            if self.mediator is not None:
                return (*self.mediator(text, tokens, mask), summary, stack)
        # no front door: every action sees the same mean-pooled video
        batch, dtype = frames.shape[0], frames.dtype
        visual = summary[:, None, :].expand(batch, self.num_steps, -1)
        attention = (mask / mask.sum(-1, keepdim=True)).to(dtype)[:, None, :].expand(-1, self.num_steps, -1)
        spatial = None
        if patches is not None:
            p = patches.shape[2]
            spatial = mask.to(dtype)[:, None, :, None].expand(-1, self.num_steps, -1, p) / p
        return visual, attention, spatial, summary, stack


def _check_config(cfg: HeadConfig, patches_per_frame: int) -> None:
    """The options (HeadConfig.check, the one place), then what needs the data: patches present."""
    cfg.check()
    if cfg.use_patches and patches_per_frame <= 0:
        raise CmdclError("use_patches needs features extracted with a patch grid (patches_per_frame is 0).",
                         fix="re-extract with patches, or train without --use-patches.")
