"""Stage 1: decode videos, run a frozen open_clip model, cache features in HDF5 shards."""
