"""`cmdcl pretrain-clip`: deterministic CLIP training on captioned frames, weights that load like real ones."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.extract.datasets.registry import load_dataset
from cmdcl.extract.datasets.synthetic import SyntheticConfig, generate_synthetic
from cmdcl.extract.models import file_sha256, load_encoder
from cmdcl.extract.pretrain_clip import (CaptionedFrames, PretrainConfig, encode_text_trimmed, load_frames,
                                         provenance_path, reusable_weights, step_at, train_and_save)
from cmdcl.pipelines.cli import main

WORLD = dict(num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4, train_per_class=1,
             test_per_class=1, ood_per_class=0, pretrain_per_class=4, width=48, height=32, fps=4,
             min_seconds=3.0, max_seconds=4.0)
FAST = dict(epochs=6, batch_size=32, frames_per_video=8, warmup_steps=2, lr=3e-3)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("pre") / "world", SyntheticConfig(**WORLD), progress=False)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "a" / "weights.pt"
    model, record = train_and_save(PretrainConfig("manifest", str(world), str(out), **FAST), log=lambda m: None)
    return out, model, record


def test_deterministic_for_a_seed_and_the_loss_decreases(world, trained, tmp_path):
    out, _, record = trained
    again = tmp_path / "b" / "weights.pt"
    _, record_b = train_and_save(PretrainConfig("manifest", str(world), str(again), **FAST), log=lambda m: None)
    a, b = torch.load(out, weights_only=True), torch.load(again, weights_only=True)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert record_b["weights_sha256"] == record["weights_sha256"] == file_sha256(out)
    assert record["losses"] == record_b["losses"] and len(record["losses"]) == FAST["epochs"]
    assert record["final_loss"] < record["losses"][0] - 0.1
    other = tmp_path / "c" / "weights.pt"
    _, record_c = train_and_save(PretrainConfig("manifest", str(world), str(other), **{**FAST, "seed": 1, "epochs": 1}),
                                 log=lambda m: None)
    assert record_c["weights_sha256"] != record["weights_sha256"]


def test_outputs_config_and_provenance(world, trained):
    out, _, record = trained
    stored = json.loads(provenance_path(out).read_text())
    assert stored == record
    assert stored["split"] == "pretrain" and stored["epochs"] == FAST["epochs"] and stored["seed"] == 0
    assert stored["data_root"] == str(world) and stored["frames"] == 3 * 4 * FAST["frames_per_video"]
    assert stored["code_version"] and stored["weights_file"] == str(out)
    config = json.loads((out.parent / "open_clip_config.json").read_text())
    assert config["model_cfg"] == open_clip.get_model_config("cmdcl-tiny")
    # open_clip itself loads the file (strict), and the weights are the trained ones, not a fresh init
    model = open_clip.create_model("cmdcl-tiny", pretrained=str(out))
    fresh = open_clip.create_model("cmdcl-tiny")
    trained_state = torch.load(out, weights_only=True)
    assert all(torch.equal(v, trained_state[k]) for k, v in model.state_dict().items())
    assert not torch.equal(fresh.visual.conv1.weight, model.visual.conv1.weight)


def test_weights_load_through_the_pretrained_file_path_with_the_same_embeddings(trained):
    out, model, _ = trained
    encoder = load_encoder("cmdcl-tiny", str(out), device="cpu")
    assert encoder.weights_file == str(out.absolute()) and encoder.weights_sha256 == file_sha256(out)
    pixels = torch.randn(5, 3, encoder.image_size, encoder.image_size)
    texts = ["a person crack egg.", "make soup.", "in a blue kitchen"]
    with torch.no_grad():
        image = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        text = torch.nn.functional.normalize(model.encode_text(open_clip.get_tokenizer("cmdcl-tiny")(texts)), dim=-1)
    torch.testing.assert_close(encoder.encode_frames(pixels), image, rtol=0, atol=1e-6)
    torch.testing.assert_close(encoder.encode_texts(texts), text, rtol=0, atol=1e-6)


def test_extract_names_the_weights_in_the_feature_provenance(world, trained, tmp_path):
    from cmdcl.core.store import FeatureSet

    out, _, _ = trained
    main(["extract", "--dataset", "manifest", "--root", str(world), "--out", str(tmp_path / "f"), "--model",
          "cmdcl-tiny",
          "--patch-grid", "0", "--pretrained", str(out), "--frames", "4", "--workers", "0", "--splits", "train,test"])
    provenance = FeatureSet(sorted((tmp_path / "f").glob("*.h5"))[0]).provenance()
    assert provenance["weights_file"] == str(out.absolute())
    assert provenance["weights_sha256"] == file_sha256(out)


def test_reuse_only_for_the_same_request(world, trained):
    out, _, record = trained
    assert reusable_weights(PretrainConfig("manifest", str(world), str(out), **FAST)) == record
    assert reusable_weights(PretrainConfig("manifest", str(world), str(out), **{**FAST, "epochs": 7})) is None
    assert reusable_weights(PretrainConfig("manifest", str(world), str(out), **{**FAST, "seed": 3})) is None


def _second_world(tmp_path: Path) -> Path:
    """Videos of another seed and size, re-annotated in a JSONL manifest with other names and no context."""
    source = generate_synthetic(tmp_path / "src", SyntheticConfig(**{**WORLD, "seed": 11, "num_activities": 4,
                                                                     "num_steps": 7, "pretrain_per_class": 0,
                                                                     "unconfounded_per_class": 0,
                                                                     "train_per_class": 2}), progress=False)
    classes = [f"assemble shelf {i}" for i in range(4)]
    steps = [f"turn screw {i}" for i in range(7)]
    old_classes = (source / "classes.txt").read_text().split("\n")
    old_steps = (source / "steps.txt").read_text().split("\n")
    rows = []
    with open(source / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            segments = [e.rpartition("@") for e in row["steps"].split(";")]
            rows.append({"video_id": "v" + row["video_id"], "path": str(source / row["path"]), "split": "web",
                         "label": classes[old_classes.index(row["label"])],
                         "steps": [{"step": steps[old_steps.index(name)], "start": float(t.split("-")[0]),
                                    "end": float(t.split("-")[1])} for name, _, t in segments]})
    folder = tmp_path / "second"
    folder.mkdir()
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    (folder / "steps.txt").write_text("\n".join(steps) + "\n")
    return folder


def test_a_second_manifest_world_with_its_own_vocabulary(tmp_path):
    folder = _second_world(tmp_path)
    out = tmp_path / "w" / "weights.pt"
    main(["pretrain-clip", "--dataset", "manifest", "--root", str(folder), "--split", "web", "--out", str(out),
          "--epochs", "4", "--batch-size", "32", "--frames-per-video", "6", "--seed", "2"])
    record = json.loads(provenance_path(out).read_text())
    assert record["split"] == "web" and record["videos"] == 4 * 3 and record["seed"] == 2
    assert record["final_loss"] < record["losses"][0]
    load_encoder("cmdcl-tiny", str(out), device="cpu")  # loads strictly into the architecture
    # every frame got the step under way from its segment, named in the new vocabulary
    index = load_dataset("manifest", folder, "web")
    frames = load_frames(index, 32, open_clip.get_model_preprocess_cfg(open_clip.create_model("cmdcl-tiny")), 6,
                         log=lambda m: None)
    assert (frames.step >= 0).all() and set(frames.activity) == {0, 1, 2, 3}
    caption = frames.caption(0, np.random.default_rng(0), context_rate=1.0)
    assert ("turn screw" in caption or "assemble shelf" in caption) and "kitchen" not in caption


def test_captions_mix_action_activity_and_context():
    frames = CaptionedFrames(torch.zeros(2, 3, 4, 4), np.array([1, -1]), np.array([0, 0]),
                             ["in a blue kitchen", ""], ["crack egg", "stir pot"], ["make soup"], videos=1)
    rng = np.random.default_rng(0)
    captions = [frames.caption(0, rng, context_rate=0.3) for _ in range(400)]
    assert any("stir pot" in c and "make soup" in c for c in captions)
    assert any("stir pot" in c and "make soup" not in c for c in captions)
    assert any("make soup" in c and "stir pot" not in c for c in captions)
    share = np.mean(["blue kitchen" in c for c in captions])
    assert 0.2 < share < 0.4
    assert all("stir pot" not in frames.caption(1, rng, 1.0) for _ in range(20))  # no step at that time


def test_step_at_picks_the_segment_holding_the_time():
    segments = [(3, 0.0, 2.0), (5, 2.0, 4.0)]
    assert step_at(segments, 0.0) == 3 and step_at(segments, 2.0) == 5 and step_at(segments, 4.0) == -1


def test_trimmed_text_encoding_equals_open_clips():
    model = open_clip.create_model("cmdcl-tiny")
    tokens = open_clip.get_tokenizer("cmdcl-tiny")(["a person crack egg to make soup, in a red kitchen.", "x."])
    with torch.no_grad():
        torch.testing.assert_close(encode_text_trimmed(model, tokens), model.encode_text(tokens, normalize=True),
                                   rtol=0, atol=1e-5)


def test_bad_requests_are_one_line_errors(world, tmp_path):
    with pytest.raises(CmdclError, match="--epochs 0"):
        PretrainConfig("manifest", str(world), str(tmp_path / "w.pt"), epochs=0).check()
    with pytest.raises(SystemExit):
        main(["pretrain-clip", "--dataset", "charades", "--root", str(world), "--out", str(tmp_path / "w.pt")])
    with pytest.raises(SystemExit):
        main(["pretrain-clip", "--dataset", "manifest", "--root", str(world), "--split", "nope",
              "--out", str(tmp_path / "w.pt")])
