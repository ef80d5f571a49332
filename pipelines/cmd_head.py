"""`cmdcl train-head` and `cmdcl evaluate`: Stage 2 on cached features.

torch is imported inside the command bodies so that `cmdcl --help` stays light.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from cmdcl.core.errors import CmdclError

FEATURES_HELP = "Feature file, folder of shards or glob (repeatable)."


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _headline(metrics: dict) -> str:
    keys = ("top1", "top5", "mean_class_accuracy", "mAP", "step_mAP", "num_videos")
    return ", ".join(f"{k} {_fmt(metrics[k])}" for k in keys if k in metrics and metrics[k] is not None)


def train_head(
    features: List[str] = typer.Option(..., "--features", "-f", help=FEATURES_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<method>-<timestamp>)."),
    method: str = typer.Option("cmdcl", "--method", help="cmdcl | linear | transformer | zeroshot."),
    no_tci: bool = typer.Option(False, "--no-tci", help="Switch off the textual (back-door) intervention."),
    no_vci: bool = typer.Option(False, "--no-vci", help="Switch off the visual (front-door) intervention."),
    sta_layers: int = typer.Option(6, "--sta-layers", help="H spatio-temporal attention blocks (transformer: layers)."),
    frames: int = typer.Option(0, "--frames", help="Sub-sample the cached frames to this many (0 = all)."),
    bias_estimator: str = typer.Option("attention", "--bias-estimator", help="attention | sinkhorn."),
    sinkhorn_iters: int = typer.Option(50, "--sinkhorn-iters", help="Sinkhorn iterations (bias estimator sinkhorn)."),
    sinkhorn_eps: float = typer.Option(0.1, "--sinkhorn-eps", help="Entropic regularisation of the Sinkhorn plan."),
    tci_residual: bool = typer.Option(True, "--tci-residual/--no-tci-residual",
                                      help="T' = T + [T;B]W_B (residual) or [T;B]W_B."),
    refresh_memory: bool = typer.Option(True, "--refresh-memory/--no-refresh-memory",
                                        help="EMA-refresh the front-door memory after each epoch."),
    bias_source: str = typer.Option("video", "--bias-source", help="video | dictionary."),
    frontdoor_cross: str = typer.Option("dictionary", "--frontdoor-cross", help="dictionary | none."),
    dictionary_size: int = typer.Option(32, "--dictionary-size", help="K prototypes of the dictionaries."),
    use_patches: bool = typer.Option(False, "--use-patches", help="Use cached patch tokens (divided attention)."),
    classifier: str = typer.Option("similarity", "--classifier", help="similarity | attention."),
    width: int = typer.Option(0, "--width", help="Hidden width (0 = embedding size)."),
    heads: int = typer.Option(4, "--heads", help="Attention heads."),
    dropout: float = typer.Option(0.1, "--dropout"),
    aux_step_loss: float = typer.Option(0.5, "--aux-step-loss", help="Weight of the step-presence BCE."),
    epochs: int = typer.Option(30, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size", help="Global batch size (split over DDP ranks)."),
    lr: float = typer.Option(1e-3, "--lr"),
    weight_decay: float = typer.Option(0.05, "--weight-decay"),
    warmup_epochs: int = typer.Option(2, "--warmup-epochs"),
    patience: int = typer.Option(10, "--patience", help="Early stopping patience in epochs (0 = off)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Carved from train when there is no val split."),
    data_mode: str = typer.Option("auto", "--data-mode", help="auto | memory | memmap (larger than RAM)."),
    seed: int = typer.Option(0, "--seed"),
    resume: str = typer.Option("auto", "--resume", help="auto | never | PATH to a checkpoint."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic algorithms (exact resume)."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate",
                                  help="Score best.pt on the test (and test_ood) split after training."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm progress bars."),
) -> None:
    """Train a head (CMDCL or a baseline) on cached features; writes best.pt, last.pt, metrics.jsonl."""
    from cmdcl.head.config import HeadConfig

    cfg = HeadConfig(
        method=method, use_tci=not no_tci, use_vci=not no_vci, sta_layers=sta_layers, frames=frames,
        bias_estimator=bias_estimator, sinkhorn_iters=sinkhorn_iters, sinkhorn_eps=sinkhorn_eps,
        tci_residual=tci_residual, refresh_memory=refresh_memory, bias_source=bias_source, frontdoor_cross=frontdoor_cross,
        dictionary_size=dictionary_size, use_patches=use_patches, classifier=classifier, width=width, heads=heads,
        dropout=dropout, aux_step_loss=aux_step_loss, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, patience=patience, val_fraction=val_fraction,
        data_mode=data_mode, seed=seed,
    ).check()
    if resume not in ("auto", "never") and not Path(resume).exists():
        raise CmdclError(f"--resume {resume}: no such checkpoint.", fix="use auto, never or an existing .pt file.")
    out = out or Path("runs") / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"

    from cmdcl.core.distributed import world_from_env
    from cmdcl.head.train import INTERRUPTED_EXIT_CODE, train

    result = train(features, out, cfg, resume=resume, device=device, deterministic=deterministic, progress=progress)
    if world_from_env()[0] != 0:
        return
    if result["interrupted"]:
        sys.exit(INTERRUPTED_EXIT_CODE)  # typer.Exit would be swallowed by cli.main's standalone_mode=False
    typer.echo(f"best val {result['metric']} {_fmt(result['best_metric'])} (epoch {result['best_epoch']}); "
               f"run folder {result['run_dir']}")
    if evaluate:
        from cmdcl.core.store import FeatureSet
        from cmdcl.head.evaluate import evaluate_splits

        present = set(FeatureSet(features).index["split"].tolist())
        splits = [s for s in ("test", "test_ood") if s in present]
        if splits:
            results = evaluate_splits(Path(result["run_dir"]) / "best.pt", features, splits, result["run_dir"],
                                      device=device)
            for split, metrics in results.items():
                typer.echo(f"{split}: {_headline(metrics)} -> {Path(result['run_dir']) / f'metrics_{split}.json'}")


def evaluate_head(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="best.pt or last.pt of a run."),
    features: List[str] = typer.Option(..., "--features", "-f", help=FEATURES_HELP),
    split: List[str] = typer.Option(["test"], "--split", help="Split(s) to score (repeatable), e.g. test, test_ood."),
    out: Optional[Path] = typer.Option(None, "--out", help="metrics.json (one split) or a folder (several); "
                                                          "default: next to the checkpoint."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    batch_size: int = typer.Option(256, "--batch-size"),
) -> None:
    """Score a trained head on a split: top-1/top-5 or mAP, step mAP, per-class numbers, confusion matrix."""
    from cmdcl.head.evaluate import evaluate, evaluate_splits

    if len(split) == 1:
        metrics = evaluate(checkpoint, features, split[0], out, device=device, batch_size=batch_size)
        target = out or checkpoint.parent / f"metrics_{split[0]}.json"
        typer.echo(f"{split[0]}: {_headline(metrics)} -> {target}")
        return
    folder = out or checkpoint.parent
    for name, metrics in evaluate_splits(checkpoint, features, split, folder, device=device,
                                         batch_size=batch_size).items():
        typer.echo(f"{name}: {_headline(metrics)} -> {folder / f'metrics_{name}.json'}")


def predict_videos(checkpoint: Path, videos: List[Path], top_k: int = 5, device: str = "auto",
                   cache_dir: Optional[str] = None, pretrained: Optional[str] = None) -> list[dict]:
    """Extract each video exactly as the checkpoint's training features were (model, weights, sampler,
    frames, patch grid: the provenance it stores, through the extraction's own `video_rows`) and return
    its top-k classes with probabilities."""
    import torch

    from cmdcl.core.errors import WeightsError
    from cmdcl.extract.decode_pool import DecodeFailure
    from cmdcl.extract.models import load_encoder
    from cmdcl.extract.video_features import decode_settings, video_rows
    from cmdcl.head.data import frame_subsample_index
    from cmdcl.head.evaluate import load_model

    model, cfg, state = load_model(checkpoint, device)
    prov = state["provenance"]
    recorded = str(prov.get("pretrained", ""))
    seed = 0
    if recorded.startswith("random:seed="):  # random weights (tests, demo): same seed, same weights
        recorded, seed = "random", int(recorded.split("=", 1)[1])
    encoder = load_encoder(str(prov["model_name"]), pretrained or recorded, cache_dir=cache_dir, device=device,
                           precision=str(prov.get("precision") or "auto"), seed=seed)
    if prov.get("weights_sha256") and encoder.weights_sha256 != prov["weights_sha256"]:
        raise WeightsError(f"{checkpoint}: the encoder weights ({encoder.weights_file or encoder.pretrained}) are not "
                           f"those that made its training features (sha256 {str(prov['weights_sha256'])[:12]}...).",
                           fix="pass --pretrained with the original weights file.")
    settings = decode_settings(prov, encoder)
    grid = int(prov.get("patch_grid", 0)) if cfg.use_patches else 0
    model_frames = int(state["model_args"]["dims"]["F"])
    class_names = list(state["vocabulary"]["class_names"])
    multilabel = bool(state["model_args"]["multilabel"])
    head_device = next(iter(model.state_dict().values())).device
    results = []
    for video in videos:
        rows = video_rows(video, encoder, settings, patch_grid=grid)
        if isinstance(rows, DecodeFailure):
            results.append({"video": str(video), "error": f"{rows.stage}: {rows.error}"})
            continue
        feats, patches, mask = rows.features, rows.patches, rows.mask
        if model_frames < len(mask):
            index, new_mask = frame_subsample_index(mask[None], model_frames)
            feats, mask = feats[index[0]], new_mask[0]
            patches = patches[index[0]] if grid else None
        with torch.no_grad():
            logits = model(torch.from_numpy(feats).float()[None].to(head_device),
                           torch.from_numpy(mask)[None].to(head_device),
                           torch.from_numpy(patches).float()[None].to(head_device) if grid else None)["logits"][0]
        probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits.float(), dim=-1)
        top = torch.topk(probs, min(top_k, len(class_names)))
        results.append({"video": str(video), "frames": int(mask.sum()),
                        "top": [{"class": class_names[j], "index": int(j), "probability": float(p)}
                                for p, j in zip(top.values.tolist(), top.indices.tolist())]})
    return results


def predict(
    videos: List[Path] = typer.Argument(..., help="Video files."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="best.pt of a run."),
    top_k: int = typer.Option(5, "--top-k", help="Classes to show per video."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="open_clip / Hugging Face weights cache."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained",
                                             help="Weights to use instead of the recorded ones (same sha256)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the predictions here."),
) -> None:
    """Classify videos with a trained head: extract them as its features were, print the top-k classes."""
    import json

    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise CmdclError(f"{missing[0]}: no such video file.")
    if top_k < 1:
        raise CmdclError(f"--top-k must be >= 1, got {top_k}.")
    results = predict_videos(checkpoint, videos, top_k, device, cache_dir, pretrained)
    for result in results:
        if "error" in result:
            typer.echo(f"{result['video']}: FAILED {result['error']}")
            continue
        ranked = "  ".join(f"{k + 1}. {t['class']} ({t['probability']:.3f})" for k, t in enumerate(result["top"]))
        typer.echo(f"{result['video']}: {ranked}")
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2) + "\n")
    if all("error" in r for r in results):
        raise CmdclError(f"none of the {len(results)} videos could be decoded.")


COMMANDS = {"train-head": train_head, "evaluate": evaluate_head, "predict": predict}
