"""Spatial attention mass on a foreground proxy, for a trained cmdcl run with patches.

    .venv/bin/python benchmarks/foreground_mass.py RUN FEATURES [--split test_ood]

The proxy foreground of a video is its 2 patch positions of highest temporal variance (the moving object;
the context is static; shared/design/method-audit.md §5) until the feature file stores the renderer's
object boxes. Printed: mean over (video, annotated step, valid frame) of sum_{p in FG} a(p | f, step), and
that mass over the uniform share 2/P (1.0 = no better than uniform attention).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def foreground_mass(run: str, features: str, split: str, top: int = 2) -> tuple[float, float]:
    import torch

    from cmdcl.core.store import FeatureSet
    from cmdcl.head.data import FeatureData
    from cmdcl.head.metrics.evaluate import load_model

    model, cfg, _ = load_model(f"{run}/best.pt", "cpu")
    data = FeatureData(FeatureSet(features), [split], frames=cfg.frames, use_patches=True, mode="memory",
                       log=lambda m: None)
    with torch.no_grad():
        b = data.batch(np.arange(len(data)))
        out = model(b["features"], b["frame_mask"], b["patches"] if cfg.use_patches else None)
    if "spatial_attention" not in out:
        raise SystemExit(f"{run}: the head returns no spatial attention (trained without patches)")
    spatial, patches, valid = out["spatial_attention"], b["patches"], b["frame_mask"].float()
    mean = (patches * valid[..., None, None]).sum(1, keepdim=True) / valid.sum(1)[:, None, None, None]
    variance = (((patches - mean) ** 2).sum(-1) * valid[..., None]).sum(1)  # (B, P)
    foreground = torch.zeros_like(variance).scatter_(1, variance.topk(top, dim=-1).indices, 1.0)
    mass = (spatial * foreground[:, None, None, :]).sum(-1)  # (B, S, F)
    weights = b["steps"][:, :, None] * valid[:, None, :]
    share = float((mass * weights).sum() / weights.sum())
    return share, share / (top / spatial.shape[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("features")
    parser.add_argument("--split", default="test_ood")
    args = parser.parse_args(argv)
    share, ratio = foreground_mass(args.run, args.features, args.split)
    print(f"{args.run} {args.split}: foreground-proxy attention mass {share:.3f} = {ratio:.2f}x uniform")
    return 0


if __name__ == "__main__":
    sys.exit(main())
