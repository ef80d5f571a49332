"""The head's parts: `HeadConfig` (config), the method table (registry), `build_model` (factory), TCI
(textual), the video encoder and spatio-temporal attention (visual), the front-door mediator (mediator),
the CMDCL model (cmdcl_model), the baselines (baselines), and how a model is saved and loaded (checkpoint).

May import: torch, cmdcl.core, and each other. Never head.data, head.metrics, head.training,
head.comparison or head.report: a model knows nothing of files, loops or scores.
"""
