"""Dataset adapters: one interface (`load_dataset`) over every dataset of the table `registry.DATASETS`."""
from .base import DatasetIndex, VideoItem
from .registry import DATASETS, load_dataset

__all__ = ["DATASETS", "DatasetIndex", "VideoItem", "load_dataset"]
