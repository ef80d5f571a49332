import numpy as np
import pytest

from cmdcl.extract.sampler import FrameSampler


def test_uniform_takes_segment_centres():
    s = FrameSampler(4).sample(100, fps=25.0, duration=4.0)
    assert s.indices.tolist() == [12, 37, 62, 87]  # centres of [0,25), [25,50), ...
    assert s.mask.all()


def test_uniform_with_exactly_f_frames_takes_every_frame():
    s = FrameSampler(8).sample(8)
    assert s.indices.tolist() == list(range(8))
    assert s.mask.all()


def test_uniform_indices_distinct_and_in_range():
    for n in (64, 65, 127, 1000, 4097):
        s = FrameSampler(64).sample(n)
        assert len(np.unique(s.indices)) == 64
        assert s.indices.min() >= 0 and s.indices.max() < n
        assert (np.diff(s.indices) > 0).all()


def test_short_video_pads_with_last_frame_and_masks():
    s = FrameSampler(6).sample(4)
    assert s.indices.tolist() == [0, 1, 2, 3, 3, 3]
    assert s.mask.tolist() == [True, True, True, True, False, False]
    assert s.valid.tolist() == [0, 1, 2, 3]


def test_single_frame_video():
    s = FrameSampler(3).sample(1)
    assert s.indices.tolist() == [0, 0, 0]
    assert s.mask.tolist() == [True, False, False]


def test_fps_mode_takes_frames_at_the_rate():
    # 10 s at 30 fps, 1 frame per second at each second's centre: frames 15, 45, ..., 285.
    s = FrameSampler(10, mode="fps", fps=1.0).sample(300, fps=30.0, duration=10.0)
    assert s.indices.tolist() == [15 + 30 * k for k in range(10)]
    assert s.mask.all()


def test_fps_mode_strides_down_when_more_than_f():
    s = FrameSampler(5, mode="fps", fps=1.0).sample(300, fps=30.0, duration=10.0)
    at_rate = [15 + 30 * k for k in range(10)]
    assert s.indices.tolist() == [at_rate[i] for i in (1, 3, 5, 7, 9)]


def test_fps_mode_pads_when_fewer_than_f():
    s = FrameSampler(8, mode="fps", fps=2.0).sample(75, fps=25.0, duration=3.0)
    assert s.indices.tolist()[:6] == [6, 18, 31, 43, 56, 68]
    assert s.indices.tolist()[6:] == [68, 68]
    assert s.mask.tolist() == [True] * 6 + [False] * 2


def test_fps_above_video_rate_never_repeats_valid_frames():
    s = FrameSampler(16, mode="fps", fps=50.0).sample(10, fps=10.0, duration=1.0)
    assert s.valid.tolist() == list(range(10))
    assert (~s.mask).sum() == 6


def test_fps_mode_uses_duration_when_fps_unknown():
    s = FrameSampler(4, mode="fps", fps=1.0).sample(100, fps=0.0, duration=4.0)
    assert s.indices.tolist() == [12, 37, 62, 87]


def test_deterministic():
    a = FrameSampler(32, mode="fps", fps=2.0).sample(1234, fps=29.97, duration=41.2)
    b = FrameSampler(32, mode="fps", fps=2.0).sample(1234, fps=29.97, duration=41.2)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.mask, b.mask)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        FrameSampler(0)
    with pytest.raises(ValueError):
        FrameSampler(4, mode="fps")
    with pytest.raises(ValueError):
        FrameSampler(4, mode="random")
    with pytest.raises(ValueError):
        FrameSampler(4).sample(0)
