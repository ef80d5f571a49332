"""Encoder rates: `FrozenEncoder.encode_frames` in img/s per precision, and each one's cosine to fp32.

    python benchmarks/encoder_rates.py --device cuda --models ViT-B-16 ViT-L-14     # fp32, amp-fp16, fp16, bf16
    python benchmarks/encoder_rates.py --tiny                                       # seconds, on the CPU

Random weights (the same compute as real ones, no download). The precisions are those of
`--precision`: fp32; amp-fp16 / amp-bf16 (autocast over fp32 weights); fp16 / bf16 (the weights cast).
The cosine is per image between the precision's embedding and fp32's, on the same synthetic batch
(smooth gradients and discs, normalised like real frames); its minimum is reported.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine_info, write_json  # noqa: E402

GPU_PRECISIONS = ["fp32", "amp-fp16", "fp16", "bf16"]
CPU_PRECISIONS = ["fp32", "amp-bf16", "bf16"]


def natural_batch(count: int, size: int, seed: int = 0):
    """(count, 3, size, size) float32: gradients plus flat discs, scaled like normalised frames."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    phase = torch.rand(count, 3, 1, 1, generator=generator) * 6
    images = torch.sin(6 * xx + phase) * 0.8 + torch.cos(5 * yy + 3 * xx)
    for _ in range(4):
        cy, cx, radius = torch.rand(3, count, 1, 1, generator=generator)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (0.3 * radius) ** 2).unsqueeze(1)
        images = torch.where(disc, torch.rand(count, 3, 1, 1, generator=generator) * 3 - 1.5, images)
    return images.float()


def measure(model: str, precision: str, device: str, batch_size: int, batches: int, reference=None) -> dict:
    import torch

    from cmdcl.extract.models import load_encoder

    started = time.perf_counter()
    encoder = load_encoder(model, "random", device=device, precision=precision, seed=0)
    load_s = time.perf_counter() - started
    pixels = natural_batch(batch_size, encoder.image_size).to(encoder.device)
    embeddings = encoder.encode_frames(pixels)  # warm-up at the timed shape: kernels are chosen here
    sync = torch.cuda.synchronize if encoder.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(batches):
        encoder.encode_frames(pixels)  # returns on the CPU: includes the (small) copy back, as extraction does
    sync()
    seconds = time.perf_counter() - started
    result = {"model": model, "precision": encoder.precision, "device": str(encoder.device),
              "weights_dtype": encoder.provenance()["weights_dtype"], "batch_size": batch_size,
              "images": batch_size * batches, "seconds": seconds, "images_per_s": batch_size * batches / seconds,
              "load_s": load_s, "load_average": load_average()}
    if reference is not None:
        result["cosine_to_fp32_min"] = float((embeddings * reference).sum(-1).min())
    del encoder
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result, embeddings


def run(args: argparse.Namespace) -> dict:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = args.precisions or (GPU_PRECISIONS if device.startswith("cuda") else CPU_PRECISIONS)
    results = []
    for model in args.models:
        reference = None
        for precision in precisions:
            result, embeddings = measure(model, precision, device, args.batch_size, args.batches, reference)
            if precision == "fp32":
                reference = embeddings
            results.append(result)
            print(f"{model:10s} {result['precision']:9s} {result['images_per_s']:10.1f} img/s"
                  + (f"   cosine to fp32 >= {result['cosine_to_fp32_min']:.5f}" if "cosine_to_fp32_min" in result
                     else ""), flush=True)
    return {"machine": machine_info(), "device": device, "results": results}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ViT-B-16", "ViT-L-14"])
    parser.add_argument("--precisions", nargs="+", help="default: fp32 amp-fp16 fp16 bf16 on CUDA, "
                                                        "fp32 amp-bf16 bf16 on the CPU (fp32 first: the reference)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per precision")
    parser.add_argument("--tiny", action="store_true", help="cmdcl-tiny on the CPU, small batches (seconds)")
    parser.add_argument("--json", help="write the results and the machine info here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.models, args.device, args.batch_size, args.batches = ["cmdcl-tiny"], "cpu", 16, 2
    report = run(args)
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
