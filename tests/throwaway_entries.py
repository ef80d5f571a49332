"""A throwaway dataset, head and metric, each added the way docs/EXTRACT.md "Adding a dataset" and
docs/TRAINING.md "Adding a head" and "Adding a metric" say: one table entry each, one fixture for the dataset,
one class for the head (tests/throwaway_head.py), one function for the metric (tests/throwaway_metric.py);
nothing else.

Imported (or loaded as a pytest plugin, `-p throwaway_entries`) by tests/test_extension_points.py, which checks
that they show up in `--help` and in the contract tests' parameters, and pass those tests.
"""
from __future__ import annotations

import dataset_fixtures
from cmdcl.extract.datasets.registry import DATASETS, DatasetEntry
from cmdcl.head.metrics.registry import METRICS, DemoColumn, MetricEntry, Paired
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

# The metric: one function (tests/throwaway_metric.py) that keeps its per-video values, so that `compare` pairs it;
# one demo column (OOD).
METRICS["throwaway_margin"] = MetricEntry(
    "the gap between the top two class logits", "throwaway_metric:margin", ("logits",), paired=Paired(),
    demo=(DemoColumn("margin", "test_ood", "OOD gap between the top two class logits"),))
