"""The moving world: each time-varying confounder's switch changes what it should and nothing else,
the props agree with the activity like the static factors, and the captions name them."""
from __future__ import annotations

import numpy as np

from cmdcl.extract.datasets import synthetic
from cmdcl.extract.datasets.synthetic import (SyntheticConfig, VideoSpec, build_world, context_text, render,
                                              sample_videos, world_options)

OFF = world_options("static")  # every time-varying confounder off
SMALL = dict(num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4, train_per_class=1,
             test_per_class=0, ood_per_class=0, pretrain_per_class=0, fps=4, min_seconds=4.0, max_seconds=4.0,
             noise=0.0)
WALL = (slice(0, 6), slice(0, 10))  # top-left corner: wall only (actor, arm and object never reach it)


def config(**options) -> SyntheticConfig:
    return SyntheticConfig(**{**SMALL, **OFF, **options})


def spec(background: int = 2) -> VideoSpec:
    """One 16-frame video, background value 2 (checks: a pan shows in every corner), three steps."""
    return VideoSpec(video_id="x", split="train", label=0, num_frames=16,
                     segments=[(0, 0, 5), (1, 5, 11), (2, 11, 16)], context={"background": background, "attire": 0, "lighting": 1, "prop": 1}, agrees={},
                     render_seed=[0, 2, 0, 0, 0])


def test_with_every_switch_off_the_world_is_the_static_one():
    assert SyntheticConfig(**OFF).world == "static" and SyntheticConfig().world == "moving"
    assert SyntheticConfig(**OFF).factors == synthetic.CONFOUNDERS
    video = render(spec(), config())
    wall = video.frames[:, WALL[0], WALL[1]].astype(int)
    assert (wall == wall[0]).all()  # a fixed camera and constant light: the wall is the same in every frame
    assert video.prop_boxes.shape == (16, 0, 4)


def test_camera_motion_shows_another_background_in_every_frame_and_moves_the_boxes():
    still, moving = render(spec(), config()), render(spec(), config(camera_motion=0.1))
    wall = moving.frames[:, WALL[0], WALL[1]].astype(int)
    for a in range(16):
        for b in range(a + 1, 16):
            assert np.abs(wall[a] - wall[b]).mean() > 0.5, (a, b)  # no two frames show the same wall
    # the action's object moves with the scene: its box is shifted by the frame's offset (x0 and x1 alike, to
    # the pixel: boxes are whole painted pixels, the offsets sub-pixel)
    shift = still.boxes - moving.boxes
    whole = (moving.boxes[:, 0] > 0) & (moving.boxes[:, 2] < 80) & (moving.boxes[:, 1] > 0) & (moving.boxes[:, 3] < 60)
    assert whole.sum() > 10
    np.testing.assert_allclose(shift[whole, 0], shift[whole, 2], atol=1.0)
    np.testing.assert_allclose(shift[whole, 1], shift[whole, 3], atol=1.0)
    assert np.ptp(shift[whole, 0]) > 2.0 and np.abs(shift[whole]).max() <= 0.1 * 80 * 1.3 + 2


def test_light_change_varies_the_brightness_within_a_video():
    def brightness(video) -> np.ndarray:
        return video.frames[:, WALL[0], WALL[1]].reshape(16, -1).mean(axis=1)

    still, changing = brightness(render(spec(), config())), brightness(render(spec(), config(light_change=0.15)))
    assert np.ptp(still) == 0
    assert np.std(changing) / np.mean(changing) > 0.02
    # on top of the video's lighting: the mean stays near the still video's
    assert abs(np.mean(changing) / np.mean(still) - 1) < 0.2


def test_props_change_only_their_own_pixels_and_move():
    """With noise on: the props have their own random stream, so outside their boxes the frames are the
    prop-free video's, bit for bit; inside they differ; they are the action's object's size and they move."""
    without = render(spec(), config(noise=4.0))
    video = render(spec(), config(noise=4.0, props=2))
    assert video.prop_boxes.shape == (16, 2, 4) and not np.isnan(video.prop_boxes).any()
    inside = np.zeros(video.frames.shape[:3], bool)
    for t, boxes in enumerate(video.prop_boxes.astype(int)):
        for x0, y0, x1, y1 in boxes:
            inside[t, y0:y1, x0:x1] = True
    assert (video.frames[~inside] == without.frames[~inside]).all()
    changed = np.abs(video.frames.astype(int) - without.frames).sum(-1) > 30
    assert changed[inside].mean() > 0.3
    def sides(boxes: np.ndarray) -> np.ndarray:
        return np.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])

    assert 0.6 < np.median(sides(video.prop_boxes)) / np.median(sides(video.boxes)) < 1.6  # the object's size
    centres = video.prop_boxes[..., :2] + video.prop_boxes[..., 2:]
    assert (np.abs(np.diff(centres, axis=0)).sum(-1) > 0).all()  # every prop moves between every two frames


def test_props_pass_near_or_over_the_action_object_sometimes():
    cfg = SyntheticConfig(train_per_class=3, test_per_class=0, ood_per_class=0, pretrain_per_class=0)
    over = []
    for video_spec in sample_videos(cfg)[::3]:
        video = render(video_spec, cfg)
        a, p = video.boxes[:, None], video.prop_boxes
        width = np.minimum(a[..., 2], p[..., 2]) - np.maximum(a[..., 0], p[..., 0])
        height = np.minimum(a[..., 3], p[..., 3]) - np.maximum(a[..., 1], p[..., 1])
        over.append(((width > 0) & (height > 0)).any(axis=1).mean())
    assert 0.1 < np.mean(over) < 0.8 and min(over) < max(over)


def test_the_prop_factor_agrees_with_the_activity_like_the_others():
    cfg = SyntheticConfig(train_per_class=300, test_per_class=0, ood_per_class=200, pretrain_per_class=100)
    specs = sample_videos(cfg)
    for split, expected in (("train", 0.9), ("pretrain", 0.9), ("test_ood", 1 / 6)):
        agrees = [s.agrees["prop"] for s in specs if s.split == split]
        assert abs(np.mean(agrees) - expected) < 0.04, split
    # jointly with the static factors, as they agree with each other
    train = [s for s in specs if s.split == "train"]
    assert np.mean([s.agrees["prop"] == s.agrees["background"] for s in train]) > 0.95
    reversed_cfg = SyntheticConfig(ood_mode="reversed", train_per_class=0, test_per_class=0, ood_per_class=200,
                                   pretrain_per_class=0)
    world = build_world(reversed_cfg)
    ood = sample_videos(reversed_cfg, world)
    assert np.mean([s.agrees["prop"] for s in ood]) < 0.05
    assert np.mean([s.context["prop"] == world.preferred["prop"][(s.label + 1) % 6] for s in ood]) > 0.85


def test_the_props_kind_and_colour_follow_the_factor():
    video_a, video_b = (render(spec(), config(props=1)), render(
        VideoSpec(**{**spec().__dict__, "context": {**spec().context, "prop": 2}}), config(props=1)))
    assert synthetic.prop_shape(1) != synthetic.prop_shape(2)

    def prop_colour(video) -> np.ndarray:
        x0, y0, x1, y1 = video.prop_boxes[0, 0].astype(int)
        return video.frames[0, (y0 + y1) // 2, (x0 + x1) // 2].astype(int)

    assert np.abs(prop_colour(video_a) - prop_colour(video_b)).sum() > 60


def test_pretraining_captions_name_the_props_and_the_scene_sometimes():
    """The alt-text-like captions of `pretrain-clip` append the video's context, which names the props."""
    import torch

    from cmdcl.extract.pretrain_clip import CaptionedFrames

    contexts = [context_text({"background": v, "attire": v, "lighting": v, "prop": v}, 6, 2) for v in range(6)]
    assert all("moving about" in c and "kitchen" in c for c in contexts)
    assert len({c.rsplit(", ", 1)[1] for c in contexts}) == 6  # each prop value reads differently
    frames = CaptionedFrames(torch.zeros(0), np.zeros(600, np.int64), np.zeros(600, np.int64),
                             [contexts[i % 6] for i in range(600)], ["crack egg"], ["make soup"], videos=6)
    rng, rate = np.random.default_rng(0), 0.3  # pretrain-clip's default context_rate
    captions = [frames.caption(i, rng, rate) for i in range(600)]
    named = np.mean(["moving about" in c for c in captions])
    assert abs(named - rate) < 0.06
    assert all(("moving about" in c) == ("kitchen" in c) for c in captions)


def _moving_world(**options) -> SyntheticConfig:
    return SyntheticConfig(**{**SMALL, "test_per_class": 1, "ood_per_class": 1, **world_options("moving"), **options})


def test_reversed_ood_motion_changes_test_ood_motion_and_nothing_else():
    """ood_motion "reversed": the same videos (labels, steps, context), the same pixels in every split but
    test_ood, and there the pan runs the other way (the boxes move the other way) while the rest stays."""
    same, reversed_ = _moving_world(), _moving_world(ood_motion="reversed")
    specs = sample_videos(same)
    assert specs == sample_videos(reversed_) and {s.split for s in specs} >= {"train", "test", "test_ood"}
    for s in specs:
        a, b = render(s, same), render(s, reversed_)
        if s.split != "test_ood":
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.boxes, b.boxes), s.video_id
            continue
        assert not np.array_equal(a.frames, b.frames)
        centre_a, centre_b = (a.boxes[:, 0] + a.boxes[:, 2]) / 2, (b.boxes[:, 0] + b.boxes[:, 2]) / 2
        assert not np.allclose(centre_a, centre_b, atol=1.0)  # the object moves with the other pan
    # with the camera and the light off the option has nothing to re-time: test_ood is the static world's
    off = [s for s in sample_videos(config(ood_per_class=1)) if s.split == "test_ood"]
    assert np.array_equal(render(off[0], config()).frames, render(off[0], config(ood_motion="reversed")).frames)


def test_motion_timing_and_reversal_change_only_the_pan_and_the_drift():
    """The shake, the jitter and the flicker are drawn the same whatever the timing; "sweep" pans steadily from
    one side to the other over the video; "reversed" negates the pan and the drift."""
    from cmdcl.extract.datasets.synthetic_motion import camera_path, light_path

    rng = lambda: np.random.default_rng([5, 1])  # noqa: E731
    paths = {(t, r): camera_path(rng(), 40, 8, 8.0, 40, t, r) for t in ("random", "sweep") for r in (False, True)}
    shake = (paths["random", False] + paths["random", True]) / 2
    np.testing.assert_allclose((paths["sweep", False] + paths["sweep", True]) / 2, shake, atol=1e-9)
    sweep = paths["sweep", False] - shake
    np.testing.assert_allclose(sweep[:, 0], 8.0 * np.linspace(-1, 1, 40), atol=1e-9)  # left to right, steadily
    assert np.corrcoef(sweep[:, 0], np.arange(40))[0, 1] > 0.999
    assert abs(np.corrcoef((paths["random", False] - shake)[:, 0], np.arange(40))[0, 1]) < 0.999
    gains = {(t, r): light_path(rng(), 40, 8, 0.15, t, r)[0] for t in ("random", "sweep") for r in (False, True)}
    rest = (gains["random", False] + gains["random", True]) / 2  # 1 + jitter + flicker
    np.testing.assert_allclose((gains["sweep", False] + gains["sweep", True]) / 2, rest, atol=1e-6)
    assert np.all(np.diff(gains["sweep", False] - rest) > 0)  # the light rises steadily over the video


def test_retimed_worlds_are_not_presets():
    assert SyntheticConfig(motion_timing="sweep").world == "custom"
    assert SyntheticConfig(ood_motion="reversed").world == "custom" and SyntheticConfig().world == "moving"
    for option, value in (("motion_timing", "steady"), ("ood_motion", "backwards")):
        try:
            SyntheticConfig(**{option: value}).validate()
        except synthetic.CmdclError as exc:
            assert option in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{option}={value!r} was accepted")
