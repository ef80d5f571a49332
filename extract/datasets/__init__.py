"""Dataset adapters: one interface over Breakfast, COIN, Charades, user manifests and the synthetic world."""
from cmdcl.extract.datasets.base import DatasetIndex, VideoItem
from cmdcl.extract.datasets.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "DatasetIndex", "VideoItem", "load_dataset"]
