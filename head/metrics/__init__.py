"""Scoring a trained head: the metric table (registry: one entry per metric; table: running it over a split;
entries: each entry's compute function), `evaluate` (top-1/mAP, per class, predictions files), calibration,
temporal grounding (grounding), spatial grounding on object boxes (spatial), the context-leakage probe
(leakage), frame-level step metrics (frame_steps), and the per-video predictions file (predictions).

May import: head.model, head.data, cmdcl.core. Never head.training, head.comparison or head.report (the table
names `compare`'s pairing functions, head/comparison/paired.py, by module path: only `compare` imports them).
"""
