
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


# ------------------------------------------------------------------------------------------ step segments

def _segments(seed: int) -> np.ndarray:
    """0 to 3 step segments [step, start_s, end_s]; video 1 of every test gets none."""
    rng = np.random.default_rng(seed)
    count = 0 if seed == 1 else 1 + seed % 3
    starts = np.sort(rng.uniform(0, 5, count))
    return np.stack([rng.integers(0, 4, count), starts, starts + rng.uniform(0.1, 2, count)], 1).astype(np.float32)


def _write_with_segments(path, ids, flush_every=2):
    writer = ShardWriter(path, base_attrs(), make_text(), flush_every=flush_every)
    expected = {}
    for i, vid in enumerate(ids):
        record = make_record(vid, "train" if i % 2 else "test", i % 3, seed=i)
        record.segments = _segments(i) if i != 2 else [tuple(row) for row in _segments(i)]  # lists are taken too
        expected[vid] = _segments(i)
        writer.add(record)
    writer.finalize()
    return expected


def _by_id(fs: FeatureSet, positions) -> dict[str, np.ndarray]:
    return dict(zip(fs.index["video_id"][positions].tolist(), fs.read_segments(positions)))


def test_segments_round_trip_through_writer_merge_and_reader(tmp_path):
    expected = _write_with_segments(tmp_path / "a.h5", ["v0", "v1", "v2", "v3", "v4"])  # three part files
    expected.update(_write_with_segments(tmp_path / "b.h5", ["w0", "w1", "w2"], flush_every=1))
    merged = tmp_path / "m" / "merged.h5"
    merge_feature_files([tmp_path / "a.h5", tmp_path / "b.h5"], merged)
    for fs in (FeatureSet([tmp_path / "a.h5", tmp_path / "b.h5"]), FeatureSet(merged)):
        positions = np.arange(len(fs))[::-1]  # any order, across files
        got = _by_id(fs, positions)
        assert got.keys() == expected.keys()
        for vid, table in expected.items():
            assert got[vid].dtype == np.float32 and got[vid].shape == (len(table), 3)
            np.testing.assert_array_equal(got[vid], table)
        assert got["v1"].shape == (0, 3) and len(got["v3"]) == 1 and len(got["w2"]) == 3
        assert fs.summary()["segments"] == sum(len(t) for t in expected.values())
        assert fs.verify() == []


def test_file_without_segments_reads_as_none(tmp_path):
    path = write_shard(tmp_path / "old.h5", [("v0", "train", 0), ("v1", "test", 1)])
    with h5py.File(path, "r+") as f:  # a format_version 1 file written before /segments existed
        del f["segments"]
    fs = FeatureSet(path)
    assert [s.shape for s in fs.read_segments(np.array([1, 0]))] == [(0, 3), (0, 3)]
    assert fs.read_segments(np.array([], np.int64)) == []
    assert fs.summary()["segments"] == 0 and fs.verify() == []
    merged = tmp_path / "merged.h5"
    merge_feature_files(path, merged)  # merging an old file gives empty segments, not an error
    assert [s.shape for s in FeatureSet(merged).read_segments(np.arange(2))] == [(0, 3), (0, 3)]


def test_bad_segments_are_refused_or_reported(tmp_path):
    path = tmp_path / "s.h5"
    _write_with_segments(path, ["v0", "v1", "v2"])
    with h5py.File(path, "r+") as f:
        f["segments/table"][0] = [9, 2.0, 1.0]  # step outside 4 steps, ends before it starts
    problems = FeatureSet(path).verify()
    assert len(problems) == 1 and "'v0'" in problems[0] and "step segment" in problems[0]
    with h5py.File(path, "r+") as f:
        offsets = f["segments/offsets"][()]
        del f["segments/offsets"]
        f["segments/offsets"] = offsets[:-1]
    with pytest.raises(FeatureFileError, match=r"s\.h5: /segments/offsets has shape"):
        FeatureSet(path)


def test_synthetic_extraction_stores_the_manifest_segments(tmp_path):
    from cmdcl.extract.datasets.registry import load_dataset
    from video_fixtures import extract_tiny_world

    root, shard_path = extract_tiny_world(tmp_path)
    fs = FeatureSet(shard_path)
    stored = _by_id(fs, np.arange(len(fs)))
    items = load_dataset("manifest", root).items
    assert len(items) == len(fs) > 0
    for item in items:
        assert len(item.segments) >= 3  # every synthetic video is a script of 3-4 steps
        np.testing.assert_allclose(stored[item.video_id], np.array(item.segments, np.float32), rtol=1e-6)
        steps = fs.read_array("steps", np.flatnonzero(fs.index["video_id"] == item.video_id))[0]
        assert set(np.flatnonzero(steps)) == set(stored[item.video_id][:, 0].astype(int))


# ------------------------------------------------------------------------------- provenance compatibility

def test_first_mismatch_names_the_attribute_and_reads_hdf5_values_as_written():
    from cmdcl.core.provenance import COMPATIBILITY_KEYS, RESUME_KEYS, comparable, first_mismatch, mismatches

    written = {"frames": 8, "sampler": {"mode": "uniform", "frames": 8}, "pretrained": None, "precision": "fp32"}
    read_back = {"frames": np.int64(8), "sampler": '{"frames": 8, "mode": "uniform"}', "pretrained": "",
                 "precision": b"fp32"}  # how h5py returns them
    assert first_mismatch(written, read_back, tuple(written)) is None
    assert comparable({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'
    other = {**read_back, "frames": np.int64(16), "precision": "fp16"}
    mismatch = first_mismatch(written, other, tuple(written))
    assert (mismatch.key, mismatch.ours, mismatch.theirs) == ("frames", "8", "16")
    assert str(mismatch) == "frames='8' vs '16'"
    assert [m.key for m in mismatches(written, other, tuple(written))] == ["frames", "precision"]
    # A key missing on one side differs, unless the caller trusts files written before it existed.
    assert first_mismatch({"frames": 8}, {}, ("frames",)).theirs == "<missing>"
    assert first_mismatch({"frames": 8}, {}, ("frames",), skip_missing=True) is None
    assert set(COMPATIBILITY_KEYS) < set(RESUME_KEYS)


def test_feature_set_refuses_each_compatibility_key_by_name(tmp_path):
    a = write_shard(tmp_path / "a.h5", [("v0", "train", 0)])
    for i, (key, value) in enumerate([("weights_sha256", "abc"), ("sampler", {"kind": "fps"}), ("precision", "fp16")]):
        other = write_shard(tmp_path / f"o{i}.h5", [(f"w{i}", "train", 0)], attrs=base_attrs(**{key: value}))
        with pytest.raises(FeatureFileError, match=rf"o{i}\.h5: attribute {key}=.* differs from .*a\.h5"):
            FeatureSet([a, other])


def test_dataset_ids_round_trip_through_merge_and_old_files_read_without_them(tmp_path):
    from dataclasses import replace

    old = write_shard(tmp_path / "old.h5", [("a", "train", 0)])
    assert FeatureSet(old).text.step_ids is None and FeatureSet(old).text.class_ids is None
    text = replace(make_text(), class_ids=[0, 1, 2], step_ids=[1, 2, 3, 4])  # COIN-like: steps counted from 1
    for name, (vid, label) in {"s0.h5": ("b", 1), "s1.h5": ("c", 2)}.items():
        writer = ShardWriter(tmp_path / "ids" / name, base_attrs(), text)
        writer.add(make_record(vid, "train", label))
        writer.finalize()
    merge_feature_files(tmp_path / "ids", tmp_path / "merged.h5")
    merged = FeatureSet(tmp_path / "merged.h5").text
    assert (merged.class_ids, merged.step_ids) == ([0, 1, 2], [1, 2, 3, 4])
    with pytest.raises(FeatureFileError, match="label vocabulary differs"):
        FeatureSet([old, tmp_path / "merged.h5"])
