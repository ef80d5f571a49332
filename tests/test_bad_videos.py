"""Every kind of bad video users meet, through a real extraction: features, partial features or a failure
record naming the file, the stage and the reason; the run goes on and the summary counts all of them."""
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cmdcl.core.store import FeatureSet, shard_name
from cmdcl.extract.decoders import decord_available
from cmdcl.extract.decode_pool import DecodedClip, DecodeFailure, DecodeSettings, DecodeTask, decode_task
from cmdcl.extract.runner import ExtractConfig, run_extraction
from cmdcl.extract.sampler import FrameSampler
from cmdcl.pipelines.cli import main as cli_main
from video_fixtures import (frame_index_of, index_frame, write_garbage, write_test_video, write_text_file,
                            write_truncated, write_zero_byte)

FRAMES = 8
BACKENDS = ["decord", "pyav"] if decord_available() else ["pyav"]
TESTS = Path(__file__).resolve().parent


def write_video(path: Path, num_frames: int, height: int = 48, width: int = 64, fps: float = 12.0,
                codec: str = "mpeg4", pix_fmt: str = "yuv420p", gop: int = 8, rotation: int | None = None,
                container_options: dict | None = None) -> Path:
    """A video of the index pattern (frame i shows i % 256) with the few knobs write_test_video lacks."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    pattern = [av.VideoFrame.from_ndarray(index_frame(i, height, width), format="rgb24")
               for i in range(min(num_frames, 256))]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast", "keyint": str(gop)}
        else:
            stream.codec_context.qmax = 4
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            frame = pattern[i % len(pattern)]
            frame.pts, frame.time_base = i, 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_corrupt_middle(path: Path) -> Path:
    """48 frames (keyframe every 8); random bytes over the packets of frames 16..24: frames 16..31 are lost
    (16..24 do not decode, 25..31 are predicted from them)."""
    import av

    write_video(path, 48, gop=8)
    with av.open(str(path)) as container:
        packets = sorted((p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size)
    start, end = packets[16][0], packets[24][0] + packets[24][1]
    data = bytearray(path.read_bytes())
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def write_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(16):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


VFR_TIMES = np.concatenate([[0.0], np.cumsum([0.05 if i % 3 else 0.25 for i in range(29)])])

# video_id -> (file name, writer, expected): "features", "partial", or ("failure", stage, words in the reason)
KINDS = {
    "zero_byte": ("zero.mp4", write_zero_byte, ("failure", "open", "empty (0 bytes)")),
    "truncated_mp4": ("cut.mp4", lambda p: write_truncated(p, num_frames=40, keep=0.6), ("failure", "open", "moov")),
    "truncated_faststart": ("cut_faststart.mp4", lambda p: write_truncated(
        p, source=write_video(p.with_name("cut_faststart.full.mp4"), 48, container_options={"movflags": "faststart"}),
        keep=0.6), "partial"),
    "truncated_mkv": ("cut.mkv", lambda p: write_truncated(p, num_frames=48, codec="libx264", gop=8, keep=0.6),
                      "partial"),
    "corrupt_middle": ("corrupt.mp4", write_corrupt_middle, "partial"),
    "not_a_video": ("notes.mp4", write_text_file, ("failure", "open", "invalid data")),
    "random_bytes": ("noise.avi", write_garbage, ("failure", "open", "")),
    "audio_only": ("audio_only.mp4", write_audio_only, ("failure", "open", "no video stream")),
    "single_frame": ("one.mp4", lambda p: write_video(p, 1), "features"),
    "fewer_than_F": ("five.mp4", lambda p: write_video(p, 5, codec="libx264"), "features"),
    "vfr": ("vfr.mp4", lambda p: write_test_video(p, 30, codec="libx264", frame_times_s=VFR_TIMES, gop=8),
            "features"),
    "rotated": ("rotated.mp4", lambda p: write_video(p, 24, rotation=90), "features"),
    "odd_yuv444": ("odd444.mkv", lambda p: write_video(p, 20, height=47, width=63, codec="libx264",
                                                       pix_fmt="yuv444p"), "features"),
    "portrait": ("portrait.mp4", lambda p: write_video(p, 20, height=96, width=40), "features"),
    "hd1080": ("hd.mp4", lambda p: write_video(p, 3, height=1080, width=1920, codec="libx264", gop=2), "features"),
    "unicode_name": ("vidéo 日本 with spaces.mp4", lambda p: write_video(p, 16), "features"),
}
# Paths the dataset lists but that are no regular file: the index reports them missing on disk.
NOT_FILES = ("missing", "symlink_loop", "directory")


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad videos")
    videos = root / "videos"
    videos.mkdir()
    (root / "classes.txt").write_text("cook\n")
    rows = []
    for video_id, (name, write, _) in KINDS.items():
        write(videos / name)
        rows.append({"video_id": video_id, "path": f"videos/{name}", "split": "train", "label": 0})
    os.symlink(videos / "loop_b.mp4", videos / "loop_a.mp4")
    os.symlink(videos / "loop_a.mp4", videos / "loop_b.mp4")
    (videos / "folder.mp4").mkdir()
    for video_id, name in zip(NOT_FILES, ("nowhere.mp4", "loop_a.mp4", "folder.mp4")):
        rows.append({"video_id": video_id, "path": f"videos/{name}", "split": "train", "label": 0})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def bad_run(bad_root, tmp_path_factory):
    """`cmdcl extract --strict` over every kind (default decoder: decord with PyAV fallback where installed)."""
    out = tmp_path_factory.mktemp("out")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
        cli_main(["extract", "--dataset", "manifest", "--root", str(bad_root), "--out", str(out), "--model",
                  "cmdcl-tiny", "--pretrained", "random", "--patch-grid", "0", "--frames", str(FRAMES),
                  "--batch-size", "32", "--workers", "0", "--device", "cpu", "--precision", "fp32", "--no-progress",
                  "--strict", "--summary-json", str(out / "summary.json")])
    return {"code": exit_info.value.code, "stderr": stderr.getvalue(), "out": out,
            "summary": json.loads((out / "summary.json").read_text()),
            "features": FeatureSet(out / shard_name(0, 1))}


def test_run_goes_on_counts_everything_and_strict_exits_1(bad_run):
    summary, features = bad_run["summary"], bad_run["features"]
    failures = {k for k, (_, _, e) in KINDS.items() if isinstance(e, tuple)}
    stored = set(KINDS) - failures
    assert bad_run["code"] == 1, bad_run["stderr"][-2000:]
    assert summary["extracted"] == len(stored) and summary["failed"] == len(failures)
    assert summary["partial"] == sum(e == "partial" for _, _, e in KINDS.values())
    assert summary["missing"] == len(NOT_FILES)
    assert set(features.index["video_id"].tolist()) == stored
    assert {f.video_id for f in features.failures()} == failures
    assert features.verify() == []
    err = bad_run["stderr"]
    assert "3 annotated video(s) are missing on disk" in err
    for video_id in failures:
        assert f"FAILED {video_id} [" in err
    for video_id in (k for k, (_, _, e) in KINDS.items() if e == "partial"):
        assert f"PARTIAL {video_id} " in err


@pytest.mark.parametrize("video_id", list(KINDS))
def test_each_kind_yields_features_partial_or_a_failure(bad_run, bad_root, video_id):
    name, _, expected = KINDS[video_id]
    features = bad_run["features"]
    if isinstance(expected, tuple):
        _, stage, reason = expected
        failure = {f.video_id: f for f in features.failures()}[video_id]
        assert failure.stage == stage and reason in failure.error.lower(), failure
        assert failure.path == str(bad_root / "videos" / name)
        assert "\n" not in failure.error
        return
    row = features.index["video_id"].tolist().index(video_id)
    assert bool(features.index["partial"][row]) == (expected == "partial")
    index, mask = features.index["frame_index"][row], features.index["frame_mask"][row]
    stamps = features.index["timestamps_ms"][row]
    assert mask[0] and (np.diff(index[mask]) > 0).all() and (np.diff(stamps[mask]) > 0).all()
    assert features.index["path"][row] == str(bad_root / "videos" / name)
    feats = features.read_array("features", np.array([row]))[0].astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=2e-3)
    if video_id == "vfr":  # real presentation times, not index / fps
        np.testing.assert_allclose(stamps, VFR_TIMES[index] * 1000, atol=1.0)
    elif video_id in ("single_frame", "fewer_than_F"):
        assert mask.sum() == {"single_frame": 1, "fewer_than_F": 5}[video_id] and not mask.all()
    else:
        np.testing.assert_allclose(stamps, index * 1000 / 12, atol=1.0)


def test_partial_videos_keep_only_clean_frames_with_their_times(bad_run):
    features = bad_run["features"]
    rows = {vid: i for i, vid in enumerate(features.index["video_id"].tolist())}
    corrupt = features.index["frame_index"][rows["corrupt_middle"]]
    assert features.index["frame_mask"][rows["corrupt_middle"]].all()  # 32 clean frames, 8 sampled among them
    assert not ((corrupt >= 16) & (corrupt < 32)).any() and corrupt.min() < 16 and corrupt.max() >= 32
    assert features.index["num_frames"][rows["corrupt_middle"]] == 48
    cut = features.index["frame_index"][rows["truncated_mkv"]]
    assert cut.max() < 30  # 60 % of the bytes: about half the frames
    notes = {(n.video_id, n.kind): n.note for n in features.notes()}
    assert "frames decode cleanly" in notes[("corrupt_middle", "partial")]
    assert "header declares" in notes[("truncated_mkv", "partial")]
    assert "header declares" in notes[("truncated_faststart", "partial")]
    assert features.summary()["partial_videos"] == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_salvaged_frames_are_the_frames_they_claim(bad_root, backend):
    settings = DecodeSettings(sampler=FrameSampler(12), image_size=32, resize_mode="shortest", backend=backend,
                              fallback=True)
    for name in ("corrupt.mp4", "cut_faststart.mp4", "cut.mkv"):
        clip = decode_task(DecodeTask(0, name, str(bad_root / "videos" / name)), settings)
        assert isinstance(clip, DecodedClip) and clip.partial, (name, clip)
        valid = clip.sampled.valid
        assert [frame_index_of(f) for f in clip.frames] == valid.tolist()
        np.testing.assert_allclose(clip.timestamps_ms, valid * 1000 / 12, atol=1.0)
        assert [kind for kind, _ in clip.notes][0] == "partial"


def test_rotation_is_recorded_not_applied(bad_run, bad_root):
    features = bad_run["features"]
    notes = {(n.video_id, n.kind): n.note for n in features.notes()}
    assert "display rotation 90 degrees" in notes[("rotated", "rotation")]
    settings = DecodeSettings(sampler=FrameSampler(4), image_size=32, resize_mode="shortest", backend="pyav",
                              fallback=False)
    clip = decode_task(DecodeTask(0, "rotated", str(bad_root / "videos" / "rotated.mp4")), settings)
    assert clip.meta.rotation == 90 and clip.frames.shape[1:3] == (32, 42)  # landscape, as coded
    assert [frame_index_of(f) for f in clip.frames] == clip.sampled.valid.tolist()
    assert ("rotated", "partial") not in notes


def test_paths_that_are_not_files_are_listed_missing_and_fail_at_open(bad_run, bad_root, tmp_path):
    assert "3 missing on disk: directory, missing, symlink_loop" in bad_run["stderr"]
    videos = bad_root / "videos"
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    for path, reason in ((videos / "nowhere.mp4", "file does not exist"), (videos / "loop_a.mp4", "symbolic link loop"),
                         (videos / "folder.mp4", "is a directory"), (tmp_path / "dangling.mp4", "broken symbolic link")):
        for backend in BACKENDS:
            settings = DecodeSettings(sampler=FrameSampler(4), image_size=32, resize_mode="shortest", backend=backend,
                                      fallback=True)
            failure = decode_task(DecodeTask(0, path.name, str(path)), settings)
            assert isinstance(failure, DecodeFailure) and failure.stage == "open" and reason in failure.error


def test_inspect_lists_partial_notes_and_failures(bad_run, capsys):
    capsys.readouterr()
    cli_main(["inspect", str(bad_run["out"])])
    out = capsys.readouterr().out
    assert "partial 3" in out and "NOTE rotated [rotation]" in out and "FAILED zero_byte [open]" in out


# ------------------------------------------------------------------------------------------- hangs

class HangingSampler(FrameSampler):
    """Blocks forever on 13-frame videos, like a decoder stuck on a broken stream or a dead network mount."""

    def sample(self, num_frames, fps=None, duration=None):
        if num_frames == 13:
            time.sleep(3600)
        return super().sample(num_frames, fps, duration)


class HangingConfig(ExtractConfig):
    def sampler(self) -> FrameSampler:
        return HangingSampler(self.frames)


def test_a_hanging_video_is_stopped_by_the_timeout_and_recorded(tmp_path):
    from cmdcl.extract.models import load_encoder

    root = tmp_path / "hang"
    (root / "videos").mkdir(parents=True)
    (root / "classes.txt").write_text("cook\n")
    rows = []
    for video_id, n in (("a", 10), ("b_hangs", 13), ("c", 11)):
        write_video(root / "videos" / f"{video_id}.mp4", n)
        rows.append(f"{video_id},videos/{video_id}.mp4,train,0\n")
    (root / "manifest.csv").write_text("video_id,path,split,label\n" + "".join(rows))
    cfg = HangingConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / "out"), model="cmdcl-tiny",
                        pretrained="random", patch_grid=0, frames=4, workers=1, timeout_s=2.0, device="cpu",
                        precision="fp32", progress=False)
    summary = run_extraction(cfg, encoder=load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32"),
                             log=lambda m: None)
    assert (summary.extracted, summary.failed) == (2, 1)
    failure = summary.failures[0]
    assert failure.video_id == "b_hangs" and failure.stage == "timeout" and "longer than 2 s" in failure.error
    features = FeatureSet(tmp_path / "out")
    assert sorted(features.index["video_id"].tolist()) == ["a", "c"]
    assert [f.stage for f in features.failures()] == ["timeout"]


# ------------------------------------------------------------------------------------------- memory

MEMORY_CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
from cmdcl.extract.models import load_encoder
from cmdcl.extract.runner import ExtractConfig, run_extraction

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

def extract(name, decoder):
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current resident size
    base = peak_mb()
    runs[0] += 1
    summary = run_extraction(ExtractConfig(dataset="manifest", root={root!r} + "/" + name,
                                           out_dir={out!r} + f"/{{runs[0]}}", model="cmdcl-tiny",
                                           pretrained="random", patch_grid=0, frames=16,
                                           workers=0, device="cpu", decoder=decoder, progress=False),
                             encoder=encoder, log=lambda m: None)
    assert summary.extracted == 1 and not summary.partial, summary
    return {{"base": base, "peak": peak_mb()}}

encoder, runs, result = load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32"), [0], {{}}
for decoder in {backends!r}:
    extract("short", decoder)  # warm-up: first-use allocations are not the video's
    result[decoder] = {{"short": extract("short", decoder), "long": extract("long", decoder)}}
print(json.dumps(result))
"""


def test_peak_memory_does_not_grow_with_video_length(tmp_path):
    """A 10-minute video (3000 frames of 160x120) needs no more memory than a 10-second one at the same F.

    Holding its frames at source size would take ~170 MB (RGB), at decode size ~12 MB: the bound on the
    growth of the peak during the extraction catches the first, the brief's bound on the peaks is looser.
    """
    for name, frames in (("short", 50), ("long", 3000)):
        folder = tmp_path / name
        write_video(folder / "v.mp4", frames, height=120, width=160, fps=5.0, gop=50)
        (folder / "classes.txt").write_text("cook\n")
        (folder / "manifest.csv").write_text("video_id,path,split,label\nv,v.mp4,train,0\n")
    code = MEMORY_CHILD.format(tests=str(TESTS), root=str(tmp_path), out=str(tmp_path / "out"), backends=BACKENDS)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rss = json.loads(result.stdout.strip().splitlines()[-1])
    print("peak RSS MB", rss)
    assert sorted(rss) == sorted(BACKENDS)
    for decoder, runs in rss.items():
        short, long = runs["short"], runs["long"]
        assert long["peak"] <= 1.3 * short["peak"] + 50, decoder
        assert long["peak"] - long["base"] <= 1.3 * (short["peak"] - short["base"]) + 50, decoder


def test_sampling_among_decodable_frames():
    available = np.r_[0:16, 32:48]  # frames 16..31 lost
    uniform = FrameSampler(8).sample_among(available, 48)
    assert uniform.mask.all() and set(uniform.indices.tolist()) <= set(available.tolist())
    assert uniform.indices.tolist() == available[[2, 6, 10, 14, 18, 22, 26, 30]].tolist()
    at_rate = FrameSampler(8, mode="fps", fps=1.0).sample_among(available, 48, fps=12.0, duration=4.0)
    assert at_rate.valid.tolist() == [6, 15, 32, 42]  # 6, 18 -> 15, 30 -> 32, 42; padded to 8
    assert at_rate.mask.sum() == 4 and at_rate.indices[4:].tolist() == [42] * 4
    with pytest.raises(ValueError, match="no decodable frames"):
        FrameSampler(8).sample_among(np.array([], np.int64), 48)
