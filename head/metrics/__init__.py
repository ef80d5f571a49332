"""Scoring a trained head: `evaluate` (top-1/mAP, per class, predictions files), temporal grounding
(grounding), spatial grounding on object boxes (spatial), the context-leakage probe (leakage), and the
per-video predictions file (predictions).

May import: head.model, head.data, cmdcl.core. Never head.training, head.comparison or head.report.
"""
