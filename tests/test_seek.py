"""`--seek keyframe`: each sampled frame replaced by the nearest keyframe, real timestamps stored, the seek mode
in provenance; exact seeking unchanged."""
import json
from pathlib import Path

import numpy as np
import pytest

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import FeatureSet, shard_name
from cmdcl.extract.decoders import BACKENDS, backend_available, fallback_decoder
from cmdcl.extract.runner import ExtractConfig, run_extraction
from cmdcl.extract.sampler import FrameSampler
from video_fixtures import frame_index_of, write_test_video, write_zero_byte

GOP, FRAMES_IN_VIDEO, FPS, F = 10, 60, 12.0, 8
INSTALLED = [b for b in BACKENDS if backend_available(b)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seek")
    (root / "classes.txt").write_text("a\nb\n")
    rows = []
    for i, codec in enumerate(("libx264", "mpeg4")):
        write_test_video(root / f"v{i}.mp4", num_frames=FRAMES_IN_VIDEO, height=48, width=64, fps=FPS, codec=codec,
                         gop=GOP)
        rows.append({"video_id": f"v{i}", "path": f"v{i}.mp4", "split": "train", "label": i})
    write_zero_byte(root / "bad.mp4")  # a failure, so that --retry-failed reopens the finished shard
    rows.append({"video_id": "bad", "path": "bad.mp4", "split": "train", "label": 0})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def config(dataset: Path, out: Path, **overrides) -> ExtractConfig:
    options = dict(dataset="manifest", root=str(dataset), out_dir=str(out), model="cmdcl-tiny",
                   pretrained="random", patch_grid=0, frames=F,
                   batch_size=16, workers=0, device="cpu", precision="fp32", progress=False)
    return ExtractConfig(**{**options, **overrides})


def test_keyframe_sampler_takes_the_nearest_keyframe_once():
    sampler = FrameSampler(8, seek="keyframe")
    sampled = sampler.sample_video(60, 12.0, 5.0, keyframes=[0, 10, 20, 30, 40, 50])
    # uniform centres 3, 11, 18, 26, 33, 41, 48, 56 -> nearest keyframes 0, 10, 20, 30, 30, 40, 50, 50
    assert sampled.valid.tolist() == [0, 10, 20, 30, 40, 50]
    assert sampled.mask.tolist() == [True] * 6 + [False] * 2 and sampled.indices[-1] == 50
    assert FrameSampler(8).sample_video(60, 12.0, 5.0).indices.tolist() == FrameSampler(8).sample(60).indices.tolist()
    assert "seek" not in FrameSampler(8).as_dict()  # exact shards keep the provenance they always had
    assert FrameSampler.from_provenance(json.dumps(sampler.as_dict())).seek == "keyframe"


@pytest.mark.parametrize("backend", INSTALLED)
@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_decoders_read_keyframes_with_their_timestamps(tmp_path, backend, codec):
    path = write_test_video(tmp_path / "v.mp4", num_frames=FRAMES_IN_VIDEO, fps=FPS, codec=codec, gop=GOP)
    expected = _keyframes_in_file(path)  # at most GOP frames apart (mpeg4 adds some at scene cuts)
    assert expected[:2] == [0, GOP] and (np.diff(expected) <= GOP).all() and len(expected) < FRAMES_IN_VIDEO
    decoder = fallback_decoder(backend, fallback=False)
    decoder.open(path, (48, 64))
    assert decoder.keyframes().tolist() == expected
    got = decoder.read_sampled(FrameSampler(F, seek="keyframe"), salvage=False)
    decoder.close()
    nearest = [min(expected, key=lambda k: (abs(k - w), k)) for w in FrameSampler(F).sample(FRAMES_IN_VIDEO).valid]
    assert got.sampled.valid.tolist() == sorted(set(nearest))
    assert [frame_index_of(frame) for frame in got.frames] == got.sampled.valid.tolist()  # really those frames
    np.testing.assert_allclose(got.timestamps_ms, got.sampled.valid * 1000 / FPS, atol=1.0)


def _keyframes_in_file(path: Path) -> list[int]:
    """Keyframe indices from the packet flags, in presentation order (what the container says)."""
    import av

    with av.open(str(path)) as container:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0]) if p.size]
    return [i for i, (_, key) in enumerate(sorted(packets)) if key]


def test_keyframe_extraction_stores_keyframe_times_and_refuses_mixing_on_resume(dataset, encoder, tmp_path):
    exact = run_extraction(config(dataset, tmp_path / "exact"), encoder=encoder)
    keyframe = run_extraction(config(dataset, tmp_path / "key", seek="keyframe"), encoder=encoder)
    assert (exact.extracted, exact.failed) == (keyframe.extracted, keyframe.failed) == (2, 1)
    stored = FeatureSet(tmp_path / "key" / shard_name(0, 1))
    assert json.loads(stored.attrs["sampler"])["seek"] == "keyframe"
    rows = np.arange(len(stored))
    index, mask = stored.read_array("frame_index", rows), stored.read_array("frame_mask", rows)
    times = stored.read_array("timestamps_ms", rows)
    for video, path in enumerate(stored.index["path"].tolist()):
        assert set(index[video][mask[video]]) <= set(_keyframes_in_file(Path(path)))
    assert mask.sum() < mask.size  # fewer keyframes near the sampled frames than F: padded + masked
    np.testing.assert_allclose(times[mask], index[mask] * 1000 / FPS, atol=1.0)
    reference = FeatureSet(tmp_path / "exact" / shard_name(0, 1))
    assert "seek" not in json.loads(reference.attrs["sampler"])
    assert reference.read_array("frame_mask", rows).all()  # exact: F distinct frames, not only keyframes
    with pytest.raises(CmdclError, match="sampler"):  # resuming the exact shard in keyframe mode
        run_extraction(config(dataset, tmp_path / "exact", seek="keyframe", retry_failed=True), encoder=encoder)
