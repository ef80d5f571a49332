"""Crashes and resume: SIGKILL at seeded points of the write path, damaged shards, mismatched merges,
cross-shard checks of `cmdcl verify`, and `--retry-failed`."""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cmdcl.core.store import FeatureSet, shard_is_done, shard_name
from cmdcl.extract.runner import ExtractConfig, run_extraction
from cmdcl.pipelines.cli import main as cli_main
from store_fixtures import base_attrs, write_shard
from video_fixtures import write_test_video, write_text_file, write_zero_byte

TESTS = Path(__file__).resolve().parent
GOOD = {"a": 20, "b": 9, "c": 26, "d": 14, "e": 31}  # video_id -> frames (b: fewer than F, padded)
BAD = {"f_empty": write_zero_byte, "g_text": write_text_file}
ALL_IDS = sorted([*GOOD, *BAD])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash")
    (root / "classes.txt").write_text("one\ntwo\n")
    rows = []
    for i, (video_id, frames) in enumerate(GOOD.items()):
        write_test_video(root / "videos" / f"{video_id}.mp4", num_frames=frames, height=32, width=40, gop=6)
        rows.append(f"{video_id},videos/{video_id}.mp4,train,{i % 2}\n")
    for video_id, write in BAD.items():
        write(root / "videos" / f"{video_id}.mp4")
        rows.append(f"{video_id},videos/{video_id}.mp4,test,0\n")
    (root / "manifest.csv").write_text("video_id,path,split,label\n" + "".join(rows))
    return root


def config(root: Path, out: Path, **overrides) -> ExtractConfig:
    options = dict(dataset="manifest", root=str(root), out_dir=str(out), model="cmdcl-tiny",
                   pretrained="random", patch_grid=0, frames=8, batch_size=8,
                   workers=0, device="cpu", precision="fp32", progress=False, flush_every=1)
    return ExtractConfig(**{**options, **overrides})


@pytest.fixture(scope="module")
def reference(dataset, encoder, tmp_path_factory) -> FeatureSet:
    out = tmp_path_factory.mktemp("uninterrupted")
    summary = run_extraction(config(dataset, out), encoder=encoder, log=lambda m: None)
    assert (summary.extracted, summary.failed) == (5, 2)
    return FeatureSet(out / shard_name(0, 1))


def by_id(features: FeatureSet) -> dict[str, np.ndarray]:
    return dict(zip(features.index["video_id"].tolist(), features.read_array("features", np.arange(len(features)))))


# Runs `cmdcl extract` and SIGKILLs itself at the `event`-th HDF5 file write of the store (parts, then the
# final shard) while the file is half written ("half-written") or after it is written but before its
# rename publishes it ("before-rename"); or ("before-done") after the final shard's rename, before its
# .done marker.
KILL_RUN = """
import os, signal, sys
from pathlib import Path
from cmdcl.core.store import files as store  # the module whose _write_file every store write calls

event, phase = int(sys.argv[1]), sys.argv[2]
writes = [0]
real_write, real_rename = store._write_file, Path.rename

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def write(path, attrs, text, sources, failures, total, contiguous, notes=(), **optional):
    writes[0] += 1
    if writes[0] != event:
        return real_write(path, attrs, text, sources, failures, total, contiguous, notes, **optional)
    if phase == "half-written":
        blocks = list(sources)
        if blocks:  # die with the first block written
            def first_then_die():
                yield blocks[0]
                die()
            real_write(path, attrs, text, first_then_die(), failures, total, contiguous, notes, **optional)
        real_write(path, attrs, text, blocks, failures, total, contiguous, notes, **optional)
        with open(path, "r+b") as handle:  # a failures-only part: tear it
            handle.truncate(os.path.getsize(path) // 2)
        die()
    real_write(path, attrs, text, sources, failures, total, contiguous, notes, **optional)
    if phase == "before-rename":
        die()

def rename(self, target):
    result = real_rename(self, target)
    if phase == "before-done" and Path(target).suffix == ".h5" and Path(target).parent.suffix != ".parts":
        die()
    return result

store._write_file, Path.rename = write, rename
from cmdcl.pipelines.cli import main
main(sys.argv[3:])
"""


def extract_argv(root: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--dataset", "manifest", "--root", str(root), "--out", str(out), "--model", "cmdcl-tiny",
            "--pretrained", "random", "--patch-grid", "0",
            "--frames", "8", "--batch-size", "8", "--workers", "0", "--device", "cpu", "--precision", "fp32",
            "--no-progress", "--flush-every", "1", *extra]


def run_killed(root: Path, out: Path, event: int, phase: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILL_RUN, str(event), phase, *extract_argv(root, out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_sigkill_at_seeded_points_then_resume_equals_an_uninterrupted_run(dataset, encoder, reference, tmp_path):
    out = tmp_path / "killed"
    path = out / shard_name(0, 1)
    parts_dir = path.with_name(path.name + ".parts")
    # With --flush-every 1 a run writes one part per video, one with the failures, then the shard: killing
    # at its 1st or 2nd write always lands mid-run.
    rng = np.random.default_rng(1234)
    kills = [(int(rng.integers(1, 3)), str(rng.choice(["half-written", "before-rename"]))) for _ in range(3)]
    kills.append((0, "before-done"))
    for event, phase in kills:
        before = {p.name for p in parts_dir.glob("part-*.h5")}
        result = run_killed(dataset, out, event, phase)
        assert result.returncode == -9, (event, phase, result.stderr[-2000:])
        parts = sorted(parts_dir.glob("part-*.h5"))
        if phase == "before-done":
            assert path.exists() and not shard_is_done(path)  # renamed, not yet marked done
            continue
        assert not path.exists() and len(parts) == len(before) + event - 1  # only finished parts are renamed
        # The part being written stays a .tmp, or is not on disk yet (parts are built in memory, then
        # written): never renamed; the resume redoes its videos.
        assert all(p.name.endswith(".h5.tmp") for p in parts_dir.glob("part-*") if p not in parts)
        for part in parts:
            with h5py.File(part, "r") as f:
                assert f.attrs["complete"]
    summary = run_extraction(config(dataset, out), encoder=encoder, log=lambda m: None)
    assert summary.resumed == 7 and summary.extracted + summary.failed == 0
    assert shard_is_done(path) and not parts_dir.exists()
    resumed = FeatureSet(path)  # refuses a video stored twice
    assert sorted(resumed.index["video_id"].tolist()) == sorted(GOOD)
    assert sorted(f.video_id for f in resumed.failures()) == sorted(BAD)
    expected = by_id(reference)
    for video_id, features in by_id(resumed).items():
        np.testing.assert_array_equal(features, expected[video_id])
    assert json.loads(path.with_name(path.name + ".done").read_text()) == {"videos": 5, "failures": 2}


def test_a_torn_shard_next_to_finished_ones_is_not_taken_for_finished(tmp_path, capsys):
    out = tmp_path / "feats"
    good = write_shard(out / shard_name(0, 2), [("v0", "train", 0), ("v1", "test", 1)],
                       attrs=base_attrs(shard_index=0, num_shards=2))
    (out / (shard_name(1, 2) + ".tmp")).write_bytes(good.read_bytes()[:3000])  # a finalize cut short
    capsys.readouterr()
    cli_main(["inspect", str(out), "--json"])
    assert json.loads(capsys.readouterr().out)["files"] == [str(good)]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["verify", str(out)])
    assert exit_info.value.code == 1
    assert "shard(s) 1 of 2 are missing" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- damaged shards

def damaged_copies(good: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    truncated = folder / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    with h5py.File(good, "r") as f:  # random bytes over the /videos group's object header
        address = h5py.h5o.get_info(f["videos"].id).addr
    corrupt[address:address + 64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    (folder / "corrupt.h5").write_bytes(bytes(corrupt))
    return {"truncated": truncated, "corrupt": folder / "corrupt.h5"}


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_damaged_shards_are_refused_by_inspect_merge_and_train_head(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CMDCL_DEBUG", raising=False)
    good = write_shard(tmp_path / "good.h5", [(f"v{i}", "train" if i < 6 else "test", i % 3) for i in range(8)])
    for kind, path in damaged_copies(good, tmp_path / "damaged").items():
        for argv in (["inspect", str(path)], ["merge", str(good), str(path), "--out", str(tmp_path / "m.h5")],
                     ["train-head", "--features", str(path), "--method", "linear", "--epochs", "1", "--device", "cpu",
                      "--out", str(tmp_path / "run"), "--no-progress"]):
            err = one_line_error(argv, capsys)
            assert f"{path}: corrupt or truncated HDF5 file" in err, (kind, argv[0], err)
        assert not (tmp_path / "m.h5").exists() and not (tmp_path / "m.h5.tmp").exists()
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["verify", str(good), str(path)])
        assert exit_info.value.code == 1
        out = capsys.readouterr().out
        assert str(path) in out and f"{good}:" not in out


@pytest.mark.parametrize("attribute, attrs, grid", [
    ("model_name", base_attrs(model_name="other-model"), 0),
    ("frames", base_attrs(frames=4), 0),
    ("patch_grid", base_attrs(grid=2), 2),
    ("preprocess", base_attrs(preprocess={"resize": "squash"}), 0),
    ("format_version", None, 0),
])
def test_merging_different_settings_is_refused_naming_the_attribute(tmp_path, capsys, monkeypatch, attribute, attrs,
                                                                    grid):
    monkeypatch.delenv("CMDCL_DEBUG", raising=False)
    first = write_shard(tmp_path / "a.h5", [("v0", "train", 0), ("v1", "test", 1)])
    second = write_shard(tmp_path / "b.h5", [("v2", "train", 2), ("v3", "test", 0)], attrs=attrs, grid=grid)
    if attribute == "format_version":
        with h5py.File(second, "r+") as f:
            f.attrs["format_version"] = 2
    err = one_line_error(["merge", str(first), str(second), "--out", str(tmp_path / "merged.h5")], capsys)
    assert attribute in err and str(second) in err
    assert not (tmp_path / "merged.h5").exists()


def test_verify_checks_provenance_across_shards(tmp_path, capsys):
    def shard(k: int, n: int, ids, **extra):
        attrs = base_attrs(shard_index=k, num_shards=n, **{"splits": ["test", "train"], **extra})
        return write_shard(tmp_path / f"{len(list(tmp_path.glob('*.h5')))}.h5", [(i, "train", 0) for i in ids],
                           attrs=attrs)

    def verify(*paths) -> tuple[int, str]:
        capsys.readouterr()
        try:
            cli_main(["verify", *map(str, paths)])
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr().out

    s0, s1, s2 = shard(0, 3, ["a", "d"]), shard(1, 3, ["b"]), shard(2, 3, ["c"])
    assert verify(s0, s1, s2) == (0, "verify: OK, 3 file(s), 4 videos.\n")
    code, out = verify(s0, s2)
    assert code == 1 and "shard(s) 1 of 3 are missing" in out
    code, out = verify(s0, s1, s2, shard(1, 3, ["e"]))
    assert code == 1 and "shard 1 is also in" in out
    code, out = verify(s0, s1, shard(2, 4, ["c"]))
    assert code == 1 and "different shard counts [3, 4]" in out
    code, out = verify(s0, s1, shard(2, 3, ["c"], splits=["train"]))
    assert code == 1 and "splits=" in out
    other_text = shard(2, 3, ["c"])
    with h5py.File(other_text, "r+") as f:  # other prompt templates: other class embeddings, same names
        f["text/class_embeddings"][...] = -f["text/class_embeddings"][()]
    code, out = verify(s0, s1, other_text)
    assert code == 1 and "text class_embeddings differ" in out
    marker = s1.with_name(s1.name + ".done")
    marker.write_text(json.dumps({"videos": 7, "failures": 0}))
    code, out = verify(s0, s1, s2)
    assert code == 1 and "marker says 7 videos" in out


# ------------------------------------------------------------------------------------------- retry failed

def test_retry_failed_redoes_only_the_failed_videos_of_a_finished_shard(dataset, encoder, reference, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("classes.txt", "manifest.csv"):
        (root / name).write_bytes((dataset / name).read_bytes())
    (root / "videos").mkdir()
    for video in (dataset / "videos").iterdir():
        (root / "videos" / video.name).write_bytes(video.read_bytes())
    out = tmp_path / "out"
    path = out / shard_name(0, 1)
    first = run_extraction(config(root, out), encoder=encoder, log=lambda m: None)
    assert first.failed == 2 and shard_is_done(path)
    write_test_video(root / "videos" / "f_empty.mp4", num_frames=12, height=32, width=40)  # the user fixes one
    again = run_extraction(config(root, out), encoder=encoder, log=lambda m: None)
    assert again.already_done  # without --retry-failed a finished shard stays as it is
    retried = run_extraction(config(root, out, retry_failed=True), encoder=encoder, log=lambda m: None)
    assert (retried.resumed, retried.retried, retried.extracted, retried.failed) == (5, 2, 1, 1)
    features = FeatureSet(path)
    assert sorted(features.index["video_id"].tolist()) == sorted([*GOOD, "f_empty"])
    assert [f.video_id for f in features.failures()] == ["g_text"]  # the old f_empty failure is gone
    expected, now = by_id(reference), by_id(features)
    for video_id in GOOD:
        np.testing.assert_array_equal(now[video_id], expected[video_id])
    assert json.loads(path.with_name(path.name + ".done").read_text()) == {"videos": 6, "failures": 1}


def test_retry_failed_resumes_an_interrupted_shard_and_retries(dataset, encoder, tmp_path):
    out = tmp_path / "out"
    path = out / shard_name(0, 1)
    result = run_killed(dataset, out, 7, "before-rename")  # all videos handled, killed before the shard exists
    assert result.returncode == -9 and not shard_is_done(path)
    summary = run_extraction(config(dataset, out, retry_failed=True), encoder=encoder, log=lambda m: None)
    assert (summary.resumed, summary.retried, summary.extracted, summary.failed) == (5, 2, 0, 2)
    features = FeatureSet(path)
    assert sorted(f.video_id for f in features.failures()) == sorted(BAD)  # each once: the retry's failure
    assert len(features) == 5
