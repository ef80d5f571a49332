"""Confounding on any dataset: context vocabularies in the feature file, zero-shot pseudo labels, the
context-only baseline, the `cmdcl confounding` report, leakage paired by `compare`, and the scene-shifted split;
on a scene world whose pseudo labels are known, the synthetic world and the Charades fixture."""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from cmdcl.core.errors import CmdclError, FeatureFileError
from cmdcl.core.store import ContextVocab, FeatureSet, ShardWriter, merge_feature_files, read_context, write_context
from cmdcl.extract.context import parse_vocabulary, read_vocabularies
from cmdcl.head.confounding.baseline import context_only, one_hot
from cmdcl.head.confounding.report import confounding_report, format_report, matched_agreement
from cmdcl.head.confounding.scene_split import scene_shift, write_scene_split
from cmdcl.head.metrics.pseudo_labels import pseudo_labels, zero_shot_votes
from head_fixtures import unit
from store_fixtures import base_attrs, make_record, make_text, write_shard

SCENES = 4


def scene_world(path: Path, per_class: dict[str, int] | None = None, agree: float = 0.8, seed: int = 0) -> Path:
    """3 activities, 4 scenes; a video's frames point at its scene's text feature (dims 0-3) plus its activity
    (dims 4-6), so its pseudo scene is its true `room`. Scene c goes with activity c with P = agree, else the
    last scene (3), which no activity prefers."""
    rng = np.random.default_rng(seed)
    dim, frames = 8, 4
    attrs = base_attrs(frames=frames, dim=dim)
    vocab = ContextVocab("room", [f"room {i}" for i in range(SCENES)], ["a photo of a {}."],
                         np.eye(SCENES, dim, dtype=np.float32), source="test")
    writer = ShardWriter(path, attrs, make_text(dim=dim), flush_every=8, context={"room": vocab})
    for split, count in (per_class or {"train": 20, "test": 10}).items():
        for c in range(3):
            for i in range(count):
                scene = c if rng.random() < agree else SCENES - 1
                record = make_record(f"{split}{c}{i:02d}", split, c, frames=frames, dim=dim, seed=i)
                vector = np.zeros(dim)
                vector[scene], vector[4 + c] = 1.0, 0.5
                record.features = unit(vector + 0.05 * rng.standard_normal((frames, dim))).astype(np.float16)
                record.confounders = {"room": scene}
                writer.add(record)
    writer.finalize()
    return path


# ------------------------------------------------------------------------------------------ vocabularies

def test_vocabulary_files_and_the_built_ins(tmp_path):
    specs = parse_vocabulary("# comment\n\nkitchen\nbedroom\nlight: bright light\nlight: dim light\n"
                             "light: a photo in {}.\n", "rooms", "rooms.txt")
    assert [(s.factor, s.names, s.templates) for s in specs] == [
        ("rooms", ["kitchen", "bedroom"], ["{}"]), ("light", ["bright light", "dim light"], ["a photo in {}."])]
    for text, message in (("a\na\n", "lists 'a' twice"), ("only\n", "1 value"), ("a\nb\nx: {} {}\n", "exactly one"),
                          ("# nothing\n", "no values")):
        with pytest.raises(CmdclError, match=message):
            parse_vocabulary(text, "f", "f.txt")
    places, appearance = read_vocabularies(["places365"]), read_vocabularies(["appearance"])
    assert [v.factor for v in places] == ["scene"] and len(places[0].names) == 365
    assert places[0].names[:2] == ["airfield", "airplane cabin"] and "apartment building (outdoor)" in places[0].names
    assert places[0].templates == ["a photo of a {}.", "a video frame of a {}."]
    assert [v.factor for v in appearance] == ["lighting", "clothing"]
    (tmp_path / "lighting.txt").write_text("lighting: dim\nlighting: bright\n")
    with pytest.raises(CmdclError, match="'lighting' is defined by two"):
        read_vocabularies(["appearance", str(tmp_path / "lighting.txt")])
    with pytest.raises(CmdclError, match="neither a built-in"):
        read_vocabularies(["places366"])


def test_synthetic_vocabulary_words_each_factor_as_the_captions_do(tmp_path):
    from cmdcl.extract.datasets.synthetic import CONFOUNDERS, context_text
    from cmdcl.extract.datasets.synthetic_context import factor_phrases, vocabulary_text

    phrases = factor_phrases(6)
    assert list(phrases) == list(CONFOUNDERS) and all(len(set(p)) == 6 for p in phrases.values())
    caption = context_text({"background": 2, "attire": 4, "lighting": 1}, 6)
    assert caption == ", ".join([phrases["background"][2], phrases["attire"][4], phrases["lighting"][1]])
    (tmp_path / "world.json").write_text(json.dumps({"config": {"num_activities": 6}}))
    parsed = parse_vocabulary(vocabulary_text(tmp_path), "synthetic", "synthetic")
    assert {v.factor: v.names for v in parsed} == phrases
    with pytest.raises(CmdclError, match="not a synthetic world"):
        vocabulary_text(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------ the store

def test_context_group_is_optional_added_in_place_merged_and_checked(tmp_path):
    old = write_shard(tmp_path / "old.h5", [("a", "train", 0), ("b", "test", 1)])
    assert FeatureSet(old).context == {} and FeatureSet(old).summary()["context"] == {}
    before = FeatureSet(old).memmap("features")[0].copy()
    vocab = ContextVocab("scene", ["kitchen", "garden"], ["{}"], unit(np.ones((2, 8), np.float32)), source="t")
    write_context(old, {"scene": vocab})
    fs = FeatureSet(old)
    assert fs.context["scene"].names == ["kitchen", "garden"] and fs.context["scene"].source == "t"
    np.testing.assert_array_equal(fs.memmap("features")[0], before)  # /videos untouched, still mappable
    with pytest.raises(FeatureFileError, match="already stored"):
        write_context(old, {"scene": vocab})
    write_context(old, {"scene": ContextVocab("scene", ["a", "b", "c"], ["{}"], np.zeros((3, 8), np.float32))},
                  replace=True)
    assert read_context(old)["scene"].names == ["a", "b", "c"]
    merged = tmp_path / "merged.h5"
    merge_feature_files(old, merged)
    assert FeatureSet(merged).context["scene"].names == ["a", "b", "c"]
    other = write_shard(tmp_path / "other.h5", [("c", "train", 2)])
    both = FeatureSet([old, other])  # reads and trains; only the context is refused
    assert "differ" in both.summary()["context"]
    with pytest.raises(FeatureFileError, match="context vocabularies .* differ.*context-labels --replace"):
        _ = both.context
    with h5py.File(other, "a") as f:
        f.create_dataset("context/bad/names", data=np.array(["x"], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("context/bad/text_features", data=np.zeros((1, 5), np.float32))
    with pytest.raises(FeatureFileError, match="text_features has shape \\(1, 5\\), expected \\(1, 8\\)"):
        FeatureSet(other)


def test_zero_shot_votes_take_the_majority_break_ties_by_similarity_and_skip_padding():
    text = np.eye(3, 4, dtype=np.float32)
    frames = np.array([[text[0], text[0], text[1], text[2]],  # majority 0 (2 of 3 valid frames; the last is padding)
                       [text[1], 0.9 * text[2] + 0.1 * text[1], text[0], text[0]]])  # 1 vs 2 tie; 1 more similar
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    labels, confidence = zero_shot_votes(frames, mask, text)
    assert labels.tolist() == [0, 1] and np.allclose(confidence, [2 / 3, 0.5])
    labels, confidence = zero_shot_votes(frames, np.zeros_like(mask), text)
    assert labels.tolist() == [-1, -1] and confidence.tolist() == [0, 0]


# ------------------------------------------------------------------------------------------ baseline, report

def test_context_only_baseline_top1_and_map_with_intervals():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 3, 300)
    label = np.where(rng.random(300) < 0.9, scene, (scene + 1) % 3)
    result = context_only(scene[:200, None], label[:200], scene[200:, None], label[200:], [3], 3, False, 500)
    assert result["metric"] == "top1" and abs(result["value"] - (label[200:] == scene[200:]).mean()) < 1e-9
    assert result["low"] < result["value"] < result["high"] and result["prior"] < 0.5
    shuffled = context_only(scene[:200, None], label[:200], rng.permutation(scene[200:])[:, None], label[200:],
                            [3], 3, False, 500)
    assert shuffled["value"] < 0.55
    labels = np.eye(3, dtype=np.uint8)[scene] | np.eye(3, dtype=np.uint8)[(scene + 2) % 3] * (rng.random((300, 1)) < .3)
    multi = context_only(scene[:200, None], labels[:200], scene[200:, None], labels[200:], [3], 3, True, 500)
    assert multi["metric"] == "mAP" and multi["value"] > 0.9 > multi["prior"] and multi["low"] <= multi["value"]
    assert one_hot(np.array([[1, -1], [0, 2]]), [2, 3]).tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 1]]
    assert matched_agreement(np.array([0, 0, 1, 1, -1]), np.array([5, 5, 2, 3, 1])) == 0.75


def test_report_on_the_scene_world_with_a_trained_head(tmp_path):
    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.training.train import train

    features = scene_world(tmp_path / "scenes.h5")
    fs = FeatureSet(features)
    labels = pseudo_labels(fs, np.arange(len(fs)))
    np.testing.assert_array_equal(labels.values[:, 0], fs.read_confounders(np.arange(len(fs)))[:, 0])
    assert labels.names == ["pseudo:room"] and labels.confidence.min() == 1.0
    train(features, tmp_path / "run", HeadConfig(method="zeroshot", val_fraction=0.0), progress=False,
          log=lambda m: None)
    report = confounding_report(features, "test", [tmp_path / "run"], resamples=200, device="cpu")
    assert report["factors"] == ["room", "pseudo:room"]
    assert report["pseudo_labels"]["room"]["agreement"] == 1.0 == report["pseudo_labels"]["room"]["matched_agreement"]
    true, pseudo = report["context_only"]["room"], report["context_only"]["pseudo:room"]
    assert true == pseudo and true["value"] > true["prior"] + 0.3 and true["low"] <= true["value"] <= true["high"]
    leak = report["leakage"]["run"]["pseudo:room"]
    assert leak["accuracy"] > 0.9 and leak["low"] <= leak["accuracy"] <= leak["high"] and leak["chance"] < 0.9
    text = format_report(report)
    assert "pseudo:room" in text and "leakage probe" in text and "top1 [95% CI]" in text
    with pytest.raises(CmdclError, match="no videos in split 'val'"):
        confounding_report(features, "val")


def test_compare_pairs_leakage_per_video(tmp_path):
    from cmdcl.head.comparison.compare import compare_runs
    from cmdcl.head.metrics.evaluate import evaluate_splits
    from cmdcl.head.metrics.predictions import load_predictions
    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.training.train import train

    features = scene_world(tmp_path / "scenes.h5")
    for name in ("a", "b"):
        train(features, tmp_path / name, HeadConfig(method="zeroshot", val_fraction=0.0), progress=False,
              log=lambda m: None)
        metrics = evaluate_splits(tmp_path / name / "best.pt", features, ["test"], tmp_path / name)["test"]
    saved = load_predictions(tmp_path / "a" / "predictions_test.npz")
    assert saved.leakage_names == ["room", "pseudo:room"]
    assert math.isclose(np.nanmean(saved.leakage_column("pseudo:room")), metrics["leakage"]["pseudo:room"]["accuracy"])
    comparison = compare_runs([tmp_path / "a", tmp_path / "b"], "test", metric="leakage:pseudo:room", n_resamples=200)
    assert comparison.rows[1].diff == 0.0 and math.isclose(comparison.rows[0].mean,
                                                           metrics["leakage"]["pseudo:room"]["accuracy"])
    with pytest.raises(CmdclError, match="no leakage probe of 'scene'"):
        compare_runs([tmp_path / "a", tmp_path / "b"], "test", metric="leakage:scene", n_resamples=200)


def test_scene_split_holds_out_rare_scenes_per_activity(tmp_path):
    features = scene_world(tmp_path / "scenes.h5")
    fs = FeatureSet(features)
    split = scene_shift(fs, "pseudo:room", rare=0.3)
    rooms = dict(zip(fs.index["video_id"], fs.read_confounders(np.arange(len(fs)))[:, 0]))
    assert split.moved and all(rooms[v] == SCENES - 1 for v in split.moved)  # exactly the off-scene videos
    assert len(split.moved) == sum(r == SCENES - 1 for r in rooms.values())
    assert split.summary["after"]["test_scene"] == len(split.moved)
    assert split.summary["after"]["train"] + split.summary["after"]["test"] == len(fs) - len(split.moved)
    out = tmp_path / "shifted.h5"
    write_scene_split(features, out, split)
    shifted = FeatureSet(out)
    moved = shifted.index["video_id"][shifted.index["split"] == "test_scene"]
    assert sorted(moved) == sorted(split.moved) and shifted.context["room"].names == fs.context["room"].names
    np.testing.assert_array_equal(shifted.read_array("features", np.arange(len(fs))),
                                  fs.read_array("features", np.arange(len(fs))))
    assert json.loads(shifted.attrs["splits"]) == ["test", "test_scene", "train"]
    with pytest.raises(CmdclError, match="no context factor 'pseudo:scene'"):
        scene_shift(fs, "pseudo:scene")
    with pytest.raises(CmdclError, match="already has a split 'test'"):
        scene_shift(fs, "room", name="test")


# ------------------------------------------------------------------------------------------ end to end

def test_extraction_stores_the_synthetic_vocabulary_and_labels_can_be_added_later(tmp_path, encoder):
    from cmdcl.extract.context import add_context_labels, encode_context
    from cmdcl.extract.datasets.synthetic import CONFOUNDERS
    from cmdcl.extract.datasets.synthetic_context import factor_phrases
    from cmdcl.extract.runner import ExtractConfig, run_extraction
    from dataset_fixtures import SYNTHETIC_TINY, write_synthetic

    root, options = write_synthetic(tmp_path / "world")
    summary = run_extraction(ExtractConfig(dataset="synthetic", root=str(root), out_dir=str(tmp_path / "f"),
                                           model="cmdcl-tiny",
                                           pretrained="random", patch_grid=0, frames=4, workers=0, progress=False,
                                           device="cpu",
                                           precision="fp32", context_vocab=["synthetic"], dataset_options=options),
                             log=lambda m: None, encoder=encoder)
    fs = FeatureSet(summary.shard_path)
    phrases = factor_phrases(SYNTHETIC_TINY["num_activities"])
    assert list(fs.context) == list(CONFOUNDERS) and {k: v.names for k, v in fs.context.items()} == phrases
    labels = pseudo_labels(fs, np.arange(len(fs)))
    assert labels.values.shape == (len(fs), 3) and (labels.values >= 0).all()
    # Afterwards, from the provenance alone (random:seed=0 weights): the same text features as this encoder gives.
    result = add_context_labels(summary.shard_path, ["places365"], device="cpu")
    assert result["factors"] == {"scene": 365}
    expected = encode_context(encoder, read_vocabularies(["places365"]))["scene"].text_features
    np.testing.assert_allclose(FeatureSet(summary.shard_path).context["scene"].text_features, expected, atol=1e-5)
    with pytest.raises(CmdclError, match="'scene' is already stored"):
        add_context_labels(summary.shard_path, ["places365"], device="cpu")


def test_charades_fixture_end_to_end_through_the_cli(tmp_path, capsys):
    """Charades in its published layout: extract with a scene vocabulary, report (mAP, multi-label), split."""
    from cmdcl.pipelines.cli import main
    from dataset_fixtures import write_charades
    from video_fixtures import write_test_video

    def tiny(path: Path) -> None:
        write_test_video(path, num_frames=6, height=32, width=32, fps=15.0, codec="libx264", gop=3)

    root = write_charades(tmp_path / "charades", write_video=tiny)
    out = tmp_path / "feats"
    main(["extract", "--dataset", "charades", "--root", str(root), "--out", str(out), "--model", "cmdcl-tiny",
          "--pretrained", "random", "--patch-grid", "0",
          "--frames", "2", "--workers", "0", "--device", "cpu", "--precision", "fp32", "--no-progress",
          "--context-vocab", "places365"])
    main(["context-labels", str(out), "--vocab", "appearance", "--device", "cpu", "--csv", str(tmp_path / "l.csv")])
    assert "stored lighting (6 values), clothing (11 values) in 1 file(s)" in capsys.readouterr().out
    rows = (tmp_path / "l.csv").read_text().splitlines()
    assert rows[0] == "video_id,split,scene,scene_confidence,lighting,lighting_confidence,clothing,clothing_confidence"
    assert len(rows) == 1 + 5 and all(len(r.split(",")) == 8 for r in rows)
    main(["confounding", str(out), "--split", "test", "--resamples", "100", "--out", str(tmp_path / "c.json")])
    text = capsys.readouterr().out
    assert "mAP [95% CI]" in text and "pseudo:scene" in text and "all pseudo" in text
    main(["inspect", str(out)])
    assert "context vocabularies scene (365), lighting (6), clothing (11)" in capsys.readouterr().out
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["multilabel"] and report["context_only"]["pseudo:scene"]["metric"] == "mAP"
    # Each Charades class of the fixture is in one or two videos: every scene is usual for its activities.
    with pytest.raises(SystemExit):
        main(["scene-split", str(out), "--out", str(tmp_path / "shifted.h5"), "--rare", "0.4"])
    assert "no video has a scene rarer than 0.4" in capsys.readouterr().err and not (tmp_path / "shifted.h5").exists()
    with pytest.raises(SystemExit):
        main(["extract", "--dataset", "charades", "--root", str(root), "--out", str(out), "--model", "cmdcl-tiny",
              "--pretrained", "random", "--patch-grid", "0",
              "--context-vocab", "nosuchvocab"])
    assert "neither a built-in" in capsys.readouterr().err
