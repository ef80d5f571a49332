"""Stage 2: the CMDCL head and its baselines, trained on cached features."""
