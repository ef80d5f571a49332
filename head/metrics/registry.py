"""`METRICS`: the one table of metrics (name -> how `evaluate` computes it, how `cmdcl compare` pairs it, which
way is better, its columns in the demo's table, its help).

Everything else is derived from it: the keys of metrics_<split>.json (head/metrics/table.py runs every entry
over a split), validation during training (the entries marked `validation`), the per-video columns of
predictions_<split>.npz, `cmdcl compare --metric`'s choices and help, the lower-is-better note of its table, the
one-line summary `train-head` and `evaluate` print, the demo table's columns (pipelines/demo_table.py) and the
contract tests (tests/test_metric_contract.py), which run every entry end to end. Adding a metric:
docs/TRAINING.md, "Adding a metric".

Light on purpose (standard library only): `cmdcl --help` reads it for `compare --metric`'s help, so the
functions are named by module path and imported only when a metric is computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from cmdcl.core.errors import CmdclError

IID, OOD = "test", "test_ood"


def resolve(path: str) -> Callable[..., Any]:
    """The callable of a "module:function" path, imported on use."""
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


@dataclass(frozen=True)
class Paired:
    """How `cmdcl compare --metric NAME` scores one seed's predictions_<split>.npz (head/comparison/compare.py)."""
    # "module:function", called as function(p: Predictions, name: str, where: str); "" = the per-video column
    # NAME that the entry's `compute` kept (SplitScores.keep_per_video, Predictions.video_column)
    function: str = ""
    # True: the function returns (N,) per-video values (NaN: the video is not scored, left out for every run), the
    # metric is their mean (BCa intervals; unmatched seeds average them per video). False: it returns a
    # WeightedMetric (head/comparison/stats.py) recomputed on every resample (mAP, ECE)
    per_video: bool = True
    labelled_only: bool = False  # (per_video False) only the labelled videos are resampled (single-label)
    cheap: bool = True  # cheap per resample: a multi-seed run gets its video bootstrap too
    videos: str = "scored"  # which videos count, for the error when there are none ("labelled", "probed")


@dataclass(frozen=True)
class DemoColumn:
    """One column of `cmdcl demo`'s table: the mean over seeds of a metrics_<split>.json value."""
    header: str
    split: str  # IID ("test") or OOD ("test_ood")
    about: str  # what it shows, for the table's footer
    key: str = ""  # the metrics_<split>.json key ("": the entry's name)
    paired: bool = False  # the mean of a `compare` of the rows (also written to OUT/compare-<split>-<name>/)


@dataclass(frozen=True)
class MetricEntry:
    """One metric: what evaluate, compare, the summaries and the demo need to know about it."""
    help: str  # one line: what it measures
    # "module:function", called as function(split: SplitScores) -> dict of metrics_<split>.json keys (the entry's
    # name among them), {} where the metric does not apply (a head without the output, a file without the labels)
    compute: str
    outputs: tuple[str, ...] = ()  # head outputs `compute` reads whole, collected over the split (None: absent)
    # "module:function", called as function(split) -> an object whose .add(batch_rows, outputs) sees every batch's
    # outputs (for outputs too large to keep, e.g. attention); `compute` finds it as split.collectors[collect]
    collect: str = ""
    higher_is_better: bool = True
    family: bool = False  # NAME holds {member: {...}}; compare takes NAME:MEMBER (leakage:FACTOR)
    paired: Paired | None = None  # None: not per-video pairable, no `compare --metric NAME`
    demo: tuple[DemoColumn, ...] = ()
    headline: tuple[str, ...] = ()  # scalar keys the one-line summary shows (default: the name)
    validation: bool = False  # also scored on validation during training (from "logits"/"step_logits" alone)


_PAIRED = "cmdcl.head.comparison.paired"
_ENTRIES = "cmdcl.head.metrics.entries"
METRICS: dict[str, MetricEntry] = {
    "top1": MetricEntry(
        "top-1 accuracy over the labelled videos (single-label), with top5, mean_class_accuracy, the per-class "
        "accuracy and the confusion matrix", f"{_ENTRIES}:top1", ("logits",), validation=True,
        paired=Paired(f"{_PAIRED}:top1_values", videos="labelled"), headline=("top1", "top5", "mean_class_accuracy")),
    "mAP": MetricEntry(
        "macro average precision over the classes with a positive (multi-label), with per_class_AP",
        f"{_ENTRIES}:mean_ap", ("logits",), validation=True,
        paired=Paired(f"{_PAIRED}:map_metric", per_video=False, cheap=False)),
    "ece": MetricEntry(
        "expected calibration error of the top-1 softmax confidence, 15 bins (single-label), with its bins",
        f"{_ENTRIES}:ece", ("logits",), higher_is_better=False,
        paired=Paired(f"{_PAIRED}:ece_metric", per_video=False, labelled_only=True, videos="labelled"),
        demo=(DemoColumn("OOD ECE", OOD, "OOD expected calibration error of the top-1 softmax confidence (15 bins; "
                         "lower = better calibrated; paired with the reference in compare-test_ood-ece/)",
                         paired=True),)),
    "nll": MetricEntry(
        "negative log-likelihood of the true class (multi-label: mean binary cross-entropy)", f"{_ENTRIES}:nll",
        ("logits",), higher_is_better=False, paired=Paired(f"{_PAIRED}:nll_values", videos="labelled")),
    "step_mAP": MetricEntry(
        "macro AP of the head's atomic-action scores over the annotated steps, with per_step_AP",
        f"{_ENTRIES}:step_map", ("step_logits",), validation=True,
        paired=Paired(f"{_PAIRED}:step_map_metric", per_video=False, cheap=False),
        demo=(DemoColumn("mAP", IID, "IID atomic-action mAP"),)),
    "grounding_mass_ratio": MetricEntry(
        "step-attention mass inside the true step segments / the uniform share, with the other grounding_* "
        "(docs/REPORT.md, \"Step grounding\")", f"{_ENTRIES}:grounding",
        collect="cmdcl.head.metrics.grounding:GroundingCollector.for_split",
        headline=("grounding_mass", "grounding_uniform", "grounding_pointing"),
        demo=(DemoColumn("t-grnd", IID, "IID step-attention mass inside the true step segments / the uniform share"),)),
    "spatial_mass_ratio": MetricEntry(
        "patch-attention mass on the true object's patches / their share, with the other spatial_* "
        "(docs/REPORT.md, \"Spatial grounding\")", f"{_ENTRIES}:spatial",
        collect="cmdcl.head.metrics.spatial:SpatialCollector.for_split",
        headline=("spatial_mass_ratio", "spatial_pointing", "spatial_pointing_chance", "spatial_prop_mass_ratio"),
        demo=(DemoColumn("s-grnd", IID, "IID patch-attention mass on the true object's patches / their share"),
              DemoColumn("s-ood", OOD, "the same on OOD"),
              DemoColumn("p-mass", IID, "IID patch-attention mass on the props' patches / their share (<= 1: the "
                         "props get no more than uniform attention)", key="spatial_prop_mass_ratio"))),
    "frame_step_top1": MetricEntry(
        "per-frame step top-1: argmax of \"frame_step_logits\" against each annotated frame's step, mean over a "
        "video's annotated valid frames, then over videos", f"{_ENTRIES}:frame_step_top1",
        collect="cmdcl.head.metrics.frame_steps:FrameStepCollector",
        paired=Paired(videos="step-annotated"),
        demo=(DemoColumn("fs-iid", IID, "IID per-frame step top-1 (mean over each video's annotated frames, then "
                         "over videos)"), DemoColumn("fs-ood", OOD, "the same on OOD"))),
    "leakage": MetricEntry(
        "accuracy of a 5-fold linear probe from the head's \"representation\" to each context factor "
        "(leakage:FACTOR; docs/REPORT.md, \"Context leakage\")", f"{_ENTRIES}:leakage", ("representation",),
        family=True, paired=Paired(f"{_PAIRED}:leakage_values", videos="probed"), higher_is_better=False,
        demo=(DemoColumn("leak", OOD, "OOD accuracy of a 5-fold linear probe from the head's representation to each "
                         "context factor"),)),
    "step_leakage": MetricEntry(
        "the leakage probe read from the step evidence: the video mean of softmax(\"frame_step_logits\") over its "
        "valid frames, to each context factor (step_leakage:FACTOR)", f"{_ENTRIES}:step_leakage",
        collect="cmdcl.head.metrics.frame_steps:FrameStepCollector", family=True, higher_is_better=False,
        paired=Paired(videos="probed")),
}


def metric_entry(name: str) -> MetricEntry:
    """The entry of metric `name` (a family's NAME:MEMBER is NAME's); an unknown name is a one-line error."""
    base = name.partition(":")[0] if name not in METRICS else name
    entry = METRICS.get(base)
    if entry is None or (base != name and not entry.family):
        raise CmdclError(f"--metric {name}: unknown; choose one of {compare_choices_text()}.",
                         fix="docs/TRAINING.md, \"Adding a metric\", adds one")
    return entry


def paired_entry(name: str) -> Paired:
    """How `compare` pairs metric `name`; a one-line error when it is unknown or not per-video pairable."""
    entry = metric_entry(name)
    if entry.paired is None or (entry.family and ":" not in name):
        raise CmdclError(f"--metric {name}: not a metric `cmdcl compare` can pair; choose one of "
                         f"{compare_choices_text()}.")
    return entry.paired


def compare_choices() -> list[str]:
    """`compare --metric`'s choices: the pairable entries, a family as NAME:FACTOR."""
    return [f"{name}:FACTOR" if entry.family else name for name, entry in METRICS.items() if entry.paired]


def compare_choices_text() -> str:
    return ", ".join(compare_choices())


def lower_is_better(name: str) -> bool:
    return not metric_entry(name).higher_is_better


def compare_help() -> str:
    """`compare --metric`'s help, from the table."""
    lower = [n for n, e in METRICS.items() if e.paired and not e.higher_is_better and not e.family]
    return (" | ".join(compare_choices()) + " (default: top1, or mAP for multi-label predictions; "
            + (", ".join(lower) + ": lower is better" if lower else "") + ").")


def demo_columns() -> list[tuple[str, MetricEntry, DemoColumn]]:
    """(entry name, entry, column) of every demo column, in table order."""
    return [(name, entry, column) for name, entry in METRICS.items() for column in entry.demo]


def headline_parts(metrics: dict[str, Any]) -> list[str]:
    """The one-line summary of a metrics_<split>.json: each entry's headline keys, num_videos, the families."""
    fmt = (lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
    scalars = [k for name, e in METRICS.items() if not e.family for k in (e.headline or (name,))]
    parts = [f"{k} {fmt(metrics[k])}" for k in dict.fromkeys(scalars + ["num_videos"])
             if metrics.get(k) is not None]
    for name, entry in METRICS.items():
        if not entry.family:
            continue
        parts += [f"{name} {member} {fmt(p['accuracy'])} (chance {fmt(p['chance'])})"
                  for member, p in (metrics.get(name) or {}).items()]
        if f"{name}_skipped" in metrics:
            parts.append(f"{name} skipped: {metrics[f'{name}_skipped']}")
    return parts
