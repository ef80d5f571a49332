import numpy as np
import pytest

from cmdcl.extract import decoders
from cmdcl.extract.decoders import (DecordDecoder, PyAVDecoder, VideoDecodeError, VideoOpenError, open_video)
from video_fixtures import (frame_index_of, write_garbage, write_test_video, write_text_file, write_truncated,
                            write_zero_byte)

BACKENDS = ["decord", "pyav"] if decoders.decord_available() else ["pyav"]
WANTED = [0, 2, 3, 4, 11, 17, 18, 29, 39]  # several GOPs, dense and sparse, last frame


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {
        (codec, ext): write_test_video(root / f"{codec}.{ext}", num_frames=40, height=48, width=64, fps=12.0,
                                       codec=codec, gop=10)
        for codec, ext in [("mpeg4", "mp4"), ("libx264", "mp4"), ("mpeg4", "avi"), ("libx264", "mkv")]
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", [("mpeg4", "mp4"), ("libx264", "mp4"), ("mpeg4", "avi"), ("libx264", "mkv")])
def test_reads_the_wanted_frames_with_their_timestamps(videos, backend, kind):
    with open_video(videos[kind], backend=backend, fallback=False, size=(24, 32)) as dec:
        meta = dec.meta
        frames, ts = dec.read(WANTED)
    assert (meta.num_frames, meta.height, meta.width, meta.out_height, meta.out_width) == (40, 48, 64, 24, 32)
    assert meta.fps == pytest.approx(12.0)
    assert meta.duration == pytest.approx(40 / 12, abs=0.01)
    assert frames.dtype == np.uint8 and frames.shape == (len(WANTED), 24, 32, 3)
    assert [frame_index_of(f) for f in frames] == WANTED
    assert np.all(np.diff(ts) > 0)
    np.testing.assert_allclose(ts, np.array(WANTED) * 1000 / 12, atol=1.0)


def test_backends_agree_on_frames_and_timestamps(videos):
    if len(BACKENDS) < 2:
        pytest.skip("decord is not installed on this platform")
    for kind, path in videos.items():
        a_frames, a_ts = open_video(path, "decord", fallback=False, size=(30, 40)).read(WANTED)
        b_frames, b_ts = open_video(path, "pyav", fallback=False, size=(30, 40)).read(WANTED)
        assert a_frames.shape == b_frames.shape == (len(WANTED), 30, 40, 3)
        assert [frame_index_of(f) for f in a_frames] == [frame_index_of(f) for f in b_frames] == WANTED
        assert np.abs(a_frames.astype(int) - b_frames.astype(int)).mean() < 4, kind
        np.testing.assert_allclose(a_ts, b_ts, atol=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unsorted_and_repeated_indices(videos, backend):
    wanted = [30, 5, 5, 39, 0, 30]
    frames, ts = open_video(videos[("libx264", "mp4")], backend, fallback=False).read(wanted)
    assert [frame_index_of(f) for f in frames] == wanted
    np.testing.assert_allclose(ts, np.array(wanted) * 1000 / 12, atol=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_size_function_keeps_aspect(videos, backend):
    def short_side_to_16(h, w):
        scale = 16 / min(h, w)
        return round(h * scale), round(w * scale)

    with open_video(videos[("mpeg4", "mp4")], backend, fallback=False, size=short_side_to_16) as dec:
        frames, _ = dec.read([7])
    assert frames.shape[1:] == (16, 21, 3)  # 48x64 -> 16x21.33
    assert frame_index_of(frames[0]) == 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_timestamps_are_real(tmp_path, backend):
    gaps = [0.05 if i % 3 else 0.2 for i in range(29)]
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    path = write_test_video(tmp_path / "vfr.mp4", num_frames=30, codec="libx264", frame_times_s=times, gop=8)
    with open_video(path, backend, fallback=False) as dec:
        assert dec.meta.num_frames == 30
        frames, ts = dec.read(list(range(0, 30, 3)) + [29])
    assert [frame_index_of(f) for f in frames] == list(range(0, 30, 3)) + [29]
    np.testing.assert_allclose(ts, times[list(range(0, 30, 3)) + [29]] * 1000, atol=1.0)


def test_pyav_counts_frames_when_container_has_no_count(videos):
    import av

    path = videos[("libx264", "mkv")]
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # Matroska stores no frame count
    with open_video(path, "pyav") as dec:
        assert dec.meta.num_frames == 40


def test_pyav_decodes_avi_sequentially_and_correctly(tmp_path):
    # AVI has no presentation timestamps; with B-frames (x264) seeking by them would return wrong frames.
    path = write_test_video(tmp_path / "bframes.avi", num_frames=40, codec="libx264", gop=10)
    with open_video(path, "pyav") as dec:
        frames, ts = dec.read([1, 20, 21, 38])
        assert dec.sequential
    assert [frame_index_of(f) for f in frames] == [1, 20, 21, 38]
    np.testing.assert_allclose(ts, np.array([1, 20, 21, 38]) * 1000 / 12, atol=1.0)


def test_fallback_to_pyav_when_decord_cannot_open(videos, monkeypatch):
    def broken_open(self, path, size=None):
        raise VideoOpenError("simulated decord failure")

    monkeypatch.setattr(DecordDecoder, "open", broken_open)
    monkeypatch.setattr(DecordDecoder, "available", classmethod(lambda cls: True))
    with open_video(videos[("mpeg4", "mp4")], "decord", size=(24, 32)) as dec:
        frames, _ = dec.read([3, 33])
        assert dec.name == "pyav" and "simulated decord failure" in dec.fallback_reason
    assert [frame_index_of(f) for f in frames] == [3, 33]
    with pytest.raises(VideoOpenError):
        open_video(videos[("mpeg4", "mp4")], "decord", fallback=False)


def test_fallback_to_pyav_when_decord_cannot_read(videos, monkeypatch):
    if "decord" not in BACKENDS:
        pytest.skip("decord is not installed on this platform")

    def broken_read(self, indices):
        raise VideoDecodeError("simulated decord read failure")

    monkeypatch.setattr(DecordDecoder, "read", broken_read)
    dec = open_video(videos[("libx264", "mp4")], "decord", size=(24, 32))
    assert dec.name == "decord"
    frames, ts = dec.read([0, 25])
    assert dec.name == "pyav" and "simulated decord read failure" in dec.fallback_reason
    assert [frame_index_of(f) for f in frames] == [0, 25]


def test_real_decord_misread_is_caught_and_served_by_pyav(tmp_path):
    # decord returns wrong frames for x264 in AVI; its garbage timestamps give it away.
    if "decord" not in BACKENDS:
        pytest.skip("decord is not installed on this platform")
    path = write_test_video(tmp_path / "bframes.avi", num_frames=40, codec="libx264", gop=10)
    with open_video(path, "decord") as dec:
        frames, _ = dec.read([0, 39])
        assert dec.name == "pyav"
    assert [frame_index_of(f) for f in frames] == [0, 39]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("writer", [write_zero_byte, write_garbage, write_text_file])
def test_bad_files_raise_open_errors(tmp_path, backend, writer):
    path = writer(tmp_path / "bad.mp4")
    with pytest.raises(VideoOpenError):
        open_video(path, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file_and_truncated_file(tmp_path, backend):
    with pytest.raises(VideoOpenError, match="does not exist"):
        open_video(tmp_path / "nope.mp4", backend)
    truncated = write_truncated(tmp_path / "cut.mp4", num_frames=40, keep=0.5)
    with pytest.raises(VideoOpenError):  # mp4 writes its index at the end: the cut file has none
        open_video(truncated, backend)


def test_truncated_avi_counts_only_the_frames_present(tmp_path):
    truncated = write_truncated(tmp_path / "cut.avi", num_frames=40, keep=0.5)
    with open_video(truncated, "pyav") as dec:
        assert 5 < dec.meta.num_frames < 40
        last = dec.meta.num_frames - 1
        frames, _ = dec.read([last])
    assert frame_index_of(frames[0]) == last


def test_out_of_range_indices_raise(videos):
    for cls in (PyAVDecoder, DecordDecoder) if "decord" in BACKENDS else (PyAVDecoder,):
        dec = cls()
        dec.open(videos[("mpeg4", "mp4")])
        with pytest.raises(VideoDecodeError):
            dec.read([40])
        dec.close()


def _full_decode(path, indices, size):
    """The frames at `indices` from a plain front-to-back PyAV decode (no seeking, no skipped packets)."""
    import av

    wanted = set(indices)
    frames = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i in wanted:
                frames[i] = frame.to_ndarray(width=size[1], height=size[0], format="rgb24", interpolation="BICUBIC")
    return np.stack([frames[i] for i in indices])


@pytest.mark.parametrize("threads", [1, 2])
def test_pyav_skipping_nonref_frames_returns_the_frames_of_a_full_decode(tmp_path, threads):
    # H.264 with 2 B-frames and a keyframe every 12 frames: the seeking reader feeds the packets before
    # each wanted frame under skip_frame NONREF, which must not change a single byte of what it returns.
    path = write_test_video(tmp_path / "bframes.mp4", num_frames=60, height=48, width=64, codec="libx264", gop=12,
                            pattern="noise", seed=3)
    import av
    from av.video.frame import PictureType

    with av.open(str(path)) as container:
        types = {PictureType(frame.pict_type).name for frame in container.decode(video=0)}
    assert {"I", "P", "B"} <= types  # the fixture has the frame types the skip is about
    size = (48, 64)
    reads = [[5], [6, 7], [9, 10, 11, 12, 13], [25, 31], [47], [59], [0, 1, 2], [2, 14, 26, 38, 50, 58]]
    with PyAVDecoder(threads) as dec:
        dec.open(path, size=size)
        for wanted in reads:
            frames, _ = dec.read(wanted)
            np.testing.assert_array_equal(frames, _full_decode(path, wanted, size), err_msg=str(wanted))
        assert not dec.sequential  # the seeking path served every read
