"""The training loop, nanoGPT / open_clip style: a `TrainState`, `train_one_epoch`, `evaluate`, save and
restore.

    data (head/data.py) -> head (head/model/factory.py) -> AdamW + warm-up/cosine per step (head/training/schedule.py)
    -> epochs of steps (train_one_epoch) -> validation (evaluate) -> best.pt / last.pt / metrics.jsonl
    -> early stopping

Pre-emption: SIGTERM or SIGUSR1 only set a flag (head/training/runtime.py); at the next step boundary the loop
writes last.pt with its position inside the epoch and returns. `resume="auto"` continues from last.pt
exactly: the data order is a function of (seed, epoch) and every RNG state is restored, so on CPU in
deterministic mode the resumed run ends with the same weights and metrics as an uninterrupted one.

DDP: launched by torchrun (or srun with MASTER_ADDR/MASTER_PORT set), one process per GPU; the global
batch `cfg.batch_size` is split evenly over ranks, DDP all-reduces gradients, rank 0 validates and
writes, and its decisions (stop, early stop) are broadcast so that every rank leaves the loop together.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from cmdcl.core.device import resolve_device
from cmdcl.core.distributed import world_from_env
from cmdcl.core.errors import CmdclError
from cmdcl.core.version import code_version
from ..model.checkpoint import (Checkpoint, ModelArgs, check_compatible, check_resume_dims, rng_state,
                                save_checkpoint, set_rng_state)
from ..model.config import HeadConfig
from ..data import FeatureData, epoch_batches, load_run_data, patches_note, train_val_rows
from ..metrics.evaluate import collect_outputs, compute_metrics, evaluate_splits, main_metric_name
from ..model.factory import build_model, count_parameters, text_tensors
from .grounding_loss import grounding_targets, resolve_step_readout, segment_table
from .runtime import (Amp, agreed, clear_stop, init_distributed, install_signal_handlers, request_stop,
                      restore_signal_handlers, seed_everything, stop_reason, sum_over_ranks)
from .loggers import RunLoggers
from .resume import RESUMABLE_CHANGES, merge_config, resolve_resume
from .run_files import append_metrics, lock_run, truncate_metrics, write_run_files
from .loss import auxiliary_losses, finite_or, head_loss, loss_targets, scalar_metrics
from .schedule import (Convergence, Schedule, Selection, param_groups, resolve_schedule, resolve_selection,
                       warmup_cosine)

__all__ = ["INTERRUPTED_EXIT_CODE", "RESUMABLE_CHANGES", "TrainState", "train", "train_one_epoch", "evaluate",
           "head_loss", "param_groups", "warmup_cosine", "request_stop", "seed_everything"]

INTERRUPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the run saved last.pt and asks to be resumed

# ---------------------------------------------------------------------------------------------- state

@dataclass
class RunContext:
    """What stays fixed for the whole run: options, data, devices, what checkpoints record."""
    cfg: HeadConfig
    out_dir: Path
    data: FeatureData
    train_rows: np.ndarray
    val_rows: np.ndarray
    dev: torch.device
    dist: Any  # torch.distributed under DDP, else None
    rank: int
    world: int
    say: Callable[[str], None]
    multilabel: bool
    aux_weight: float
    model_args: ModelArgs
    provenance: dict[str, Any]
    schedule: Schedule
    selection: Selection
    on_step: Callable[[dict[str, Any]], None] | None = None
    progress: bool = True
    num_params: int = 0
    frame_step: torch.Tensor | None = None  # (N, F) step id per frame, for the grounding loss (head/training/grounding_loss.py)
    loggers: RunLoggers = field(default_factory=RunLoggers)  # TensorBoard / W&B (head/training/loggers.py)
    run_record: dict[str, Any] = field(default_factory=dict)  # config.json, the loggers' hyper-parameters

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def metric_name(self) -> str:
        return main_metric_name(self.multilabel)

    @property
    def eval_batch(self) -> int:
        return self.cfg.eval_batch_size or 2 * self.cfg.batch_size

    @property
    def per_rank_batch(self) -> int:
        return self.cfg.batch_size // self.world

    @property
    def steps_per_epoch(self) -> int:
        return self.schedule.steps_per_epoch


@dataclass
class TrainState:
    """Everything that changes during training and is saved in a checkpoint."""
    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches done in the current epoch (non-zero only when resuming mid-epoch)
    best_metric: float = -math.inf
    best_epoch: int = 0
    best_val: dict[str, Any] = field(default_factory=dict)
    patience_left: int = 0
    # Running sums of the epoch (float64 on the device, saved mid-epoch): loss x videos, videos,
    # correct top-1 and labelled videos (single-label training accuracy, in train mode).
    sums: torch.Tensor | None = None
    seconds_before: float = 0.0  # time already spent in this epoch before a resume
    convergence: Convergence | None = None  # the training-loss stop rule and its state (head/training/schedule.py)


# ---------------------------------------------------------------------------------------------- entry

def train(features: str | Path | Sequence[str | Path], out_dir: str | Path, cfg: HeadConfig,
          resume: str | Path = "auto", device: str = "auto", deterministic: bool = False, *,
          on_step: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None, data: FeatureData | None = None,
          report_to: str | Sequence[str] = (), evaluate: Sequence[str] = ()) -> dict[str, Any]:
    """Train a head on cached features into `out_dir`; returns the summary of the best validation epoch.

    resume: "auto" (continue from out_dir/last.pt when it exists), "never", or a checkpoint path.
    on_step: called after every optimiser step with {"epoch", "step", "global_step", "loss"} (tests use it).
    data: the features already read (`load_run_data(features, ..., score_after=evaluate)`, which also checks those),
    so that several runs on the same features (seeds: head/training/seeds.py) read them once; validation rows are
    still chosen by this run's seed, so the run is the one `train(features, ...)` would make.
    report_to: live loggers, "tensorboard" and/or "wandb" (head/training/loggers.py), rank 0 only.
    evaluate: splits to score best.pt on once the run has finished (head/metrics/evaluate.py: evaluate_splits,
    written to out_dir/metrics_<split>.json), returned as summary["metrics"] and logged to the loggers.
    The summary has "interrupted": True when a signal stopped the run (last.pt holds its position).
    """
    cfg.check()
    loggers = RunLoggers(report_to)  # a logger that is not installed fails here, before anything is read
    out_dir = Path(out_dir)
    rank, local_rank, world = world_from_env()
    say = (log or (lambda m: print(m, flush=True))) if rank == 0 else (lambda m: None)
    if cfg.batch_size % world:
        raise CmdclError(f"--batch-size {cfg.batch_size} (global) does not split evenly over {world} processes.")
    dev = resolve_device(device, local_rank)
    dist = init_distributed(world, rank, dev)
    lock = None
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    handlers = {}
    try:
        try:
            lock = lock_run(out_dir, rank, dist, dev, say)
            saved, resume_path = resolve_resume(resume, out_dir, say)
            if saved is not None:
                cfg = merge_config(cfg, saved.config, say)
            if deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.use_deterministic_algorithms(True)
                torch.backends.cudnn.benchmark = False
            seed_everything(cfg.seed)
            clear_stop()
            handlers = install_signal_handlers()
            ctx, model = _setup(data or _load(features, cfg, say, evaluate), out_dir, cfg, saved, resume_path, dev,
                                dist, rank, world, say, deterministic)
            ctx.on_step, ctx.progress, ctx.loggers = on_step, progress, loggers
            result = _score_only(ctx, model) if ctx.num_params == 0 else _fit(ctx, model, saved, resume_path)
        finally:
            restore_signal_handlers(handlers)
            torch.use_deterministic_algorithms(previous_determinism)
            if dist is not None and dist.is_initialized():
                dist.destroy_process_group()
        if evaluate and rank == 0 and not result["interrupted"]:
            started = time.perf_counter()
            result["metrics"] = evaluate_splits(out_dir / "best.pt", features, evaluate, out_dir, device=device)
            result["evaluate_seconds"] = time.perf_counter() - started
            loggers.splits(result["metrics"], result["best_epoch"])
        return result
    finally:
        if lock is not None:
            lock.release()
        loggers.close()


# ---------------------------------------------------------------------------------------------- setup

def _load(features, cfg: HeadConfig, say: Callable[[str], None], evaluate: Sequence[str]) -> FeatureData:
    return load_run_data(features, cfg.frames, cfg.patches_wanted(), cfg.data_mode, log=say, score_after=evaluate,
                         train_split=cfg.train_split)


def _setup(data: FeatureData, out_dir: Path, cfg: HeadConfig, saved: Checkpoint | None, resume_path: Path | None,
           dev: torch.device, dist, rank: int, world: int, say: Callable[[str], None],
           deterministic: bool) -> tuple[RunContext, nn.Module]:
    """Head (seeded, dictionaries fitted or weights restored), this seed's rows and the run folder's files."""
    if cfg.use_patches is None:  # auto, resolved from the data read for it, so the checkpoint records what was used
        say(patches_note(data, cfg.method, reads_patches=cfg.patches_wanted() is None))
        cfg = dataclasses.replace(cfg, use_patches=data.use_patches)
    wanted_frames = cfg.frames if 0 < cfg.frames < data.feature_set.dims["F"] else data.feature_set.dims["F"]
    if (data.use_patches, data.frames) != (cfg.use_patches, wanted_frames):
        raise CmdclError(f"the features given to train() were read with {data.frames} frames, use_patches "
                         f"{data.use_patches}; this run asks for {wanted_frames} frames, use_patches "
                         f"{cfg.use_patches}.")
    train_rows, val_rows = train_val_rows(data, cfg.val_fraction, cfg.seed, log=say, train_split=cfg.train_split)
    fs = data.feature_set
    if saved is not None:
        check_compatible(saved, fs, resume_path)
    validates_on_train = not len(val_rows)
    if validates_on_train:
        say("validation set is empty (too few videos to carve one): scoring on the training videos instead.")
        val_rows = train_rows
    multilabel = data.is_multilabel(train_rows)
    dims = {"F": data.frames, "D": data.dim, "C": fs.dims["C"], "S": fs.dims["S"], "P": data.patches_per_frame}

    table = segment_table(cfg, data)
    cfg = resolve_step_readout(cfg, table, say)  # auto made concrete before the head is built (and recorded)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, fs.text, dims, multilabel)
    if saved is None and hasattr(model, "fit_dictionaries"):
        t0 = time.time()
        model.fit_dictionaries(*data.numpy_features(train_rows))
        say(f"fitted dictionaries on {len(train_rows)} training videos in {time.time() - t0:.1f}s.")
    if saved is not None:
        check_resume_dims(saved, dims, fs, resume_path)
        model.load_state_dict(saved.model)
    model.to(dev)
    if dev.type == "cuda" and data.mode == "memory" and data.nbytes < 0.3 * torch.cuda.mem_get_info(dev)[0]:
        data.to(dev)  # the whole feature set fits on the GPU: batches become on-device indexing
    class_text, step_text = text_tensors(fs.text)
    saved_passes = saved.schedule.get("passes_per_epoch") if saved is not None and saved.schedule else None
    ctx = RunContext(
        cfg=cfg, out_dir=out_dir, data=data, train_rows=train_rows, val_rows=val_rows, dev=dev, dist=dist,
        rank=rank, world=world, say=say, multilabel=multilabel,
        aux_weight=cfg.aux_step_loss if data.steps_annotated(train_rows) else 0.0,
        model_args=ModelArgs(method=cfg.method, dims=dims, multilabel=multilabel, class_names=fs.text.class_names,
                             step_names=fs.text.step_names, class_text=class_text,
                             step_text=step_text[:len(fs.text.step_names)]),
        # Absolute paths: the report and evaluate may run from another directory.
        provenance={**fs.provenance(), "files": [str(p.resolve()) for p in fs.paths]},
        schedule=resolve_schedule(cfg, len(train_rows), world, saved_passes),
        selection=resolve_selection(cfg, len(val_rows), validates_on_train), num_params=count_parameters(model))
    ctx.frame_step = grounding_targets(cfg, table, dev, say)
    if ctx.master:
        ctx.run_record = _write_run_files(ctx, deterministic)
    say(f"{cfg.method}: {ctx.num_params:,} trainable parameters, {'multi' if multilabel else 'single'}-label, "
        f"{dims['C']} classes, {dims['S']} steps, {dims['F']} frames x {dims['D']} dims, device {dev}"
        f"{f', {world} processes' if world > 1 else ''}.")
    if ctx.num_params:
        say(ctx.schedule.describe())
        say(ctx.selection.describe(ctx.metric_name))
        say(Convergence.from_config(cfg).describe())
    return ctx, model


def _write_run_files(ctx: RunContext, deterministic: bool) -> dict[str, Any]:
    return write_run_files(ctx.out_dir, {
        "config": ctx.cfg.to_dict(), "method": ctx.cfg.method, "features": ctx.provenance["files"],
        "dims": ctx.model_args.dims, "multilabel": ctx.multilabel, "aux_step_loss_used": ctx.aux_weight,
        "parameters": ctx.num_params, "train_videos": int(len(ctx.train_rows)), "val_videos": int(len(ctx.val_rows)),
        "schedule": ctx.schedule.to_dict(), "selection": ctx.selection.keep, "world_size": ctx.world,
        "device": str(ctx.dev), "deterministic": deterministic, "data_mode": ctx.data.mode}, ctx.provenance)


def _new_state(ctx: RunContext, model: nn.Module) -> TrainState:
    """A fresh TrainState: AdamW and the warm-up + cosine schedule over this run's optimiser steps."""
    cfg, schedule = ctx.cfg, ctx.schedule
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(schedule.warmup_steps, schedule.total_steps))
    return TrainState(model=model, optimizer=optimizer, scheduler=scheduler, patience_left=cfg.patience,
                      sums=torch.zeros(4, dtype=torch.float64, device=ctx.dev),
                      convergence=Convergence.from_config(cfg))


# ---------------------------------------------------------------------------------------------- save / restore

def make_checkpoint(ctx: RunContext, ts: TrainState, finished: bool, partial: dict | None = None) -> Checkpoint:
    return Checkpoint(
        model=ts.model.state_dict(), model_args=ctx.model_args, config=ctx.cfg, provenance=ctx.provenance,
        epoch=ts.epoch, step_in_epoch=ts.step_in_epoch, best_metric=ts.best_metric, best_epoch=ts.best_epoch,
        best_val=ts.best_val, patience_left=ts.patience_left, finished=finished,
        optimizer=ts.optimizer.state_dict() if ts.optimizer else None,
        scheduler=ts.scheduler.state_dict() if ts.scheduler else None, partial_epoch=partial,
        schedule={**ctx.schedule.to_dict(), "selection": ctx.selection.keep, "val_videos": ctx.selection.val_videos,
                  **({"convergence": ts.convergence.to_dict()} if ts.convergence else {})},
        rng=rng_state(), code_version=code_version())


def restore(ctx: RunContext, ts: TrainState, saved: Checkpoint) -> None:
    """Continue from `saved`: optimiser, schedule, position, selection state (RNG states: see _fit)."""
    ts.optimizer.load_state_dict(saved.optimizer)
    ts.scheduler.load_state_dict(saved.scheduler)
    ts.epoch, ts.step_in_epoch = saved.epoch, saved.step_in_epoch
    ts.best_metric, ts.best_epoch, ts.best_val = saved.best_metric, saved.best_epoch, dict(saved.best_val)
    ts.patience_left = saved.patience_left + (ctx.cfg.patience - saved.config.patience)
    ts.convergence = Convergence.from_config(ctx.cfg, (saved.schedule or {}).get("convergence"))
    partial = saved.partial_epoch or {}
    if ts.step_in_epoch and partial:
        ts.sums = partial["sums"].to(ctx.dev)
        ts.seconds_before = float(partial["seconds"])


def _summary(ctx: RunContext, ts: TrainState, epochs_run: int, interrupted: bool = False,
             stopped_early: bool = False) -> dict[str, Any]:
    return {"run_dir": str(ctx.out_dir), "metric": ctx.metric_name, "best_metric": ts.best_metric,
            "best_epoch": ts.best_epoch, "best": ts.best_val, "epochs_run": epochs_run,
            "stopped_early": stopped_early, "interrupted": interrupted, "parameters": ctx.num_params,
            "converged_epoch": ts.convergence.stopped_at if ts.convergence else 0}


# ---------------------------------------------------------------------------------------------- loop

def _score_only(ctx: RunContext, model: nn.Module) -> dict[str, Any]:
    """Heads without parameters (zeroshot): score validation once and save."""
    ts = TrainState(model=model, patience_left=ctx.cfg.patience)
    val = scalar_metrics(compute_metrics(collect_outputs(model, ctx.data, ctx.val_rows, ctx.dev, ctx.eval_batch),
                                   ctx.data, ctx.val_rows, ctx.multilabel, detailed=False))
    ts.best_metric, ts.best_val = finite_or(val.get(ctx.metric_name)), val
    if ctx.master:
        record = {"epoch": 0, **{f"val_{k}": v for k, v in val.items()}, "best": True}
        truncate_metrics(ctx.out_dir, 0)  # scored again: one record, not one per call
        append_metrics(ctx.out_dir, record)
        ctx.loggers.start(ctx.out_dir, ctx.run_record, ctx.metric_name, 0, ctx.say)
        ctx.loggers.epoch(record)
        save_checkpoint(ctx.out_dir / "best.pt", make_checkpoint(ctx, ts, True))
        save_checkpoint(ctx.out_dir / "last.pt", make_checkpoint(ctx, ts, True))
    ctx.say(f"{ctx.cfg.method} has no trainable parameters: scored validation only, "
            f"{ctx.metric_name} {ts.best_metric:.4f}.")
    return _summary(ctx, ts, 0)


def _fit(ctx: RunContext, model: nn.Module, saved: Checkpoint | None, resume_path: Path | None) -> dict[str, Any]:
    """The epochs: train_one_epoch, then validation and bookkeeping, until done, early stop or a signal."""
    cfg = ctx.cfg
    ts = _new_state(ctx, model)
    if saved is not None:
        restore(ctx, ts, saved)
        if ctx.master:
            truncate_metrics(ctx.out_dir, ts.epoch, note=ctx.say)
        if saved.finished and (ts.epoch >= ctx.schedule.epochs or ts.convergence.stopped_at) or (
                ctx.selection.patience and ts.patience_left <= 0):
            ctx.say(f"{resume_path}: run already finished (epoch {ts.epoch}); nothing to do.")
            return _summary(ctx, ts, ts.epoch)
        ctx.say(f"resuming from {resume_path} at epoch {ts.epoch + 1}, step {ts.step_in_epoch}/"
                f"{ctx.steps_per_epoch}.")
        set_rng_state(saved.rng)
    elif ctx.master:
        truncate_metrics(ctx.out_dir, 0)  # starting over: lines of a run that left no checkpoint go
    if ctx.master:
        ctx.loggers.start(ctx.out_dir, ctx.run_record, ctx.metric_name, ts.epoch, ctx.say)
    net = model
    if ctx.dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[ctx.dev.index] if ctx.dev.type == "cuda" else None,
                                      find_unused_parameters=True)
    amp = Amp(ctx.dev)
    while ts.epoch < ctx.schedule.epochs:
        started = time.time()
        if train_one_epoch(ctx, ts, net, amp):
            return _summary(ctx, ts, ts.epoch, interrupted=True)
        seconds = ts.seconds_before + time.time() - started
        ts.seconds_before = 0.0
        stop_early, finished = _end_epoch(ctx, ts, seconds)
        if stop_early and ts.convergence.stopped_at:
            ctx.say(f"converged: the training loss fell less than {cfg.converge_delta:.0%} in {cfg.converge_patience} "
                    f"epochs; stopped at epoch {ts.epoch} (best.pt: epoch {ts.best_epoch}).")
            return _summary(ctx, ts, ts.epoch, stopped_early=True)
        if stop_early:
            ctx.say(f"early stopping: no {ctx.metric_name} improvement for {cfg.patience} epochs "
                    f"(best {ts.best_metric:.4f} at epoch {ts.best_epoch}).")
            return _summary(ctx, ts, ts.epoch, stopped_early=True)
        if agreed(ctx.dist, stop_reason() is not None, ctx.dev) and not finished:
            ctx.say(f"{stop_reason() or 'stop requested'}: saved {ctx.out_dir / 'last.pt'} after epoch {ts.epoch}; "
                    "continue with --resume auto.")
            return _summary(ctx, ts, ts.epoch, interrupted=True)
    ctx.say(f"done: best val {ctx.metric_name} {ts.best_metric:.4f} at epoch {ts.best_epoch}; checkpoints in "
            f"{ctx.out_dir}.")
    return _summary(ctx, ts, ctx.schedule.epochs)


def train_one_epoch(ctx: RunContext, ts: TrainState, net: nn.Module, amp: Amp) -> bool:
    """The remaining steps of epoch `ts.epoch`; True when a stop signal ended it early (last.pt saved)."""
    from tqdm import tqdm

    cfg, epoch, started = ctx.cfg, ts.epoch, time.time()
    batches = epoch_batches(ctx.train_rows, ctx.per_rank_batch, seed=cfg.seed, epoch=epoch, rank=ctx.rank,
                            world=ctx.world, passes=ctx.schedule.passes_per_epoch)
    ts.model.train()
    bar = tqdm(total=len(batches), initial=ts.step_in_epoch, desc=f"epoch {epoch + 1}/{ctx.schedule.epochs}",
               leave=False, disable=not (ctx.master and ctx.progress), dynamic_ncols=True)
    for step in range(ts.step_in_epoch, len(batches)):
        batch = ctx.data.batch(batches[step], ctx.dev)
        with amp.autocast():
            out = net(batch["features"], batch["frame_mask"], batch.get("patches"))
            loss = head_loss(out, batch, ctx.multilabel, ctx.aux_weight)
            if cfg.method == "cmdcl":
                rows = torch.as_tensor(batches[step], dtype=torch.long)
                frame_step = ctx.frame_step[rows.to(ctx.frame_step.device)] if ctx.frame_step is not None else None
                loss = loss + auxiliary_losses(cfg, ts.model, out, batch, frame_step)
        ts.optimizer.zero_grad(set_to_none=True)
        amp.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            amp.scaler.unscale_(ts.optimizer)
            nn.utils.clip_grad_norm_(ts.model.parameters(), cfg.grad_clip)
        amp.scaler.step(ts.optimizer)
        amp.scaler.update()
        ts.scheduler.step()
        n = len(batches[step])
        with torch.no_grad():
            labelled = batch["label"] >= 0
            correct = (out["logits"].argmax(-1) == batch["label"]) & labelled
            ts.sums += torch.stack([loss.detach().double() * n, torch.tensor(float(n), device=ctx.dev),
                                    correct.sum().double(), labelled.sum().double()])
        bar.update(1)
        if ctx.on_step is not None:
            ctx.on_step({"epoch": epoch, "step": step, "global_step": epoch * ctx.steps_per_epoch + step + 1,
                         "loss": loss.item()})
        if agreed(ctx.dist, stop_reason() is not None, ctx.dev) and step + 1 < len(batches):
            ts.step_in_epoch = step + 1
            partial = {"sums": ts.sums.cpu(), "seconds": ts.seconds_before + time.time() - started}
            if ctx.master:
                save_checkpoint(ctx.out_dir / "last.pt", make_checkpoint(ctx, ts, False, partial))
            bar.close()
            ctx.say(f"{stop_reason() or 'stop requested'}: saved {ctx.out_dir / 'last.pt'} at epoch {epoch + 1}, "
                    f"step {step + 1}/{len(batches)}; continue with --resume auto.")
            return True
    bar.close()
    ts.step_in_epoch = 0
    return False


def evaluate(ctx: RunContext, model: nn.Module) -> dict[str, Any]:
    """Validation: the scalar metrics of the head on the validation videos, plus the loss ("loss")."""
    if ctx.cfg.refresh_memory and getattr(model, "refreshes_memory", False):
        # Front-door memory follows the trained encoder (docs/METHOD.md, VCI); under DDP the other
        # ranks receive the refreshed buffers at their next forward.
        summaries = collect_outputs(model, ctx.data, ctx.train_rows, ctx.dev, ctx.eval_batch, keys=("video_summary",))
        if summaries["video_summary"] is not None:
            model.refresh_memory(torch.from_numpy(summaries["video_summary"]).to(ctx.dev))
    outputs = collect_outputs(model, ctx.data, ctx.val_rows, ctx.dev, ctx.eval_batch)
    val = scalar_metrics(compute_metrics(outputs, ctx.data, ctx.val_rows, ctx.multilabel, detailed=False))
    val["loss"] = float(head_loss({k: torch.from_numpy(v) for k, v in outputs.items() if v is not None},
                                  loss_targets(ctx.data, ctx.val_rows), ctx.multilabel, ctx.aux_weight))
    return val


def _end_epoch(ctx: RunContext, ts: TrainState, seconds: float) -> tuple[bool, bool]:
    """After an epoch's steps: validate, select, log, save; returns (stop early, finished) on every rank."""
    totals = sum_over_ranks(ctx.dist, ts.sums)
    train_stats = {"train_loss": float(totals[0] / totals[1].clamp(min=1))}
    if not ctx.multilabel:
        train_stats["train_top1"] = float(totals[2] / totals[3].clamp(min=1))
    ts.sums = torch.zeros_like(ts.sums)
    ts.epoch += 1
    decision = torch.zeros(2, dtype=torch.float64, device=ctx.dev)  # (save as best, stop early)
    record: dict[str, Any] = {}
    if ctx.master:
        val = evaluate(ctx, ts.model)
        converged = ts.convergence.update(train_stats["train_loss"], ts.epoch, train_stats.get("train_top1"))
        decision[0], decision[1] = _select(ctx, ts, val, converged)
        record = {"epoch": ts.epoch, **train_stats, **{f"val_{k}": v for k, v in val.items()},
                  "lr": ts.optimizer.param_groups[0]["lr"], "epoch_seconds": round(seconds, 3),
                  "best": bool(decision[0]), **({"converged": True} if converged else {})}
        ctx.say(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
    if ctx.dist is not None:
        ctx.dist.broadcast(decision, src=0)
    stop_early = bool(decision[1])
    finished = stop_early or ts.epoch == ctx.schedule.epochs
    if ctx.master:
        if decision[0]:
            save_checkpoint(ctx.out_dir / "best.pt", make_checkpoint(ctx, ts, finished))
        append_metrics(ctx.out_dir, record)
        ctx.loggers.epoch(record)
        save_checkpoint(ctx.out_dir / "last.pt", make_checkpoint(ctx, ts, finished))
    return stop_early, finished


def _select(ctx: RunContext, ts: TrainState, val: dict[str, Any], converged: bool) -> tuple[bool, bool]:
    """The selection rule (head/training/schedule.py): (save this epoch as best.pt, stop early); `converged`: the
    training-loss rule stops the run after this epoch."""
    metric = finite_or(val.get(ctx.metric_name))
    if ctx.selection.keep == "last":  # too little validation to choose: the final epoch is kept
        ts.best_metric, ts.best_epoch, ts.best_val = metric, ts.epoch, val
        return ts.epoch == ctx.schedule.epochs or converged, converged
    improved = metric > ts.best_metric
    if improved:
        ts.best_metric, ts.best_epoch, ts.best_val, ts.patience_left = metric, ts.epoch, val, ctx.cfg.patience
    else:
        ts.patience_left -= 1
    return improved, converged or (bool(ctx.selection.patience) and ts.patience_left <= 0)
