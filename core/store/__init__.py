"""The feature store: the HDF5 contract between extraction (writer) and training (reader).

The layout is documented in docs/FORMAT.md; `FORMAT_VERSION` changes whenever it does.

Writing is crash-safe by construction: a `ShardWriter` appends finished videos to small *part*
files, each written under a `.tmp` name and renamed when closed, so a SIGKILL loses at most the
part in flight. `finalize()` consolidates the parts into one contiguous shard (again via a `.tmp`
name + rename) and drops a `.done` marker. Readers only ever see renamed, complete files, and they
refuse anything without `complete=True`.

Modules: `layout` (format version, columns, records, text bank), `context` (the optional /context
vocabularies), `files` (one file in and out),
`writer` (`ShardWriter`, `reopen_shard`), `reader` (`FeatureSet`), `merge` (`merge_feature_files`),
`scan` (one file's contents), `verify` (`cmdcl verify`). Import the public names from `cmdcl.core.store`.
"""
from ..provenance import COMPATIBILITY_KEYS  # files read or merged together agree on these

from .context import CONTEXT_GROUP, ContextVocab, read_context, write_context
from .layout import (FAILURE_FIELDS, FORMAT_VERSION, NOTE_FIELDS, SEGMENT_COLUMNS, STR,
                     VIDEO_FIELDS, FailureRecord, NoteRecord, TextBank, VideoRecord, segment_table)
from .merge import merge_feature_files
from .reader import HDF5_SIGNATURE, FeatureSet, check_feature_file, resolve_feature_paths
from .scan import non_finite_rows, scan_file
from .verify import VerifyReport, verify_paths
from .writer import ShardLockedError, ShardWriter, reopen_shard, shard_is_done, shard_name

__all__ = [
    "COMPATIBILITY_KEYS", "CONTEXT_GROUP", "ContextVocab", "FAILURE_FIELDS", "FORMAT_VERSION", "HDF5_SIGNATURE", "NOTE_FIELDS", "SEGMENT_COLUMNS",
    "STR", "VIDEO_FIELDS", "FailureRecord", "FeatureSet", "NoteRecord", "ShardLockedError", "ShardWriter",
    "TextBank", "VerifyReport", "VideoRecord", "check_feature_file", "merge_feature_files", "non_finite_rows", "reopen_shard",
    "resolve_feature_paths", "scan_file", "segment_table", "shard_is_done", "shard_name", "verify_paths",
    "read_context", "write_context",
]
