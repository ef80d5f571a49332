"""encode_label_texts: template ensembling, explicit truncation reporting, shapes, storage."""
from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import torch

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import TextBank
from cmdcl.extract.models import load_encoder
from cmdcl.extract.text import DEFAULT_TEMPLATES, encode_label_texts

CLASSES = ["making coffee", "frying eggs", "making tea"]
STEPS = ["pour milk", "crack egg", "take cup", "stir"]
LONG_NAME = "carefully " + "and slowly " * 40 + "pour the milk"


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("cmdcl-tiny", "random", device="cpu", seed=0)  # explicit: "auto" would pick a GPU


def test_shapes_templates_and_unit_norm(tiny):
    bank = encode_label_texts(tiny, CLASSES, STEPS)
    assert bank.class_embeddings.shape == (3, 64) and bank.step_embeddings.shape == (4, 64)
    assert bank.class_embeddings.dtype == np.float32 and bank.step_embeddings.dtype == np.float32
    assert bank.class_names == CLASSES and bank.step_names == STEPS
    assert bank.templates == DEFAULT_TEMPLATES and bank.truncated == []
    for block in (bank.class_embeddings, bank.step_embeddings):
        assert np.allclose(np.linalg.norm(block, axis=1), 1, atol=1e-5)


def test_embedding_is_the_renormalised_template_mean(tiny):
    templates = ["a video of {}.", "{}"]
    bank = encode_label_texts(tiny, ["making coffee"], [], templates=templates)
    per_template = tiny.encode_texts([t.format("making coffee") for t in templates])
    expected = torch.nn.functional.normalize(per_template.mean(0), dim=0).numpy()
    assert np.allclose(bank.class_embeddings[0], expected, atol=1e-6)
    # A real average: it differs from each single-template embedding.
    assert not np.allclose(bank.class_embeddings[0], per_template[0].numpy(), atol=1e-3)


def test_batching_does_not_change_embeddings(tiny):
    whole = encode_label_texts(tiny, CLASSES, STEPS)
    small = encode_label_texts(tiny, CLASSES, STEPS, batch_size=2)
    assert np.allclose(whole.class_embeddings, small.class_embeddings, atol=1e-6)
    assert np.allclose(whole.step_embeddings, small.step_embeddings, atol=1e-6)


def test_long_names_are_listed_and_warned_about_once(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="cmdcl.extract.text"):
        bank = encode_label_texts(tiny, CLASSES, [*STEPS, LONG_NAME])
    assert bank.truncated == [LONG_NAME]
    records = [r for r in caplog.records if r.name == "cmdcl.extract.text"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "\n" not in message and LONG_NAME in message and "77" in message
    assert bank.step_embeddings.shape == (5, 64)
    assert np.isclose(np.linalg.norm(bank.step_embeddings[-1]), 1, atol=1e-5)


def test_name_that_only_overflows_with_a_template_counts_as_truncated(tiny):
    # 74 tokens alone (76 with start/end) fit; "a video of a person ... ." does not.
    name = " ".join(["word"] * 74)
    assert tiny.count_tokens([name])[0] == 76
    bank = encode_label_texts(tiny, [name], [], templates=["{}", "a video of a person {}."])
    assert bank.truncated == [name]
    assert encode_label_texts(tiny, [name], [], templates=["{}"]).truncated == []


def test_empty_step_list_and_storage_roundtrip(tiny, tmp_path):
    bank = encode_label_texts(tiny, CLASSES, [])
    assert bank.step_embeddings.shape == (0, 64) and bank.step_names == []
    with h5py.File(tmp_path / "text.h5", "w") as f:
        bank.write(f.create_group("text"))
    with h5py.File(tmp_path / "text.h5", "r") as f:
        back = TextBank.read(f["text"])
    assert back.step_embeddings.shape == (0, 64)
    assert np.array_equal(back.class_embeddings, bank.class_embeddings)


def test_shared_names_get_identical_rows_and_bad_templates_are_refused(tiny):
    bank = encode_label_texts(tiny, ["stir"], ["take cup", "stir"])
    assert np.array_equal(bank.class_embeddings[0], bank.step_embeddings[1])
    with pytest.raises(CmdclError, match="template"):
        encode_label_texts(tiny, CLASSES, STEPS, templates=["no placeholder"])
