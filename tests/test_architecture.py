"""The architecture and preprocessing cmdcl builds for open_clip's weights.

Every (model, tag) pair open_clip lists is resolved without building or downloading anything; the
build path itself is checked with ViT-B-16's configs shrunk to cmdcl-tiny's and the tag download
replaced by a file of random weights, so that `ViT-B-16 --pretrained openai` runs end to end in seconds.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict

import huggingface_hub.constants
import open_clip
import pytest
import torch
from open_clip.transform import PreprocessCfg, merge_preprocess_dict

from cmdcl.extract.architecture import (PREPROCESS_KEYS, activation_mismatch, quickgelu_twin, recorded_activation,
                                        resolve_architecture)
from cmdcl.extract.models import load_encoder, uses_quick_gelu
from store_fixtures import base_attrs, write_shard

TINY = open_clip.get_model_config("cmdcl-tiny")


def _trained_quick_gelu(model: str, tag: str) -> bool:
    """What open_clip records: the tag's flag, else the model config's (roberta-ViT-B-32's tag has none)."""
    cfg = open_clip.get_model_config(model)
    return bool(open_clip.get_pretrained_cfg(model, tag).get("quick_gelu", cfg.get("quick_gelu", False)))


def _open_clip_preprocess(model: str, tag: str) -> dict:
    """open_clip's own resolution in create_model(model, pretrained=tag): defaults, the tag, the tower's size."""
    cfg = merge_preprocess_dict(asdict(PreprocessCfg()), open_clip.get_pretrained_cfg(model, tag))
    return {**cfg, "size": open_clip.get_model_config(model)["vision_cfg"]["image_size"]}


def test_every_open_clip_tag_resolves_to_the_activation_and_preprocessing_it_was_trained_with():
    pairs = open_clip.list_pretrained()
    switched = []
    for model, tag in pairs:
        arch = resolve_architecture(model, tag)
        expected = _trained_quick_gelu(model, tag)
        built = {**open_clip.get_model_config(model), **arch.model_kwargs()}  # what create_model receives
        assert arch.quick_gelu == expected and bool(built.get("quick_gelu", False)) == expected, (model, tag)
        # cmdcl's final preprocessing: open_clip's defaults, the tower's size, then our forced keys.
        ours = merge_preprocess_dict({**asdict(PreprocessCfg()), "size": arch.image_size}, arch.preprocess)
        assert ours == _open_clip_preprocess(model, tag), (model, tag)
        assert set(arch.preprocess) == set(PREPROCESS_KEYS), (model, tag)
        if expected != bool(open_clip.get_model_config(model).get("quick_gelu", False)):
            switched.append((model, tag))
            assert arch.recorded_name == model + "-quickgelu" and arch.note, (model, tag)
            twin = resolve_architecture(arch.recorded_name, tag)  # the suffixed name: the same model, the same record
            assert (twin.quick_gelu, twin.recorded_name, twin.preprocess, twin.image_size, twin.note) == \
                (True, arch.recorded_name, arch.preprocess, arch.image_size, "")
        else:
            assert arch.recorded_name == model and not arch.note, (model, tag)
    print(f"{len(pairs)} (model, tag) pairs checked; {len(switched)} need QuickGELU under a name without "
          f"-quickgelu: {', '.join(f'{m}:{t}' for m, t in switched)}")
    assert ("ViT-B-16", "openai") in switched and ("ViT-L-14", "openai") in switched
    assert ("ViT-B-16", "laion2b_s34b_b88k") not in switched
    if open_clip.__version__ == "3.3.0":  # the pinned version (constraints.txt): its counts
        assert (len(pairs), len(switched)) == (196, 27)


def test_quickgelu_twin_only_names_a_registered_config_that_differs_in_the_activation_alone():
    assert quickgelu_twin("ViT-B-16", True) == "ViT-B-16-quickgelu"
    assert quickgelu_twin("ViT-B-16-quickgelu", False) == "ViT-B-16"
    assert quickgelu_twin("ViT-B-16", False) == "ViT-B-16"
    assert quickgelu_twin("cmdcl-tiny", True) == "cmdcl-tiny"  # no twin registered: provenance's quick_gelu says it


# ------------------------------------------------------------------------- the build path, tiny configs

@pytest.fixture
def tiny_vit_b_16(monkeypatch, tmp_path):
    """ViT-B-16 (and its -quickgelu twin) shrunk to cmdcl-tiny, its tags' downloads answered by one file of
    random weights, offline: everything else (tags, resolution, build, loading) is the real path."""
    for name, extra in (("ViT-B-16", {}), ("ViT-B-16-quickgelu", {"quick_gelu": True})):
        monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, name, {**json.loads(json.dumps(TINY)), **extra})
    weights = tmp_path / "random_tiny.pt"
    torch.save(open_clip.create_model("cmdcl-tiny", device="cpu").state_dict(), weights)
    asked = []

    def download(tag_cfg, cache_dir=None, **kwargs):
        asked.append(tag_cfg)
        return str(weights)

    monkeypatch.setattr(open_clip, "download_pretrained", download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network probe
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return asked


def _activations(model: torch.nn.Module) -> set[str]:
    return {type(block.mlp.gelu).__name__
            for tower in (model.visual.transformer, model.transformer) for block in tower.resblocks}


def test_plain_vit_b_16_with_openai_builds_quickgelu_says_so_once_and_records_it(tiny_vit_b_16, caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a log line, not a UserWarning with a file:line prefix
        with caplog.at_level(logging.WARNING):
            plain = load_encoder("ViT-B-16", "openai", device="cpu")
    assert tiny_vit_b_16[-1]["quick_gelu"] is True  # the real openai tag was fetched
    assert _activations(plain.model) == {"QuickGELU"} and uses_quick_gelu(plain.model)
    notes = [r.getMessage() for r in caplog.records if "QuickGELU" in r.getMessage()]
    assert len(notes) == 1 and "building ViT-B-16-quickgelu" in notes[0] and "\n" not in notes[0]
    prov = plain.provenance()
    assert (prov["model_name"], prov["pretrained"], prov["quick_gelu"]) == ("ViT-B-16-quickgelu", "openai", True)
    assert prov["preprocess"]["mean"] == list(open_clip.OPENAI_DATASET_MEAN)

    suffixed = load_encoder("ViT-B-16-quickgelu", "openai", device="cpu")
    assert suffixed.provenance() == prov
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(suffixed.encode_frames(pixels), plain.encode_frames(pixels))


def test_gelu_tags_build_gelu_and_a_forced_activation_reproduces_old_features(tiny_vit_b_16, caplog):
    with caplog.at_level(logging.WARNING):
        laion = load_encoder("ViT-B-16", "laion2b_s34b_b88k", device="cpu")
        old = load_encoder("ViT-B-16", "openai", device="cpu", quick_gelu=False)  # as a file written before the activation followed the tag
    assert not caplog.records
    assert _activations(laion.model) == _activations(old.model) == {"GELU"}
    assert (laion.provenance()["model_name"], laion.provenance()["quick_gelu"]) == ("ViT-B-16", False)
    assert (old.provenance()["model_name"], old.provenance()["quick_gelu"]) == ("ViT-B-16", False)


def test_bare_file_takes_the_activation_of_its_config_or_tag_and_says_when_unknown(tiny_vit_b_16, tmp_path, caplog):
    weights = tmp_path / "random_tiny.pt"
    with caplog.at_level(logging.WARNING):
        bare = load_encoder("ViT-B-16", str(weights), device="cpu")
    assert _activations(bare.model) == {"GELU"} and bare.model_name == "ViT-B-16"
    assert any("openai" in r.getMessage() and "ViT-B-16-quickgelu" in r.getMessage() for r in caplog.records)

    tagged = load_encoder("ViT-B-16", str(weights), device="cpu", preprocess_tag="openai")
    assert _activations(tagged.model) == {"QuickGELU"} and tagged.model_name == "ViT-B-16-quickgelu"

    export = tmp_path / "export"
    export.mkdir()
    (export / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": {**TINY, "quick_gelu": True}, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    torch.save(torch.load(weights), export / "weights.pt")
    beside = load_encoder("ViT-B-16", str(export / "weights.pt"), device="cpu")
    folder = load_encoder("ViT-B-16", str(export), device="cpu")
    assert _activations(beside.model) == _activations(folder.model) == {"QuickGELU"}
    assert beside.provenance()["quick_gelu"] and folder.provenance()["quick_gelu"]


# ---------------------------------------------------- files made before the activation was recorded

def test_files_from_before_the_activation_was_recorded_are_recognised():
    old = {"model_name": "ViT-B-16", "pretrained": "openai"}
    note = activation_mismatch(old)
    assert "GELU" in note and "QuickGELU" in note and "ViT-B-16-quickgelu" in note
    assert recorded_activation(old) is False
    assert activation_mismatch({**old, "pretrained": "laion2b_s34b_b88k"}) is None
    assert activation_mismatch({"model_name": "ViT-B-16-quickgelu", "pretrained": "openai"}) is None
    assert activation_mismatch({**old, "quick_gelu": True}) is None
    assert recorded_activation({**old, "quick_gelu": True}) is True
    for other in ("random:seed=0", "/weights/vit.pt", ""):
        assert activation_mismatch({**old, "pretrained": other}) is None


def test_inspect_and_verify_warn_about_a_mismatched_activation_and_still_read(tmp_path, capsys):
    from cmdcl.pipelines.cli import main as cli_main

    old = write_shard(tmp_path / "old.h5", [("v1", "train", 0), ("v2", "test", 1)],
                      attrs=base_attrs(model_name="ViT-B-16", pretrained="openai"))
    cli_main(["inspect", str(old)])
    out, err = capsys.readouterr()
    assert "model ViT-B-16 (openai)" in out and err.count("QuickGELU") == 1 and "warning" in err
    cli_main(["verify", str(old)])  # a warning, not a problem: exit 0
    out, err = capsys.readouterr()
    assert "verify: OK" in out and str(old) in err and "QuickGELU" in err

    new = write_shard(tmp_path / "new.h5", [("v1", "train", 0)],
                      attrs=base_attrs(model_name="ViT-B-16-quickgelu", pretrained="openai", quick_gelu=True))
    cli_main(["inspect", str(new)])
    cli_main(["verify", str(new)])
    assert "warning" not in capsys.readouterr().err


def test_offline_error_names_the_resolved_model_and_cuts_the_hub_message_between_words(tiny_vit_b_16, monkeypatch):
    from cmdcl.core.errors import WeightsError

    hub = ("Failed to download file (open_clip_pytorch_model.bin) for timm/vit_base_patch16_clip_224.openai. "
           "Last error: An error happened while trying to locate the file on the Hub and we cannot find the "
           "requested files in the local cache. Please check your connection and try again.")

    def offline(tag_cfg, cache_dir=None, **kwargs):
        raise FileNotFoundError(hub)

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(WeightsError) as caught:
        load_encoder("ViT-B-16", "openai", device="cpu")
    message = str(caught.value)
    quoted = message[message.index("(FileNotFoundError: ") + 20:message.index("...)")]
    assert hub.startswith(quoted) and hub[len(quoted)] == " "  # cut before a space: never mid-word
    assert "weights for ViT-B-16-quickgelu pretrained=openai" in message
    assert "create_model_and_transforms('ViT-B-16-quickgelu', pretrained='openai'" in message
