"""The synthetic world: determinism, decodable videos, confounder statistics, manifest adapter, reuse rules."""
from __future__ import annotations

import csv
import dataclasses
import inspect
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import typer
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from cmdcl.core.errors import CmdclError
from cmdcl.extract.datasets import synthetic
from cmdcl.extract.datasets.registry import load_dataset
from cmdcl.extract.datasets.synthetic import (
    CONFOUNDERS, SyntheticConfig, VideoSpec, build_world, ensure_synthetic, generate_synthetic,
    measured_agreement, render_video, sample_videos, world_options,
)
from cmdcl.pipelines.cmd_demo import COMMANDS

TINY = dict(num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4, train_per_class=2,
            test_per_class=1, ood_per_class=1, pretrain_per_class=1, width=48, height=32, fps=4, min_seconds=3.0, max_seconds=4.0)


STATIC = world_options("static")


def tiny(**overrides) -> SyntheticConfig:
    return SyntheticConfig(**{**TINY, **overrides})


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.mp4"))}


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "seed0", tiny(), progress=False)


def test_same_seed_gives_identical_files_and_another_seed_differs(dataset, tmp_path):
    again = generate_synthetic(tmp_path / "again", tiny(), progress=False)
    other = generate_synthetic(tmp_path / "other", tiny(seed=1), progress=False)
    assert (again / "manifest.csv").read_bytes() == (dataset / "manifest.csv").read_bytes()
    assert (again / "attributes.csv").read_bytes() == (dataset / "attributes.csv").read_bytes()
    videos = file_bytes(dataset)
    assert len(videos) == 3 * (2 + 1 + 1 + 1 + 2)  # train, test, test_ood, pretrain, train_unconfounded
    assert file_bytes(again) == videos
    assert (other / "manifest.csv").read_bytes() != (dataset / "manifest.csv").read_bytes()
    assert file_bytes(other) != videos
    assert b"Lavf" not in next(iter(videos.values()))  # no encoder/muxer version strings (bitexact)
    assert not list(tmp_path.glob("*.tmp-*"))  # the build folder was renamed into place


def test_one_process_renders_the_same_files_as_the_pool(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("cmdcl.extract.datasets.synthetic_render.os.cpu_count", lambda: 1)
    single = generate_synthetic(tmp_path / "single", tiny(), progress=False)
    assert file_bytes(single) == file_bytes(dataset)
    boxes = {p.relative_to(single): p.read_bytes() for p in sorted(single.rglob("boxes/*/*.csv"))}
    assert boxes and boxes == {p.relative_to(dataset): p.read_bytes() for p in sorted(dataset.rglob("boxes/*/*.csv"))}


def test_layout_and_manifest_rows(dataset):
    world = synthetic.json.loads((dataset / "world.json").read_text())
    assert (dataset / "DONE").is_file()
    assert (dataset / "classes.txt").read_text().splitlines() == [a["name"] for a in world["activities"]]
    assert (dataset / "steps.txt").read_text().splitlines() == [s["name"] for s in world["steps"]]
    assert world["config"] == dataclasses.asdict(tiny())
    with open(dataset / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["video_id", "path", "split", "label", "labels", "steps", "context", "boxes",
                             "prop_boxes", "confounder:background", "confounder:attire", "confounder:lighting",
                             "confounder:prop"]
    assert {r["split"] for r in rows} == {"train", "test", "test_ood", "pretrain", "train_unconfounded"}
    attributes = {r["video_id"]: r for r in synthetic.load_attributes(dataset)}
    for row in rows:  # the context column describes the video's own confounders in words, props included
        values = {name: int(attributes[row["video_id"]][name]) for name in tiny().factors}
        assert row["context"] == synthetic.context_text(values, 3, 2) and "kitchen" in row["context"]
        assert f"two {synthetic.colour_name(synthetic.prop_colour(values['prop'], 3))} " in row["context"]
        assert (dataset / row["prop_boxes"]).is_file()
    for row in rows:
        entries = [e.rpartition("@") for e in row["steps"].split(";")]
        times = [tuple(map(float, t.split("-"))) for _, _, t in entries]
        assert times[0][0] == 0.0
        assert all(a[1] == b[0] for a, b in zip(times, times[1:]))  # contiguous segments
        script = next(a["script"] for a in world["activities"] if a["name"] == row["label"])
        assert sorted(name for name, _, _ in entries) == sorted(script)


def test_videos_decode_with_expected_frames_and_size(dataset):
    attributes = {r["video_id"]: r for r in synthetic.load_attributes(dataset)}
    with open(dataset / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            frames = decode(dataset / row["path"])
            assert frames.shape == (int(attributes[row["video_id"]]["num_frames"]), 32, 48, 3)
            # the decoded video is the rendered one up to compression (yuv420 chroma caps PSNR near 30 dB, and
            # the moving world's clutter and props take about 3 dB more at 48 x 32; an unrelated video scores
            # about 10 dB)
            spec = next(s for s in sample_videos(tiny()) if s.video_id == row["video_id"])
            rendered = render_video(spec, tiny()).astype(np.float64)
            mse = np.mean((frames.astype(np.float64) - rendered) ** 2)
            assert 10 * np.log10(255 ** 2 / mse) > 22


def test_foreground_of_each_step_differs():
    config = tiny(noise=0.0, width=80, height=60, **STATIC)
    context = {name: 0 for name in CONFOUNDERS}

    def frames(step: int) -> np.ndarray:
        spec = VideoSpec(video_id="x", split="train", label=0, num_frames=8, segments=[(step, 0, 8)],
                         context=context, agrees={}, render_seed=[0, 2, 0, 0, 0])
        return render_video(spec, config).astype(np.float32)

    rendered = [frames(s) for s in range(config.num_steps)]
    for a in range(config.num_steps):
        for b in range(a + 1, config.num_steps):
            left = np.abs(rendered[a][:, :, :12] - rendered[b][:, :, :12]).mean()
            right = np.abs(rendered[a][:, :, 40:] - rendered[b][:, :, 40:]).mean()
            assert left == 0.0  # same scene and actor: only the foreground (and the hand) changes
            assert right > 3.0, (a, b, right)
    signatures = {(s["shape"], s["colour"]) for s in map(synthetic.step_signature, range(len(synthetic.STEP_NAMES)))}
    assert len(signatures) == len(synthetic.STEP_NAMES)


@pytest.mark.parametrize("seed", range(5))
def test_world_has_shared_exclusive_and_order_only_steps(seed):
    config = SyntheticConfig(seed=seed)
    world = build_world(config)
    scripts = world.scripts
    assert len(scripts) == config.num_activities
    assert all(config.min_script_steps <= len(s) <= config.max_script_steps for s in scripts)
    assert len({tuple(s) for s in scripts}) == len(scripts)
    a, b = world.same_bag_pairs[0]
    assert sorted(scripts[a]) == sorted(scripts[b]) and scripts[a] != scripts[b]
    uses = [sum(step in s for s in scripts) for step in range(config.num_steps)]
    assert any(u == 1 for u in uses)  # exclusive steps
    # steps shared by activities whose bags differ (not only the same-bag pair)
    assert any(set(scripts[i]) & set(scripts[j]) for i in range(2, len(scripts)) for j in range(len(scripts)) if i != j)


def test_every_step_is_caught_by_16_uniform_samples():
    for spec in sample_videos(SyntheticConfig(train_per_class=20, test_per_class=5, ood_per_class=5)):
        sampled = np.linspace(0, spec.num_frames - 1, 16).round().astype(int)
        for step, start, end in spec.segments:
            assert np.sum((sampled >= start) & (sampled < end)) >= 1, (spec.video_id, step)


def one_hot(specs: list[VideoSpec], num_values: int) -> tuple[np.ndarray, np.ndarray]:
    factors = list(specs[0].context)
    x = np.zeros((len(specs), len(factors) * num_values))
    for i, spec in enumerate(specs):
        for j, name in enumerate(factors):
            x[i, j * num_values + spec.context[name]] = 1
    return x, np.array([s.label for s in specs])


@pytest.mark.parametrize("rho", [0.9, 0.7])
def test_confounder_agreement_and_shortcut_classifier(rho):
    config = SyntheticConfig(confounding=rho, train_per_class=300, test_per_class=200, ood_per_class=200)
    specs = sample_videos(config)
    by_split = {split: [s for s in specs if s.split == split] for split in synthetic.SPLITS}
    chance = 1 / config.num_activities
    assert config.factors == (*CONFOUNDERS, "prop")  # the moving world's props agree like the static factors
    for name in config.factors:
        for split in ("train", "test"):
            assert abs(np.mean([s.agrees[name] for s in by_split[split]]) - rho) < 0.04
        assert abs(np.mean([s.agrees[name] for s in by_split["test_ood"]]) - chance) < 0.05
    # a classifier that sees only the context scores ~rho in distribution and ~chance out of it
    classifier = LogisticRegression(max_iter=1000).fit(*one_hot(by_split["train"], config.num_activities))
    assert abs(classifier.score(*one_hot(by_split["test"], config.num_activities)) - rho) < 0.05
    assert abs(classifier.score(*one_hot(by_split["test_ood"], config.num_activities)) - chance) < 0.06


def test_reversed_ood_points_the_context_to_another_activity():
    config = SyntheticConfig(ood_mode="reversed", train_per_class=300, test_per_class=0, ood_per_class=200)
    world = build_world(config)
    specs = sample_videos(config, world)
    ood = [s for s in specs if s.split == "test_ood"]
    train = [s for s in specs if s.split == "train"]
    for name in config.factors:
        assert np.mean([s.agrees[name] for s in ood]) < 0.05
        nxt = np.mean([s.context[name] == world.preferred[name][(s.label + 1) % config.num_activities] for s in ood])
        assert abs(nxt - config.confounding) < 0.04
    classifier = LogisticRegression(max_iter=1000).fit(*one_hot(train, config.num_activities))
    assert classifier.score(*one_hot(ood, config.num_activities)) < 0.08


def test_measured_agreement_matches_attributes(dataset):
    rows = synthetic.load_attributes(dataset)
    agreement = measured_agreement(dataset)
    assert set(agreement) == {"train", "test", "test_ood", "pretrain", "train_unconfounded"}
    train = [r for r in rows if r["split"] == "train"]
    assert agreement["train"]["background"] == sum(int(r["background_agrees"]) for r in train) / len(train)


def test_manifest_loads_through_the_dataset_adapter(dataset):
    index = load_dataset("manifest", dataset)
    assert index.split_sizes() == {"pretrain": 3, "test": 3, "test_ood": 3, "train": 6, "train_unconfounded": 6}
    assert not index.missing and not index.unannotated
    assert index.class_names == (dataset / "classes.txt").read_text().splitlines()
    specs = {s.video_id: s for s in sample_videos(tiny())}
    for item in index.items:
        spec = specs[item.video_id]
        assert item.label == spec.label and Path(item.path).is_file()
        assert [(s, a, b) for s, a, b in item.segments] == [(s, a / 4, b / 4) for s, a, b in spec.segments]
        assert item.context == synthetic.context_text(spec.context, 3, 2)
        assert item.confounders == spec.context  # the confounder:* columns
        assert Path(item.boxes) == dataset / spec.boxes_path
        assert Path(item.prop_boxes) == dataset / spec.prop_boxes_path
    assert index.confounder_names == [*CONFOUNDERS, "prop"]
    # the synthetic adapter leaves the pretrain split out unless it is asked for by name
    assert load_dataset("synthetic", dataset, **TINY).split_sizes() == {"test": 3, "test_ood": 3, "train": 6,
                                                                        "train_unconfounded": 6}
    assert load_dataset("synthetic", dataset, "pretrain", **TINY).split_sizes() == {"pretrain": 3}


def test_ensure_reuses_a_complete_dataset_and_refuses_another_config(dataset, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("regenerated a complete dataset")

    monkeypatch.setattr(synthetic, "_build", no_build)
    assert ensure_synthetic(dataset, progress=False, **TINY) == dataset
    with pytest.raises(CmdclError, match=r"seed=0 \(requested 5\).*another --root"):
        ensure_synthetic(dataset, progress=False, **{**TINY, "seed": 5})
    with pytest.raises(CmdclError, match="unknown synthetic option"):
        ensure_synthetic(dataset, progress=False, colour_of_sky="blue")
    with pytest.raises(CmdclError, match="confounding"):
        ensure_synthetic(dataset, progress=False, **{**TINY, "confounding": 1.5})


def test_ensure_regenerates_an_incomplete_folder_and_keeps_foreign_ones(dataset, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(dataset, partial)
    (partial / "DONE").unlink()
    (partial / "manifest.csv").write_text("truncated")
    assert ensure_synthetic(partial, progress=False, **TINY) == partial
    assert (partial / "DONE").is_file()
    assert (partial / "manifest.csv").read_bytes() == (dataset / "manifest.csv").read_bytes()

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(CmdclError, match="did not write"):
        ensure_synthetic(foreign, progress=False, **TINY)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_synth_command(tmp_path):
    app = typer.Typer()
    app.command()(COMMANDS["synth"])
    root = tmp_path / "cli"
    args = ["--root", str(root), "--videos-per-class", "1", "--test-per-class", "1", "--ood-per-class", "1",
            "--pretrain-per-class", "1", "--activities", "3", "--steps", "6", "--width", "32", "--height", "32", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "train=3, test=3, test_ood=3, pretrain=3" in result.output and "test_ood" in result.output
    assert "written" in result.output
    again = CliRunner().invoke(app, args)
    assert "reused" in again.output
    refused = CliRunner().invoke(app, args + ["--seed", "2"])
    assert isinstance(refused.exception, CmdclError)
    assert "moving world: camera_motion 0.1, light_change 0.15, props 2" in result.output and "prop 0." in result.output
    static = CliRunner().invoke(app, [*args, "--world", "static", "--root", str(tmp_path / "static")])
    assert static.exit_code == 0, static.output
    assert "static world" in static.output and "prop" not in static.output.split("agreement")[1]
    assert not (tmp_path / "static" / "prop_boxes").exists()
    custom = CliRunner().invoke(app, [*args, "--world", "static", "--props", "1", "--root", str(tmp_path / "c")])
    assert "custom world: camera_motion 0.0, light_change 0.0, props 1" in custom.output
    unknown = CliRunner().invoke(app, [*args, "--world", "wobbly"])
    assert isinstance(unknown.exception, CmdclError) and "moving, static" in str(unknown.exception.fix)


def test_synth_defaults_mirror_the_config():
    defaults = {name: p.default.default for name, p in inspect.signature(COMMANDS["synth"]).parameters.items()}
    config = SyntheticConfig()
    mapping = {"seed": "seed", "confounding": "confounding", "ood_mode": "ood_mode",
               "videos_per_class": "train_per_class", "test_per_class": "test_per_class",
               "ood_per_class": "ood_per_class", "pretrain_per_class": "pretrain_per_class", "activities": "num_activities", "steps": "num_steps",
               "width": "width", "height": "height", "fps": "fps"}
    for option, field in mapping.items():
        assert defaults[option] == getattr(config, field), option



def test_adding_the_pretrain_split_leaves_the_other_splits_unchanged():
    without, with_pretrain = sample_videos(tiny(pretrain_per_class=0)), sample_videos(tiny(pretrain_per_class=3))
    assert [s for s in with_pretrain if s.split != "pretrain"] == without
    pretrain = [s for s in with_pretrain if s.split == "pretrain"]
    assert len(pretrain) == 9 and {s.label for s in pretrain} == {0, 1, 2}


def test_adding_the_unconfounded_split_leaves_the_other_splits_unchanged(dataset, tmp_path):
    """train_unconfounded is seeded after every older split (its index in SPLITS is last): with it or without
    it, the other splits' specs, videos, box files and manifest rows are byte-identical."""
    without, with_it = sample_videos(tiny(unconfounded_per_class=0)), sample_videos(tiny())
    assert [s for s in with_it if s.split != "train_unconfounded"] == without
    extra = [s for s in with_it if s.split == "train_unconfounded"]
    assert len(extra) == 6 and {s.label for s in extra} == {0, 1, 2}  # as many as train (2 per class) by default
    assert not {s.video_id for s in extra} & {s.video_id for s in without}
    assert not {tuple(s.render_seed) for s in extra} & {tuple(s.render_seed) for s in without}
    old = generate_synthetic(tmp_path / "without", tiny(unconfounded_per_class=0), progress=False)
    def files(root: Path) -> dict[str, bytes]:  # every video and box file (in sub-folders: not the tables)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*/*")) if p.is_file()}

    ours, theirs = files(dataset), files(old)
    new_files = {k for k in ours if "/train_unconfounded/" in k}
    assert len(new_files) == 6 * 3  # video, box and prop box files
    assert {k: v for k, v in ours.items() if k not in new_files} == theirs
    manifest, old_manifest = (dataset / "manifest.csv").read_text(), (old / "manifest.csv").read_text()
    added = manifest[len(old_manifest):].splitlines()
    assert manifest.startswith(old_manifest) and len(added) == 6 and all(",train_unconfounded," in r for r in added)


def test_the_unconfounded_split_has_its_context_at_chance():
    config = SyntheticConfig(train_per_class=300, test_per_class=0, ood_per_class=0, pretrain_per_class=0)
    specs = sample_videos(config)
    train = [s for s in specs if s.split == "train"]
    oracle = [s for s in specs if s.split == "train_unconfounded"]
    assert len(oracle) == len(train) == 1800
    for name in config.factors:
        assert abs(np.mean([s.agrees[name] for s in oracle]) - 1 / config.num_activities) < 0.03
    # a head that learned the context from train gets nothing from it on the oracle split
    classifier = LogisticRegression(max_iter=1000).fit(*one_hot(train, config.num_activities))
    assert classifier.score(*one_hot(oracle, config.num_activities)) < 0.25
    # the same scripts, durations and order noise as train: the step orders are distributed alike
    assert abs(np.mean([s.num_frames for s in oracle]) - np.mean([s.num_frames for s in train])) < 2.0
    with pytest.raises(CmdclError, match="unconfounded_per_class=-1"):
        SyntheticConfig(unconfounded_per_class=-1).validate()


def test_context_text_names_colours_texture_and_light():
    text = synthetic.context_text({"background": 1, "attire": 0, "lighting": 0}, 6)
    assert text.startswith("in a ") and "kitchen with stripes" in text and text.endswith("dim warm light")
    assert synthetic.colour_name(np.array([0.9, 0.1, 0.1])) == "red"
    assert synthetic.colour_name(np.array([0.1, 0.2, 0.95])) == "blue"
    texts = {synthetic.context_text({n: v for n in CONFOUNDERS}, 6) for v in range(6)}
    assert len(texts) == 6  # the six contexts of a default world read differently


def test_context_only_accuracy_from_the_written_attributes(tmp_path):
    root = generate_synthetic(tmp_path / "w", tiny(train_per_class=30, test_per_class=30, ood_per_class=30,
                                                  min_seconds=3.0, max_seconds=3.0),
                              progress=False)
    scores = synthetic.context_only_accuracy(root)
    assert set(scores) == {"test", "test_ood"}
    assert scores["test"] > 0.75  # rho = 0.9 with 3 activities
    assert scores["test_ood"] < 0.6  # chance is 1/3


def test_rendered_boxes_hold_the_object_and_follow_it(tmp_path):
    """The box of each frame (the object's painted pixels) has the object's size and lies in the frame; the
    written box file lists every frame; render_video gives the same pixels as render_video_with_boxes."""
    from cmdcl.extract.boxes import read_box_file
    from cmdcl.extract.datasets.synthetic_render import render_video_with_boxes, write_boxes

    config = tiny(width=80, height=60)
    spec = sample_videos(config)[0]
    frames, boxes = render_video_with_boxes(spec, config)
    assert np.array_equal(frames, render_video(spec, config))
    assert boxes.shape == (spec.num_frames, 4) and not np.isnan(boxes).any()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 60).all()
    sides = np.concatenate([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    radius = 0.15 * 60  # the object's nominal radius (x 0.85 .. 1.15 per video, x 0.65 .. 1.35 when pulsing)
    assert sides.min() >= 0.5 * radius and sides.max() <= 2 * 1.3 * 1.15 * 1.35 * radius + 2
    assert len({tuple(b) for b in boxes.tolist()}) > 1  # the object moves
    write_boxes(tmp_path / "b.csv", boxes)
    table = read_box_file(tmp_path / "b.csv")
    assert sorted(table) == list(range(spec.num_frames))
    assert np.array_equal(np.stack([table[f] for f in range(spec.num_frames)]), boxes)


def test_world_modules_do_not_import_each_other_back():
    """The renderer and the sampling share synthetic_spec; neither imports the other back (not even
    under TYPE_CHECKING), and the spec imports neither."""
    import ast

    folder = Path(synthetic.__file__).parent

    def imported(module: str) -> set[str]:
        tree = ast.parse((folder / f"{module}.py").read_text())
        return {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}

    assert "synthetic" not in imported("synthetic_render") and "synthetic" not in imported("synthetic_spec")
    assert "synthetic_render" not in imported("synthetic_spec")
    assert {"synthetic_spec", "synthetic_render"} <= imported("synthetic")


def test_each_world_has_its_own_default_folders():
    from cmdcl.pipelines.cmd_demo import world_folder, world_settings

    assert world_folder("data/synthetic", world_settings("moving", None, None, None)) == Path("data/synthetic")
    assert world_folder("runs/demo", world_settings("static", None, None, None)) == Path("runs/demo-static")
    assert world_folder("runs/demo", world_settings("moving", None, None, 1)) == Path("runs/demo-custom")
    assert world_settings("moving", 0.0, None, None) == {"camera_motion": 0.0, "light_change": 0.15, "props": 2}
