"""FramePreprocessor and decode_size against open_clip's own (PIL) inference transform."""
from __future__ import annotations

import av
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from cmdcl.core.errors import CmdclError
from cmdcl.extract.models import load_encoder
from cmdcl.extract.preprocess import FramePreprocessor, decode_size

# Frame sizes: landscape 4:3 and 16:9, portrait 9:16, square, odd and smaller than the model input.
SIZES = [(240, 320), (270, 480), (480, 270), (100, 100), (31, 45), (361, 203)]


def natural_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus a few flat discs with sharp edges, uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = 0.5 + 0.4 * np.stack([np.sin(6 * xx + rng.uniform(0, 6)), np.cos(5 * yy + 3 * xx), xx * yy - 0.5], -1)
    for _ in range(5):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.05, 0.3) * min(height, width)
        disc = (yy * max(height, width) - cy) ** 2 + (xx * max(height, width) - cx) ** 2 < radius ** 2
        image[disc] = rng.uniform(0, 1, 3)
    return (image.clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("cmdcl-tiny", "random", device="cpu", seed=0)  # explicit: "auto" would pick a GPU


def vit_b16_reference():
    """ViT-B-16's inference transform as open_clip builds it for its laion2b tag (no model built)."""
    tag = open_clip.get_pretrained_cfg("ViT-B-16", "laion2b_s34b_b88k")
    size = open_clip.get_model_config("ViT-B-16")["vision_cfg"]["image_size"]
    reference = open_clip.image_transform(size, is_train=False, mean=tag["mean"], std=tag["std"],
                                          interpolation=tag["interpolation"], resize_mode=tag["resize_mode"])
    ours = FramePreprocessor(size, tag["mean"], tag["std"], tag["interpolation"], tag["resize_mode"])
    return reference, ours


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


# ------------------------------------------------------------------------------------- decode_size

@pytest.mark.parametrize("height,width", [(1080, 1920), (1920, 1080), (720, 720), (1081, 607), (480, 640)])
def test_decode_size_keeps_aspect_and_matches_the_resize_step(height, width):
    size = 224
    h, w = decode_size(height, width, size)
    assert min(h, w) == size
    assert abs(h / w - height / width) < 1.0 / size  # aspect kept up to one pixel of rounding
    assert (h > w) == (height > width)
    # Exactly the size open_clip's Resize step gives the full frame, so only the crop remains.
    resized = open_clip.image_transform(size, is_train=False).transforms[0](Image.new("RGB", (width, height)))
    assert resized.size == (w, h)


def test_decode_size_never_upscales_and_handles_other_modes():
    assert decode_size(100, 150, 224) == (100, 150)  # FramePreprocessor upscales with the model's kernel
    assert decode_size(200, 400, 224, "shortest") == (200, 400)
    assert decode_size(480, 640, 224, "squash") == (224, 224)
    assert decode_size(480, 640, 224, "longest") == (168, 224)
    with pytest.raises(CmdclError):
        decode_size(0, 10, 224)
    with pytest.raises(CmdclError):
        decode_size(10, 10, 224, "stretch")


# ------------------------------------------------------------------------------- vs open_clip (PIL)

def test_tiny_model_preprocess_matches_open_clip(tiny):
    _, _, reference = open_clip.create_model_and_transforms("cmdcl-tiny")
    ours = FramePreprocessor.from_encoder(tiny)
    worst, cosines = 0.0, []
    for i, (h, w) in enumerate(SIZES):
        frame = natural_frame(h, w, seed=i)
        expected = reference(Image.fromarray(frame)).unsqueeze(0)
        got = ours(torch.from_numpy(frame).unsqueeze(0))
        assert got.shape == expected.shape == (1, 3, 32, 32)
        worst = max(worst, (got - expected).abs().max().item())
        assert (got - expected).abs().mean().item() < 1e-3
        cosines.append(cosine(tiny.encode_frames(got), tiny.encode_frames(expected)).item())
    print(f"\ncmdcl-tiny @32: max abs pixel diff {worst:.4f}, min embedding cosine {min(cosines):.6f}")
    assert worst < 0.1  # normalised units; 1/255/std ~ 0.015 is one grey level
    assert min(cosines) >= 0.99


def test_vit_b16_preprocess_matches_open_clip():
    reference, ours = vit_b16_reference()
    worst = 0.0
    for i, (h, w) in enumerate(SIZES):
        frame = natural_frame(h, w, seed=10 + i)
        expected = reference(Image.fromarray(frame))
        got = ours(torch.from_numpy(frame))[0]
        assert got.shape == expected.shape == (3, 224, 224)
        worst = max(worst, (got - expected).abs().max().item())
        assert (got - expected).abs().mean().item() < 1e-3
    print(f"\nViT-B-16 laion2b @224: max abs pixel diff {worst:.4f}")
    assert worst < 0.1


@pytest.mark.parametrize("resize_mode", ["squash", "longest"])
def test_other_resize_modes_match_open_clip(resize_mode):
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    reference = open_clip.image_transform(64, is_train=False, mean=mean, std=std, resize_mode=resize_mode)
    ours = FramePreprocessor(64, mean, std, resize_mode=resize_mode)
    for i, (h, w) in enumerate(SIZES):
        frame = natural_frame(h, w, seed=20 + i)
        diff = (ours(torch.from_numpy(frame))[0] - reference(Image.fromarray(frame))).abs()
        assert diff.mean().item() < 2e-3 and diff.max().item() < 0.2


def test_batch_equals_frame_by_frame_and_skips_resize_at_size():
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    ours = FramePreprocessor(32, mean, std)
    frames = np.stack([natural_frame(48, 64, seed=s) for s in range(3)])
    batch = ours(frames)  # numpy input works too
    single = torch.cat([ours(torch.from_numpy(f)[None]) for f in frames])
    assert torch.equal(batch, single)
    exact = natural_frame(32, 32)
    expected = (torch.from_numpy(exact).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    assert torch.allclose(ours(exact)[0], expected, atol=1e-5)
    with pytest.raises(CmdclError):
        ours(frames.astype(np.float32))


def test_decoder_side_resize_then_crop_matches_full_frame_preprocess(tiny):
    """decord and PyAV scale with libswscale (bilinear by default); the crop of that must match
    open_clip's PIL transform of the full frame far better than a plausible preprocessing mistake."""
    _, _, reference = open_clip.create_model_and_transforms("cmdcl-tiny")
    ours = FramePreprocessor.from_encoder(tiny)
    squash = FramePreprocessor(tiny.image_size, tiny.mean, tiny.std, resize_mode="squash")
    cosines, mistake_cosines = [], []
    for i, (h, w) in enumerate([(240, 427), (480, 270), (720, 1280), (361, 203)]):
        frame = natural_frame(h, w, seed=30 + i)
        dh, dw = decode_size(h, w, tiny.image_size)
        for interpolation in ("BILINEAR", "BICUBIC"):
            decoded = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
                width=dw, height=dh, format="rgb24", interpolation=interpolation).to_ndarray()
            got = tiny.encode_frames(ours(decoded))
            expected = tiny.encode_frames(reference(Image.fromarray(frame)).unsqueeze(0))
            cosines.append(cosine(got, expected).item())
        mistake_cosines.append(cosine(tiny.encode_frames(squash(frame)), expected).item())
    print(f"\ndecoder-side resize: min cosine {min(cosines):.6f} (squash mistake: {max(mistake_cosines):.6f})")
    assert min(cosines) >= 0.99
    assert 1 - min(cosines) < 0.2 * (1 - max(mistake_cosines))
