"""Stage 2 under faults, one test per fault: concurrent runs, runs that do not compare,
non-finite features, a full disk (ENOSPC simulated by patching the write; a real small filesystem in the
opt-in `small_disk` test), resume into other features, a torn metrics.jsonl, a file given twice, SIGINT
across --seeds workers, a corrupt checkpoint."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cmdcl.core import atomic
from cmdcl.core.atomic import DiskFullError, append_text
from cmdcl.core.errors import CmdclError
from cmdcl.core.locks import FolderLock
from cmdcl.core.store import FeatureSet
from cmdcl.head.model.checkpoint import load_checkpoint
from cmdcl.head.training.run_files import read_metrics, run_lock
from cmdcl.pipelines.cli import main
from head_fixtures import order_world

TINY = ["--method", "transformer", "--sta-layers", "1", "--heads", "2", "--width", "16", "--device", "cpu",
        "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return order_world(tmp_path_factory.mktemp("world") / "w.h5", train_per_class=6, test_per_class=3, frames=6,
                       dim=8)


def train_argv(features: Path, out: Path, *extra: str) -> list[str]:
    return ["train-head", "-f", str(features), "--out", str(out), *TINY, "--epochs", "1", "--no-evaluate", *extra]


def fails(argv: list[str], capsys) -> str:
    """Run the CLI expecting exit 2 with one line on stderr; returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cmdcl: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# ------------------------------------------------------------------------------------- two writers, one run

HOLD = """
import sys, time
from cmdcl.core.locks import FolderLock  # run_files.run_lock's lock, without importing torch (fast)
lock = FolderLock(sys.argv[1] + "/train.lock", None); lock.take(); print("held", flush=True); time.sleep(60)
"""


def test_a_second_train_head_into_the_same_out_stops_at_once(world, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = fails(train_argv(world, out), capsys)
        assert f"{out}: run is being trained by pid {holder.pid} on {socket.gethostname()}" in err
        assert sorted(p.name for p in out.iterdir()) == ["train.lock"]  # nothing read, nothing written
        err = fails(train_argv(world, out, "--seeds", "0,1"), capsys)  # --seeds locks the run folder too
        assert "run is being trained by pid" in err and not (out / "seeds.json").exists()
    finally:
        holder.kill()
        holder.wait()
    main(train_argv(world, out))  # the holder died (SIGKILL): its lock was released with it
    assert "took over the lock left by pid" in capsys.readouterr().out  # the name it left is reported
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1] and not (out / "train.lock").exists()


def test_a_stale_run_lock_is_taken_over_and_said_so(world, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    pid = dead_pid()
    (out / "train.lock").write_text(f"pid {pid} on {socket.gethostname()}")
    main(train_argv(world, out))
    assert f"took over the lock left by pid {pid}" in capsys.readouterr().out
    assert (out / "last.pt").is_file() and not (out / "train.lock").exists()


def test_without_flock_the_recorded_pid_is_the_lock(tmp_path, monkeypatch):
    """Lustre without -o flock: a live holder on this host still refuses, a dead one is taken over."""
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = tmp_path / "run" / "train.lock"
    path.parent.mkdir()
    path.write_text(f"pid {os.getppid()} on {socket.gethostname()}")
    with pytest.warns(RuntimeWarning, match="does not support locks"), pytest.raises(CmdclError, match="being trained"):
        run_lock(path.parent).take()
    path.write_text(f"pid {dead_pid()} on {socket.gethostname()}")
    lock = FolderLock(path, lambda holder: CmdclError(holder))
    with pytest.warns(RuntimeWarning):
        assert "took over the stale lock" in lock.take()
    lock.release()
    assert not path.exists()


# ------------------------------------------------------------------------------------- compare

def _world_copy(world: Path, target: Path, root: str) -> Path:
    target.write_bytes(world.read_bytes())
    with h5py.File(target, "r+") as f:
        f.attrs["dataset_root"] = root
    return target


def test_compare_refuses_runs_scored_on_other_features_unless_forced(world, tmp_path, capsys):
    """Two worlds whose video ids and labels coincide, told apart only by dataset_root."""
    a = _world_copy(world, tmp_path / "a.h5", "/worlds/a")
    b = _world_copy(world, tmp_path / "b.h5", "/worlds/b")
    for name, features in (("ra", a), ("rb", b), ("rc", a)):
        main(["train-head", "-f", str(features), "--out", str(tmp_path / name), "--method", "zeroshot",
              "--device", "cpu", "--no-progress"])
    capsys.readouterr()
    argv = ["compare", str(tmp_path / "ra"), str(tmp_path / "rb"), "--resamples", "100", "--out", str(tmp_path / "c")]
    err = fails(argv, capsys)
    assert "scored on other features than ra (dataset_root='/worlds/b' vs '/worlds/a')" in err and "--force" in err
    main([*argv, "--force"])
    assert "FORCED (--force)" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["forced"] is True
    main(["compare", str(tmp_path / "ra"), str(tmp_path / "rc"), "--resamples", "100", "--out", str(tmp_path / "d")])
    assert "FORCED" not in capsys.readouterr().out  # the same features: compared as before


# ------------------------------------------------------------------------------------- non-finite features

def _poison(source: Path, target: Path, name: str, rows: list[int]) -> list[str]:
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as f:
        data = f[f"videos/{name}"]
        for j in rows:
            row = data[j]
            row.flat[0] = np.nan if j % 2 else np.inf
            data[j] = row
        return [v.decode() for v in f["videos/video_id"][rows]]


def test_non_finite_features_are_refused_before_training_or_scoring(world, tmp_path, capsys):
    ids = _poison(world, tmp_path / "nan.h5", "features", [1, 5, 7])
    err = fails(train_argv(tmp_path / "nan.h5", tmp_path / "run"), capsys)
    assert f"{tmp_path / 'nan.h5'}: NaN/inf in /videos/features of split 'train', video(s) " in err
    assert "nothing was" not in err and "no head can train on or score them" in err
    assert all(repr(v) in err for v in ids) and "order-world" in err and "cmdcl verify" in err
    assert not (tmp_path / "run").exists()  # nothing trained (the lock's folder removed again)

    main(train_argv(world, tmp_path / "good"))
    capsys.readouterr()
    err = fails(["evaluate", "-c", str(tmp_path / "good" / "best.pt"), "-f", str(tmp_path / "nan.h5"), "--split",
                 "train", "--device", "cpu"], capsys)
    assert "NaN/inf in /videos/features" in err and not list((tmp_path / "good").glob("predictions_*"))


def _poison_split(source: Path, target: Path, split: str) -> list[str]:
    with h5py.File(source, "r") as f:
        rows = [int(j) for j in np.flatnonzero(f["videos/split"][:] == split.encode())[:2]]
    return _poison(source, target, "features", rows)


def test_non_finite_features_in_a_split_scored_after_training_stop_the_run_before_it_trains(tmp_path, capsys):
    """NaN in the test split: train-head scores it after training, so it refuses before training, with the
    split named; NaN in a split the run never reads (here 'extra', or test under --no-evaluate) stops nothing."""
    world = order_world(tmp_path / "w.h5", train_per_class=4, test_per_class=2, frames=6, dim=8,
                        extra_splits=("extra",))
    ids = _poison_split(world, tmp_path / "nan-test.h5", "test")
    argv = train_argv(tmp_path / "nan-test.h5", tmp_path / "run")
    argv.remove("--no-evaluate")
    err = fails(argv, capsys)
    assert "NaN/inf in /videos/features of split 'test', video(s) " in err and all(repr(v) in err for v in ids)
    assert "(dataset order-world)" in err and "nothing was" not in err
    assert not list(tmp_path.glob("run/**/*.pt"))  # refused before any checkpoint was written
    assert "split 'test'" in fails([*argv, "--seeds", "0,1"], capsys)  # --seeds: checked once, before any seed trains
    assert not list(tmp_path.glob("run/**/*.pt"))

    main(train_argv(tmp_path / "nan-test.h5", tmp_path / "unscored"))  # --no-evaluate: the test split is not read
    assert (tmp_path / "unscored" / "best.pt").is_file()
    _poison_split(world, tmp_path / "nan-extra.h5", "extra")
    argv = train_argv(tmp_path / "nan-extra.h5", tmp_path / "scored")
    argv.remove("--no-evaluate")
    main(argv)
    assert (tmp_path / "scored" / "metrics_test.json").is_file()


def test_non_finite_patches_are_refused_in_memory_and_memmap_mode(tmp_path):
    from cmdcl.head.data import FeatureData

    grid = order_world(tmp_path / "g.h5", train_per_class=3, test_per_class=1, frames=6, dim=8, grid=2)
    ids = _poison(grid, tmp_path / "nan.h5", "patches", [2])
    for mode in ("memory", "memmap"):
        with pytest.raises(CmdclError, match=re.escape(f"NaN/inf in /videos/patches of split 'train', video(s) {ids[0]!r}")):
            FeatureData(tmp_path / "nan.h5", "train", use_patches=True, mode=mode, log=lambda m: None)
    assert len(FeatureData(tmp_path / "nan.h5", "train", use_patches=False, mode="memmap", log=lambda m: None))


# ------------------------------------------------------------------------------------- a full disk

def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_during_training_is_one_line_and_leaves_loadable_checkpoints(world, tmp_path, capsys, monkeypatch):
    import torch

    out = tmp_path / "run"
    main(train_argv(world, out))
    real_save, calls = torch.save, [0]

    def save_then_fail(obj, handle):  # as torch fails: its own RuntimeError, raised while handling ENOSPC
        calls[0] += 1
        if calls[0] < 2:
            return real_save(obj, handle)
        handle.write(b"\0" * 4096)
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096 vs 0")

    monkeypatch.setattr(torch, "save", save_then_fail)
    err = fails(train_argv(world, out, "--epochs", "3"), capsys)  # epoch 2: best.pt written, last.pt fails
    assert re.search(r"run/(last|best)\.pt: no space left on device while writing it; the previous "
                     r"(last|best)\.pt is unchanged\. Fix: free some space", err), err
    assert not list(out.glob("*.tmp")) and not (out / "train.lock").exists()
    for name in ("best.pt", "last.pt"):
        load_checkpoint(out / name)
    monkeypatch.setattr(torch, "save", real_save)
    main(train_argv(world, out, "--epochs", "3"))  # space is back: the run resumes and finishes
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]


def test_full_disk_during_evaluate_and_json_writes(world, tmp_path, capsys, monkeypatch):
    main(train_argv(world, tmp_path / "run"))
    capsys.readouterr()
    monkeypatch.setattr(np, "savez", _no_space)
    err = fails(["evaluate", "-c", str(tmp_path / "run" / "best.pt"), "-f", str(world), "--device", "cpu"], capsys)
    assert f"{tmp_path / 'run' / 'predictions_test.npz'}: no space left on device" in err
    assert not list((tmp_path / "run").glob("*.tmp"))
    monkeypatch.setattr(os, "replace", lambda *a: _no_space())
    with pytest.raises(DiskFullError, match=r"config\.json: no space left on device"):
        atomic.write_text_atomic(tmp_path / "config.json", "{}\n")
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_append_leaves_no_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n')

    class HalfWrite:  # writes half of what it is given, then the disk is full
        def __init__(self, handle):
            self.handle = handle

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(atomic, "open", lambda *a, **k: HalfWrite(open(*a, **k)), raising=False)
    with pytest.raises(DiskFullError, match=r"metrics\.jsonl: no space left on device \(disk quota exceeded\)"):
        append_text(path, '{"epoch": 2, "train_loss": 1.0}\n')
    assert path.read_text() == '{"epoch": 1}\n'


def test_full_disk_during_extract_stops_cleanly_and_resumes(tmp_path, encoder, monkeypatch):
    from cmdcl.core.store import files, shard_name, writer
    from cmdcl.extract.runner import ExtractConfig, run_extraction
    from video_fixtures import write_test_video

    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    (root / "classes.txt").write_text("one\ntwo\n")
    for i in range(4):
        write_test_video(root / "videos" / f"v{i}.mp4", num_frames=10, height=32, width=40)
    (root / "manifest.csv").write_text("video_id,path,split,label\n" + "".join(
        f"v{i},videos/v{i}.mp4,train,{i % 2}\n" for i in range(4)))
    cfg = ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / "feats"), model="cmdcl-tiny",

                        pretrained="random", patch_grid=0, frames=4, batch_size=4, workers=0, device="cpu",
                        precision="fp32", progress=False,
                        flush_every=1)
    real_open, parts = open, [0]

    def open_part(path, mode="r", *args, **kwargs):  # the third part file finds the disk full
        if str(path).endswith(".h5.tmp") and mode == "wb":
            parts[0] += 1
            if parts[0] == 3:
                _no_space()
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", open_part, raising=False)
    with pytest.raises(DiskFullError, match=r"part-000002\.h5\.tmp: no space left on device"):
        run_extraction(cfg, encoder=encoder, log=lambda m: None)
    parts_dir = tmp_path / "feats" / (shard_name(0, 1) + ".parts")
    assert sorted(p.name for p in parts_dir.iterdir()) == ["part-000000.h5", "part-000001.h5"]  # no tmp, no lock
    monkeypatch.setattr(files, "open", real_open, raising=False)

    class Usage:
        free = 1000

    monkeypatch.setattr(writer.shutil, "disk_usage", lambda path: Usage)  # the final shard cannot fit
    with pytest.raises(DiskFullError, match="no space left on device for the final shard"):
        run_extraction(cfg, encoder=encoder, log=lambda m: None)
    monkeypatch.undo()
    summary = run_extraction(cfg, encoder=encoder, log=lambda m: None)
    assert (summary.resumed, summary.extracted) == (4, 0)
    features = FeatureSet(tmp_path / "feats")
    assert sorted(features.index["video_id"].tolist()) == ["v0", "v1", "v2", "v3"] and features.verify() == []


# ------------------------------------------------------------------------------------- resume and inputs

def test_resume_on_features_of_another_frame_count_names_both(world, tmp_path, capsys):
    main(train_argv(world, tmp_path / "run"))
    eight = order_world(tmp_path / "f8.h5", train_per_class=6, test_per_class=3, frames=8, dim=8)
    err = fails(train_argv(eight, tmp_path / "run", "--epochs", "2"), capsys)
    assert "the run was trained with F=6 (frames per video) but" in err and "gives F=8" in err
    assert "size mismatch" not in err


def test_resume_drops_a_torn_last_metrics_line_as_report_does(world, tmp_path, capsys):
    out = tmp_path / "run"
    main(train_argv(world, out))
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "train_lo')
    notes = []
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl", notes.append)] == [1]  # report's reader
    assert "dropped its last line, cut short" in notes[0]
    capsys.readouterr()
    main(train_argv(world, out, "--epochs", "2"))
    assert "dropped its last line, cut short" in capsys.readouterr().out
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 1}\n')  # two runs wrote (before the lock)
    with pytest.raises(CmdclError, match="line 2 records epoch 1 after epoch 1"):
        read_metrics(out / "metrics.jsonl")


def test_the_same_file_given_twice_is_read_once_and_duplicates_are_named_plainly(world, tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    shard = folder / "shard.h5"
    shard.write_bytes(world.read_bytes())
    once = FeatureSet([folder, shard, Path(os.path.relpath(shard))])
    assert once.paths == [shard] and len(once) == len(FeatureSet(world))
    twin = folder / "twin.h5"
    twin.write_bytes(world.read_bytes())
    with pytest.raises(CmdclError) as error:
        FeatureSet([shard, twin])
    message = str(error.value)
    assert f"{shard} and {twin}: video id(s) 'test-0-000'" in message
    assert "PosixPath" not in message and "[" not in message


def test_a_corrupt_checkpoint_message_is_cut_between_words(world, tmp_path, capsys):
    main(train_argv(world, tmp_path / "run"))
    best = tmp_path / "run" / "best.pt"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 3])
    err = fails(["evaluate", "-c", str(best), "-f", str(world), "--device", "cpu"], capsys)
    reason = err.split("another format: ", 1)[1].rsplit(").", 1)[0]
    import torch

    with pytest.raises(Exception) as raised:  # torch's own words, which the message may shorten
        torch.load(best, weights_only=True)
    full = f"{type(raised.value).__name__}: {' '.join(str(raised.value).split())}"
    if reason.endswith("..."):  # cut: between words ("If yo)" was the bug)
        kept = reason[:-3]
        assert full.startswith(kept) and not full[len(kept)].isalnum(), (reason, full)
    else:
        assert reason == full


# ------------------------------------------------------------------------------------- SIGINT across workers

def test_sigint_during_seed_workers_is_reported_as_sigint(world, tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "cmdcl.pipelines.cli", *train_argv(world, out, "--seeds", "0,1", "--seed-workers",
                                                                     "2", "--epochs", "200")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                            start_new_session=True)
    lines = []
    try:
        while not any(line.startswith("[run/seed-") and "train_loss" in line for line in lines):  # both training
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group, as a terminal sends it
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert proc.returncode == 75, output
    assert "SIGINT: saved" in output and "SIGTERM" not in output and "Traceback" not in output
    for seed in (0, 1):
        assert load_checkpoint(out / f"seed-{seed}" / "last.pt").epoch < 200


# ------------------------------------------------------------------------------------- opt-in: a real small disk

@pytest.mark.small_disk
def test_a_real_full_disk(world, tmp_path):
    """Deselected by default (pyproject addopts). Run with a small empty filesystem, e.g. as root:
    mount -t tmpfs -o size=600k tmpfs /mnt/small && CMDCL_SMALL_DISK=/mnt/small pytest -m small_disk"""
    place = os.environ.get("CMDCL_SMALL_DISK")
    if not place:
        pytest.fail("set CMDCL_SMALL_DISK to a folder on a small (under a few MB), empty filesystem")
    target = Path(place) / f"cmdcl-{os.getpid()}"
    big = order_world(tmp_path / "big.h5", train_per_class=60, test_per_class=3, frames=32, dim=64)
    cli = [sys.executable, "-m", "cmdcl.pipelines.cli"]
    done = subprocess.run([*cli, *train_argv(big, target / "run", "--epochs", "50", "--width", "256")],
                          capture_output=True, text=True, env=ENV, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(errors) == 1 and "no space left on device" in errors[0], done.stderr[-2000:]
    assert not list((target / "run").glob("*.tmp"))
    for name in ("best.pt", "last.pt"):
        if (target / "run" / name).exists():
            load_checkpoint(target / "run" / name)
