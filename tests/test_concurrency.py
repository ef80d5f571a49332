"""Concurrency: one writer per shard (a real second process is refused), array-job shards that never
collide, readers in DataLoader workers and in several processes on a read-only file."""
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cmdcl.core.distributed import ShardSpec, shard_from_env
from cmdcl.core.errors import CmdclError
from cmdcl.core.store import FeatureSet, shard_is_done, shard_name
from cmdcl.extract.datasets.base import VideoItem
from cmdcl.extract.runner import shard_items
from store_fixtures import write_shard
from video_fixtures import write_test_video

TESTS = Path(__file__).resolve().parent

# `cmdcl extract` (decoding in-process) that waits, before its second video, until GATE exists.
GATED_RUN = """
import sys, time
from pathlib import Path
from cmdcl.extract import decode_pool as runner  # where decode_inline looks decode_task up

gate, real, calls = Path(sys.argv[1]), runner.decode_task, [0]

def gated(task, settings):
    calls[0] += 1
    while calls[0] == 2 and not gate.exists():
        time.sleep(0.05)
    return real(task, settings)

runner.decode_task = gated
from cmdcl.pipelines.cli import main
main(sys.argv[2:])
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    (root / "classes.txt").write_text("one\ntwo\n")
    rows = []
    for i, frames in enumerate((12, 18, 9, 15)):
        write_test_video(root / f"v{i}.mp4", num_frames=frames, height=32, width=40, gop=6)
        rows.append(f"v{i},v{i}.mp4,train,{i % 2}\n")
    (root / "manifest.csv").write_text("video_id,path,split,label\n" + "".join(rows))
    return root


def test_a_second_process_on_the_same_shard_is_refused_and_corrupts_nothing(dataset, tmp_path):
    out, gate = tmp_path / "out", tmp_path / "gate"
    path = out / shard_name(0, 1)
    argv = ["extract", "--dataset", "manifest", "--root", str(dataset), "--out", str(out), "--model", "cmdcl-tiny",
            "--pretrained", "random", "--patch-grid", "0",
            "--frames", "4", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--precision", "fp32", "--no-progress",
            "--flush-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-c", GATED_RUN, str(gate), *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        parts = path.with_name(path.name + ".parts")
        deadline = time.time() + 120
        while not list(parts.glob("part-*.h5")):  # the first process holds the lock and has stored a video
            assert first.poll() is None and time.time() < deadline, "the first process stored no video"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "cmdcl.pipelines.cli", *argv], capture_output=True, text=True,
                                env=env, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        error = second.stderr.strip().splitlines()[-1]
        assert error.startswith("cmdcl: error:") and f"shard is being written by pid {first.pid}" in error
        assert "Traceback" not in second.stderr
        gate.touch()
        _, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr[-2000:]
    finally:
        gate.touch()
        if first.poll() is None:
            first.kill()
    assert shard_is_done(path) and not parts.exists()
    features = FeatureSet(path)
    assert sorted(features.index["video_id"].tolist()) == ["v0", "v1", "v2", "v3"] and features.verify() == []


@pytest.mark.parametrize("env", [
    {"SLURM_ARRAY_TASK_COUNT": "4"},  # --array=0-3
    {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"},  # --array=1-4
    {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "10", "RANK": "0", "WORLD_SIZE": "2"},  # + torchrun vars
    {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "5"},  # --array=0-15:5
])
def test_array_tasks_get_distinct_shards_that_cover_every_video_once(env):
    first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
    items = [VideoItem(f"video{i:03d}", f"/v/{i}.mp4", "train", 0) for i in range(23)]
    specs = [shard_from_env({**env, "SLURM_ARRAY_TASK_ID": str(first + step * task)}) for task in range(4)]
    assert sorted(s.index for s in specs) == [0, 1, 2, 3] and {s.count for s in specs} == {4}
    assert len({shard_name(s.index, s.count) for s in specs}) == 4  # one file per task
    assigned = [item.video_id for s in specs for item in shard_items(list(reversed(items)), s)]
    assert sorted(assigned) == [item.video_id for item in items]  # each video in exactly one shard


def test_array_task_without_count_is_refused_not_shard_0_of_1():
    with pytest.raises(CmdclError, match="SLURM_ARRAY_TASK_COUNT"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "3"})


def test_torchrun_ranks_get_distinct_shards():
    specs = [shard_from_env({"RANK": str(r), "WORLD_SIZE": "3", "LOCAL_RANK": str(r)}) for r in range(3)]
    assert [(s.index, s.count) for s in specs] == [(0, 3), (1, 3), (2, 3)]


# ------------------------------------------------------------------------------------------- readers

@pytest.fixture(scope="module")
def read_only_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ro") / "features.h5"
    write_shard(path, [(f"v{i:02d}", "train" if i % 4 else "test", i % 3) for i in range(24)], flush_every=5)
    os.chmod(path, 0o444)
    return path


class FeatureRows:
    """A torch Dataset over a FeatureSet: it holds no open HDF5 handle, so each worker opens the file itself."""

    def __init__(self, features: FeatureSet):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int):
        return os.getpid(), self.features.read_array("features", np.array([i]))[0]


def test_dataloader_workers_read_the_file_lazily(read_only_file):
    import torch

    features = FeatureSet(read_only_file)  # opened (and closed) in the parent before the workers fork
    expected = features.read_array("features", np.arange(len(features)))
    loader = torch.utils.data.DataLoader(FeatureRows(features), batch_size=3, num_workers=2,
                                         multiprocessing_context="fork")
    pids, rows = [], []
    for pid, batch in loader:
        pids.extend(pid.tolist())
        rows.append(batch.numpy())
    assert len(set(pids)) == 2 and os.getpid() not in pids
    np.testing.assert_array_equal(np.concatenate(rows), expected)


READER = """
import sys, numpy as np
from cmdcl.core.store import FeatureSet
features = FeatureSet(sys.argv[1])
data = features.read_array("features", np.arange(len(features))).astype(np.float64)
maps = features.memmap("features")
print(len(features), float(data.sum()), float(np.asarray(maps[0], np.float64).sum()))
"""


def test_several_processes_read_a_read_only_file_at_once(read_only_file):
    assert not os.stat(read_only_file).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    expected = FeatureSet(read_only_file).read_array("features", np.arange(24)).astype(np.float64).sum()
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(read_only_file)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE" if i % 2 else "TRUE"})
               for i in range(4)]
    for reader in readers:
        stdout, stderr = reader.communicate(timeout=120)
        assert reader.returncode == 0, stderr[-2000:]
        count, total, mapped = stdout.split()
        assert int(count) == 24 and float(total) == pytest.approx(expected) == float(mapped)


def test_shard_membership_does_not_depend_on_which_files_are_present():
    ids = [f"v{i:02d}" for i in range(10)]
    items = [VideoItem(video_id=v, path=f"/x/{v}.mp4", split="train", label=0) for v in ids]
    node_a = [shard_items(items, ShardSpec(k, 3, "test")) for k in range(3)]
    # Node B's mount lacks v03: that video is missing there, every other video keeps its shard.
    present_b = [it for it in items if it.video_id != "v03"]
    node_b = [shard_items(present_b, ShardSpec(k, 3, "test"), missing=["v03"]) for k in range(3)]
    for k in range(3):
        assert [i.video_id for i in node_b[k]] == [i.video_id for i in node_a[k] if i.video_id != "v03"]
    assert sorted(i.video_id for shard in node_a for i in shard) == ids
    assert [i.video_id for i in shard_items(items, ShardSpec(0, 2, "test"), limit=4)] == ["v00", "v02"]
