"""The report's reliability diagram: for each split the report covers, the head's top-1 confidence in 15
equal-width bins against the accuracy inside each bin, the gap between them, and how many videos each bin
holds. The numbers are evaluate's (head/metrics/calibration.py), so the diagram and metrics_<split>.json agree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..metrics.calibration import calibration_metrics
from .figures import Figure, _figure, _no_data, _save

MAX_RELIABILITY_SPLITS = 3  # panels side by side in the fixed-size figure
TITLE = "Reliability diagram (calibration)"


def reliability_figure(splits: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], multilabel: bool,
                       path: Path) -> tuple[Figure, dict[str, Any]]:
    """splits: (name, logits, label, labels) of each split, the report's first split first. Returns the figure
    and, per split, ECE, NLL, number of videos and the bins drawn (for report.json)."""
    if multilabel:
        return Figure("reliability", TITLE, notes=["Skipped: multi-label heads have no single top-1 confidence to "
                                                  "calibrate (their mean binary NLL is in the metrics)."]), {}
    drawn = list(splits)[:MAX_RELIABILITY_SPLITS]
    numbers = {}
    for name, logits, label, labels in drawn:
        metrics = calibration_metrics(logits, label, labels, multilabel=False)
        numbers[name] = {"ece": metrics["ece"], "nll": metrics["nll"],
                         "num_videos": int(sum(metrics["calibration_bins"]["count"])),
                         "bins": metrics["calibration_bins"]}
    figure = Figure("reliability", TITLE,
                    caption="Top: the head's top-1 probability (softmax over the classes) in 15 equal-width bins; bars "
                            "are the accuracy of the videos in each bin, the hatched red part the gap to their mean "
                            "confidence (red above the bar: over-confident; below: under-confident); the dashed "
                            "diagonal is perfect calibration. ECE = the gaps weighted by the bins' shares of videos; "
                            "NLL = mean -log p(true class). Bottom: videos per bin.")
    if len(splits) > MAX_RELIABILITY_SPLITS:
        figure.notes.append(f"{len(splits)} splits: showing the first {MAX_RELIABILITY_SPLITS}.")
    figure.file = _draw(numbers, path)
    return figure, numbers


def _draw(numbers: dict[str, dict[str, Any]], path: Path) -> str:
    fig = _figure("reliability")
    grid = fig.add_gridspec(2, len(numbers), height_ratios=[3, 1])
    for column, (name, n) in enumerate(numbers.items()):
        top, bottom = fig.add_subplot(grid[0, column]), fig.add_subplot(grid[1, column])
        bins = n["bins"]
        width = 1.0 / bins["bins"]
        centres = (np.arange(bins["bins"]) + 0.5) * width
        filled = [b for b, c in enumerate(bins["count"]) if c]
        if not filled:
            _no_data(top, "no labelled videos")
        accuracy = np.array([bins["accuracy"][b] for b in filled])
        confidence = np.array([bins["confidence"][b] for b in filled])
        top.bar(centres[filled], accuracy, width=width, color="#3f86d4", edgecolor="#232c74", label="accuracy")
        top.bar(centres[filled], confidence - accuracy, bottom=accuracy, width=width, color="#d62728", alpha=0.3,
                edgecolor="#d62728", hatch="//", label="gap to mean confidence")
        top.plot([0, 1], [0, 1], "--", color="0.3", linewidth=1, label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"{name}: ECE {n['ece']:.3f}, NLL {n['nll']:.3f} ({n['num_videos']} videos)", fontsize=10)
        top.legend(fontsize=7, loc="upper left")
        top.grid(alpha=0.3)
        bottom.bar(centres, bins["count"], width=width, color="0.6", edgecolor="0.3")
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("top-1 confidence")
        bottom.set_ylabel("videos")
    fig.suptitle("Reliability diagram")
    return _save(fig, path)
