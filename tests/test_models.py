"""load_encoder sources (random, file, folder, pre-filled caches offline), errors, freezing, patch grid,
half precision, and failing fast without network.

Every encoder here is built on the CPU explicitly (`cpu_encoder`), so the suite means the same on a
CUDA machine, where device "auto" would pick the GPU. The CUDA behaviour has its own tests at the end,
skipped with a reason where no GPU is present.
"""
from __future__ import annotations

import json
import socket

import huggingface_hub.constants
import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from cmdcl.core.errors import CmdclError, WeightsError
from cmdcl.extract.architecture import default_pretrained, resolve_architecture
from cmdcl.extract.models import FrozenEncoder, file_sha256, load_encoder
from cmdcl.extract.preprocess import FramePreprocessor
from video_fixtures import write_test_video

MODEL = "cmdcl-tiny"
TAG_PREPROCESS = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "interpolation": "bilinear",
                  "resize_mode": "shortest"}


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is visible here")


def cpu_encoder(model_name: str = MODEL, **kwargs) -> FrozenEncoder:
    return load_encoder(model_name, **{"device": "cpu", **kwargs})


@pytest.fixture(scope="module")
def tiny() -> FrozenEncoder:
    return cpu_encoder(pretrained="random", seed=0)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every connection refused, and counted: the list holds one (host, port) per attempt.

    Name lookups answer a documentation address (192.0.2.1), so an attempt reaches `connect`.
    HF_HUB_OFFLINE is unset: this is a node whose user forgot it.
    """
    attempts = []

    def lookup(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    def refuse(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError("network disabled in tests")

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def offline(monkeypatch, no_network) -> list:
    """No network, and Hugging Face told so: HF_HUB_OFFLINE=1 as the README asks on such nodes."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return no_network


def register_tags(monkeypatch, tags: dict[str, dict]) -> None:
    """Register pretrained tags for cmdcl-tiny in open_clip's registry, for this test only."""
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, MODEL,
                        {name: {"url": "", "hf_hub": "", **TAG_PREPROCESS, **cfg} for name, cfg in tags.items()})


def fill_hf_cache(cache, repo: str, state_dict) -> str:
    """Lay out `cache` the way huggingface_hub does after downloading `repo`'s open_clip weights."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    torch.save(state_dict, snapshot / "open_clip_pytorch_model.bin")
    return str(snapshot / "open_clip_pytorch_model.bin")


# ----------------------------------------------------------------------------------- random weights

def test_random_weights_are_deterministic_per_seed(tiny, pixels):
    again = cpu_encoder(MODEL, pretrained="random", seed=0)
    other = cpu_encoder(MODEL, pretrained="none", seed=1)  # none: the same as random
    assert again.weights_sha256 == tiny.weights_sha256
    assert torch.equal(again.encode_frames(pixels), tiny.encode_frames(pixels))
    assert other.weights_sha256 != tiny.weights_sha256
    assert not torch.allclose(other.encode_frames(pixels), tiny.encode_frames(pixels))
    assert cpu_encoder(MODEL, pretrained="random", seed=1).weights_sha256 == other.weights_sha256


def test_provenance_labels_random_weights_and_preprocessing(tiny):
    prov = tiny.provenance()
    assert prov["pretrained"] == "random:seed=0" and prov["weights_file"] == ""
    assert len(prov["weights_sha256"]) == 64
    assert prov["model_name"] == MODEL and prov["embed_dim"] == 64 and prov["image_size"] == 32
    assert prov["open_clip_version"] == open_clip.__version__ and prov["torch_version"] == torch.__version__
    assert prov["precision"] == "fp32"  # auto on CPU
    assert prov["preprocess"] == {"resize_mode": "shortest", "interpolation": "bicubic",
                                  "mean": list(open_clip.OPENAI_DATASET_MEAN),
                                  "std": list(open_clip.OPENAI_DATASET_STD), "crop": "center"}
    json.dumps(prov)  # storable as an HDF5 JSON attribute
    assert cpu_encoder("cmdcl/tiny", pretrained="random").model_name == MODEL  # recorded in open_clip's spelling


def test_encoder_is_frozen(tiny):
    assert not tiny.model.training
    assert all(not p.requires_grad for p in tiny.model.parameters())
    out = tiny.encode_frames(torch.zeros(1, 3, 32, 32))
    assert not out.requires_grad and out.dtype == torch.float32


# --------------------------------------------------------------------------------- default weights

def test_no_pretrained_means_the_models_published_weights():
    """ViT-B-16 without --pretrained: open_clip's openai weights, built with QuickGELU as they were trained."""
    arch = resolve_architecture("ViT-B-16", None)
    assert (arch.kind, arch.source, arch.recorded_name) == ("tag", "openai", "ViT-B-16-quickgelu") and arch.quick_gelu
    assert resolve_architecture("ViT-B-16", "").source == "openai"
    assert "openai" not in open_clip.list_pretrained_tags_by_model("ViT-H-14")  # no openai tag: open_clip's first
    assert default_pretrained("ViT-H-14") == open_clip.list_pretrained_tags_by_model("ViT-H-14")[0]
    assert {resolve_architecture("ViT-B-16", name).kind for name in ("random", "none", "RANDOM")} == {"random"}


def test_default_weights_not_had_offline_fail_in_one_line_with_the_fix(tmp_path, offline):
    with pytest.raises(WeightsError) as caught:
        load_encoder("ViT-B-16", device="cpu", cache_dir=str(tmp_path / "empty"))
    message = str(caught.value)
    assert "\n" not in message and "ViT-B-16-quickgelu pretrained=openai" in message
    assert "--cache-dir" in message and "--pretrained" in message
    assert offline == []  # HF_HUB_OFFLINE set: not even a probe


def test_a_model_without_published_weights_must_be_told_which():
    with pytest.raises(CmdclError, match="cmdcl-tiny has no published weights") as caught:
        cpu_encoder(MODEL)
    assert "\n" not in str(caught.value) and "--pretrained random" in str(caught.value)


def test_the_default_tag_is_loaded_and_recorded_by_its_name(tiny, pixels, tmp_path, monkeypatch, offline):
    fill_hf_cache(tmp_path / "hub", "cmdcl-test/tiny", tiny.model.state_dict())
    register_tags(monkeypatch, {"first": {"hf_hub": "cmdcl-test/tiny/"}, "second": {"hf_hub": "cmdcl-test/none/"}})
    encoder = cpu_encoder(MODEL, cache_dir=str(tmp_path / "hub"))
    assert encoder.pretrained == "first" and not encoder.random_weights and not encoder.provenance()["random_weights"]
    assert torch.equal(encoder.encode_frames(pixels), tiny.encode_frames(pixels))
    assert tiny.random_weights and tiny.provenance()["random_weights"] and "RANDOM weights" in tiny.describe()


# ------------------------------------------------------------------------------------ weight files

@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_file_reproduces_the_model(tiny, pixels, tmp_path, suffix):
    path = tmp_path / f"tiny{suffix}"
    state = {k: v.contiguous() for k, v in tiny.model.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    loaded = cpu_encoder(MODEL, pretrained=str(path), seed=123)  # seed is irrelevant for files
    assert torch.equal(loaded.encode_frames(pixels), tiny.encode_frames(pixels))
    assert torch.equal(loaded.encode_texts(["a person cooking"]), tiny.encode_texts(["a person cooking"]))
    assert loaded.weights_sha256 == file_sha256(path)
    assert loaded.provenance()["weights_file"] == str(path) and loaded.pretrained == str(path)


def test_open_clip_folder_brings_its_own_preprocessing(tiny, pixels, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    config = {"model_cfg": open_clip.get_model_config(MODEL),
              "preprocess_cfg": {**TAG_PREPROCESS, "mean": [0.4, 0.4, 0.4]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(tiny.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    for encoder in (cpu_encoder(MODEL, pretrained=str(folder)), cpu_encoder(f"local-dir:{folder}")):
        assert torch.equal(encoder.encode_frames(pixels), tiny.encode_frames(pixels))
        assert encoder.mean == (0.4, 0.4, 0.4) and encoder.interpolation == "bilinear"
        assert encoder.weights_sha256 == file_sha256(folder / "open_clip_pytorch_model.bin")


def test_bare_file_gets_the_preprocessing_of_the_model_tags(tiny, tmp_path, monkeypatch):
    """open_clip #1068: a bare file must not silently get the default (OpenAI) preprocessing."""
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    register_tags(monkeypatch, {"one": {}, "two": {}})  # both tags agree on TAG_PREPROCESS
    encoder = cpu_encoder(MODEL, pretrained=str(path))
    assert encoder.mean == TAG_PREPROCESS["mean"] and encoder.std == TAG_PREPROCESS["std"]

    register_tags(monkeypatch, {"one": {}, "two": {"mean": (0.1, 0.2, 0.3)}})  # tags disagree
    with pytest.raises(CmdclError, match="preprocess_tag"):
        cpu_encoder(MODEL, pretrained=str(path))
    chosen = cpu_encoder(MODEL, pretrained=str(path), preprocess_tag="two")
    assert chosen.mean == (0.1, 0.2, 0.3)


def test_weights_of_another_architecture_are_refused(tiny, tmp_path):
    state = dict(tiny.model.state_dict())
    state.pop("visual.proj")
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="cannot be loaded into cmdcl-tiny"):
        cpu_encoder(MODEL, pretrained=str(path))


# ---------------------------------------------------------------------------- offline, cached tags

def test_prefilled_hf_cache_loads_offline(tiny, pixels, tmp_path, monkeypatch, offline):
    weights = fill_hf_cache(tmp_path / "hub", "cmdcl-test/tiny", tiny.model.state_dict())
    register_tags(monkeypatch, {"cached": {"hf_hub": "cmdcl-test/tiny/"}})
    encoder = cpu_encoder(MODEL, pretrained="cached", cache_dir=str(tmp_path / "hub"))
    assert torch.equal(encoder.encode_frames(pixels), tiny.encode_frames(pixels))
    assert encoder.weights_sha256 == file_sha256(weights)
    assert encoder.provenance()["weights_file"] == weights and encoder.pretrained == "cached"
    # The tag's preprocessing, not open_clip's default.
    assert encoder.mean == TAG_PREPROCESS["mean"] and encoder.interpolation == "bilinear"


def test_prefilled_url_cache_loads_offline(tiny, pixels, tmp_path, monkeypatch, offline):
    torch.save(tiny.model.state_dict(), tmp_path / "cmdcl_tiny_weights.pt")
    register_tags(monkeypatch, {"from_url": {"url": "https://weights.invalid/cmdcl_tiny_weights.pt"}})
    encoder = cpu_encoder(MODEL, pretrained="from_url", cache_dir=str(tmp_path))
    assert torch.equal(encoder.encode_frames(pixels), tiny.encode_frames(pixels))
    assert encoder.weights_sha256 == file_sha256(tmp_path / "cmdcl_tiny_weights.pt")


def test_missing_weights_offline_fail_in_one_line(tmp_path, monkeypatch, offline):
    register_tags(monkeypatch, {"absent": {"hf_hub": "cmdcl-test/absent/"}})
    with pytest.raises(WeightsError) as caught:
        cpu_encoder(MODEL, pretrained="absent", cache_dir=str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert "cmdcl-tiny" in message and "absent" in message
    assert "--cache-dir" in message and "--pretrained" in message
    assert offline == []  # HF_HUB_OFFLINE set: not even a probe


def test_missing_weights_without_network_fail_after_one_probe(tmp_path, monkeypatch, no_network):
    """Without HF_HUB_OFFLINE, one refused probe switches to offline mode: no download attempt, no retries."""
    register_tags(monkeypatch, {"absent": {"hf_hub": "cmdcl-test/absent/"}})
    with pytest.raises(WeightsError) as caught:
        load_encoder(MODEL, device="cpu", pretrained="absent", cache_dir=str(tmp_path))
    assert "\n" not in str(caught.value) and "absent" in str(caught.value)
    assert no_network == [("192.0.2.1", 443)]  # the probe of huggingface.co, and nothing after it

    register_tags(monkeypatch, {"gone": {"url": "https://weights.invalid/gone.pt"}})
    with pytest.raises(WeightsError, match="no network"):
        load_encoder(MODEL, device="cpu", pretrained="gone", cache_dir=str(tmp_path))
    assert no_network[1:] == [("192.0.2.1", 443)]


def test_cached_weights_load_without_network_or_hf_hub_offline(tiny, pixels, tmp_path, monkeypatch, no_network):
    fill_hf_cache(tmp_path / "hub", "cmdcl-test/tiny", tiny.model.state_dict())
    torch.save(tiny.model.state_dict(), tmp_path / "cmdcl_tiny_weights.pt")
    register_tags(monkeypatch, {"cached": {"hf_hub": "cmdcl-test/tiny/"},
                                "from_url": {"url": "https://weights.invalid/cmdcl_tiny_weights.pt"}})
    for tag, cache in (("cached", tmp_path / "hub"), ("from_url", tmp_path)):
        encoder = load_encoder(MODEL, device="cpu", pretrained=tag, cache_dir=str(cache))
        assert torch.equal(encoder.encode_frames(pixels), tiny.encode_frames(pixels))
    assert len(no_network) == 2  # one probe per load, nothing else


# ------------------------------------------------------------------------------------ bad requests

def test_unknown_model_lists_close_names():
    with pytest.raises(CmdclError, match="cmdcl-tiny") as caught:
        cpu_encoder("cmdcl-tinny")
    assert "\n" not in str(caught.value)


def test_unknown_tag_and_missing_file():
    with pytest.raises(CmdclError, match="unknown pretrained tag"):
        cpu_encoder(MODEL, pretrained="no_such_tag")
    with pytest.raises(WeightsError, match="not found"):
        cpu_encoder(MODEL, pretrained="/no/such/weights.bin")


def test_precision_and_device_choices():
    for precision in ("fp16", "amp-fp16"):
        with pytest.raises(CmdclError, match="needs a CUDA device"):
            cpu_encoder(pretrained="random", precision=precision)
    with pytest.raises(CmdclError, match="fp8"):
        cpu_encoder(pretrained="random", precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(CmdclError, match="CUDA"):
            load_encoder(MODEL, "random", device="cuda")


@pytest.mark.parametrize("precision,weights", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                               ("amp-bf16", torch.float32)])
def test_precision_decides_the_weights_dtype_and_is_recorded(precision, weights, pixels):
    encoder = cpu_encoder(pretrained="random", precision=precision)
    assert {p.dtype for p in encoder.model.parameters()} == {weights}
    prov = encoder.provenance()
    assert prov["precision"] == precision and prov["device_type"] == "cpu"
    assert prov["weights_dtype"] == str(weights).replace("torch.", "")
    assert prov["weights_sha256"] == cpu_encoder(pretrained="random").weights_sha256  # same weights, any dtype
    frames, patches = encoder.encode_frames(pixels, patch_grid=2)
    texts = encoder.encode_texts(["a person cooking"])
    assert frames.dtype == patches.dtype == texts.dtype == torch.float32
    assert frames.device.type == patches.device.type == texts.device.type == "cpu"


def real_frames(tmp_path, image_size: int) -> torch.Tensor:
    """Frames decoded from an encoded video (index pattern plus noise), preprocessed like extraction does."""
    from cmdcl.extract.decoders import open_video

    decoded = []
    for pattern in ("index", "noise"):
        path = write_test_video(tmp_path / f"{pattern}.mp4", num_frames=8, height=96, width=128, pattern=pattern)
        with open_video(path, "pyav") as video:
            decoded.append(torch.from_numpy(video.read(range(0, 8, 2))[0]))
    preprocess = FramePreprocessor(image_size, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    return preprocess(torch.cat(decoded))


def half_precision_cosines(model_name: str, device: str, precision: str, tmp_path) -> torch.Tensor:
    """Per-frame cosine between the embeddings of half-precision weights and of the fp32 model."""
    reference = load_encoder(model_name, "random", device=device, precision="fp32")
    half = load_encoder(model_name, "random", device=device, precision=precision)
    frames = real_frames(tmp_path, reference.image_size)
    return (half.encode_frames(frames) * reference.encode_frames(frames)).sum(-1)


def test_bf16_weights_on_cpu_match_fp32_on_real_frames(tmp_path):
    cosines = half_precision_cosines(MODEL, "cpu", "bf16", tmp_path)
    assert len(cosines) == 8 and cosines.min() >= 0.999


# --------------------------------------------------------------------------------------- encoding

def test_frame_and_text_embeddings_are_unit_norm(tiny, pixels):
    frames = tiny.encode_frames(pixels)
    texts = tiny.encode_texts(["a person cutting bread", "a person pouring milk"])
    assert frames.shape == (3, 64) and texts.shape == (2, 64)
    assert torch.allclose(frames.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(texts.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert tiny.tokenize(["a", "b"]).shape == (2, 77)
    with pytest.raises(CmdclError):
        tiny.encode_frames(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("grid", [1, 2, 4])
def test_patch_grid_shapes_norms_and_global_features(tiny, pixels, grid):
    feats, patches = tiny.encode_frames(pixels, patch_grid=grid)
    assert feats.shape == (3, 64) and patches.shape == (3, grid * grid, 64)
    assert torch.allclose(patches.norm(dim=-1), torch.ones(3, grid * grid), atol=1e-5)
    assert torch.allclose(feats, tiny.encode_frames(pixels), atol=1e-6)


def test_patch_cells_are_pooled_tokens_in_the_joint_space(tiny, pixels):
    """At the full 4x4 token grid each cell is ln_post(token) @ proj of that token, like the CLS token."""
    visual = tiny.model.visual
    with torch.inference_mode():
        x = visual.conv1(pixels.to(tiny.device)).flatten(2).transpose(1, 2)
        cls = visual.class_embedding.expand(len(x), 1, -1)
        tokens = visual.transformer(visual.ln_pre(torch.cat([cls, x], 1) + visual.positional_embedding))
        expected = F.normalize(visual.ln_post(tokens[:, 1:]) @ visual.proj, dim=-1).cpu()
    _, patches = tiny.encode_frames(pixels, patch_grid=4)
    assert torch.allclose(patches, expected, atol=1e-5)


def test_left_and_right_halves_give_different_cells(tiny):
    frame = torch.zeros(1, 3, 32, 32)
    frame[..., :16] = -1.5  # dark left half
    frame[..., 16:] = torch.linspace(-1, 2, 16)  # bright gradient on the right
    _, patches = tiny.encode_frames(frame, patch_grid=2)  # cells: 0 top-left, 1 top-right, ...
    left_right = (patches[0, 0] * patches[0, 1]).sum()
    top_bottom = (patches[0, 0] * patches[0, 2]).sum()
    assert left_right < 0.99
    assert left_right < top_bottom  # the halves differ left-right, not top-bottom


def test_patch_grid_larger_than_token_grid_is_refused(tiny, pixels):
    with pytest.raises(CmdclError, match="4x4"):
        tiny.encode_frames(pixels, patch_grid=5)


def _hooked_patches(encoder: FrozenEncoder, pixels: torch.Tensor, block: int, grid: int) -> torch.Tensor:
    """The patch cells of `block` computed from a forward hook's output, pooled and projected like encode_frames."""
    visual, seen = encoder.model.visual, []
    hook = visual.transformer.resblocks[block].register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        with torch.inference_mode():
            encoder.model.encode_image(pixels)
    finally:
        hook.remove()
    tokens = seen[0][:, 1:]  # batch first, without the class token
    side = int(round(tokens.shape[1] ** 0.5))
    cells = F.adaptive_avg_pool2d(tokens.reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2), grid)
    with torch.inference_mode():
        return F.normalize(visual.ln_post(cells.flatten(2).transpose(1, 2)) @ visual.proj, dim=-1)


@pytest.mark.parametrize("layer, block", [(-1, 1), (0, 0), (-2, 0)])
def test_patch_layer_takes_that_blocks_tokens(tiny, pixels, layer, block):
    feats, patches = tiny.encode_frames(pixels, patch_grid=2, patch_layer=layer)
    assert torch.allclose(patches, _hooked_patches(tiny, pixels, block, 2), atol=1e-5)
    assert torch.allclose(feats, tiny.encode_frames(pixels), atol=1e-6)  # the pooled embedding stays the last block's
    _, last = tiny.encode_frames(pixels, patch_grid=2)
    assert torch.equal(patches, last) == (block == 1)


def test_patch_layer_on_a_real_vit_b_16_and_out_of_range():
    """The real ViT-B-16 architecture (random weights): -2 is its 11th of 12 blocks; 12 and -13 are refused."""
    encoder = cpu_encoder("ViT-B-16", pretrained="random", seed=0)
    frame = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    _, penultimate = encoder.encode_frames(frame, patch_grid=2, patch_layer=-2)
    assert torch.allclose(penultimate, _hooked_patches(encoder, frame, 10, 2), atol=1e-4)
    assert not torch.allclose(penultimate, encoder.encode_frames(frame, patch_grid=2)[1], atol=1e-3)
    encoder.check_patches(2, 11)
    for bad in (12, -13):
        with pytest.raises(CmdclError, match=f"--patch-layer {bad} is out of range: ViT-B-16's image tower has 12 "
                                             "blocks") as info:
            encoder.check_patches(2, bad)
        assert "\n" not in str(info.value)


def test_count_tokens_includes_start_and_end(tiny):
    counts = tiny.count_tokens(["cat", "word " * 100])
    assert counts[0] == 3 and counts[1] == 102
    assert tiny.context_length == 77


# ------------------------------------------------------------------------------------------- CUDA

@needs_cuda
def test_auto_on_cuda_is_fp16_weights_and_takes_cpu_tensors(tiny, pixels):
    encoder = load_encoder(MODEL, "random", seed=0)  # device auto: the GPU
    assert encoder.device.type == "cuda" and encoder.precision == "fp16"
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float16}
    assert encoder.provenance()["weights_dtype"] == "float16"
    assert encoder.weights_sha256 == tiny.weights_sha256
    frames, patches = encoder.encode_frames(pixels, patch_grid=2)  # CPU input, moved by the encoder
    texts = encoder.encode_texts(["a person cooking"])
    for out in (frames, patches, texts):
        assert out.device.type == "cpu" and out.dtype == torch.float32
    assert (frames * tiny.encode_frames(pixels)).sum(-1).min() >= 0.999


@needs_cuda
@pytest.mark.parametrize("model_name", [MODEL, "ViT-B-16"])
@pytest.mark.parametrize("precision", ["fp16", "bf16", "amp-fp16"])
def test_half_precision_on_cuda_matches_fp32_on_real_frames(model_name, precision, tmp_path):
    cosines = half_precision_cosines(model_name, "cuda", precision, tmp_path)
    assert len(cosines) == 8 and cosines.min() >= 0.999
