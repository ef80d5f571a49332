"""The NVDEC backend: what it refuses, frame-index and timestamp mapping, fallback to the CPU decoders.

Without a GPU, PyNvVideoCodec is replaced by a stand-in (`FakeNvc`) that decodes with PyAV at full
size and hands frames over through DLPack, as the real SimpleDecoder does from GPU memory: everything
cmdcl does around the hardware decoder (index mapping, pts check, resize, fallback, the runner's
choice) runs for real. The tests marked `needs_nvdec` use the real package on a GPU and are skipped
with a reason elsewhere.
"""
from __future__ import annotations

import sys
import types

import av
import numpy as np
import pytest
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.extract.decoders import BACKENDS, VideoDecodeError, VideoOpenError, open_video
from cmdcl.extract.decoders import nvdec
from cmdcl.extract.decoders.nvdec import NvdecDecoder, nvdec_refusal, resize_frames, unique_reads
from video_fixtures import frame_index_of, write_test_video

needs_nvdec = pytest.mark.skipif(not NvdecDecoder.available(),
                                 reason="needs PyNvVideoCodec (pip install cmdcl[gpu]) and a CUDA GPU")


class FakeFrame:
    """A decoded frame as PyNvVideoCodec returns it: DLPack-exportable, with its pts."""

    def __init__(self, array: np.ndarray, pts: int):
        self.array, self.pts = array, pts

    def __dlpack__(self, *args, **kwargs):
        return self.array.__dlpack__()

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def getPTS(self) -> int:
        return self.pts


class FakeSimpleDecoder:
    """Decodes the whole file with PyAV, in display order; `pts_shift` simulates an index that disagrees."""

    pts_shift = 0
    calls: list = []

    def __init__(self, path, gpu_id=0, use_device_memory=True, output_color_type=None):
        assert use_device_memory and output_color_type == "RGB"
        with av.open(path) as container:
            frames = sorted(container.decode(video=0), key=lambda f: f.pts)
            self.frames = [(f.to_ndarray(format="rgb24"), f.pts + self.pts_shift) for f in frames]

    def __len__(self) -> int:
        return len(self.frames)

    def get_batch_frames_by_index(self, indices):
        FakeSimpleDecoder.calls.append(list(indices))
        return [FakeFrame(*self.frames[i]) for i in indices]


@pytest.fixture
def fake_nvc(monkeypatch):
    FakeSimpleDecoder.pts_shift, FakeSimpleDecoder.calls = 0, []
    module = types.SimpleNamespace(__version__="fake", SimpleDecoder=FakeSimpleDecoder,
                                   OutputColorType=types.SimpleNamespace(RGB="RGB"))
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", module)
    monkeypatch.setattr(nvdec, "cuda_ready", lambda: True)
    monkeypatch.setattr(nvdec, "current_gpu", lambda: 0)
    monkeypatch.setattr(nvdec, "READ_CHUNK", 3)  # several chunks per read
    return FakeSimpleDecoder


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    """H.264 with B-frames, as downloaded videos are: display order differs from decode order."""
    return write_test_video(tmp_path_factory.mktemp("nvdec") / "clip.mp4", num_frames=40, height=96, width=128,
                            codec="libx264", gop=10)


def test_refuses_what_nvdec_does_not_decode():
    assert nvdec_refusal("h264", "yuv420p", False) is None
    assert nvdec_refusal("hevc", "yuv420p10le", False) is None
    assert "10-bit" not in (nvdec_refusal("h264", "yuv420p10le", False) or "") and \
        "yuv420p10le" in nvdec_refusal("h264", "yuv420p10le", False)
    assert "yuv422p" in nvdec_refusal("h264", "yuv422p", False)
    assert "ffv1" in nvdec_refusal("ffv1", "yuv420p", False)
    assert "presentation times" in nvdec_refusal("mpeg4", "yuv420p", True)


def test_unique_reads_keep_order_and_repeats():
    distinct, where = unique_reads(np.array([7, 2, 7, 0, 2]))
    assert distinct.tolist() == [0, 2, 7]
    assert distinct[where].tolist() == [7, 2, 7, 0, 2]


def test_resize_frames_matches_size_and_keeps_flat_levels():
    frames = torch.full((2, 90, 160, 3), 77, dtype=torch.uint8)
    out = resize_frames(frames, 45, 80)
    assert out.shape == (2, 45, 80, 3) and out.dtype == torch.uint8 and bool((out == 77).all())
    assert resize_frames(frames, 90, 160).data_ptr() == frames.data_ptr()  # no resize, no copy


def test_frames_and_timestamps_are_those_of_pyav(fake_nvc, h264):
    wanted = [33, 3, 3, 17, 0, 39]
    with NvdecDecoder(gpu_id=0) as decoder:
        meta = decoder.open(h264, size=(48, 64))
        frames, stamps = decoder.read(wanted)
        keyframes = decoder.keyframes()
    with open_video(h264, "pyav", size=(48, 64)) as reference:
        assert reference.meta.num_frames == meta.num_frames == 40 and meta.backend == "nvdec"
        expected, expected_stamps = reference.read(wanted)
        assert keyframes.tolist() == reference.keyframes().tolist() == [0, 10, 20, 30]  # for --seek keyframe
    assert isinstance(frames, torch.Tensor) and frames.dtype == torch.uint8 and frames.shape == (6, 48, 64, 3)
    assert [frame_index_of(f) for f in frames.numpy()] == wanted
    np.testing.assert_allclose(stamps, expected_stamps)
    assert np.abs(frames.numpy().astype(int) - expected.astype(int)).mean() < 3  # two bicubic resizers
    # Each frame decoded once, in display order, in chunks of READ_CHUNK.
    assert fake_nvc.calls == [[0, 3, 17], [33, 39]]


def test_pts_disagreement_falls_back_to_the_cpu(fake_nvc, h264):
    fake_nvc.pts_shift = 1
    with NvdecDecoder(gpu_id=0) as decoder:
        decoder.open(h264)
        with pytest.raises(VideoDecodeError, match="pts"):
            decoder.read([5])
    with open_video(h264, "nvdec") as video:  # the fallback policy: the next backend serves the video
        frames, _ = video.read([5, 6])
        assert video.name in ("decord", "pyav") and "nvdec read" in video.fallback_reason
        assert [frame_index_of(f) for f in frames] == [5, 6]


def test_refused_codec_is_served_by_the_cpu(fake_nvc, tmp_path):
    path = write_test_video(tmp_path / "lossless.mkv", num_frames=6, codec="ffv1")
    with pytest.raises(VideoOpenError, match="ffv1"):
        NvdecDecoder(gpu_id=0).open(path)
    with open_video(path, "nvdec") as video:
        assert video.name in ("decord", "pyav") and "ffv1" in video.fallback_reason
        assert [frame_index_of(f) for f in video.read([1, 4])[0]] == [1, 4]
    assert fake_nvc.calls == []


def test_registered_and_unavailable_without_the_package(monkeypatch):
    assert BACKENDS["nvdec"] is NvdecDecoder
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # import fails
    assert not NvdecDecoder.available()


def test_extraction_without_nvdec_uses_pyav_or_stops(tmp_path, monkeypatch):
    from cmdcl.extract.models import load_encoder
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)
    root = tmp_path / "data"
    write_test_video(root / "a.mp4", num_frames=12)
    (root / "manifest.csv").write_text("video_id,path,split,label\na,a.mp4,test,cook\n")
    (root / "classes.txt").write_text("cook\n")
    encoder = load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32")
    options = dict(dataset="manifest", root=str(root), model="cmdcl-tiny",
                   pretrained="random", patch_grid=0, frames=4, workers=0, device="cpu",
                   precision="fp32", progress=False, decoder="nvdec")
    with pytest.raises(CmdclError, match="nvdec"):
        run_extraction(ExtractConfig(out_dir=str(tmp_path / "strict"), fallback=False, **options), encoder=encoder,
                       log=lambda m: None)
    said = []
    summary = run_extraction(ExtractConfig(out_dir=str(tmp_path / "out"), **options), encoder=encoder,
                             log=said.append)
    assert summary.extracted == 1 and any("decoding with PyAV" in line for line in said)


def test_extraction_decodes_nvdec_in_process_with_keyframe_seeking(fake_nvc, h264, tmp_path):
    """workers=2 asked for, yet no fallback: the stand-in exists only in this process, so decoding stayed here."""
    from cmdcl.core.store import FeatureSet
    from cmdcl.extract.models import load_encoder
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    root = tmp_path / "data"
    root.mkdir()
    (root / "clip.mp4").write_bytes(h264.read_bytes())
    (root / "manifest.csv").write_text("video_id,path,split,label\nclip,clip.mp4,test,cook\n")
    (root / "classes.txt").write_text("cook\n")
    summary = run_extraction(ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / "out"),
                                           model="cmdcl-tiny",
                                           pretrained="random", patch_grid=0, frames=4, workers=2, device="cpu",
                                           precision="fp32",
                                           progress=False, decoder="nvdec", seek="keyframe"),
                             encoder=load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32"),
                             log=lambda m: None)
    assert summary.extracted == 1 and summary.fallbacks == 0 and fake_nvc.calls
    stored = FeatureSet(summary.shard_path)
    assert stored.attrs["decoder"] == "nvdec"
    frame_index = stored.index["frame_index"][0][stored.index["frame_mask"][0]]
    assert set(frame_index.tolist()) <= {0, 10, 20, 30}


# --------------------------------------------------------------------------------------- on a GPU

@needs_nvdec
def test_real_nvdec_reads_the_frames_pyav_reads_on_the_gpu(h264):
    wanted = [33, 3, 3, 17, 0, 39]
    with NvdecDecoder() as decoder:
        decoder.open(h264, size=(48, 64))
        frames, stamps = decoder.read(wanted)
    with open_video(h264, "pyav", size=(48, 64)) as reference:
        expected, expected_stamps = reference.read(wanted)
    assert frames.device.type == "cuda" and frames.shape == (6, 48, 64, 3)
    assert [frame_index_of(f) for f in frames.cpu().numpy()] == wanted
    np.testing.assert_allclose(stamps, expected_stamps)
    assert np.abs(frames.cpu().numpy().astype(int) - expected.astype(int)).mean() < 6  # YUV->RGB differs a little


@needs_nvdec
def test_real_nvdec_extraction_needs_no_fallback(h264, tmp_path):
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    root = h264.parent
    (root / "manifest.csv").write_text("video_id,path,split,label\nclip,clip.mp4,test,cook\n")
    (root / "classes.txt").write_text("cook\n")
    summary = run_extraction(ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / "out"),
                                           model="cmdcl-tiny",
                                           pretrained="random", patch_grid=0, frames=8, workers=2, progress=False,
                                           decoder="nvdec"), log=lambda m: None)
    assert summary.extracted == 1 and summary.fallbacks == 0
