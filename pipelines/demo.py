"""The main job on the built-in synthetic world: generate -> pre-train -> extract -> train CMDCL and baselines -> table.

Every stage is the same code a user runs on real data (`cmdcl synth`, `cmdcl pretrain-clip`, `cmdcl extract`,
`cmdcl train-head`, `cmdcl evaluate`, `cmdcl report`). Real CLIP weights cannot be downloaded offline, so the
encoder is a tiny open_clip model pre-trained here, CLIP-style, on the world's "pretrain" split (videos no head
uses); `--no-pretrain` keeps the random initialisation. Re-running the demo reuses finished stages (each
stage resumes; pre-trained weights are reused when their provenance record matches).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cmdcl.core.errors import CmdclError

# Row name -> HeadConfig fields. The last three rows are the paper's ablations: CMDCL without the textual
# intervention, without the visual one, and without both.
DEMO_RUNS: dict[str, dict] = {
    "zeroshot": {"method": "zeroshot"},
    "linear": {"method": "linear"},
    "transformer": {"method": "transformer"},
    "cmdcl": {"method": "cmdcl"},
    "cmdcl-no-tci": {"method": "cmdcl", "use_tci": False},
    "cmdcl-no-vci": {"method": "cmdcl", "use_vci": False},
    "cmdcl-no-tci-vci": {"method": "cmdcl", "use_tci": False, "use_vci": False},
}
DEMO_METHODS = tuple(DEMO_RUNS)
# The one place the table reads step grounding from: the key of `evaluate`'s per-split metrics (the mean
# share of step-attention mass inside the true segment over the uniform share, 1.0 = no better than
# uniform attention; absent for heads without step attention: shown as "-").
GROUNDING_METRIC = "grounding_mass_ratio"
# A 4 x 4 grid of pooled patch tokens per frame: the finest cmdcl-tiny allows (32 px / 8 px patches). The
# patch mediator (docs/METHOD.md) attends over them; the frame-level heads ignore them.
DEMO_PATCH_GRID = 4


@dataclass
class DemoConfig:
    data_root: Path = Path("data/synthetic")
    out_dir: Path = Path("runs/demo")
    seed: int = 0
    confounding: float = 0.9
    frames: int = 16
    model: str = "cmdcl-tiny"
    pretrained: str | None = None  # weights to extract with; None: pre-train them on the world's pretrain split
    pretrain: bool = True  # False with pretrained None: random weights
    pretrain_epochs: int = 10
    workers: int = 1
    epochs: int = 0  # 0: train-head's default schedule (docs/TRAINING.md)
    sta_layers: int = 2  # the paper's H=6 is the CLI default; 2 keeps the demo under its time budget
    methods: tuple[str, ...] = DEMO_METHODS
    synthetic: dict = field(default_factory=dict)  # extra SyntheticConfig fields (sizes)
    report: bool = True


@dataclass
class MethodResult:
    method: str
    run_dir: Path
    iid_top1: float
    ood_top1: float
    step_map: float | None
    grounding: float | None
    parameters: int
    train_s: float


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> list[MethodResult]:
    """Run every stage and return one result per method (also written to OUT/results.json)."""
    unknown = [m for m in cfg.methods if m not in DEMO_METHODS]
    if unknown:
        raise CmdclError(f"--methods: unknown run {unknown[0]!r}; choose from {', '.join(DEMO_METHODS)}.")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _world_stage(cfg, say)
    weights = _pretrain_stage(cfg, out, say)
    features = _extract_stage(cfg, out, weights, say)
    results = _train_stage(cfg, out, features, say)
    report_path = None
    if cfg.report and "cmdcl" in cfg.methods:
        from cmdcl.head.report import build_report

        say("[5/5] report of the cmdcl run")
        report_path = build_report(out / "cmdcl", features=features, device="cpu")
    _summarise(cfg, out, results, features, weights, report_path, started, say)
    return results


def _world_stage(cfg: DemoConfig, say: Callable[[str], None]) -> None:
    from cmdcl.extract.datasets.synthetic import ensure_synthetic, measured_agreement

    say(f"[1/5] synthetic dataset -> {cfg.data_root}")
    ensure_synthetic(cfg.data_root, seed=cfg.seed, confounding=cfg.confounding, **cfg.synthetic)
    for split, agreement in measured_agreement(cfg.data_root).items():
        say(f"      context agrees with the activity in {split}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in agreement.items()))


def _pretrain_stage(cfg: DemoConfig, out: Path, say: Callable[[str], None]) -> str | None:
    """The weights to extract with: given ones, pre-trained ones (reused when their record matches), or None."""
    if cfg.pretrained or not cfg.pretrain:
        say(f"[2/5] encoder: {cfg.pretrained or 'RANDOM weights'} (no pre-training)")
        return cfg.pretrained
    from cmdcl.extract.pretrain_clip import PretrainConfig, pretrain_clip, reusable_weights

    pre = PretrainConfig(dataset="synthetic", root=str(cfg.data_root), out=str(out / "pretrain" / "weights.pt"),
                         model=cfg.model, epochs=cfg.pretrain_epochs, seed=cfg.seed,
                         dataset_options={"seed": cfg.seed, "confounding": cfg.confounding, **cfg.synthetic})
    record = reusable_weights(pre)
    if record:
        say(f"[2/5] pre-trained {cfg.model} reused: {pre.out} (final loss {record['final_loss']:.3f})")
    else:
        say(f"[2/5] pre-training {cfg.model} (CLIP loss, {cfg.pretrain_epochs} epochs) on split 'pretrain' -> {pre.out}")
        record = pretrain_clip(pre, log=lambda m: None)
        say(f"      final loss {record['final_loss']:.3f} (first epoch {record['losses'][0]:.3f}), "
            f"{record['frames']} frames, {record['seconds']:.0f} s")
    return pre.out


def _extract_stage(cfg: DemoConfig, out: Path, weights: str | None, say: Callable[[str], None]) -> str:
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    # Features of another encoder must never be reused: each encoder gets its own folder.
    folder = out / "features" / (_weights_tag(weights) if weights else f"random-seed{cfg.seed}")
    say(f"[3/5] features: {cfg.model} ({weights or 'RANDOM weights'}), {cfg.frames} frames/video -> {folder}")
    summary = run_extraction(ExtractConfig(
        dataset="synthetic", root=str(cfg.data_root), out_dir=str(folder), model=cfg.model,
        pretrained=weights, frames=cfg.frames, batch_size=512, workers=cfg.workers, seed=cfg.seed,
        patch_grid=DEMO_PATCH_GRID,
        dataset_options={"seed": cfg.seed, "confounding": cfg.confounding, **cfg.synthetic}, progress=False,
    ).check(), log=lambda m: None)
    say("      " + summary.report().replace("\n", "\n      "))
    return summary.shard_path


def _weights_tag(weights: str) -> str:
    from cmdcl.extract.models import file_sha256

    path = Path(weights)
    return f"{path.stem}-{file_sha256(path)[:12]}" if path.is_file() else weights.replace("/", "_")


def _train_stage(cfg: DemoConfig, out: Path, features: str, say: Callable[[str], None]) -> list[MethodResult]:
    import torch

    from cmdcl.head.config import HeadConfig
    from cmdcl.head.evaluate import evaluate_splits
    from cmdcl.head.train import train

    # The demo's heads are tiny: one thread is fastest, and immune to other processes on a small machine
    # (with two threads on two busy cores, a step was seen to take 100x longer).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _check_runs_match_features(out, features)
    schedule = f"{cfg.epochs} epochs" if cfg.epochs else "train-head's default schedule"
    say(f"[4/5] training {', '.join(cfg.methods)} ({schedule}, same recipe for every method)")
    results = []
    try:
        for method in cfg.methods:
            run_dir = out / method
            head_cfg = HeadConfig(**DEMO_RUNS[method], epochs=cfg.epochs, sta_layers=cfg.sta_layers, seed=cfg.seed)
            t0 = time.perf_counter()
            summary = train(features, run_dir, head_cfg, resume="auto", progress=False, log=lambda m: None)
            train_s = time.perf_counter() - t0
            metrics = evaluate_splits(run_dir / "best.pt", features, ["test", "test_ood"], out_dir=run_dir)
            results.append(MethodResult(
                method=method, run_dir=run_dir, iid_top1=metrics["test"]["top1"],
                ood_top1=metrics["test_ood"]["top1"], step_map=metrics["test"].get("step_mAP"),
                grounding=metrics["test"].get(GROUNDING_METRIC), parameters=int(summary.get("parameters", 0)),
                train_s=train_s))
            say(f"      {method:<17} IID {results[-1].iid_top1:.3f}  OOD {results[-1].ood_top1:.3f}  ({train_s:.0f} s)")
    finally:
        torch.set_num_threads(threads)
    return results


def _check_runs_match_features(out: Path, features: str) -> None:
    """Method runs resume from OUT/<method>: refuse ones trained on another encoder's features."""
    marker = out / "features.txt"
    if marker.is_file() and marker.read_text().strip() != features:
        raise CmdclError(f"{out} holds runs trained on {marker.read_text().strip()}, not on {features} (another "
                         "encoder or world).", fix=f"pass another --out, or delete {out} to start over.")
    marker.write_text(features + "\n")


def _summarise(cfg: DemoConfig, out: Path, results: list[MethodResult], features: str, weights: str | None,
               report_path: Path | None, started: float, say: Callable[[str], None]) -> None:
    from cmdcl.extract.datasets.synthetic import context_only_accuracy

    context = context_only_accuracy(cfg.data_root, seed=cfg.seed)
    (out / "results.json").write_text(json.dumps({
        "results": [{**r.__dict__, "run_dir": str(r.run_dir)} for r in results],
        "features": features, "report": str(report_path) if report_path else None,
        "context_only_top1": context,
        "encoder": {"model": cfg.model, "pretrained": weights or "random"},
        "seconds": time.perf_counter() - started,
    }, indent=2) + "\n")
    say("")
    say(format_table(results, chance=1.0 / _num_classes(features), context=context))
    say("")
    say(f"features: {features}")
    for r in results:
        say(f"run:      {r.run_dir}")
    if report_path:
        say(f"report:   {report_path}")
    say(f"total:    {time.perf_counter() - started:.0f} s")
    if not weights:
        say("note: the encoder is a tiny RANDOMLY initialised CLIP; these numbers test the pipeline, they are not "
            "CMDCL's published results (see README).")
    elif not cfg.pretrained:
        say("note: the encoder is a tiny CLIP pre-trained here on the world's 'pretrain' split (captions name the "
            "action, the activity and sometimes the scene); these are not CMDCL's published results (see README).")


def _num_classes(features: str) -> int:
    from cmdcl.core.store import FeatureSet

    return FeatureSet(features).dims["C"]


def format_table(results: list[MethodResult], chance: float, context: dict[str, float] | None = None) -> str:
    header = (f"{'method':<17} {'IID top-1':>9} {'OOD top-1':>9} {'atomic mAP':>10} {'grounding':>9} {'params':>9} "
              f"{'train s':>7}")
    lines = [header, "-" * len(header)]
    for r in results:
        step = f"{r.step_map:.3f}" if r.step_map is not None else "-"
        grounding = f"{r.grounding:.3f}" if r.grounding is not None else "-"
        lines.append(f"{r.method:<17} {r.iid_top1:>9.3f} {r.ood_top1:>9.3f} {step:>10} {grounding:>9} "
                     f"{r.parameters:>9,d} {r.train_s:>7.1f}")
    if context:
        lines.append(f"{'context only':<17} {context['test']:>9.3f} {context['test_ood']:>9.3f} {'-':>10} {'-':>9} "
                     f"{'-':>9} {'-':>7}   <- logistic regression on the true confounder labels")
    lines.append(f"(chance top-1 = {chance:.3f}; IID = split 'test', OOD = split 'test_ood' with the context shuffled;")
    lines.append(" grounding = IID step-attention mass inside the true step segments / the uniform share, 1.0 = uniform)")
    return "\n".join(lines)
