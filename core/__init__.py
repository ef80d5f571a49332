"""Shared pieces both stages depend on: the feature-store contract, errors, run environment.

Nothing here imports torch, decord or open_clip, so the CLI stays light.
"""
