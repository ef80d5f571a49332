"""The demo on the built-in synthetic world: generate -> pre-train -> extract -> train CMDCL and baselines -> table.

Every stage is the same code a user runs on real data (`cmdcl synth`, `cmdcl pretrain-clip`, `cmdcl extract`,
`cmdcl train-head`, `cmdcl evaluate`, `cmdcl report`). Real CLIP weights cannot be downloaded offline, so the
encoder is a tiny open_clip model pre-trained here, CLIP-style, on the world's "pretrain" split (videos no head
uses); `--no-pretrain` keeps the random initialisation. Re-running the demo reuses finished stages (each
stage resumes; pre-trained weights are reused when their provenance record matches).

Every row is trained once per seed of `DemoConfig.seeds` into OUT/<row>/seed-K (the layout of
`train-head --seeds`, through the same `head/training/seeds.train_jobs`), all rows x seeds spread over one worker
process per core; the table shows the mean over seeds and results.json keeps each seed's numbers
(`per_seed`) for paired comparisons. The report is that of the cmdcl row's first seed.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cmdcl.core.errors import CmdclError
from cmdcl.pipelines.demo_table import GROUNDING_METRIC, mean_of, seed_columns

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
# The oracle rows (`DemoConfig.oracle`): the same method trained on the world's split whose context is at chance.
# OOD(oracle) - OOD(row) is the row's residual confounding: what the confounding of "train" still costs it.
UNCONFOUNDED_SPLIT = "train_unconfounded"  # extract/datasets/synthetic_spec.py
ORACLE_SUFFIX = "-unconfounded"
ORACLE_ROWS = ("transformer", "cmdcl")  # the rows that get an oracle row, when trained
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
    workers: int = 1  # decode workers: one keeps the encoder batches (and so the features) the same run to run
    epochs: int = 0  # 0: train-head's default schedule (docs/TRAINING.md)
    sta_layers: int = 2  # the paper's H=6 is the CLI default; 2 keeps the demo under its time budget
    methods: tuple[str, ...] = field(default_factory=lambda: tuple(DEMO_RUNS))  # read when made: rows added later count
    seeds: tuple[int, ...] = (0, 1, 2)  # every row is trained once per seed (OUT/<row>/seed-K); the table shows means
    train_workers: int = 0  # worker processes training the heads; 0: one per CPU core
    synthetic: dict = field(default_factory=dict)  # extra SyntheticConfig fields (sizes, the world's moving options)
    # Rows from config files (--row-config NAME=FILE): {NAME: HeadConfig options}, replacing or adding to DEMO_RUNS
    rows: dict = field(default_factory=dict)
    report: bool = True
    # Also train ORACLE_ROWS on the world's train_unconfounded split (rows <row>-unconfounded) and show each
    # one's residual confounding, OOD(oracle) - OOD(row), with paired intervals. Off by default: the two rows
    # x 3 seeds add about a third to the training stage, which would take the demo past its time budget
    # (docs/BENCHMARKS.md); the world and the features always hold the split, so turning it on reuses both.
    oracle: bool = False
    patch_layer: int = -1  # the encoder block whose patch tokens are stored (extract's --patch-layer; -1: last)

    def trained_rows(self) -> tuple[str, ...]:
        """The rows to train: `methods`, plus the oracle row of each of ORACLE_ROWS among them (`oracle`)."""
        extra = [m + ORACLE_SUFFIX for m in ORACLE_ROWS if self.oracle and m in self.methods]
        return tuple(self.methods) + tuple(r for r in extra if r not in self.methods)


@dataclass
class MethodResult:
    """One row of the table: the mean over its seeds; `per_seed` keeps each seed's numbers (same keys, plus
    "seed", "run_dir", "epochs") for paired comparisons."""
    method: str
    run_dir: Path
    iid_top1: float
    ood_top1: float
    step_map: float | None
    grounding: float | None
    parameters: int
    train_s: float  # mean seconds of training per seed
    per_seed: list[dict] = field(default_factory=list)
    columns: dict = field(default_factory=dict)  # demo column header -> mean over seeds (the metric table's columns)


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> list[MethodResult]:
    """Run every stage and return one result per method (also written to OUT/results.json)."""
    from cmdcl.extract.datasets.synthetic import context_only_accuracy

    check_rows(cfg.trained_rows(), demo_runs(cfg))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _world_stage(cfg, say)
    weights = _pretrain_stage(cfg, out, say)
    features = _extract_stage(cfg, out, weights, say)
    results = _train_stage(cfg, out, features, say)
    context = context_only_accuracy(cfg.data_root, seed=cfg.seed)  # the reference row: the confounder alone
    table = demo_table(out, results, features, context)
    residual = residual_confounding(out, [r.method for r in results])
    report_path = None
    if cfg.report and "cmdcl" in cfg.methods:
        from cmdcl.head.report import build_report
        from cmdcl.head.training.seed_runs import seed_dir
        from .cmd_report import read_video_frames

        say(f"[5/5] report of the cmdcl run (seed {cfg.seeds[0]}, IID and OOD, with the OOD comparison)")
        # Both splits: the reliability diagram and fig. 7 (attention over the frames) show IID beside OOD.
        report_path = build_report(seed_dir(out / "cmdcl", cfg.seeds[0]), features=features, device="cpu",
                                   split=["test", "test_ood"], read_frames=read_video_frames,
                                   compare=out / "compare-test_ood")
    _summarise(cfg, out, results, features, weights, report_path, table, context, started, say, residual)
    return results


def check_rows(rows: tuple[str, ...], runs: dict[str, dict] | None = None) -> None:
    """Every row is a known row (`DEMO_RUNS`, or `runs`: those plus the config files' rows) whose method is in the
    method table: a one-line error before any stage runs."""
    from cmdcl.head.model.registry import method_entry

    runs = DEMO_RUNS if runs is None else runs
    unknown = [m for m in rows if m not in runs]
    if unknown:
        raise CmdclError(f"--methods: unknown run {unknown[0]!r}; choose from {', '.join(runs)}.")
    for row in rows:
        method_entry(runs[row]["method"])


def _world_stage(cfg: DemoConfig, say: Callable[[str], None]) -> None:
    from cmdcl.extract.datasets.synthetic import SyntheticConfig, ensure_synthetic, measured_agreement

    say(f"[1/5] synthetic dataset ({SyntheticConfig(**cfg.synthetic).world} world) -> {cfg.data_root}")
    ensure_synthetic(cfg.data_root, seed=cfg.seed, confounding=cfg.confounding, **cfg.synthetic)
    for split, agreement in measured_agreement(cfg.data_root).items():
        say(f"      context agrees with the activity in {split}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in agreement.items()))


def _pretrain_stage(cfg: DemoConfig, out: Path, say: Callable[[str], None]) -> str | None:
    """The weights to extract with: given ones, pre-trained ones (reused when their record matches), or None."""
    if cfg.pretrained or not cfg.pretrain:
        from cmdcl.extract.architecture import is_random

        weights = None if is_random(cfg.pretrained) else cfg.pretrained
        say(f"[2/5] encoder: {weights or 'RANDOM weights'} (no pre-training)")
        return weights
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
    if cfg.patch_layer != -1:  # other patch tokens: other features, in their own folder
        folder = folder.with_name(f"{folder.name}-patch-layer{cfg.patch_layer}")
    say(f"[3/5] features: {cfg.model} ({weights or 'RANDOM weights'}), {cfg.frames} frames/video -> {folder}")
    summary = run_extraction(ExtractConfig(
        dataset="synthetic", root=str(cfg.data_root), out_dir=str(folder), model=cfg.model,
        pretrained=weights or "random", frames=cfg.frames, batch_size=512, workers=cfg.workers, seed=cfg.seed,
        patch_grid=DEMO_PATCH_GRID, patch_layer=cfg.patch_layer,
        dataset_options={"seed": cfg.seed, "confounding": cfg.confounding, **cfg.synthetic}, progress=False,
    ).check(), log=lambda m: None)
    say("      " + summary.report().replace("\n", "\n      "))
    return summary.shard_path


def _weights_tag(weights: str) -> str:
    from cmdcl.extract.models import file_sha256

    path = Path(weights)
    return f"{path.stem}-{file_sha256(path)[:12]}" if path.is_file() else weights.replace("/", "_")


def _train_stage(cfg: DemoConfig, out: Path, features: str, say: Callable[[str], None]) -> list[MethodResult]:
    """Every row x seed through `train_jobs` (the code path of train-head --seeds): features read once, the
    runs spread over worker processes; finished runs are reused (each resumes from its own last.pt)."""
    import os

    import torch

    from cmdcl.head.training.seed_runs import seed_dir, write_seeds
    from cmdcl.head.training.seeds import train_jobs

    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise CmdclError(f"--seeds {','.join(map(str, cfg.seeds))}: expected distinct seeds, e.g. 0,1,2.")
    # The demo's heads are tiny: one thread each is fastest, and immune to other processes on a small machine
    # (with two threads on two busy cores, a step was seen to take 100x longer); the cores go to workers.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _check_runs_match_features(out, features)
    runs = demo_runs(cfg)
    rows = cfg.trained_rows()
    for method in rows:
        write_seeds(out / method, list(cfg.seeds), runs[method]["method"])
    keys = costliest_first([(m, s) for m in rows for s in cfg.seeds], runs)
    jobs = [(_head_config(cfg, m, s), seed_dir(out / m, s)) for m, s in keys]
    workers = cfg.train_workers or min(len(jobs), os.cpu_count() or 1)
    schedule = f"{cfg.epochs} epochs" if cfg.epochs else "train-head's default schedule"
    say(f"[4/5] training {', '.join(rows)} x seeds {','.join(map(str, cfg.seeds))} ({schedule}, same recipe "
        f"for every method; {workers} worker process{'es' if workers > 1 else ''})")
    t0 = time.perf_counter()
    try:
        runs = train_jobs(features, jobs, workers=workers, resume="auto", progress=False, log=lambda m: None,
                          evaluate=["test", "test_ood"])
    finally:
        torch.set_num_threads(threads)
    if any(r["interrupted"] for r in runs):
        raise CmdclError("training was stopped by a signal; run the demo again to continue where it stopped.")
    say(f"      trained and scored {len(jobs)} runs in {time.perf_counter() - t0:.0f} s")
    by_key = dict(zip(keys, runs))
    results = [_method_result(method, out, cfg.seeds, [by_key[method, s] for s in cfg.seeds]) for method in rows]
    for r in results:
        say(f"      {r.method:<17} IID {r.iid_top1:.3f}  OOD {r.ood_top1:.3f}  (mean of {len(r.per_seed)} seeds, "
            f"{r.train_s:.0f} s per seed)")
    return results


def costliest_first(keys: list[tuple[str, int]], runs: dict[str, dict] | None = None) -> list[tuple[str, int]]:
    """(row, seed) pairs ordered by their method's training cost (`MethodEntry.cost`), most first, so that no
    worker is left with a long run at the end while the others idle; equal costs keep their order."""
    from cmdcl.head.model.registry import method_entry

    runs = DEMO_RUNS if runs is None else runs
    return sorted(keys, key=lambda key: -method_entry(runs[key[0]]["method"]).cost)


def demo_runs(cfg: DemoConfig) -> dict[str, dict]:
    """The rows the demo can train: DEMO_RUNS and the config files' rows (each with its "method" filled in)."""
    from cmdcl.head.model.config import HeadConfig

    oracles = {m + ORACLE_SUFFIX: {**DEMO_RUNS[m], "train_split": UNCONFOUNDED_SPLIT} for m in ORACLE_ROWS}
    return {name: {"method": HeadConfig.method, **options}
            for name, options in {**DEMO_RUNS, **oracles, **cfg.rows}.items()}


def _head_config(cfg: DemoConfig, method: str, seed: int):
    """One row and seed: the demo's --epochs and --sta-layers, under what the row sets (a file row may set them)."""
    from cmdcl.head.model.config import HeadConfig

    return HeadConfig(**{"epochs": cfg.epochs, "sta_layers": cfg.sta_layers, **demo_runs(cfg)[method], "seed": seed})


def _method_result(method: str, out: Path, seeds: tuple[int, ...], runs: list[dict]) -> MethodResult:
    """The row: the mean over seeds of each seed's best.pt on test and test_ood (scored by train_jobs)."""
    per_seed = []
    for seed, run in zip(seeds, runs):
        metrics = run["metrics"]
        per_seed.append({"seed": seed, "run_dir": run["run_dir"], "iid_top1": metrics["test"]["top1"],
                         "ood_top1": metrics["test_ood"]["top1"], "step_map": metrics["test"].get("step_mAP"),
                         "grounding": metrics["test"].get(GROUNDING_METRIC), "train_s": run.get("train_seconds"),
                         "epochs": run.get("epochs_run"), "parameters": int(run.get("parameters", 0)),
                         "columns": seed_columns(metrics)})
    return MethodResult(
        method=method, run_dir=out / method, iid_top1=_seed_mean(per_seed, "iid_top1"),
        ood_top1=_seed_mean(per_seed, "ood_top1"), step_map=_seed_mean(per_seed, "step_map"),
        grounding=_seed_mean(per_seed, "grounding"), parameters=per_seed[0]["parameters"],
        train_s=_seed_mean(per_seed, "train_s") or 0.0, per_seed=per_seed,
        columns={h: mean_of(s["columns"].get(h) for s in per_seed) for h in per_seed[0]["columns"]})


def _seed_mean(rows: list[dict], key: str) -> float | None:
    return mean_of(r.get(key) for r in rows)


def _check_runs_match_features(out: Path, features: str) -> None:
    """Method runs resume from OUT/<method>: refuse ones trained on another encoder's features."""
    marker = out / "features.txt"
    if marker.is_file() and marker.read_text().strip() != features:
        raise CmdclError(f"{out} holds runs trained on {marker.read_text().strip()}, not on {features} (another "
                         "encoder or world).", fix=f"pass another --out, or delete {out} to start over.")
    marker.write_text(features + "\n")


def _summarise(cfg: DemoConfig, out: Path, results: list[MethodResult], features: str, weights: str | None,
               report_path: Path | None, table: str, context: dict[str, float], started: float,
               say: Callable[[str], None], residual: dict | None = None) -> None:
    (out / "results.json").write_text(json.dumps({
        "results": [{**r.__dict__, "run_dir": str(r.run_dir)} for r in results], "seeds": list(cfg.seeds),
        "features": features, "report": str(report_path) if report_path else None,
        "context_only_top1": context,
        "residual_confounding": (residual or {}).get("rows", {}),
        "encoder": {"model": cfg.model, "pretrained": weights or "random"},
        "seconds": time.perf_counter() - started,
    }, indent=2) + "\n")
    say("")
    say(table)
    if residual and residual["rows"]:
        say("")
        say(residual["table"])
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
            "action, the activity and sometimes the scene and its props); these are not CMDCL's published results "
            "(see README).")


def demo_table(out: Path, results: list[MethodResult], features: str, context: dict[str, float] | None) -> str:
    """The table (pipelines/demo_table.py): intervals over seeds, paired OOD differences against the
    transformer, grounding and leakage; the comparisons are also written to OUT/compare-<split>/."""
    from .demo_table import compare_splits, format_demo_table

    rows = [r.method for r in results]
    return format_demo_table(out, rows, compare_splits(out, rows), {r.method: r.train_s for r in results},
                             chance=1.0 / _num_classes(features), context=context)


def residual_confounding(out: Path, rows: list[str]) -> dict:
    """{"rows": {row: numbers}, "table": text} for every row trained beside its oracle row (pipelines/demo_table.py)."""
    from .demo_table import format_residual, residual_rows

    pairs = [(r, r + ORACLE_SUFFIX) for r in rows if r + ORACLE_SUFFIX in rows]
    numbers = residual_rows(out, pairs)
    return {"rows": numbers, "table": format_residual(numbers) if numbers else ""}


def _num_classes(features: str) -> int:
    from cmdcl.core.store import FeatureSet

    return FeatureSet(features).dims["C"]
