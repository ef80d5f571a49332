"""Object boxes and context factors: world -> manifest -> extraction -> feature file (verify, merge, old files),
and the metrics that read them: spatial grounding and the context-leakage probe."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from cmdcl.core.errors import DatasetError
from cmdcl.core.store import FeatureSet, merge_feature_files, shard_name, verify_paths
from cmdcl.extract.boxes import read_box_file, read_object_box_file, sampled_boxes, sampled_object_boxes, to_input_boxes
from cmdcl.extract.datasets.registry import load_dataset
from cmdcl.extract.datasets.synthetic import CONFOUNDERS, SyntheticConfig, generate_synthetic, load_attributes
from cmdcl.extract.runner import ExtractConfig, run_extraction
from cmdcl.head.metrics.leakage import LEAKAGE_SKIPPED, context_leakage, probe_factor
from cmdcl.head.metrics.spatial import SpatialInstances, patch_overlap
from store_fixtures import write_shard
from video_fixtures import write_test_video

WORLD = SyntheticConfig(seed=3, num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4,
                        train_per_class=2, test_per_class=1, ood_per_class=1, pretrain_per_class=0,
                        width=48, height=32, fps=4, min_seconds=3.0, max_seconds=4.0)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, encoder) -> tuple[Path, Path]:
    """The tiny world extracted with cmdcl-tiny, F=8, a 2x2 patch grid: (world root, shard)."""
    tmp = tmp_path_factory.mktemp("spatial")
    root = generate_synthetic(tmp / "world", WORLD, progress=False)
    summary = run_extraction(ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp / "f"),
                                           model="cmdcl-tiny",
                                           pretrained="random", frames=8, workers=0, progress=False, device="cpu",
                                           precision="fp32", patch_grid=2), log=lambda m: None, encoder=encoder)
    assert summary.failed == 0
    return root, Path(summary.shard_path)


# ------------------------------------------------------------------------------------- boxes in the file

def test_input_boxes_follow_the_resize_and_centre_crop():
    # 32 x 48 video, 32 x 32 input, "shortest": no resize, the crop drops 8 columns on each side
    boxes = np.array([[8, 0, 40, 32], [0, 0, 8, 32], [4, 8, 24, 24]], np.float64)
    out = to_input_boxes(boxes, 32, 48, 32, "shortest")
    np.testing.assert_allclose(out[0], [0, 0, 1, 1])
    assert np.isnan(out[1]).all()  # cropped away entirely
    np.testing.assert_allclose(out[2], [0, 0.25, 0.5, 0.75])
    # 64 x 96 video: halved first, then the same crop
    np.testing.assert_allclose(to_input_boxes(boxes * 2, 64, 96, 32, "shortest")[2], [0, 0.25, 0.5, 0.75])
    # "longest" pads a 16 x 32 video to 32 x 32 (8 rows above): y shifts by a quarter
    np.testing.assert_allclose(to_input_boxes(np.array([0, 0, 32, 16.0]), 16, 32, 32, "longest"), [0, .25, 1, .75])


def test_box_files_are_checked(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("frame,x0,y0,x1,y1\n2,1,2,5,6\n")
    assert set(read_box_file(good)) == {2}
    boxes = sampled_boxes(good, np.array([0, 2, 2]), np.array([True, True, False]), 32, 32, 32, "shortest")
    assert np.isnan(boxes[0]).all() and np.isnan(boxes[2]).all()  # no row for frame 0; a padded slot
    np.testing.assert_allclose(boxes[1], np.array([1, 2, 5, 6]) / 32)
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,x0,y0,x1,y1\n0,5,2,1,6\n")
    with pytest.raises(DatasetError, match="bad.csv:2"):
        read_box_file(bad)


def test_box_files_of_several_objects_are_checked(tmp_path):
    good = tmp_path / "props.csv"
    good.write_text("frame,object,x0,y0,x1,y1\n0,1,1,2,5,6\n2,0,0,0,8,8\n")
    assert set(read_object_box_file(good)) == {(0, 1), (2, 0)}
    boxes = sampled_object_boxes(good, np.array([0, 1, 2]), np.array([True, True, True]), 32, 32, 32, "shortest")
    assert boxes.shape == (3, 2, 4)  # two objects: one more than the highest object index
    np.testing.assert_allclose(boxes[0, 1], np.array([1, 2, 5, 6]) / 32)
    assert np.isnan(boxes[0, 0]).all() and np.isnan(boxes[1]).all()
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,object,x0,y0,x1,y1\n0,-1,1,2,5,6\n")
    with pytest.raises(DatasetError, match="bad.csv:2"):
        read_object_box_file(bad)
    with pytest.raises(DatasetError, match="expected frame,x0,y0,x1,y1"):
        read_box_file(good)  # the one-object reader refuses the other header


def test_boxes_and_factors_go_from_the_world_into_the_feature_file(extracted, encoder, capsys):
    root, shard = extracted
    fs = FeatureSet(shard)
    assert fs.has_boxes and fs.has_prop_boxes and fs.confounder_names == [*CONFOUNDERS, "prop"]
    positions = np.arange(len(fs))
    boxes, factors = fs.read_boxes(positions), fs.read_confounders(positions)
    props = fs.read_prop_boxes(positions)
    assert boxes.shape == (len(fs), 8, 4) and factors.shape == (len(fs), 4) and props.shape == (len(fs), 8, 2, 4)
    attributes = {r["video_id"]: r for r in load_attributes(root)}
    for i, video_id in enumerate(fs.index["video_id"].tolist()):
        assert factors[i].tolist() == [int(attributes[video_id][n]) for n in fs.confounder_names]
        split = fs.index["split"][i]
        geometry = (fs.index["frame_index"][i], fs.index["frame_mask"][i], 32, 48, encoder.image_size,
                    encoder.resize_mode)
        np.testing.assert_array_equal(boxes[i], sampled_boxes(root / "boxes" / split / f"{video_id}.csv", *geometry))
        np.testing.assert_array_equal(props[i], sampled_object_boxes(root / "prop_boxes" / split / f"{video_id}.csv",
                                                                     *geometry))
        valid = fs.index["frame_mask"][i]
        assert not np.isnan(boxes[i][valid]).any()  # the object is on screen in every frame
        assert ((boxes[i][valid] >= 0) & (boxes[i][valid] <= 1)).all()
        assert np.isnan(props[i][~valid]).all()  # padded frames have no boxes
        seen = props[i][valid][~np.isnan(props[i][valid]).any(-1)]
        assert len(seen) and ((seen >= 0) & (seen <= 1)).all()
    moving = props[:, :, 0, 0][fs.index["frame_mask"]]
    assert len(np.unique(moving[~np.isnan(moving)])) > len(fs)  # the props move from frame to frame
    assert verify_paths([shard]).problems == []
    from cmdcl.pipelines.cli import main

    main(["inspect", str(shard)])
    assert "object boxes yes, prop boxes yes; confounders background, attire, lighting, prop" in capsys.readouterr().out


def test_merge_keeps_the_groups_and_old_files_still_load(extracted, tmp_path):
    _, shard = extracted
    merged = tmp_path / "merged.h5"
    merge_feature_files(shard, merged)
    a, b = FeatureSet(shard), FeatureSet(merged)
    positions = np.arange(len(a))
    np.testing.assert_array_equal(a.read_boxes(positions), b.read_boxes(positions))
    np.testing.assert_array_equal(a.read_prop_boxes(positions), b.read_prop_boxes(positions))
    np.testing.assert_array_equal(a.read_confounders(positions), b.read_confounders(positions))
    assert verify_paths([merged]).problems == []
    old = write_shard(tmp_path / shard_name(0, 1), [("a", "train", 0), ("b", "test", 1)])
    with h5py.File(old, "r") as f:
        assert "boxes" not in f and "confounders" not in f
    fs = FeatureSet(old)
    assert not fs.has_boxes and fs.read_boxes(np.arange(2)) is None
    assert not fs.has_prop_boxes and fs.read_prop_boxes(np.arange(2)) is None
    assert fs.confounder_names == [] and fs.read_confounders(np.arange(2)) is None
    assert verify_paths([old]).problems == []


def test_prop_boxes_of_videos_with_different_numbers_of_props(tmp_path):
    """/boxes/props_xyxy grows to the most props any video has (the others' missing props are NaN), across part
    files, shards and a merge with a file that has none."""
    from cmdcl.core.store import ShardWriter
    from store_fixtures import base_attrs, make_record, make_text

    def props(count: int, value: float) -> np.ndarray:
        return np.tile(np.array([value, value, value + 0.1, value + 0.1], np.float32), (6, count, 1))

    path = tmp_path / shard_name(0, 1)
    writer = ShardWriter(path, base_attrs(), make_text(), flush_every=1)  # one part file per video
    for i, count in enumerate((1, 0, 3)):
        record = make_record(f"v{i}", "train", 0, seed=i)
        record.prop_boxes = props(count, 0.1 * (i + 1)) if count else None
        writer.add(record)
    writer.finalize()
    fs = FeatureSet(path)
    order = [fs.index["video_id"].tolist().index(f"v{i}") for i in range(3)]
    boxes = fs.read_prop_boxes(np.array(order))
    assert boxes.shape == (3, 6, 3, 4)
    np.testing.assert_allclose(boxes[0, :, 0], props(1, 0.1)[:, 0])
    assert np.isnan(boxes[0, :, 1:]).all() and np.isnan(boxes[1]).all()
    np.testing.assert_allclose(boxes[2], props(3, 0.3))
    other = write_shard(tmp_path / "other" / shard_name(0, 1), [("w0", "test", 1)])
    merged = tmp_path / "merged.h5"
    merge_feature_files([path, other], merged)
    both = FeatureSet(merged)
    every = both.read_prop_boxes(np.arange(len(both)))
    assert every.shape == (4, 6, 3, 4) and np.isnan(every[both.index["video_id"] == "w0"]).all()
    assert verify_paths([merged]).problems == []


def test_verify_reports_a_bad_box(extracted, tmp_path):
    _, shard = extracted
    broken = tmp_path / "broken.h5"
    broken.write_bytes(shard.read_bytes())
    with h5py.File(broken, "r+") as f:
        f["boxes/xyxy"][0, 0] = [0.5, 0.5, 0.2, 0.9]
        f["boxes/props_xyxy"][1, 0, 1] = [0.5, np.nan, 0.6, 0.9]
    problems = verify_paths([broken]).problems
    assert any("box outside" in p and "/boxes/xyxy" in p for p in problems)
    assert any("box outside" in p and "/boxes/props_xyxy" in p for p in problems)


def test_a_manifest_carries_boxes_and_factors(tmp_path, encoder):
    root = tmp_path / "m"
    write_test_video(root / "videos" / "a.mp4", num_frames=12, height=48, width=64)
    write_test_video(root / "videos" / "b.mp4", num_frames=12, height=48, width=64)
    (root / "classes.txt").write_text("x\ny\n")
    (root / "boxes.csv").write_text("frame,x0,y0,x1,y1\n" + "".join(f"{f},8,0,40,24\n" for f in range(12)))
    (root / "manifest.csv").write_text(
        "video_id,path,split,label,boxes,confounder:room\n"
        "a,videos/a.mp4,train,x,boxes.csv,2\n"
        "b,videos/b.mp4,train,y,,\n")
    index = load_dataset("manifest", root)
    assert index.confounder_names == ["room"]
    assert [item.confounders for item in index.items] == [{"room": 2}, {"room": -1}]
    run_extraction(ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / "f"), model="cmdcl-tiny",

                                 pretrained="random", patch_grid=0, frames=4, workers=0, progress=False, device="cpu",
                                 precision="fp32"),
                   log=lambda m: None, encoder=encoder)
    fs = FeatureSet(tmp_path / "f" / shard_name(0, 1))
    boxes = fs.read_boxes(np.arange(2))
    # 48 x 64 -> 32 x 42 (short side to 32), crop 5 columns: x 8 -> 8 * 2/3 - 5 ... y 24 -> 0.5
    assert not np.isnan(boxes[0]).any() and np.isnan(boxes[1]).all()
    np.testing.assert_allclose(boxes[0, :, 3], 0.5, atol=1e-6)
    assert fs.read_confounders(np.arange(2)).tolist() == [[2], [-1]]
    (root / "manifest.csv").write_text("video_id,path,split,label,confounder:room\na,videos/a.mp4,train,x,kitchen\n")
    with pytest.raises(DatasetError, match="confounder 'room'"):
        load_dataset("manifest", root)


# ------------------------------------------------------------------------------------- spatial grounding

def test_patch_overlap_counts_cells_the_box_touches():
    overlap = patch_overlap(np.array([0.0, 0.0, 0.5, 0.5]), 4)
    assert overlap.reshape(4, 4)[:2, :2].all() and overlap.sum() == 4
    assert patch_overlap(np.array([0.3, 0.6, 0.31, 0.61]), 4).reshape(4, 4)[2, 1]  # a tiny box: one cell


def spatial_of(maps: np.ndarray, boxes: np.ndarray, times=None, segments=None) -> dict:
    """Spatial metrics of one video, one step: maps (F, P), boxes (F, 4)."""
    frames = len(maps)
    instances = SpatialInstances()
    instances.add_video(maps[None], np.arange(frames, dtype=float) if times is None else times,
                        np.ones(frames, bool), boxes, np.array([[0, 0, frames]]) if segments is None else segments)
    return instances.summary()


def test_mass_ratio_and_pointing_on_hand_built_maps():
    grid, frames = 4, 3
    boxes = np.tile([0.0, 0.0, 0.5, 0.5], (frames, 1))  # 4 of 16 cells: share 0.25
    inside = patch_overlap(boxes[0], grid)
    focused = np.where(inside, 1.0, 0.0)[None].repeat(frames, 0)
    result = spatial_of(focused, boxes)
    assert result["spatial_mass_ratio"] == pytest.approx(4.0)  # 1 / share
    assert result["spatial_pointing"] == 1.0 and result["spatial_pointing_chance"] == pytest.approx(0.25)
    uniform = spatial_of(np.ones((frames, 16)), boxes)
    assert uniform["spatial_mass_ratio"] == pytest.approx(1.0)
    assert uniform["spatial_pointing"] == pytest.approx(0.25)  # all tied: the chance of a random pick
    elsewhere = np.zeros((frames, 16))
    elsewhere[:, 15] = 1.0
    assert spatial_of(elsewhere, boxes)["spatial_pointing"] == 0.0
    assert spatial_of(elsewhere, boxes)["spatial_mass_ratio"] == 0.0
    # frames without a box or outside the segment do not count
    boxes[0] = np.nan
    mixed = focused.copy()
    mixed[0] = elsewhere[0]
    mixed[2] = elsewhere[2]
    result = spatial_of(mixed, boxes, segments=np.array([[0, 0, 2]]))
    assert result["spatial_frames"] == 1 and result["spatial_pointing"] == 1.0
    assert spatial_of(focused, np.full((frames, 4), np.nan)) == {}


def test_prop_mass_ratio_counts_the_union_of_props_in_view():
    grid, frames = 4, 3
    boxes = np.tile([0.0, 0.0, 0.5, 0.5], (frames, 1))  # the action's object: top-left 4 cells
    props = np.full((frames, 2, 4), np.nan)
    props[:, 0] = [0.5, 0.5, 1.0, 1.0]  # prop 0: bottom-right 4 cells, in view in every frame
    props[1, 1] = [0.5, 0.0, 1.0, 0.5]  # prop 1: top-right 4 cells, in view in frame 1 only
    on_object = np.where(patch_overlap(boxes[0], grid), 1.0, 0.0)[None].repeat(frames, 0)
    instances = SpatialInstances()
    instances.add_video(on_object[None], np.arange(frames, dtype=float), np.ones(frames, bool), boxes,
                        np.array([[0, 0, frames]]), props)
    result = instances.summary()
    assert result["spatial_mass_ratio"] == pytest.approx(4.0) and result["spatial_prop_mass_ratio"] == 0.0
    assert result["spatial_prop_share"] == pytest.approx((0.25 + 0.5 + 0.25) / 3)  # union: 8 cells in frame 1
    on_props = np.zeros((frames, 16))
    on_props[:, 15] = 1.0  # bottom-right: inside prop 0
    instances = SpatialInstances()
    instances.add_video(on_props[None], np.arange(frames, dtype=float), np.ones(frames, bool), boxes,
                        np.array([[0, 0, frames]]), props)
    result = instances.summary()
    assert result["spatial_prop_mass"] == 1.0 and result["spatial_mass_ratio"] == 0.0
    assert result["spatial_prop_mass_ratio"] == pytest.approx(1.0 / ((0.25 + 0.5 + 0.25) / 3))
    uniform = SpatialInstances()
    props[:, 0] = np.nan  # no prop in view in frames 0 and 2: only frame 1 counts
    uniform.add_video(np.ones((1, frames, 16)), np.arange(frames, dtype=float), np.ones(frames, bool), boxes,
                      np.array([[0, 0, frames]]), props)
    assert uniform.summary()["spatial_prop_mass_ratio"] == pytest.approx(1.0)
    assert uniform.summary()["spatial_prop_share"] == pytest.approx(0.25)
    assert "spatial_prop_mass" not in spatial_of(on_object, boxes)  # no prop boxes: no prop keys


# ------------------------------------------------------------------------------------- leakage

def test_probe_reads_a_factor_that_is_encoded_and_not_one_that_is_not():
    rng = np.random.default_rng(0)
    values = np.repeat(np.arange(3), 20)
    encoded = np.eye(3)[values] * 3 + rng.standard_normal((60, 3))
    noise = rng.standard_normal((60, 5))
    assert probe_factor(np.hstack([encoded, noise]), values)["accuracy"] > 0.9
    random = probe_factor(noise, values)
    assert random["chance"] == pytest.approx(1 / 3) and random["accuracy"] < 0.6 and random["folds"] == 5
    both = context_leakage(np.hstack([encoded, noise]), np.stack([values, rng.permutation(values)], 1),
                           ["kept", "shuffled"])["leakage"]
    assert both["kept"]["accuracy"] > 0.9 and both["shuffled"]["accuracy"] < 0.6
    unknown = np.full(60, -1)
    assert context_leakage(noise, unknown[:, None], ["none"]) == {}
    assert context_leakage(noise, None, []) == {}  # no factor labels: nothing to say
    skipped = context_leakage(None, values[:, None], ["kept"])  # factors, but a head without "representation"
    assert skipped == {"leakage_skipped": LEAKAGE_SKIPPED} and '"representation"' in LEAKAGE_SKIPPED


def test_every_head_gives_a_representation():
    import torch

    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.model.factory import build_model
    from store_fixtures import make_text

    text = make_text(num_classes=3, num_steps=4, dim=8)
    dims = {"F": 6, "D": 8, "C": 3, "S": 4, "P": 0}
    features, mask = torch.randn(2, 6, 8), torch.ones(2, 6, dtype=torch.bool)
    for method, extra in (("zeroshot", {}), ("linear", {}), ("transformer", {}), ("cmdcl", {}),
                          ("cmdcl", {"use_vci": False})):
        cfg = HeadConfig(method=method, heads=2, sta_layers=1, dictionary_size=2, **extra)
        model = build_model(cfg, text, dims, multilabel=False).eval()
        if method == "cmdcl":
            model.fit_dictionaries(features.numpy(), mask.numpy())
        out = model(features, mask)
        expected = 4 * 8 if method == "cmdcl" and not extra else 8  # cmdcl: V' (S, D) flattened
        assert out["representation"].shape == (2, expected), method


def test_evaluation_reports_spatial_grounding_and_leakage(extracted, tmp_path):
    """The world's boxes and factors reach evaluate: cmdcl --use-patches gets the spatial keys (uniform
    attention without the mediator: exactly 1.0), every head gets the leakage probe."""
    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.metrics.evaluate import evaluate_splits
    from cmdcl.head.training.train import train

    _, shard = extracted
    small = dict(sta_layers=1, heads=2, dictionary_size=2, epochs=1, batch_size=4, val_fraction=0.0)
    metrics = {}
    for name, cfg in {"cmdcl": HeadConfig(use_patches=True, **small),
                      "no_vci": HeadConfig(use_patches=True, use_vci=False, **small),
                      "linear": HeadConfig(method="linear", epochs=1, batch_size=4, val_fraction=0.0)}.items():
        train(shard, tmp_path / name, cfg, device="cpu", progress=False, log=lambda message: None)
        metrics[name] = evaluate_splits(tmp_path / name / "last.pt", shard, ["train"], device="cpu")["train"]
    assert "spatial_mass_ratio" not in metrics["linear"]
    for name in ("cmdcl", "no_vci"):
        m = metrics[name]
        assert m["spatial_instances"] > 0 and 0 < m["spatial_pointing_chance"] < 1
        assert 0 <= m["spatial_pointing"] <= 1 and m["spatial_mass_ratio"] >= 0
    assert metrics["no_vci"]["spatial_mass_ratio"] == pytest.approx(1.0)
    assert metrics["no_vci"]["spatial_prop_mass_ratio"] == pytest.approx(1.0)  # the world's props reach evaluate
    assert metrics["cmdcl"]["spatial_prop_instances"] > 0 and metrics["cmdcl"]["spatial_prop_mass_ratio"] >= 0
    assert metrics["no_vci"]["spatial_pointing"] == pytest.approx(metrics["no_vci"]["spatial_pointing_chance"])
    for m in metrics.values():
        assert set(m["leakage"]) <= {*CONFOUNDERS, "prop"} and m["leakage"]
        for probe in m["leakage"].values():
            assert 0 <= probe["accuracy"] <= 1 and 0 < probe["chance"] <= 1 and probe["videos"] >= 4
    json.dumps(metrics)  # the nested leakage block stays JSON
    from cmdcl.head.report import build_report

    build_report(tmp_path / "cmdcl", features=str(shard), split="train", device="cpu")
    summary = json.loads((tmp_path / "cmdcl" / "report" / "report.json").read_text())
    assert summary["figures"]["spatial_grounding"] == "spatial_grounding.png"
    assert (tmp_path / "cmdcl" / "report" / "spatial_grounding.png").stat().st_size > 0
    build_report(tmp_path / "linear", features=str(shard), split="train", device="cpu")
    summary = json.loads((tmp_path / "linear" / "report" / "report.json").read_text())
    assert summary["figures"]["spatial_grounding"] is None and "without --use-patches" in \
        summary["notes"]["spatial_grounding"][0]


def test_fig7_draws_the_attention_over_the_decoded_frame_with_the_props_boxes(extracted, tmp_path):
    """Fig. 7 as the paper draws it: IID and OOD rows, the frame decoded from the video under the map, the
    action's box and the props' boxes (an optional group: absent -> None, present -> drawn and scored)."""
    import shutil

    from matplotlib.image import imread

    from cmdcl.core.store.layout import PROP_BOXES_DATASET
    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.report import build_report
    from cmdcl.head.training.train import train
    from cmdcl.pipelines.cmd_report import read_video_frames

    _, shard = extracted
    without, with_props = tmp_path / "no-props.h5", tmp_path / "props.h5"
    for copy in (without, with_props):  # the moving world stores props already: these copies hold none, then ours
        shutil.copy(shard, copy)
        with h5py.File(copy, "a") as f:
            if PROP_BOXES_DATASET in f:
                del f[PROP_BOXES_DATASET]
    assert FeatureSet(without).read_prop_boxes(np.arange(3)) is None
    with h5py.File(with_props, "a") as f:
        n, frames = f["boxes/xyxy"].shape[:2]
        props = np.full((n, frames, 2, 4), np.nan, np.float32)
        props[:, :, 0] = [0.0, 0.0, 0.5, 0.5]  # prop 0: the top-left patch of the 2x2 grid; prop 1: never present
        f.create_dataset(PROP_BOXES_DATASET, data=props)
    assert FeatureSet(with_props).read_prop_boxes(np.arange(2)).shape == (2, frames, 2, 4)

    run = tmp_path / "run"
    train(with_props, run, HeadConfig(use_patches=True, sta_layers=1, heads=2, dictionary_size=2, epochs=1,
                                      batch_size=4, val_fraction=0.0), device="cpu", progress=False,
          log=lambda message: None)
    decoded = []

    def reader(path, frame_index, short_side):
        decoded.append(path)
        return read_video_frames(path, frame_index, short_side)

    reports = {}
    for name, read_frames in (("frames", reader), ("bare", None)):
        build_report(run, features=str(with_props), split=["test", "test_ood"], device="cpu", out=tmp_path / name,
                     read_frames=read_frames)
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    panels = reports["frames"]["spatial_grounding"]
    assert {p["split"] for p in panels} == {"test", "test_ood"} and all(p["frame_drawn"] for p in panels)
    assert all(p["props_share"] == 0.25 and 0 <= p["props_mass"] <= 1 for p in panels)
    paths = dict(zip(FeatureSet(with_props).index["video_id"].tolist(), FeatureSet(with_props).index["path"].tolist()))
    assert {paths[p["video"]] for p in panels} <= set(decoded)  # each panel's frame came from its own video
    # Same panels, same maps: only the frame under them differs.
    assert [p["video"] for p in reports["bare"]["spatial_grounding"]] == [p["video"] for p in panels]
    assert not any(p["frame_drawn"] for p in reports["bare"]["spatial_grounding"])
    assert "no frame reader" in reports["bare"]["notes"]["spatial_grounding"][0]
    over, alone = (imread(tmp_path / name / "spatial_grounding.png") for name in ("frames", "bare"))
    assert over.shape == alone.shape and np.abs(over - alone).mean() > 0.01
