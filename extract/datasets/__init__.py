"""Dataset adapters: one interface (`load_dataset`) over every dataset of the table `registry.DATASETS`."""
from cmdcl.extract.datasets.base import DatasetIndex, VideoItem
from cmdcl.extract.datasets.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "DatasetIndex", "VideoItem", "load_dataset"]
