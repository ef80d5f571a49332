"""End-to-end extraction on tiny real videos with the tiny random model (CPU, a few seconds per run)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from cmdcl.core.distributed import ShardSpec
from cmdcl.core.store import FeatureSet, shard_is_done, shard_name
from cmdcl.extract import decoders
from cmdcl.extract.decode_pool import DecodedClip, DecodeFailure, DecodePool, DecodeSettings, DecodeTask
from cmdcl.extract.runner import ExtractConfig, run_extraction
from cmdcl.extract.sampler import FrameSampler
from cmdcl.pipelines.cli import main as cli_main
from video_fixtures import tiny_video, write_test_video, write_truncated, write_zero_byte

TESTS = Path(__file__).resolve().parent
FRAMES = 8
# (video_id, frames, height, width, codec, extension, split, label, steps)
VIDEOS = [
    ("v0", 40, 48, 64, "mpeg4", "mp4", "train", 0, ["s1"]),
    ("v1", 5, 64, 48, "libx264", "mp4", "test", 1, []),  # shorter than FRAMES: padded + masked
    ("v2", 60, 48, 64, "mpeg4", "avi", "train", 2, ["s1", "s2"]),
    ("v3", 30, 40, 72, "libx264", "mkv", "test", 0, ["s2"]),
    ("v4", 24, 72, 96, "mpeg4", "mp4", "train", 1, []),
    ("v5", 33, 48, 48, "libx264", "mp4", "test", 2, ["s1"]),
]
BAD = {"bad_trunc": write_truncated, "bad_zero": write_zero_byte}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("manifest")
    (root / "classes.txt").write_text("make pancake\nfry egg\nbrew tea\n")
    (root / "steps.txt").write_text("s1\ns2\n")
    rows = []
    for vid, n, h, w, codec, ext, split, label, steps in VIDEOS:
        write_test_video(root / "videos" / f"{vid}.{ext}", num_frames=n, height=h, width=w, fps=12.0, codec=codec,
                         gop=8)
        rows.append({"video_id": vid, "path": f"videos/{vid}.{ext}", "split": split, "label": label, "steps": steps})
    for vid, write in BAD.items():
        write(root / "videos" / f"{vid}.mp4")
        rows.append({"video_id": vid, "path": f"videos/{vid}.mp4", "split": "train", "label": 0, "steps": []})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def config(dataset: Path, out: Path, **overrides) -> ExtractConfig:
    options = dict(dataset="manifest", root=str(dataset), out_dir=str(out), model="cmdcl-tiny",
                   pretrained="random", patch_grid=0, frames=FRAMES,
                   batch_size=12, workers=0, device="cpu", precision="fp32", progress=False, flush_every=2)
    options.update(overrides)
    return ExtractConfig(**options)


def by_id(features: FeatureSet, name: str = "features") -> dict[str, np.ndarray]:
    rows = features.read_array(name, np.arange(len(features)))
    return dict(zip(features.index["video_id"].tolist(), rows))


@pytest.fixture(scope="module")
def reference(dataset, encoder, tmp_path_factory) -> Path:
    """Single-process extraction of the whole dataset (default decoder), the baseline of the comparisons."""
    out = tmp_path_factory.mktemp("single")
    summary = run_extraction(config(dataset, out), encoder=encoder)
    assert (summary.extracted, summary.failed) == (6, 2)
    return out / shard_name(0, 1)


def test_cli_extract_with_workers_then_inspect(dataset, tmp_path, capsys, reference):
    out = tmp_path / "feats"
    cli_main(["extract", "--dataset", "manifest", "--root", str(dataset), "--out", str(out), "--model", "cmdcl-tiny",
              "--pretrained", "random", "--patch-grid", "0",
              "--frames", str(FRAMES), "--batch-size", "12", "--workers", "2", "--device", "cpu",
              "--precision", "fp32", "--no-progress"])
    path = out / shard_name(0, 1)
    assert shard_is_done(path) and not path.with_name(path.name + ".parts").exists()
    assert "encoder cmdcl-tiny with RANDOM weights (seed 0; not pretrained)" in capsys.readouterr().err
    assert FeatureSet(path).attrs["random_weights"]  # the provenance says so too
    cli_main(["inspect", str(out)])
    assert "model cmdcl-tiny (RANDOM weights, seed 0: not pretrained" in capsys.readouterr().out
    cli_main(["inspect", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == 6
    assert summary["splits"] == {"test": 3, "train": 3}
    assert summary["padded_videos"] == 1
    assert sorted((f["video_id"], f["stage"]) for f in summary["failures"]) == [("bad_trunc", "open"),
                                                                               ("bad_zero", "open")]
    assert summary["frames"] == FRAMES and summary["embed_dim"] == 64
    # Worker processes decode exactly what the single-process run decodes.
    pooled, single = by_id(FeatureSet(path)), by_id(FeatureSet(reference))
    assert pooled.keys() == single.keys()
    for vid in single:
        np.testing.assert_allclose(pooled[vid].astype(np.float32), single[vid].astype(np.float32), atol=2e-3)


def extract_argv(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--dataset", "manifest", "--root", str(dataset), "--out", str(out), "--frames", str(FRAMES),
            "--batch-size", "12", "--workers", "0", "--device", "cpu", "--precision", "fp32", "--no-progress", *extra]


def test_random_weights_saved_to_a_file_load_back_through_pretrained(dataset, encoder, reference, tmp_path, capsys):
    """--pretrained FILE loads the very weights saved: the same tensors, the same features as the in-memory model."""
    import torch

    from cmdcl.extract.models import file_sha256, load_encoder

    weights = tmp_path / "tiny.pt"
    torch.save(encoder.model.state_dict(), weights)
    loaded = load_encoder("cmdcl-tiny", str(weights), device="cpu", precision="fp32")
    saved = encoder.model.state_dict()
    assert loaded.model.state_dict().keys() == saved.keys()
    assert all(torch.equal(tensor, saved[key]) for key, tensor in loaded.model.state_dict().items())
    cli_main(extract_argv(dataset, tmp_path / "f", "--model", "cmdcl-tiny", "--pretrained", str(weights),
                          "--patch-grid", "0"))
    assert f"with weights {weights}" in capsys.readouterr().err
    features = FeatureSet(tmp_path / "f")
    assert features.attrs["weights_sha256"] == file_sha256(weights) and not features.attrs["random_weights"]
    ours, theirs = by_id(features), by_id(FeatureSet(reference))
    assert ours.keys() == theirs.keys()
    for vid in theirs:
        np.testing.assert_array_equal(ours[vid], theirs[vid])


def test_weights_are_never_random_unless_asked_for(dataset, tmp_path, capsys, monkeypatch):
    """No --pretrained: the model's published weights; cmdcl-tiny has none, and ViT-B-16's (openai) are not in
    an empty cache offline: each stops in one line with its fix, before anything is written."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests never touch the network
    for model, words in (("cmdcl-tiny", ["cmdcl-tiny has no published weights", "--pretrained random"]),
                         ("ViT-B-16", ["ViT-B-16-quickgelu pretrained=openai", "not available offline",
                                       "--cache-dir"])):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(extract_argv(dataset, tmp_path / model, "--model", model, "--cache-dir", str(tmp_path / "cache")))
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_info.value.code == 2 and err.startswith("cmdcl: error: "), err
        assert all(word in err for word in words), err
        assert not list((tmp_path / model).glob("*.h5"))


def test_records_hold_sampling_timestamps_labels_and_padding(reference):
    features = FeatureSet(reference)
    sampler = FrameSampler(FRAMES)
    rows = {vid: i for i, vid in enumerate(features.index["video_id"].tolist())}
    feats = by_id(features)
    for vid, n, h, w, codec, ext, split, label, steps in VIDEOS:
        i = rows[vid]
        expected = sampler.sample(n)
        assert features.index["num_frames"][i] == n
        assert features.index["fps"][i] == pytest.approx(12.0)
        assert features.index["split"][i] == split and features.index["label"][i] == label
        assert features.index["labels"][i].tolist() == [int(c == label) for c in range(3)]
        assert features.index["steps"][i].tolist() == [int("s1" in steps), int("s2" in steps)]
        assert features.index["frame_index"][i].tolist() == expected.indices.tolist()
        assert features.index["frame_mask"][i].tolist() == expected.mask.tolist()
        np.testing.assert_allclose(features.index["timestamps_ms"][i], expected.indices * 1000 / 12, atol=1.0)
        f = feats[vid].astype(np.float32)
        np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=2e-3)
        valid = int(expected.mask.sum())
        assert (f[valid:] == f[valid - 1]).all()  # padded rows copy the last valid frame
        assert np.abs(f[0] - f[valid - 1]).max() > 1e-3  # different frames, different features
    attrs = features.attrs
    assert attrs["model_name"] == "cmdcl-tiny" and attrs["frames"] == FRAMES and attrs["num_shards"] == 1
    assert json.loads(attrs["sampler"])["mode"] == "uniform"
    # the default decoder by container: decord for the AVI where installed, PyAV for the rest
    assert attrs["decoder"] == ("auto" if decoders.decord_available() else "pyav")
    assert attrs["code_version"] and attrs["dataset"] == "manifest"
    assert json.loads(attrs["splits"]) == ["test", "train"]
    with h5py.File(reference, "r") as f:
        assert f["text/class_embeddings"].shape == (3, 64) and f["text/step_embeddings"].shape == (2, 64)


def test_two_shards_merged_equal_single_process(dataset, encoder, reference, tmp_path, capsys):
    out = tmp_path / "shards"
    for k in range(2):
        summary = run_extraction(config(dataset, out, shard=ShardSpec(k, 2, "test")), encoder=encoder)
        assert summary.videos == 4
    cli_main(["merge", str(out), "--out", str(tmp_path / "merged.h5")])
    merged, single = FeatureSet(tmp_path / "merged.h5"), FeatureSet(reference)
    assert sorted(merged.index["video_id"].tolist()) == sorted(single.index["video_id"].tolist())
    assert sorted(f.video_id for f in merged.failures()) == ["bad_trunc", "bad_zero"]
    a, b = by_id(merged), by_id(single)
    for vid in b:
        np.testing.assert_array_equal(a[vid], b[vid])
    capsys.readouterr()
    cli_main(["verify", str(tmp_path / "merged.h5")])
    assert "verify: OK, 1 file(s), 6 videos" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # given together, files are one dataset: the same videos twice is a problem
        cli_main(["verify", str(tmp_path / "merged.h5"), str(reference)])
    assert "stored more than once" in capsys.readouterr().out


def test_rerunning_a_complete_shard_skips_it(dataset, encoder, reference):
    before = reference.stat().st_mtime_ns
    summary = run_extraction(config(dataset, reference.parent), encoder=encoder)
    assert summary.already_done and summary.extracted == 0
    assert reference.stat().st_mtime_ns == before


def test_resume_with_different_settings_is_refused(dataset, encoder, tmp_path):
    from cmdcl.core.errors import CmdclError
    from cmdcl.core.store import FailureRecord, ShardWriter, TextBank

    path = tmp_path / shard_name(0, 1)
    text = TextBank(["a", "b", "c"], np.zeros((3, 64), np.float32), ["s1", "s2"], np.zeros((2, 64), np.float32), [])
    earlier = ShardWriter(path, {"frames": 4, "embed_dim": 64, "num_classes": 3, "num_steps": 2,
                                 "model_name": "cmdcl-tiny"}, text)
    earlier.add_failure(FailureRecord("bad_zero", "x.mp4", "open", "empty"))
    earlier.flush()
    earlier.close()
    with pytest.raises(CmdclError, match="frames=4"):
        run_extraction(config(dataset, tmp_path), encoder=encoder)
    assert not shard_is_done(path)


class FailingSecondBatch:
    """Wraps the encoder; its second frame batch raises, as an out-of-memory error would."""

    def __init__(self, encoder):
        self.encoder, self.calls = encoder, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_frames(self, pixels, patch_grid=0):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return self.encoder.encode_frames(pixels, patch_grid)


def test_encoder_failure_fails_that_batch_only(dataset, encoder, tmp_path):
    summary = run_extraction(config(dataset, tmp_path, batch_size=8), encoder=FailingSecondBatch(encoder))
    encode_failures = [f for f in summary.failures if f.stage == "encode"]
    assert encode_failures and all("out of memory" in f.error for f in encode_failures)
    assert summary.extracted + len(encode_failures) == 6 and summary.extracted >= 3
    features = FeatureSet(tmp_path / shard_name(0, 1))
    assert len(features) == summary.extracted and features.verify() == []


SLOW_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from cmdcl.extract import decode_pool as runner  # where decode_inline looks decode_task up
real = runner.decode_task
def slow(task, settings):
    time.sleep(0.25)
    return real(task, settings)
runner.decode_task = slow
from cmdcl.pipelines.cli import main
main({argv!r})
"""


def start_slow_extraction(dataset: Path, out: Path) -> subprocess.Popen:
    argv = ["extract", "--dataset", "manifest", "--root", str(dataset), "--out", str(out), "--model", "cmdcl-tiny",
            "--pretrained", "random", "--patch-grid", "0",
            "--frames", str(FRAMES), "--batch-size", "12", "--workers", "0", "--device", "cpu", "--precision",
            "fp32", "--no-progress", "--flush-every", "1"]
    return subprocess.Popen([sys.executable, "-c", SLOW_RUN.format(tests=str(TESTS), argv=argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_first_part(process: subprocess.Popen, parts: Path, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not list(parts.glob("part-*.h5")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no part file appeared"
        time.sleep(0.02)


def test_resume_after_sigkill_stores_every_video_once(dataset, encoder, reference, tmp_path):
    out = tmp_path / "killed"
    path = out / shard_name(0, 1)
    process = start_slow_extraction(dataset, out)
    wait_for_first_part(process, path.with_name(path.name + ".parts"))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not shard_is_done(path)
    summary = run_extraction(config(dataset, out), encoder=encoder)
    assert 1 <= summary.resumed < 8 and summary.resumed + summary.extracted + summary.failed == 8
    resumed = FeatureSet(path)  # refuses duplicated video ids
    assert len(resumed) == 6 and len(resumed.failures()) == 2
    a, b = by_id(resumed), by_id(FeatureSet(reference))
    for vid in b:
        np.testing.assert_array_equal(a[vid], b[vid])


def test_sigterm_saves_finished_videos_and_exits_143(dataset, tmp_path):
    out = tmp_path / "terminated"
    path = out / shard_name(0, 1)
    process = start_slow_extraction(dataset, out)
    wait_for_first_part(process, path.with_name(path.name + ".parts"))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr.decode()[-2000:]
    assert b"re-run the same command to resume" in stderr
    assert not shard_is_done(path) and list(path.with_name(path.name + ".parts").glob("part-*.h5"))


def test_pyav_and_decord_give_close_features(dataset, encoder, reference, tmp_path):
    # The reference used the default by container (decord for the AVI where installed, else PyAV).
    summary = run_extraction(config(dataset, tmp_path, decoder="pyav"), encoder=encoder)
    assert summary.extracted == 6
    served = FeatureSet(tmp_path / shard_name(0, 1))
    assert served.attrs["decoder"] == "pyav"
    a, b = by_id(served), by_id(FeatureSet(reference))
    for vid in b:
        cosine = (a[vid].astype(np.float32) * b[vid].astype(np.float32)).sum(axis=1)
        assert cosine.min() > 0.99, (vid, cosine)


def test_patch_grid_and_fps_sampling(dataset, encoder, tmp_path):
    # --limit applies to the sorted ids: bad_trunc, bad_zero, v0, v1
    summary = run_extraction(config(dataset, tmp_path, patch_grid=2, sample_fps=2.0, limit=4), encoder=encoder)
    assert (summary.extracted, summary.failed) == (2, 2)
    features = FeatureSet(tmp_path / shard_name(0, 1))
    patches = features.read_array("patches", np.arange(len(features)))
    assert patches.shape == (2, FRAMES, 4, 64)
    assert np.isfinite(patches.astype(np.float32)).all()
    i = features.index["video_id"].tolist().index("v0")  # 40 frames at 12 fps, 2 per second -> 6 valid
    assert features.index["frame_mask"][i].sum() == 6
    assert features.index["frame_index"][i].tolist()[:6] == [3, 9, 15, 21, 27, 33]


def test_patch_layer_stores_that_blocks_tokens_and_records_it(dataset, encoder, tmp_path):
    """--patch-layer 0 stores the first block's patch tokens (a forward hook's output, pooled and projected as
    the last block's are), not the last block's; the file records the layer; the pooled features do not change."""
    import torch
    import torch.nn.functional as F

    from cmdcl.extract.video_features import decode_settings, video_rows

    stored = {}
    for layer in (-1, 0):
        run_extraction(config(dataset, tmp_path / f"l{layer}", patch_grid=2, patch_layer=layer, limit=3),
                       encoder=encoder)
        features = FeatureSet(tmp_path / f"l{layer}" / shard_name(0, 1))
        assert features.provenance()["patch_layer"] == layer
        stored[layer] = (by_id(features, "patches")["v0"].astype(np.float32), by_id(features)["v0"])
    assert not np.allclose(stored[-1][0], stored[0][0], atol=1e-2)
    assert np.array_equal(stored[-1][1], stored[0][1])
    visual, seen = encoder.model.visual, []
    hook = visual.transformer.resblocks[0].register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        prov = FeatureSet(tmp_path / "l0" / shard_name(0, 1)).provenance()
        rows = video_rows(dataset / "videos" / "v0.mp4", encoder, decode_settings(prov, encoder), patch_grid=2,
                          patch_layer=0)
    finally:
        hook.remove()
    tokens = seen[-1][:, 1:]  # the first block's output (batch first), without the class token
    grid = tokens.reshape(len(tokens), 4, 4, -1).permute(0, 3, 1, 2)
    pooled = F.adaptive_avg_pool2d(grid, 2).flatten(2).transpose(1, 2)
    with torch.inference_mode():
        expected = F.normalize(visual.ln_post(pooled) @ visual.proj, dim=-1).numpy()
    mask = rows.mask
    assert np.allclose(rows.patches[mask].astype(np.float32), expected[:mask.sum()], atol=1e-3)  # float16 rows
    assert np.allclose(stored[0][0][mask], expected[:mask.sum()], atol=2e-3)  # stored as float16


@pytest.mark.parametrize("argv, message", [
    (["--patch-grid", "2", "--patch-layer", "2"], "--patch-layer 2 is out of range: cmdcl-tiny's image tower has 2"),
    (["--patch-grid", "2", "--patch-layer", "-3"], "--patch-layer -3 is out of range"),
    (["--patch-grid", "0", "--patch-layer", "0"], "--patch-grid is 0"),
])
def test_patch_layer_out_of_range_is_one_line(dataset, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli_main(["extract", "--dataset", "manifest", "--root", str(dataset), "--out", str(tmp_path), "--model",
                  "cmdcl-tiny", "--pretrained", "random", "--frames", "2", "--workers", "0", "--device", "cpu",
                  "--no-progress", *argv])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cmdcl: error")]
    assert exc.value.code == 2 and len(errors) == 1 and message in errors[0]
    assert not list(tmp_path.glob("*.h5"))  # refused before any video


@pytest.mark.parametrize("argv, message", [
    (["--frames", "0"], "--frames 0"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--workers", "-1"], "--workers -1"),
    (["--shard", "2/2"], "out of range"),
    (["--shard", "1/2", "--num-shards", "2"], "not both"),
    (["--decoder", "opencv"], "--decoder"),
])
def test_cli_rejects_bad_options(dataset, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli_main(["extract", "--dataset", "manifest", "--root", str(dataset), "--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_strict_exits_nonzero_on_failures(dataset, reference):
    with pytest.raises(SystemExit) as exc:
        cli_main(["extract", "--dataset", "manifest", "--root", str(dataset), "--out", str(reference.parent / "strict"),
                  "--model", "cmdcl-tiny",
                  "--pretrained", "random", "--patch-grid", "0", "--frames", "2", "--workers", "0", "--device", "cpu",
                  "--no-progress",
                  "--strict", "--limit", "2"])  # first two ids sorted: bad_trunc, bad_zero
    assert exc.value.code == 1


def test_verify_reports_unreadable_files_and_checks_the_others(reference, tmp_path, capsys):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(reference.read_bytes()[:2000])
    with pytest.raises(SystemExit) as exc:
        cli_main(["verify", str(reference), str(broken), str(tmp_path / "missing.h5")])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert "broken.h5" in out and "missing.h5" in out and str(reference) not in out


# ------------------------------------------------------------------------------- worker pool reliability

class MisbehavingSampler(FrameSampler):
    """Hangs on 13-frame videos and kills its process on 17-frame ones, like a stuck or crashing decoder."""

    def sample(self, num_frames, fps=None, duration=None):
        if num_frames == 13:
            time.sleep(3600)
        if num_frames == 17:
            os._exit(3)
        return super().sample(num_frames, fps, duration)


def test_pool_replaces_hung_and_crashed_workers(tmp_path):
    paths = {n: write_test_video(tmp_path / f"f{n}.mp4", num_frames=n) for n in (10, 13, 17, 20, 22)}
    settings = DecodeSettings(sampler=MisbehavingSampler(4), image_size=32, resize_mode="shortest", backend="pyav",
                              fallback=False)
    tasks = [DecodeTask(key=n, video_id=f"f{n}", path=str(p)) for n, p in paths.items()]
    pool = DecodePool(2, settings, timeout_s=3.0)
    try:
        yielded = list(pool.run(tasks))
    finally:
        pool.close()
    results = {r.key: r for r in yielded}
    assert sorted(r.key for r in yielded) == [10, 13, 17, 20, 22]  # each video exactly once
    assert isinstance(results[13], DecodeFailure) and results[13].stage == "timeout"
    assert isinstance(results[17], DecodeFailure) and results[17].stage == "crash"
    for n in (10, 20, 22):
        assert isinstance(results[n], DecodedClip) and results[n].frames.shape[0] == 4
    assert pool.restarts == 2


# ------------------------------------------------------------------------------- decoder choice
# (every dataset of the table extracting end to end: tests/test_dataset_contract.py)

def test_default_decoder_is_chosen_per_container_and_installed(monkeypatch):
    assert decoders.default_backend("a/b.MP4") == decoders.DEFAULT_BY_CONTAINER["mp4"]
    assert decoders.default_backend("clip.unknown") == decoders.default_backend() == decoders.DEFAULT_BACKEND
    monkeypatch.setitem(decoders.DEFAULT_BY_CONTAINER, "mkv", "decord")
    monkeypatch.setattr(decoders.DecordDecoder, "available", classmethod(lambda cls: True))
    assert decoders.default_backend("x.mkv") == "decord" and decoders.default_backend("x.mp4") == "pyav"
    monkeypatch.setattr(decoders.DecordDecoder, "available", classmethod(lambda cls: False))
    assert decoders.default_backend("x.mkv") == "pyav"  # the rule's backend is not installed


def test_a_shard_of_mixed_containers_records_the_rule(reference):
    """When the rule picks different backends for the shard's videos (decord for AVI, PyAV for the rest),
    each video gets its own and the provenance says "auto" with the rule applied."""
    if not decoders.decord_available():
        pytest.skip("decord is not installed on this platform")
    features = FeatureSet(reference)
    assert features.attrs["decoder"] == "auto"
    assert json.loads(features.attrs["decoder_by_container"]) == {"avi": "decord", "mkv": "pyav", "mp4": "pyav"}
    assert not [note for note in features.notes() if note.kind == "fallback"]  # each served by its own backend


def test_video_rows_are_the_rows_the_store_holds(dataset, encoder, reference):
    """Prediction's one-video path (`video_rows`) gives what the run stored: same sampler from provenance,
    same timestamps, same repeat-last padding, float16."""
    from cmdcl.extract.video_features import decode_settings, video_rows

    features = FeatureSet(reference)
    settings = decode_settings(features.attrs, encoder)
    stored, position = by_id(features), {v: i for i, v in enumerate(features.index["video_id"].tolist())}
    for vid in ("v1", "v3"):  # v1 is shorter than FRAMES: padded
        ext = {row[0]: row[5] for row in VIDEOS}[vid]
        rows = video_rows(dataset / "videos" / f"{vid}.{ext}", encoder, settings)
        record = features.read_array("frame_mask", np.array([position[vid]]))[0]
        assert rows.features.dtype == np.float16 and rows.features.shape == stored[vid].shape
        np.testing.assert_array_equal(rows.mask, record)
        np.testing.assert_array_equal(rows.timestamps_ms,
                                      features.read_array("timestamps_ms", np.array([position[vid]]))[0])
        np.testing.assert_allclose(rows.features.astype(np.float32), stored[vid].astype(np.float32), atol=2e-3)
        valid = int(rows.mask.sum())
        assert (rows.features[valid:] == rows.features[valid - 1]).all()
        assert valid < FRAMES if vid == "v1" else valid == FRAMES


def test_cli_extract_coin_with_its_published_taxonomy(tmp_path, capfd):
    from dataset_fixtures import write_coin

    root = write_coin(tmp_path / "coin", write_video=tiny_video, taxonomy="taxonomy.xlsx")
    out = tmp_path / "feats"
    cli_main(["extract", "--dataset", "coin", "--root", str(root), "--out", str(out), "--model", "cmdcl-tiny",
              "--pretrained", "random", "--patch-grid", "0",
              "--frames", "4", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--precision", "fp32",
              "--no-progress"])
    printed = "".join(capfd.readouterr())
    assert "taxonomy.xlsx" in printed and "named neither" not in printed and "coin step" not in printed
    features = FeatureSet(out)
    assert features.dims["S"] == 778 and features.text.step_ids == list(range(1, 779))
    assert features.text.class_ids == list(range(180))
    # vidA01 holds COIN step ids 45 and 46: its step columns map back to them through the stored ids.
    row = features.index["video_id"].tolist().index("vidA01")
    assert [features.text.step_ids[j] for j in np.flatnonzero(features.index["steps"][row])] == [45, 46]
    assert features.verify() == []
