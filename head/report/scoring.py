"""What the report draws: the head's outputs on one split and one video, and the choices of activities,
atomic actions and video that the figures show (no plotting here)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import FeatureSet
from ..model.baselines import CLIP_LOGIT_SCALE
from ..data import FeatureData
from ..metrics.grounding import stored_frame_column

MAX_SIMILARITY_ACTIONS = 12  # the paper's figure 5 shows 10
MAX_TRACKED_ACTIONS = 6  # lines in the temporal-attention plot
MAX_ACTIVITY_STEPS = 8  # steps drawn per activity in the matching figure
FALLBACK_TOP_K = 6  # steps per activity when step presence is not annotated


# ============================================================================================ model outputs

@torch.no_grad()
def score_split(model: torch.nn.Module, data: FeatureData, device: torch.device, batch_size: int = 256,
                on_batch: Callable[[np.ndarray, dict[str, torch.Tensor]], None] | None = None,
                ) -> dict[str, np.ndarray | None]:
    """Logits, step logits and the debiased texts T' (mean over the split's videos) of every video;
    `on_batch(batch rows, all outputs)` sees every batch's outputs (the grounding metric's attention)."""
    model.eval()
    logits, step_logits, text_sum = [], [], None
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        batch = data.batch(rows, device)
        out = model(batch["features"], batch["frame_mask"], batch.get("patches"))
        if on_batch is not None:
            on_batch(rows, out)
        logits.append(out["logits"].float().cpu())
        if "step_logits" in out:
            step_logits.append(out["step_logits"].float().cpu())
        if "debiased_text" in out:  # a batch mean when T' depends on the video: weight by batch size
            part = out["debiased_text"].float().cpu() * len(rows)
            text_sum = part if text_sum is None else text_sum + part
    return {"logits": torch.cat(logits).numpy(),
            "step_logits": torch.cat(step_logits).numpy() if step_logits else None,
            "debiased_text": (text_sum / len(data)).numpy() if text_sum is not None else None}


def pick_video(data: FeatureData, video: str | None, split: str) -> int:
    if video is None:
        return 0
    hits = np.flatnonzero(data.video_id == video)
    if not len(hits):
        raise CmdclError(f"--video {video}: no such video in split {split!r} (first ids: "
                         f"{', '.join(map(str, data.video_id[:3]))}).", fix="pass an id of that split, or --split.")
    return int(hits[0])


@torch.no_grad()
def video_view(model: torch.nn.Module, data: FeatureData, row: int, device: torch.device) -> dict[str, Any]:
    """Everything the per-video figures draw: the head's outputs for this one video, its stored frame times
    and indices (of the frames the head saw), labels, step segments, and the mean of its valid CLIP frame
    features."""
    batch = data.batch(np.array([row]), device)
    out = model(batch["features"], batch["frame_mask"], batch.get("patches"))
    fs = data.feature_set
    position = int(data.positions[row])
    timestamps = stored_frame_column(data, np.array([row]), "timestamps_ms")[0]  # of the frames the head saw
    frame_index = stored_frame_column(data, np.array([row]), "frame_index")[0]
    mask = batch["frame_mask"][0].cpu().numpy()
    features = F.normalize(batch["features"][0].float().cpu(), dim=-1).numpy()
    mean_frame = features[mask].mean(0) if mask.any() else features.mean(0)

    def numpy(name: str) -> np.ndarray | None:
        return out[name][0].float().cpu().numpy() if name in out else None

    return {
        "row": row, "video_id": str(data.video_id[row]), "path": str(fs.index["path"][position]),
        "label": int(data.label[row]), "labels": data.labels[row].cpu().numpy(), "steps": data.steps[row].cpu().numpy(),
        "frame_mask": mask, "timestamps_s": np.asarray(timestamps, np.float64) / 1000.0,
        "frame_index": np.asarray(frame_index, np.int64), "mean_frame": mean_frame / np.linalg.norm(mean_frame),
        "logits": numpy("logits"), "step_logits": numpy("step_logits"), "step_attention": numpy("step_attention"),
        "spatial_attention": numpy("spatial_attention"), "segments": fs.read_segments(np.array([position]))[0],
    }


# ============================================================================================ selections

def activity_steps(fs: FeatureSet, class_text: np.ndarray, step_text: np.ndarray,
                   top_k: int = FALLBACK_TOP_K) -> tuple[list[np.ndarray], bool]:
    """Per class, the atomic actions of that activity, most frequent first; and whether steps are annotated.

    Annotated: the steps present (VideoRecord.steps) in the class's training videos. Otherwise (or for a
    class without annotated training videos): the top-k steps by CLIP similarity of class and step texts.
    """
    index = fs.index
    train = index["split"] == "train"
    if not train.any():
        train = np.ones(len(fs), bool)
    steps = index["steps"][train].astype(np.float64)
    labels = index["labels"][train] > 0
    annotated = bool(steps.any()) and steps.shape[1] == step_text.shape[0]
    similarity = _unit(class_text) @ _unit(step_text).T
    out = []
    for c in range(class_text.shape[0]):
        members = labels[:, c]
        frequency = steps[members].mean(0) if annotated and members.any() else None
        if frequency is not None and frequency.any():
            present = np.flatnonzero(frequency > 0)
            out.append(present[np.argsort(-frequency[present], kind="stable")])
        else:
            out.append(np.argsort(-similarity[c], kind="stable")[:top_k])
    return out, annotated


def default_similarity_actions(metrics: dict[str, Any], multilabel: bool, activities: list[np.ndarray],
                               num_steps: int) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Steps of the most confused activities (as in the paper: scrambled egg vs pancake), up to 12.

    Classes are taken in order of confusion (single-label: pairs by confusion count; multi-label: lowest
    AP first) and their steps appended until 12. Returns (steps, groups (class, first, last) per activity).
    """
    if multilabel:
        ap = metrics.get("per_class_AP", {})
        values = np.array([np.inf if v is None else v for v in ap.values()])
        order = list(np.argsort(values, kind="stable")[:len(values)])
    else:
        confusion = np.asarray(metrics["confusion_matrix"], np.int64)
        mutual = confusion + confusion.T
        np.fill_diagonal(mutual, 0)
        upper = np.triu_indices_from(mutual, k=1)
        pairs = sorted(zip(upper[0], upper[1]), key=lambda ab: -mutual[ab])
        order = []
        for a, b in pairs:
            if mutual[a, b] == 0:
                break
            order += [c for c in (a, b) if c not in order]
    chosen: list[int] = []
    groups: list[tuple[int, int, int]] = []
    for c in order:
        new = [int(s) for s in activities[c] if int(s) not in chosen][:MAX_SIMILARITY_ACTIONS - len(chosen)]
        if new:
            groups.append((int(c), len(chosen), len(chosen) + len(new) - 1))
            chosen += new
        if len(chosen) >= MAX_SIMILARITY_ACTIONS:
            break
    if len(chosen) < 2:  # nothing confused (or no steps): the first actions of the vocabulary
        return list(range(min(MAX_SIMILARITY_ACTIONS, num_steps))), []
    return chosen, groups


def default_tracked_actions(view: dict[str, Any]) -> list[int]:
    """The video's annotated steps (else all), highest step score first, at most 6."""
    scores = view.get("step_logits")
    if scores is None:
        return []
    present = np.flatnonzero(view["steps"] > 0) if len(view["steps"]) == len(scores) else np.array([], np.int64)
    candidates = present if len(present) else np.arange(len(scores))
    return [int(s) for s in candidates[np.argsort(-scores[candidates], kind="stable")][:MAX_TRACKED_ACTIONS]]


def resolve_actions(actions: Sequence[str] | None, step_names: list[str]) -> list[int]:
    """Indices of the named atomic actions (exact match, else case-insensitive), in the given order."""
    if not actions:
        return []
    lower = {n.lower(): i for i, n in reversed(list(enumerate(step_names)))}
    exact = {n: i for i, n in reversed(list(enumerate(step_names)))}
    chosen = []
    for name in (a.strip() for a in actions):
        if not name:
            continue
        index = exact.get(name, lower.get(name.lower()))
        if index is None:
            raise CmdclError(f"--actions: {name!r} is not an atomic action of this run (e.g. "
                             f"{', '.join(repr(n) for n in step_names[:3])}).",
                             fix="use names from the features' step vocabulary, separated by commas.")
        if index not in chosen:
            chosen.append(index)
    return chosen


def matching_probabilities(view: dict[str, Any], clip_step_text: np.ndarray, activities: list[np.ndarray],
                           class_names: list[str], multilabel: bool) -> dict[str, Any]:
    """Figure 7c's numbers for one video: its true activity A, the most confusable other activity B, and
    softmax probabilities over the union of their steps, before (CLIP: cos(mean frame, step text) / tau,
    tau = 1/100 as CLIP's logit scale) and after (the head's step logits)."""
    logits = view["logits"]
    positives = np.flatnonzero(view["labels"] > 0)
    if not multilabel and view["label"] >= 0:
        a, kind = view["label"], "true"
    elif len(positives):
        a, kind = int(positives[np.argmax(logits[positives])]), "true"
    else:
        a, kind = int(np.argmax(logits)), "predicted"
    others = np.array([c for c in range(len(logits)) if c != a and c not in positives] or
                      [c for c in range(len(logits)) if c != a], np.int64)
    b = int(others[np.argmax(logits[others])]) if len(others) else a
    steps_a = [int(s) for s in activities[a][:MAX_ACTIVITY_STEPS]]
    steps_b = [int(s) for s in activities[b] if int(s) not in steps_a][:max(0, 2 * MAX_ACTIVITY_STEPS - len(steps_a))]
    rows = np.array(steps_a + steps_b, np.int64)
    in_b = set(int(s) for s in activities[b])
    before = CLIP_LOGIT_SCALE * (clip_step_text[rows] / np.linalg.norm(clip_step_text[rows], axis=1, keepdims=True)
                                 ) @ view["mean_frame"]
    after = view["step_logits"][rows]
    return {"class_a": a, "class_b": b, "kind_a": kind, "rows": rows,
            "member_a": np.isin(rows, steps_a), "member_b": np.array([int(s) in in_b for s in rows]),
            "before": _softmax(before), "after": _softmax(after), "video_id": view["video_id"],
            "predicted": int(np.argmax(logits)), "class_names": class_names}


def _matching_summary(matching: dict[str, Any], step_names: list[str], class_names: list[str]) -> dict[str, Any]:
    if not matching:
        return {}
    rows = [step_names[i] for i in matching["rows"]]
    return {"activity_a": class_names[matching["class_a"]], "activity_b": class_names[matching["class_b"]],
            "activity_a_is": matching["kind_a"], "steps": rows,
            "in_a": matching["member_a"].tolist(), "in_b": matching["member_b"].tolist(),
            "before": [round(float(p), 4) for p in matching["before"]],
            "after": [round(float(p), 4) for p in matching["after"]]}


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


