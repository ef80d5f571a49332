"""A throwaway dataset and head, each added the way docs/EXTRACT.md "Adding a dataset" and docs/TRAINING.md
"Adding a head" say: one table entry each, one fixture for the dataset, one class for the head
(tests/throwaway_head.py); nothing else.

Imported (or loaded as a pytest plugin, `-p throwaway_entries`) by tests/test_extension_points.py, which checks
that both show up in `--help` and in the contract tests' parameters, and pass those tests.
"""
from __future__ import annotations

import dataset_fixtures
from cmdcl.extract.datasets.registry import DATASETS, DatasetEntry
from cmdcl.head.model.registry import METHODS, MethodEntry

# Registered before anything imports the configs (head/model/config.py, extract/config.py), whose --help texts are
# built from the tables when they are imported: as an entry written in the tables themselves would be.

# The dataset: an existing adapter under a new name, with one of the shared flags (--classes).
DATASETS["throwaway"] = DatasetEntry("cmdcl.extract.datasets.manifest:load", "throwaway manifest.csv and videos/",
                                     {"classes": "the throwaway class list."})
dataset_fixtures.write_throwaway = dataset_fixtures.write_manifest

# The head: one class in its own module (tests/throwaway_head.py), imported when built.
METHODS["throwaway"] = MethodEntry("throwaway_head:ThrowawayGRUHead", "a throwaway GRU baseline",
                                   ("dropout", "init_temperature"))
