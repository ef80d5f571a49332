"""`cmdcl verify`: full checks of feature files, one file at a time and as a set of shards.

`FeatureSet` refuses what makes a file unreadable (structure, row counts, provenance); this module
(with `scan.scan_file` for one file's contents) finds what a reader would take in silently: non-finite embeddings, videos without a valid frame, labels
or step segments outside the vocabulary, counts that disagree with the `.done` marker, and shard sets
that are incomplete or were made by different runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import CmdclError, FeatureFileError
from ..provenance import SHARD_CONSISTENCY_KEYS, mismatches

from .reader import FeatureSet, resolve_feature_paths


@dataclass
class VerifyReport:
    """What `verify_paths` found: one line per problem (empty when clean) and what it read."""

    files: int = 0
    videos: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth knowing, but the files are sound (exit 0)


def verify_paths(specs: Sequence[str | Path],
                 provenance_check: Callable[[Mapping[str, Any]], str | None] | None = None) -> VerifyReport:
    """Check files (or folders/globs of shards) fully; one broken file does not hide the others' problems.

    `provenance_check` (attributes -> a line or None) adds warnings about how readable files were made:
    the CLI passes the activation check of Stage 1 (extract/architecture.py), which core does not import.
    """
    report = VerifyReport()
    paths: list[Path] = []
    for spec in specs:
        try:
            paths.extend(resolve_feature_paths(spec))
        except CmdclError as exc:
            report.problems.append(exc.one_line())
    report.files = len(paths)
    readable = []
    for path in paths:
        try:
            single = FeatureSet(path)
        except CmdclError as exc:
            report.problems.append(exc.one_line())
            continue
        report.problems.extend(single.verify())
        report.problems.extend(_check_counts(path, single))
        readable.append(single)
        report.videos += len(single)
        note = provenance_check(single.attrs) if provenance_check else None
        if note and f"{path}: {note}" not in report.warnings:
            report.warnings.append(f"{path}: {note}")
    if len(readable) > 1:
        try:
            FeatureSet([x.paths[0] for x in readable])  # together: same provenance, no video twice
        except FeatureFileError as exc:
            report.problems.append(exc.one_line())
    if readable and (len(paths) > 1 or any(Path(spec).is_dir() for spec in specs)):  # a set of shards
        report.problems.extend(_check_shards_agree(readable))
    return report


def _check_counts(path: Path, features: FeatureSet) -> list[str]:
    """/failures rows against num_failures, and the `.done` marker (when there is one) against the file."""
    problems = []
    failures = len(features.failures())
    if failures != int(features.attrs["num_failures"]):
        problems.append(f"{path}: /failures has {failures} rows, expected num_failures={features.attrs['num_failures']}.")
    marker = path.with_name(path.name + ".done")
    if marker.exists():
        try:
            done = json.loads(marker.read_text())
        except ValueError:
            return problems + [f"{marker}: done marker is not JSON."]
        if (done.get("videos"), done.get("failures")) != (len(features), failures):
            problems.append(f"{marker}: marker says {done.get('videos')} videos / {done.get('failures')} failures, "
                            f"{path.name} holds {len(features)} / {failures}.")
    return problems


def _check_shards_agree(sets: list[FeatureSet]) -> list[str]:
    """Shards given together: one run's shard numbering complete and unique, same text embeddings and setup."""
    problems = []
    first = sets[0]
    for other in sets[1:]:
        for m in mismatches(other.attrs, first.attrs, SHARD_CONSISTENCY_KEYS):
            problems.append(f"{other.paths[0]}: {m.key}={other.attrs.get(m.key)!r} differs from {first.paths[0]} "
                            f"({first.attrs.get(m.key)!r}).")
        for name in ("class_embeddings", "step_embeddings"):
            a, b = getattr(first.text, name), getattr(other.text, name)
            if a.shape != b.shape or not np.allclose(a, b, atol=1e-3):
                problems.append(f"{other.paths[0]}: text {name} differ from {first.paths[0]} "
                                "(different prompt templates or model).")
    return problems + _shard_numbering_problems(sets)


def _shard_numbering_problems(sets: list[FeatureSet]) -> list[str]:
    """One run's shards: the same shard count in all, each index once, none missing."""
    shards = [(int(x.attrs.get("shard_index", 0)), int(x.attrs.get("num_shards", 1)), x.paths[0]) for x in sets]
    counts = sorted({n for _, n, _ in shards})
    if len(counts) > 1:
        return [f"shards come from runs with different shard counts {counts}: "
                + ", ".join(f"{p.name} ({k}/{n})" for k, n, p in shards) + "."]
    problems = []
    seen: dict[int, Path] = {}
    for k, _, p in shards:
        if k in seen:
            problems.append(f"{p}: shard {k} is also in {seen[k]}.")
        seen[k] = p
    absent = sorted(set(range(counts[0])) - set(seen))
    if counts[0] > 1 and absent:
        problems.append(f"shard(s) {', '.join(map(str, absent))} of {counts[0]} are missing: "
                        "the set is incomplete (re-run those shards).")
    return problems
