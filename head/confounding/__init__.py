"""Confounding on any dataset: the context-only baseline (baseline), the `cmdcl confounding` report
of context-only scores and each head's leakage with intervals (report), and the scene-shifted split built from
context labels (scene_split). The context labels are the true ones (/confounders) or the zero-shot pseudo labels
of the stored context vocabularies (head/metrics/pseudo_labels.py).

May import: head.metrics, head.training (the layout of a multi-seed run), head.comparison (its bootstrap
intervals), head.data, cmdcl.core. Never head.report.
"""
