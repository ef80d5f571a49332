import json
import math

import numpy as np
import pytest
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import FeatureSet, TextBank, VideoRecord
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.metrics.evaluate import (evaluate, evaluate_splits, load_model, mean_average_precision,
                                 single_label_metrics, topk_accuracy)
from cmdcl.head.training.train import train
from cmdcl.pipelines.cli import main
from head_fixtures import multilabel_world, world_attrs, write_records



def test_topk_confusion_and_per_class_accuracy_by_hand():
    logits = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 2], [2, 1, 0], [0, 0, 9]], np.float32)
    label = np.array([0, 2, 2, 1, -1])  # the last video is unlabelled and must be ignored
    m = single_label_metrics(logits, label, ["a", "b", "c"])
    assert m["top1"] == 0.5
    assert m["top5"] == 1.0  # k clamps to the 3 classes
    assert topk_accuracy(logits[:4], label[:4], 2) == 1.0
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert m["per_class_accuracy"] == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert m["mean_class_accuracy"] == 0.5
    assert m["num_videos"] == 4


def test_average_precision_by_hand():
    scores = np.array([[0.9, 0.1, 0.9], [0.8, 0.2, 0.8], [0.7, 0.3, 0.7], [0.6, 0.4, 0.6]])
    targets = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    value, per_class = mean_average_precision(scores, targets)
    ap0 = (1 / 1 + 2 / 3) / 2
    ap2 = (1 / 2 + 2 / 3 + 3 / 4) / 3
    assert math.isclose(per_class[0], ap0) and math.isnan(per_class[1]) and math.isclose(per_class[2], ap2)
    assert math.isclose(value, (ap0 + ap2) / 2)


def _axis_world(path):
    """Frames are exact basis vectors, class texts e0..e2, step texts e0..e3: zero-shot outputs are known."""
    eye = np.eye(4, dtype=np.float32)
    text = TextBank(class_names=["c0", "c1", "c2"], class_embeddings=eye[:3], step_names=["s0", "s1", "s2", "s3"],
                    step_embeddings=eye, templates=["{}"])
    # (split, label, shown basis vector, steps present)
    videos = [("train", 0, 0, [0]), ("train", 1, 1, [1]), ("train", 2, 2, [2]),
              ("test", 0, 0, [0]), ("test", 1, 1, [1, 3]), ("test", 2, 0, [0]), ("test", 2, 2, [2])]
    videos += [("test_ood", 1, 2, [2]), ("test_ood", 2, 2, [2])]
    records = []
    for i, (split, label, shown, steps) in enumerate(videos):
        labels = np.eye(3, dtype=np.uint8)[label]
        step_vec = np.zeros(4, np.uint8)
        step_vec[steps] = 1
        records.append(VideoRecord(
            video_id=f"v{i}", split=split, path=f"/v{i}.mp4", label=label, labels=labels, steps=step_vec, fps=1.0,
            duration=3.0, num_frames=3, frame_index=np.arange(3), timestamps_ms=np.arange(3) * 1e3,
            frame_mask=np.ones(3, bool), features=np.repeat(eye[shown][None], 3, 0).astype(np.float16)))
    return write_records(path, records, text, world_attrs(3, 4, 3, 4))


def test_zeroshot_evaluation_matches_hand_computed_metrics(tmp_path):
    features = _axis_world(tmp_path / "axis.h5")
    result = train(features, tmp_path / "run", HeadConfig(method="zeroshot", val_fraction=0.0), progress=False,
                   log=lambda m: None)
    assert result["epochs_run"] == 0 and (tmp_path / "run" / "best.pt").exists()
    m = evaluate(tmp_path / "run" / "best.pt", features, "test", out=tmp_path / "m.json")
    assert m["top1"] == 0.75 and m["top5"] == 1.0
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert m["per_class_accuracy"] == {"c0": 1.0, "c1": 1.0, "c2": 0.5}
    # Step scores are 100 * cos: columns s0..s2 rank their positives first (AP 1); s3 is a tie of zeros
    # over four videos with one positive (AP 1/4).
    assert math.isclose(m["step_mAP"], (1 + 1 + 1 + 0.25) / 4)
    assert json.loads((tmp_path / "m.json").read_text())["top1"] == 0.75
    # Calibration: logits 100 * cos, so every video's top-1 probability is 1 (bin 15) and 3 of 4 are right:
    # ECE |3 - 4| / 4; v5 gives its true class e^-100 / (1 + 2 e^-100): NLL = (100 + log(1 + 2e-100)) / 4.
    assert m["ece"] == pytest.approx(0.25) and m["nll"] == pytest.approx(25.0)
    assert m["calibration_bins"]["count"][-1] == 4

    both = evaluate_splits(tmp_path / "run" / "best.pt", features, ["test", "test_ood"], tmp_path / "out")
    assert both["test_ood"]["top1"] == 0.5 and both["test_ood"]["num_videos"] == 2
    assert (tmp_path / "out" / "metrics_test_ood.json").exists()
    with pytest.raises(CmdclError, match="no videos in split 'val'"):
        evaluate(tmp_path / "run" / "best.pt", features, "val")


def test_evaluate_writes_per_video_predictions(tmp_path):
    from cmdcl.head.metrics.predictions import load_predictions

    features = _axis_world(tmp_path / "axis.h5")
    train(features, tmp_path / "run", HeadConfig(method="zeroshot", val_fraction=0.0), progress=False,
          log=lambda m: None)
    evaluate_splits(tmp_path / "run" / "best.pt", features, ["test", "test_ood"], tmp_path / "out")
    with np.load(tmp_path / "out" / "predictions_test.npz") as f:
        assert f["video_id"].tolist() == ["v3", "v4", "v5", "v6"]
        assert f["pred"].tolist() == [0, 1, 0, 2] and f["label"].tolist() == [0, 1, 2, 2]  # top-1 0.75 as above
        assert f["scores"].dtype == np.float32 and f["scores"].shape == (4, 3) and not bool(f["multilabel"])
        assert f["labels"].tolist() == np.eye(3, dtype=np.uint8)[[0, 1, 2, 2]].tolist()
        assert f["steps"].tolist() == [[1, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]
        assert f["step_scores"].shape == (4, 4) and f["step_scores"].dtype == np.float32
    assert load_predictions(tmp_path / "out" / "predictions_test_ood.npz").video_id.tolist() == ["v7", "v8"]
    evaluate(tmp_path / "run" / "best.pt", features, "test", out=tmp_path / "one" / "m.json")
    assert (tmp_path / "one" / "predictions_test.npz").exists()


def test_evaluate_cli_writes_metrics(tmp_path, capsys):
    features = _axis_world(tmp_path / "axis.h5")
    main(["train-head", "--features", str(features), "--out", str(tmp_path / "run"), "--method", "zeroshot",
          "--no-evaluate", "--no-progress"])
    main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--features", str(features),
          "--split", "test", "--split", "test_ood", "--out", str(tmp_path / "eval")])
    out = capsys.readouterr().out
    assert "test: top1 0.7500" in out and "test_ood: top1 0.5000" in out
    assert json.loads((tmp_path / "eval" / "metrics_test.json").read_text())["step_mAP"] == 0.8125


def test_multilabel_map_matches_independent_computation(tmp_path):
    from sklearn.metrics import average_precision_score

    features = multilabel_world(tmp_path / "ml.h5")
    main(["train-head", "--features", str(features), "--out", str(tmp_path / "run"), "--method", "transformer",
          "--sta-layers", "1", "--epochs", "3", "--no-progress"])
    written = json.loads((tmp_path / "run" / "metrics_test.json").read_text())
    model, _, _ = load_model(tmp_path / "run" / "best.pt", device="cpu")
    fs = FeatureSet(features)
    rows = fs.select("test")
    with torch.no_grad():
        logits = model(torch.from_numpy(fs.read_array("features", rows)).float(),
                       torch.from_numpy(fs.index["frame_mask"][rows]))["logits"].numpy()
    targets = fs.index["labels"][rows]
    expected = np.mean([average_precision_score(targets[:, j], logits[:, j])
                        for j in range(targets.shape[1]) if targets[:, j].any()])
    assert math.isclose(written["mAP"], expected, rel_tol=1e-5)
    assert "top1" not in written and set(written["per_class_AP"]) == set(fs.text.class_names)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all("val_mAP" in x for x in lines)


def test_predict_extracts_like_training_and_agrees_with_cached_features(tmp_path, capsys):
    from video_fixtures import write_test_video

    root = tmp_path / "videos"
    (root / "classes.txt").parent.mkdir(parents=True)
    (root / "classes.txt").write_text("pour\nstir\n")
    (root / "steps.txt").write_text("s1\n")
    rows = []
    for i in range(6):
        write_test_video(root / f"v{i}.mp4", num_frames=12 + 4 * i, height=32, width=48, pattern="index", seed=i)
        rows.append({"video_id": f"v{i}", "path": f"v{i}.mp4", "split": "train" if i < 4 else "test",
                     "label": i % 2, "steps": ["s1"]})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["extract", "--dataset", "manifest", "--root", str(root), "--out", str(tmp_path / "feats"), "--model",
          "cmdcl-tiny",
          "--pretrained", "random", "--patch-grid", "0", "--frames", "6", "--workers", "0", "--device", "cpu",
          "--precision", "fp32", "--no-progress"])
    features = tmp_path / "feats"
    main(["train-head", "--features", str(features), "--out", str(tmp_path / "run"), "--method", "transformer",
          "--sta-layers", "1", "--heads", "2", "--epochs", "2", "--val-fraction", "0", "--device", "cpu",
          "--no-progress", "--no-evaluate"])
    capsys.readouterr()
    main(["predict", str(root / "v5.mp4"), str(root / "v2.mp4"), "--checkpoint", str(tmp_path / "run" / "best.pt"),
          "--top-k", "2", "--device", "cpu", "--json", str(tmp_path / "pred.json")])
    printed = capsys.readouterr().out.splitlines()
    predictions = json.loads((tmp_path / "pred.json").read_text())
    assert [p["video"] for p in predictions] == [str(root / "v5.mp4"), str(root / "v2.mp4")]
    assert all(len(line.split("  ")) == 2 and str(root) in line for line in printed)

    model, _, _ = load_model(tmp_path / "run" / "best.pt", device="cpu")
    fs = FeatureSet(features)
    for prediction, vid in zip(predictions, ("v5", "v2")):
        row = np.flatnonzero(fs.index["video_id"] == vid)
        with torch.no_grad():
            logits = model(torch.from_numpy(fs.read_array("features", row)).float(),
                           torch.from_numpy(fs.index["frame_mask"][row]))["logits"][0]
        probs = torch.softmax(logits, -1)
        assert prediction["top"][0]["index"] == int(probs.argmax())
        assert math.isclose(prediction["top"][0]["probability"], float(probs.max()), abs_tol=1e-3)
        assert prediction["frames"] == int(fs.index["frame_mask"][row].sum())

    # A run folder is taken as `evaluate` takes it (not refused as "no such file").
    main(["predict", str(root / "v5.mp4"), str(root / "v2.mp4"), "--checkpoint", str(tmp_path / "run"),
          "--top-k", "2", "--device", "cpu", "--json", str(tmp_path / "pred_run.json")])
    assert capsys.readouterr().out.splitlines() == printed
    assert json.loads((tmp_path / "pred_run.json").read_text()) == predictions


# ------------------------------------------------------------------ step grounding

from cmdcl.head.metrics.grounding import InstanceGrounding, grounding_summary, segment_grounding  # noqa: E402


def test_attention_inside_the_segments_scores_full_mass_and_pointing():
    times = np.arange(8, dtype=np.float64)  # one frame per second, the last two padded
    mask = np.arange(8) < 6
    segments = np.array([[0, 0.0, 2.0], [2, 2.0, 5.0], [1, 5.0, 6.0]], np.float32)
    attention = np.zeros((3, 8))
    attention[0, [0, 1]] = [0.3, 0.7]
    attention[2, [2, 3, 4]] = [0.2, 0.5, 0.3]
    attention[1, 5] = 1.0
    attention[:, 7] = 5.0  # weight on a padded frame is ignored
    g = segment_grounding(attention, times, mask, segments)
    assert g.mass.tolist() == [1.0, 1.0, 1.0] and g.pointing.tolist() == [1.0, 1.0, 1.0]
    assert np.allclose(g.uniform, [2 / 6, 3 / 6, 1 / 6]) and g.unscored == 0
    summary = grounding_summary(g)
    assert summary["grounding_mass"] == 1.0 and summary["grounding_pointing"] == 1.0
    assert summary["grounding_uniform"] == pytest.approx(1 / 3)
    assert summary["grounding_mass_ratio"] == pytest.approx(3.0)


def test_uniform_attention_scores_the_uniform_baseline():
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    mask = np.ones(6, bool)
    segments = np.array([[0, 0.0, 1.0], [1, 1.0, 2.6], [0, 2.0, 2.2]])
    g = segment_grounding(np.full((2, 6), 1 / 6), times, mask, segments)
    assert np.allclose(g.mass, g.uniform) and np.allclose(g.uniform, [2 / 6, 4 / 6, 1 / 6])
    assert np.allclose(g.pointing, g.uniform)  # a tie over every frame: the random pointing baseline
    summary = grounding_summary(g)
    assert summary["grounding_mass_ratio"] == pytest.approx(1.0)
    assert summary["grounding_pointing"] == pytest.approx(summary["grounding_pointing_random"])


def test_attention_outside_and_unscorable_instances():
    times, mask = np.arange(4.0), np.ones(4, bool)
    attention = np.array([[0.0, 0.0, 0.1, 0.9]])
    # A segment between two sampled frames, a step outside the vocabulary: not scored, counted.
    segments = np.array([[0, 0.0, 2.0], [0, 0.2, 0.8], [5, 0.0, 4.0]])
    g = segment_grounding(attention, times, mask, segments)
    assert g.mass.tolist() == [0.0] and g.pointing.tolist() == [0.0] and g.unscored == 2
    assert grounding_summary(InstanceGrounding(unscored=3)) == {"grounding_instances": 0, "grounding_unscored": 3}


def test_evaluation_reports_grounding_for_heads_with_step_attention(tmp_path, capsys):
    """Order world with stored segments: cmdcl (and its --no-vci ablation) get the grounding keys, linear not."""
    from head_fixtures import order_world

    features = order_world(tmp_path / "order.h5", train_per_class=4, test_per_class=3, frames=8, dim=16)
    fs = FeatureSet(features)
    test = np.flatnonzero(fs.index["split"] == "test")
    valid = fs.index["frame_mask"][test].sum(1)
    # Frames at whole seconds, segments on whole seconds: a segment's share is its length over the valid frames.
    shares = [(seg[:, 2] - seg[:, 1]) / n for seg, n in zip(fs.read_segments(test), valid)]
    expected_uniform = float(np.concatenate(shares).mean())
    keys = {"grounding_mass", "grounding_uniform", "grounding_mass_ratio", "grounding_pointing",
            "grounding_pointing_random", "grounding_instances"}
    results = {}
    for name, cfg in {"cmdcl": HeadConfig(sta_layers=1, heads=2, dictionary_size=4, epochs=1, batch_size=8),
                      "no_vci": HeadConfig(sta_layers=1, heads=2, use_vci=False, epochs=1, batch_size=8),
                      "linear": HeadConfig(method="linear", epochs=1, batch_size=8)}.items():
        train(features, tmp_path / name, cfg, device="cpu", progress=False, log=lambda message: None)
        results[name] = evaluate_splits(tmp_path / name / "best.pt", features, ["test"], device="cpu")["test"]
    assert not keys & set(results["linear"])
    for name in ("cmdcl", "no_vci"):
        m = results[name]
        assert keys <= set(m)
        assert m["grounding_instances"] == sum(len(s) for s in shares) and m["grounding_unscored"] == 0
        assert m["grounding_uniform"] == pytest.approx(expected_uniform)
        assert 0.0 <= m["grounding_mass"] <= 1.0 and 0.0 <= m["grounding_pointing"] <= 1.0
    # Without the front-door mediator every step attends uniformly: exactly the uniform baseline.
    assert results["no_vci"]["grounding_mass"] == pytest.approx(expected_uniform, abs=1e-6)
    assert results["no_vci"]["grounding_pointing"] == pytest.approx(expected_uniform, abs=1e-6)
    main(["evaluate", "--checkpoint", str(tmp_path / "cmdcl" / "best.pt"), "--features", str(features),
          "--split", "test", "--out", str(tmp_path / "m.json"), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert f"grounding_mass {results['cmdcl']['grounding_mass']:.4f}" in printed and "grounding_uniform" in printed
    assert json.loads((tmp_path / "m.json").read_text())["grounding_instances"] == results["cmdcl"]["grounding_instances"]


def test_frame_times_follow_the_heads_frame_subsample(tmp_path):
    """With fewer head frames than stored, each head frame's time is the time of the stored frame it shows."""
    from cmdcl.head.data import FeatureData
    from cmdcl.head.metrics.grounding import stored_frame_column
    from head_fixtures import order_world

    fs = FeatureSet(order_world(tmp_path / "order.h5", train_per_class=1, test_per_class=5, frames=8, dim=16))
    data = FeatureData(fs, ["test"], frames=3, log=lambda message: None)
    rows = np.arange(len(data))
    seconds = (stored_frame_column(data, rows, "timestamps_ms") / 1000).astype(np.int64)  # frame i at i s
    stored = fs.read_array("features", data.positions)
    assert seconds.shape == (len(data), 3) and (np.diff(seconds, axis=1) > 0).all()
    for row in rows:
        assert np.array_equal(data.features[row].numpy(), stored[row, seconds[row]])


@pytest.mark.slow
def test_synthetic_world_run_reports_grounding_for_cmdcl_not_linear(tmp_path):
    """End to end: the synthetic world's manifest segments reach the store and cmdcl's evaluation."""
    from video_fixtures import extract_tiny_world

    _, features = extract_tiny_world(tmp_path, train_per_class=3, test_per_class=2)
    fs = FeatureSet(features)
    test = np.flatnonzero(fs.index["split"] == "test")
    assert all(len(s) >= 3 for s in fs.read_segments(test))  # every test video annotates its script's steps
    metrics = {}
    for name, cfg in {"cmdcl": HeadConfig(sta_layers=1, heads=2, dictionary_size=4, epochs=1, batch_size=8),
                      "linear": HeadConfig(method="linear", epochs=1, batch_size=8)}.items():
        train(features, tmp_path / name, cfg, device="cpu", progress=False, log=lambda message: None)
        metrics[name] = evaluate_splits(tmp_path / name / "best.pt", features, ["test"], device="cpu")["test"]
    assert metrics["cmdcl"]["grounding_instances"] > 0
    assert 0 < metrics["cmdcl"]["grounding_uniform"] < 1 and 0 <= metrics["cmdcl"]["grounding_mass"] <= 1
    assert "grounding_mass" not in metrics["linear"]
