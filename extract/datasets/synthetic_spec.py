"""What defines the synthetic world, shared by its sampling (synthetic.py) and its rendering
(synthetic_render.py): the options (`SyntheticConfig`), the world a seed fixes (`World`), one video's spec
(`VideoSpec`), the names and the world presets. Imports neither module (nor numpy), so that neither
imports the other back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from cmdcl.core.errors import CmdclError

# The index of a split in SPLITS keys its videos' random streams: new splits go last, so the videos of the
# older splits stay byte-identical for a seed.
SPLITS = ("train", "test", "test_ood", "pretrain", "train_unconfounded")
# what heads use; extraction's default for this dataset
HEAD_SPLITS = ("train", "test", "test_ood", "train_unconfounded")
# Drawn like "train" but with the context at chance: the oracle a head trained on it sets, so that
# OOD(trained on it) - OOD(trained on "train") is what the confounding still costs (docs/REPORT.md).
UNCONFOUNDED_SPLIT = "train_unconfounded"
# A split whose context is drawn at chance whatever `confounding` is (test_ood too, with ood_mode "chance").
CHANCE_SPLITS = (UNCONFOUNDED_SPLIT,)
CONFOUNDERS = ("background", "attire", "lighting")  # the static world's context factors
PROP_FACTOR = "prop"  # the moving props' kind and colour: a context factor when the world has props

ACTIVITY_NAMES = (
    "make soup", "make pancake", "make scrambled egg", "make tea", "make sandwich", "make salad",
    "make coffee", "make cereal", "make juice", "make omelette", "bake bread", "make porridge",
    "make pasta", "make smoothie", "fry potatoes", "make pizza",
)
STEP_NAMES = (
    "crack egg", "stir pot", "pour milk", "cut bread", "spread butter", "boil water", "add salt",
    "flip pan", "chop onion", "pour cereal", "take cup", "whisk batter", "squeeze orange", "add sugar",
    "pour coffee", "wash lettuce", "slice tomato", "add tea bag", "grate cheese", "peel potato",
    "season dish", "knead dough", "drain pasta", "serve plate",
)

# `cmdcl synth/demo --world NAME`: the time-varying confounders' settings of each world (SyntheticConfig
# fields). "moving" is SyntheticConfig's defaults; "static" is the world of generator version 3, whose
# confounders are constant over time (its videos are byte-identical to version 3's for a seed).
MOVING_OPTIONS = ("camera_motion", "light_change", "props")
WORLDS: dict[str, dict[str, float | int]] = {
    "moving": {"camera_motion": 0.1, "light_change": 0.15, "props": 2},
    "static": {"camera_motion": 0.0, "light_change": 0.0, "props": 0},
}
DEFAULT_WORLD = "moving"
MAX_PROPS = 4
MOTION_TIMINGS = ("random", "sweep")  # SyntheticConfig.motion_timing
OOD_MOTIONS = ("same", "reversed")  # SyntheticConfig.ood_motion


@dataclass
class SyntheticConfig:
    seed: int = 0
    num_activities: int = 6
    num_steps: int = 12  # size of the atomic-action vocabulary
    min_script_steps: int = 3
    max_script_steps: int = 5
    train_per_class: int = 40
    test_per_class: int = 10  # split "test": IID, same confounding as train
    # split "test_ood": confounders at chance (or reversed); 50 per class so that one video moves the
    # demo's OOD top-1 by <= 0.005 (6 classes -> 300 videos)
    ood_per_class: int = 50
    pretrain_per_class: int = 40  # split "pretrain": encoder pre-training only, confounded like train
    # split "train_unconfounded": drawn like train but with the context at chance; None = train_per_class
    unconfounded_per_class: Optional[int] = None
    width: int = 80
    height: int = 60
    fps: int = 8
    min_seconds: float = 6.0
    max_seconds: float = 15.0
    confounding: float = 0.9  # P(context agrees with the activity) in train and test
    ood_mode: str = "chance"  # "chance" | "reversed"
    order_noise: float = 0.25  # P(a video swaps two adjacent steps of its activity's script)
    noise: float = 4.0  # pixel noise std (0-255 scale)
    # Time-varying confounders (WORLDS["moving"]; 0 turns each off, all three 0 is the static world):
    camera_motion: float = 0.1  # a handheld camera's pan across a larger scene, in frame widths (plus shake)
    light_change: float = 0.15  # within-video light drift and flicker, relative to the video's lighting
    props: int = 2  # moving objects with no part in the activity, whose kind agrees with it like the context
    # When the camera and the light move (synthetic_motion.py): "random" sways at a random phase and period in
    # every video, so where the pan and the drift are says nothing about time; "sweep" pans once left to right
    # and raises the light once over every video, so that they predict how far into the video (and so which
    # step of a script) a frame is.
    motion_timing: str = "random"
    # "reversed": in test_ood only, the pan runs the other way and the light drift and gradient change are
    # shifted by half a period (negated), so a head that read the step from the motion is caught out there.
    ood_motion: str = "same"

    @property
    def factors(self) -> tuple[str, ...]:
        """The context factors of this world: the static three, plus the props' kind when there are props."""
        return CONFOUNDERS + ((PROP_FACTOR,) if self.props else ())

    @property
    def world(self) -> str:
        """The name of the WORLDS preset these options are, or "custom"."""
        mine = {name: getattr(self, name) for name in MOVING_OPTIONS}
        if (self.motion_timing, self.ood_motion) != (MOTION_TIMINGS[0], OOD_MOTIONS[0]):
            return "custom"  # re-timed motion: not a preset, so not the presets' default folders either
        return next((name for name, preset in WORLDS.items() if preset == mine), "custom")

    def validate(self) -> None:
        """Raise CmdclError naming the first option that cannot produce a valid world."""
        def bad(option: str, why: str) -> CmdclError:
            return CmdclError(f"synthetic option {option}={getattr(self, option)!r}: {why}")

        if self.seed < 0:
            raise bad("seed", "must be >= 0")
        if not 2 <= self.num_activities <= len(ACTIVITY_NAMES):
            raise bad("num_activities", f"must be between 2 and {len(ACTIVITY_NAMES)}")
        if not 2 <= self.min_script_steps <= self.max_script_steps:
            raise bad("min_script_steps", "must be >= 2 and <= max_script_steps")
        if self.max_script_steps < 3:
            raise bad("max_script_steps", "must be >= 3 (one pair of activities differs only in order)")
        needed = self.num_activities - 2 + self.max_script_steps
        if not needed <= self.num_steps <= len(STEP_NAMES):
            raise bad("num_steps", f"must be between num_activities - 2 + max_script_steps = {needed} "
                                   f"and {len(STEP_NAMES)}")
        for option in ("train_per_class", "test_per_class", "ood_per_class", "pretrain_per_class",
                       "unconfounded_per_class"):
            if (getattr(self, option) or 0) < 0:
                raise bad(option, "must be >= 0")
        for option in ("width", "height"):
            value = getattr(self, option)
            if value < 32 or value % 2:
                raise bad(option, "must be an even number >= 32 (yuv420p video)")
        if self.fps < 1:
            raise bad("fps", "must be >= 1")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise bad("min_seconds", "must be > 0 and <= max_seconds")
        if self.min_seconds * self.fps < 2 * self.max_script_steps:
            raise bad("min_seconds", "too short: each step needs at least 2 frames (raise it or the fps)")
        if not 0.0 <= self.confounding <= 1.0:
            raise bad("confounding", "must be a probability in [0, 1]")
        if self.ood_mode not in ("chance", "reversed"):
            raise bad("ood_mode", "must be 'chance' or 'reversed'")
        if not 0.0 <= self.order_noise <= 1.0:
            raise bad("order_noise", "must be a probability in [0, 1]")
        if self.noise < 0:
            raise bad("noise", "must be >= 0")
        self._validate_moving(bad)

    def _validate_moving(self, bad) -> None:
        if self.motion_timing not in MOTION_TIMINGS:
            raise bad("motion_timing", f"must be one of {', '.join(MOTION_TIMINGS)}")
        if self.ood_motion not in OOD_MOTIONS:
            raise bad("ood_motion", f"must be one of {', '.join(OOD_MOTIONS)}")
        if not 0.0 <= self.camera_motion <= 0.25:
            raise bad("camera_motion", "must be in [0, 0.25] frame widths (0: a fixed camera)")
        if not 0.0 <= self.light_change <= 0.5:
            raise bad("light_change", "must be in [0, 0.5] (0: constant light within a video)")
        if not 0 <= self.props <= MAX_PROPS:
            raise bad("props", f"must be between 0 and {MAX_PROPS}")

    def videos_per_class(self, split: str) -> int:
        return {"train": self.train_per_class, "test": self.test_per_class, "test_ood": self.ood_per_class,
                "pretrain": self.pretrain_per_class,
                UNCONFOUNDED_SPLIT: self.train_per_class if self.unconfounded_per_class is None
                else self.unconfounded_per_class}[split]


def world_options(world: str) -> dict[str, float | int]:
    """The SyntheticConfig fields of a WORLDS preset; a CmdclError for an unknown name."""
    if world not in WORLDS:
        raise CmdclError(f"world {world!r} is not a synthetic world.", fix=f"use one of: {', '.join(WORLDS)}.")
    return dict(WORLDS[world])


@dataclass
class World:
    """What the seed fixes once for all videos: activity scripts and each activity's own context."""
    activity_names: list[str]
    step_names: list[str]
    scripts: list[list[int]]  # activity -> ordered step indices
    preferred: dict[str, list[int]]  # confounder -> activity -> the context value that agrees with it
    same_bag_pairs: list[tuple[int, int]]


@dataclass
class VideoSpec:
    """Everything that defines one video except its pixels' random details (those come from render_seed)."""
    video_id: str
    split: str
    label: int
    num_frames: int
    segments: list[tuple[int, int, int]]  # (step, first frame, end frame exclusive), contiguous
    context: dict[str, int]  # confounder -> value index
    agrees: dict[str, bool]  # confounder -> value is the label's preferred value
    render_seed: list[int] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"videos/{self.split}/{self.video_id}.mp4"

    @property
    def boxes_path(self) -> str:
        """The video's box file: its foreground object's box in every frame (manifest `boxes` column)."""
        return f"boxes/{self.split}/{self.video_id}.csv"

    @property
    def prop_boxes_path(self) -> str:
        """The video's prop box file: every prop's box in every frame (manifest `prop_boxes` column)."""
        return f"prop_boxes/{self.split}/{self.video_id}.csv"
