"""`cmdcl report RUN`: figures of a trained head and one HTML page that shows them (docs/REPORT.md).

The figures follow the paper: training curves; confusion matrix (single-label) or per-class AP
(multi-label); atomic-action text similarity before/after the textual intervention (fig. 5);
temporal and spatial attention of atomic actions over one video (fig. 7a/b); cross-modal matching
probabilities of that video against two activities' atomic actions, before/after (fig. 7c); spatial
grounding over the frame with the object's and the props' boxes, for a few videos of each split (fig. 7);
a reliability diagram (calibration) of each split.
Heads without those outputs (the baselines) get the first two; the page says what was skipped and why.
The folder is self-contained: the page references its PNGs by relative name, so it can be copied.

Modules: build (entry point, run inputs), scoring (model outputs, choices of video/actions/activities),
figures (run-level figures, shared figure helpers), video_figures (fig. 7), spatial_figure (fig. 7 with
boxes), calibration_figure (reliability diagram), comparison (a `cmdcl compare` result), html (the page).
"""
from .build import ScoredRun, build_report, read_history, score_run
from .figures import (DPI, FIGSIZE, Figure, normalised_similarity, plot_confusion, plot_curves,
                      plot_per_class_ap, plot_text_similarity)
from .html import render_html
from .scoring import (activity_steps, default_similarity_actions, default_tracked_actions,
                      matching_probabilities, pick_video, resolve_actions, score_split,
                      video_view)
from .video_figures import (FrameReader, decode_frames, plot_matching, plot_spatial_attention,
                            plot_temporal_attention, spatial_attention_figure)

__all__ = [
    "DPI", "FIGSIZE", "Figure", "FrameReader", "ScoredRun", "activity_steps", "build_report", "decode_frames",
    "default_similarity_actions", "default_tracked_actions", "matching_probabilities", "normalised_similarity",
    "pick_video", "plot_confusion", "plot_curves", "plot_matching", "plot_per_class_ap", "plot_spatial_attention",
    "plot_temporal_attention", "plot_text_similarity", "read_history", "render_html", "resolve_actions",
    "score_run", "score_split", "spatial_attention_figure", "video_view",
]
