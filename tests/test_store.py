import json

import h5py
import numpy as np
import pytest

from cmdcl.core.errors import FeatureFileError
from cmdcl.core.store import (FailureRecord, FeatureSet, ShardLockedError, ShardWriter, merge_feature_files,
                              shard_is_done)
from store_fixtures import base_attrs, make_record, make_text, write_shard


def test_roundtrip_shard(tmp_path):
    path = write_shard(tmp_path / "a.h5", [("v0", "train", 0), ("v1", "train", 1), ("v2", "test", 2)])
    assert shard_is_done(path)
    assert not (tmp_path / "a.h5.parts").exists()
    fs = FeatureSet(path)
    assert len(fs) == 3
    assert list(fs.index["video_id"]) == ["v0", "v1", "v2"]
    assert fs.summary()["splits"] == {"test": 1, "train": 2}
    assert fs.summary()["padded_videos"] == 1
    feats = fs.read_array("features", fs.select("train"))
    expected = make_record("v1", "train", 1, seed=1).features
    np.testing.assert_array_equal(feats[1], expected)
    mm = fs.memmap("features")
    assert mm is not None
    np.testing.assert_array_equal(mm[0][1], expected)
    assert fs.verify() == []


def test_patches_roundtrip(tmp_path):
    attrs = base_attrs(grid=2)
    path = write_shard(tmp_path / "p.h5", [("v0", "train", 0), ("v1", "test", 1)], attrs=attrs)
    fs = FeatureSet(path)
    assert fs.has_patches
    assert fs.read_array("patches", np.arange(2)).shape == (2, 6, 4, 8)


def test_resume_skips_done_and_lock(tmp_path):
    path = tmp_path / "s.h5"
    attrs = base_attrs()
    w = ShardWriter(path, attrs, make_text(), flush_every=1)
    w.add(make_record("v0", "train", 0))
    w.add_failure(FailureRecord("bad", "/x/bad.mp4", "open", "not a video"))
    w.flush()
    with pytest.raises(ShardLockedError):
        ShardWriter(path, attrs, make_text())
    w.close()  # simulate a crash: parts are there, no final file
    assert not path.exists()
    w2 = ShardWriter(path, attrs, make_text(), flush_every=1)
    assert w2.done_ids() == {"v0", "bad"}
    w2.add(make_record("v1", "test", 1, seed=1))
    summary = w2.finalize()
    assert summary == {"videos": 2, "failures": 1}
    fs = FeatureSet(path)
    assert [f.video_id for f in fs.failures()] == ["bad"]


def test_merge_equals_union_and_refuses_mismatch(tmp_path):
    a = write_shard(tmp_path / "a.h5", [("v0", "train", 0), ("v1", "test", 1)])
    b = write_shard(tmp_path / "b.h5", [("v2", "train", 2)])
    out = tmp_path / "merged.h5"
    assert merge_feature_files([a, b], out)["videos"] == 3
    merged = FeatureSet(out)
    both = FeatureSet(tmp_path / "*.h5".replace("*", "[ab]"))
    np.testing.assert_array_equal(merged.read_array("features", np.arange(3)),
                                  both.read_array("features", np.arange(3)))
    c = write_shard(tmp_path / "c.h5", [("v9", "train", 0)], attrs=base_attrs(model_name="other"))
    with pytest.raises(FeatureFileError, match="model_name"):
        FeatureSet([a, c])


def test_bad_files_are_refused_with_file_name(tmp_path):
    text = tmp_path / "x.h5"
    text.write_text("hello")
    with pytest.raises(FeatureFileError, match="not an HDF5"):
        FeatureSet(text)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(FeatureFileError, match="not a cmdcl feature file"):
        FeatureSet(tmp_path / "foreign.h5")
    good = write_shard(tmp_path / "g.h5", [("v0", "train", 0), ("v1", "train", 1)])
    data = good.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureFileError, match="trunc.h5"):
        FeatureSet(tmp_path / "trunc.h5")
    with pytest.raises(FeatureFileError, match="does not exist"):
        FeatureSet(tmp_path / "missing.h5")


def test_verify_finds_nan(tmp_path):
    path = write_shard(tmp_path / "n.h5", [("v0", "train", 0), ("v1", "train", 1)])
    with h5py.File(path, "r+") as f:
        f["videos/features"][1, 0, 0] = np.nan
    problems = FeatureSet(path).verify()
    assert len(problems) == 1 and "v1" in problems[0] and "NaN" in problems[0]


def test_dataset_without_steps_writes_and_reads(tmp_path):
    attrs = base_attrs(num_steps=0)
    path = write_shard(tmp_path / "nosteps.h5", [("v0", "train", 0), ("v1", "test", 1)], attrs=attrs)
    fs = FeatureSet(path)
    assert fs.dims["S"] == 0 and fs.text.step_names == []
    assert fs.read_array("steps", np.arange(2)).shape == (2, 0)


def test_direct_reads_equal_h5py_reads_across_files_in_any_order(tmp_path):
    a = write_shard(tmp_path / "a.h5", [("v0", "train", 0), ("v1", "test", 1), ("v2", "train", 2)])
    b = write_shard(tmp_path / "b.h5", [("v3", "train", 0), ("v4", "train", 1)])
    fs = FeatureSet([a, b])
    positions = np.array([4, 0, 2, 3])
    direct = fs.read_rows_direct("features", positions)
    np.testing.assert_array_equal(direct, fs.read_array("features", positions))
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(a.read_bytes())
    layout = [(truncated, offset + 10**9, dtype, shape) for _, offset, dtype, shape in fs.contiguous_layout("features")]
    with pytest.raises(FeatureFileError, match="shorter than its header"):
        fs.read_rows_direct("features", np.array([0]), layout)
