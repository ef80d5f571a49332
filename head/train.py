"""The training loop: one readable function, nanoGPT-style.

    data (head/data.py) -> head (head/factory.py) -> AdamW + warm-up/cosine per step -> epochs of
    steps -> validation -> best.pt / last.pt / metrics.jsonl -> early stopping

Pre-emption: SIGTERM or SIGUSR1 only set a flag; at the next step boundary the loop writes last.pt with
its position inside the epoch and returns. `resume="auto"` continues from last.pt exactly: the data
order is a function of (seed, epoch) and every RNG state is restored, so on CPU in deterministic mode
the resumed run ends with the same weights and metrics as an uninterrupted one.

DDP: launched by torchrun (or srun with MASTER_ADDR/MASTER_PORT set), one process per GPU; the global
batch `cfg.batch_size` is split evenly over ranks, DDP all-reduces gradients, rank 0 validates and
writes, and its decisions (stop, early stop) are broadcast so that every rank leaves the loop together.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cmdcl.core.device import resolve_device
from cmdcl.core.distributed import world_from_env
from cmdcl.core.errors import CheckpointError, CmdclError
from cmdcl.core.version import code_version
from cmdcl.head.checkpoint import (CHECKPOINT_FORMAT_VERSION, check_compatible, load_checkpoint, rng_state,
                                   save_checkpoint, set_rng_state)
from cmdcl.head.config import HeadConfig
from cmdcl.head.data import epoch_batches, load_train_val, steps_per_epoch
from cmdcl.head.evaluate import collect_outputs, compute_metrics, main_metric_name, write_json
from cmdcl.head.factory import build_model, count_parameters, text_tensors

INTERRUPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the run saved last.pt and asks to be resumed
# Options that may change when resuming (they do not change what the saved state means).
RESUMABLE_CHANGES = ("epochs", "patience", "eval_batch_size", "data_mode")

_stop_reason: str | None = None


def request_stop(reason: str = "stop requested") -> None:
    """Ask the running loop to save last.pt at the next step boundary and return (what the signals do)."""
    global _stop_reason
    _stop_reason = reason


def _on_signal(signum: int, frame: Any) -> None:
    request_stop(signal.Signals(signum).name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def head_loss(out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], multilabel: bool,
              aux_step_weight: float) -> torch.Tensor:
    """Cross-entropy (single-label, -1 ignored) or BCE (multi-label), plus weighted BCE on step presence."""
    logits = out["logits"].float()
    if multilabel:
        loss = F.binary_cross_entropy_with_logits(logits, targets["labels"])
    else:
        loss = F.cross_entropy(logits, targets["label"], ignore_index=-1)
    if aux_step_weight > 0 and "step_logits" in out and out["step_logits"].shape == targets["steps"].shape:
        loss = loss + aux_step_weight * F.binary_cross_entropy_with_logits(out["step_logits"].float(), targets["steps"])
    return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on norms, biases or temperatures (1-d or named *temperature*)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "temperature" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier per optimiser step: linear warm-up from ~0 to 1, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _resolve_resume(resume: str | Path, out_dir: Path, say: Callable[[str], None]) -> tuple[dict | None, Path | None]:
    resume = str(resume)
    if resume == "never":
        if (out_dir / "last.pt").exists():
            say(f"--resume never: starting over in {out_dir} (its last.pt will be overwritten).")
        return None, None
    path = out_dir / "last.pt" if resume == "auto" else Path(resume)
    if resume == "auto" and not path.exists():
        return None, None
    try:
        return load_checkpoint(path), path
    except CheckpointError as exc:
        if resume != "auto":
            raise
        raise CheckpointError(exc.message, fix=f"start over with --resume never, or continue from the best "
                                              f"epoch with --resume {out_dir / 'best.pt'}.") from None


def _merge_config(cfg: HeadConfig, saved: dict[str, Any], say: Callable[[str], None]) -> HeadConfig:
    """The checkpoint's options win, except those in RESUMABLE_CHANGES."""
    merged = HeadConfig.from_dict(saved)
    for key in RESUMABLE_CHANGES:
        setattr(merged, key, getattr(cfg, key))
    for key, value in cfg.to_dict().items():
        if getattr(merged, key) != value:
            say(f"resuming: keeping the checkpoint's {key}={getattr(merged, key)!r} (asked for {value!r}).")
    return merged


def train(features: str | Path | Sequence[str | Path], out_dir: str | Path, cfg: HeadConfig,
          resume: str | Path = "auto", device: str = "auto", deterministic: bool = False, *,
          on_step: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train a head on cached features into `out_dir`; returns the summary of the best validation epoch.

    resume: "auto" (continue from out_dir/last.pt when it exists), "never", or a checkpoint path.
    on_step: called after every optimiser step with {"epoch", "step", "global_step", "loss"} (tests use it).
    The summary has "interrupted": True when a signal stopped the run (last.pt holds its position).
    """
    global _stop_reason
    cfg.check()
    out_dir = Path(out_dir)
    rank, local_rank, world = world_from_env()
    master = rank == 0
    say = (log or (lambda m: print(m, flush=True))) if master else (lambda m: None)
    if cfg.batch_size % world:
        raise CmdclError(f"--batch-size {cfg.batch_size} (global) does not split evenly over {world} processes.")
    dev = resolve_device(device, local_rank)
    dist = _init_distributed(world, rank, dev)

    state, resume_path = _resolve_resume(resume, out_dir, say)
    if state is not None:
        cfg = _merge_config(cfg, state["config"], say)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed)
    _stop_reason = None
    handlers = _install_signal_handlers()
    try:
        return _run(features, out_dir, cfg, state, resume_path, dev, dist, rank, world, master, say, on_step, progress,
                    deterministic)
    finally:
        _restore_signal_handlers(handlers)
        torch.use_deterministic_algorithms(previous_determinism)
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()


def _run(features, out_dir: Path, cfg: HeadConfig, state: dict | None, resume_path: Path | None, dev: torch.device,
         dist, rank: int, world: int, master: bool, say, on_step, progress: bool, deterministic: bool) -> dict[str, Any]:
    # ------------------------------------------------------------------ data
    data, train_rows, val_rows = load_train_val(features, cfg.frames, cfg.use_patches, cfg.val_fraction, cfg.seed,
                                                cfg.data_mode, log=say)
    fs = data.feature_set
    if state is not None:
        check_compatible(state, fs, resume_path)
    if not len(val_rows):
        say("validation set is empty (too few videos to carve one): scoring on the training videos instead.")
        val_rows = train_rows
    multilabel = data.is_multilabel(train_rows)
    aux_weight = cfg.aux_step_loss if data.steps_annotated(train_rows) else 0.0
    dims = {"F": data.frames, "D": data.dim, "C": fs.dims["C"], "S": fs.dims["S"], "P": data.patches_per_frame}

    # ------------------------------------------------------------------ model
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, fs.text, dims, multilabel)
    if state is None and hasattr(model, "fit_dictionaries"):
        t0 = time.time()
        model.fit_dictionaries(*data.numpy_features(train_rows))
        say(f"fitted dictionaries on {len(train_rows)} training videos in {time.time() - t0:.1f}s.")
    if state is not None:
        model.load_state_dict(state["model"])
    model.to(dev)
    if dev.type == "cuda" and data.mode == "memory" and data.nbytes < 0.3 * torch.cuda.mem_get_info(dev)[0]:
        data.to(dev)  # the whole feature set fits on the GPU: batches become on-device indexing
    num_params = count_parameters(model)
    class_text, step_text = text_tensors(fs.text)
    model_args = {"method": cfg.method, "dims": dims, "multilabel": multilabel, "class_names": fs.text.class_names,
                  "step_names": fs.text.step_names, "class_text": class_text, "step_text": step_text[:len(fs.text.step_names)]}
    # Absolute paths: the report and evaluate may run from another directory.
    provenance = {**fs.provenance(), "files": [str(p.resolve()) for p in fs.paths]}
    metric_name = main_metric_name(multilabel)
    eval_batch = cfg.eval_batch_size or 2 * cfg.batch_size
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", {
            "config": cfg.to_dict(), "method": cfg.method, "features": provenance["files"],
            "dims": dims, "multilabel": multilabel, "aux_step_loss_used": aux_weight, "parameters": num_params,
            "train_videos": int(len(train_rows)), "val_videos": int(len(val_rows)), "world_size": world,
            "device": str(dev), "deterministic": deterministic, "data_mode": data.mode, "code_version": code_version(),
            "torch": torch.__version__, "command": " ".join(sys.argv)})
        write_json(out_dir / "provenance.json", provenance)
    say(f"{cfg.method}: {num_params:,} trainable parameters, {'multi' if multilabel else 'single'}-label, "
        f"{dims['C']} classes, {dims['S']} steps, {dims['F']} frames x {dims['D']} dims, device {dev}"
        f"{f', {world} processes' if world > 1 else ''}.")

    def checkpoint(epoch: int, step_in_epoch: int, finished: bool, partial: dict | None = None) -> dict[str, Any]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
            "scheduler": scheduler.state_dict() if scheduler else None, "model_args": model_args,
            "config": cfg.to_dict(), "provenance": provenance,
            "vocabulary": {"class_names": fs.text.class_names, "step_names": fs.text.step_names},
            "format_version": CHECKPOINT_FORMAT_VERSION, "epoch": epoch, "step_in_epoch": step_in_epoch,
            "best_metric": best, "best_epoch": best_epoch, "best_val": best_val, "patience_left": patience_left,
            "partial_epoch": partial, "finished": finished, "rng": rng_state(), "code_version": code_version(),
        }

    def summary(epochs_run: int, interrupted: bool = False, stopped_early: bool = False) -> dict[str, Any]:
        return {"run_dir": str(out_dir), "metric": metric_name, "best_metric": best, "best_epoch": best_epoch,
                "best": best_val, "epochs_run": epochs_run, "stopped_early": stopped_early, "interrupted": interrupted,
                "parameters": num_params}

    best, best_epoch, best_val, patience_left = -math.inf, 0, {}, cfg.patience
    optimizer = scheduler = None

    # ------------------------------------------------------------------ heads without parameters: score only
    if num_params == 0:
        outputs = collect_outputs(model, data, val_rows, dev, eval_batch)
        val = compute_metrics(outputs, data, val_rows, multilabel, detailed=False)
        best, best_epoch, best_val = _finite_or(val.get(metric_name)), 0, _scalars(val)
        if master:
            _append_metrics(out_dir, {"epoch": 0, **{f"val_{k}": v for k, v in best_val.items()}, "best": True})
            save_checkpoint(out_dir / "best.pt", checkpoint(0, 0, True))
            save_checkpoint(out_dir / "last.pt", checkpoint(0, 0, True))
        say(f"{cfg.method} has no trainable parameters: scored validation only, {metric_name} {best:.4f}.")
        return summary(0)

    # ------------------------------------------------------------------ optimiser and schedule
    per_rank_batch = cfg.batch_size // world
    n_steps = steps_per_epoch(len(train_rows), per_rank_batch, world)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.warmup_epochs * n_steps, cfg.epochs * n_steps))
    start_epoch, start_step = 0, 0
    # Running sums of the epoch (float64 on the device, saved mid-epoch): loss x videos, videos,
    # correct top-1 and labelled videos (single-label training accuracy, in train mode).
    sums = torch.zeros(4, dtype=torch.float64, device=dev)
    epoch_seconds_before = 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, start_step = int(state["epoch"]), int(state["step_in_epoch"])
        best, best_epoch, best_val = float(state["best_metric"]), int(state["best_epoch"]), dict(state["best_val"])
        patience_left = int(state["patience_left"]) + (cfg.patience - int(state["config"]["patience"]))
        partial = state.get("partial_epoch") or {}
        if start_step and partial:
            sums = partial["sums"].to(dev)
            epoch_seconds_before = float(partial["seconds"])
        if master:
            _truncate_metrics(out_dir, start_epoch)
        if state.get("finished") and start_epoch >= cfg.epochs or (cfg.patience and patience_left <= 0):
            say(f"{resume_path}: run already finished (epoch {start_epoch}); nothing to do.")
            return summary(start_epoch)
        say(f"resuming from {resume_path} at epoch {start_epoch + 1}, step {start_step}/{n_steps}.")
        set_rng_state(state["rng"])

    use_amp = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    net = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                      find_unused_parameters=True)

    # ------------------------------------------------------------------ epochs
    from tqdm import tqdm

    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        started = time.time()
        batches = epoch_batches(train_rows, per_rank_batch, seed=cfg.seed, epoch=epoch, rank=rank, world=world)
        model.train()
        bar = tqdm(total=len(batches), initial=start_step, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (master and progress), dynamic_ncols=True)
        for step in range(start_step, len(batches)):
            batch = data.batch(batches[step], dev)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                out = net(batch["features"], batch["frame_mask"], batch.get("patches"))
                loss = head_loss(out, batch, multilabel, aux_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n = len(batches[step])
            with torch.no_grad():
                labelled = batch["label"] >= 0
                correct = (out["logits"].argmax(-1) == batch["label"]) & labelled
                sums += torch.stack([loss.detach().double() * n, torch.tensor(float(n), device=dev),
                                     correct.sum().double(), labelled.sum().double()])
            bar.update(1)
            if on_step is not None:
                on_step({"epoch": epoch, "step": step, "global_step": epoch * n_steps + step + 1, "loss": loss.item()})
            if _agreed(dist, _stop_reason is not None, dev) and step + 1 < len(batches):
                partial = {"sums": sums.cpu(), "seconds": epoch_seconds_before + time.time() - started}
                if master:
                    save_checkpoint(out_dir / "last.pt", checkpoint(epoch, step + 1, False, partial))
                bar.close()
                say(f"{_stop_reason or 'stop requested'}: saved {out_dir / 'last.pt'} at epoch {epoch + 1}, step "
                    f"{step + 1}/{len(batches)}; continue with --resume auto.")
                return summary(epoch, interrupted=True)
        bar.close()
        start_step = 0

        # -------------------------------------------------------------- validation and bookkeeping
        totals = _sum_over_ranks(dist, sums)
        train = {"train_loss": float(totals[0] / totals[1].clamp(min=1))}
        if not multilabel:
            train["train_top1"] = float(totals[2] / totals[3].clamp(min=1))
        seconds = epoch_seconds_before + time.time() - started
        epoch_seconds_before = 0.0
        sums = torch.zeros_like(sums)
        decision = torch.zeros(2, dtype=torch.float64, device=dev)  # (improved, stop early)
        if master:
            if cfg.refresh_memory and hasattr(model, "refresh_memory"):
                # Front-door memory follows the trained encoder (method.md §4); under DDP the other
                # ranks receive the refreshed buffers at their next forward.
                summaries = collect_outputs(model, data, train_rows, dev, eval_batch, keys=("video_summary",))
                if summaries["video_summary"] is not None:
                    model.refresh_memory(torch.from_numpy(summaries["video_summary"]).to(dev))
            outputs = collect_outputs(model, data, val_rows, dev, eval_batch)
            val = _scalars(compute_metrics(outputs, data, val_rows, multilabel, detailed=False))
            val["loss"] = float(head_loss({k: torch.from_numpy(v) for k, v in outputs.items() if v is not None},
                                          _targets(data, val_rows), multilabel, aux_weight))
            metric = _finite_or(val.get(metric_name))
            improved = metric > best
            decision[0] = float(improved)
            if improved:
                best, best_epoch, best_val, patience_left = metric, epoch + 1, val, cfg.patience
            else:
                patience_left -= 1
            decision[1] = float(bool(cfg.patience) and patience_left <= 0)
            record = {"epoch": epoch + 1, **train, **{f"val_{k}": v for k, v in val.items()},
                      "lr": optimizer.param_groups[0]["lr"], "epoch_seconds": round(seconds, 3), "best": improved}
            say(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        if dist is not None:
            dist.broadcast(decision, src=0)
        stop_early = bool(decision[1])
        finished = stop_early or epoch + 1 == cfg.epochs
        if master:
            if decision[0]:
                save_checkpoint(out_dir / "best.pt", checkpoint(epoch + 1, 0, finished))
            _append_metrics(out_dir, record)
            save_checkpoint(out_dir / "last.pt", checkpoint(epoch + 1, 0, finished))
        if stop_early:
            say(f"early stopping: no {metric_name} improvement for {cfg.patience} epochs "
                f"(best {best:.4f} at epoch {best_epoch}).")
            return summary(epoch + 1, stopped_early=True)
        if _agreed(dist, _stop_reason is not None, dev) and not finished:
            say(f"{_stop_reason or 'stop requested'}: saved {out_dir / 'last.pt'} after epoch {epoch + 1}; "
                "continue with --resume auto.")
            return summary(epoch + 1, interrupted=True)
    say(f"done: best val {metric_name} {best:.4f} at epoch {best_epoch}; checkpoints in {out_dir}.")
    return summary(cfg.epochs)


# ---------------------------------------------------------------------------------------------- helpers

def _targets(data, rows: np.ndarray) -> dict[str, torch.Tensor]:
    idx = torch.as_tensor(rows)
    return {"label": data.label[idx.to(data.label.device)].cpu(), "labels": data.labels[idx.to(data.labels.device)].cpu().float(),
            "steps": data.steps[idx.to(data.steps.device)].cpu().float()}


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "num_videos"}


def _finite_or(value: Any, default: float = -math.inf) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else default


def _append_metrics(out_dir: Path, record: dict[str, Any]) -> None:
    with open(out_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_metrics(out_dir: Path, completed_epochs: int) -> None:
    """Drop lines of epochs after the checkpoint (written before a crash, about to be redone)."""
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= completed_epochs]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def _init_distributed(world: int, rank: int, dev: torch.device):
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise CmdclError(f"{world} processes but {key} is not set.",
                                 fix="launch with torchrun, or export MASTER_ADDR/MASTER_PORT under srun.")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return dist


def _agreed(dist, flag: bool, dev: torch.device) -> bool:
    """True on every rank when any rank saw the flag (a signal may reach ranks at different steps)."""
    if dist is None:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dev)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _sum_over_ranks(dist, sums: torch.Tensor) -> torch.Tensor:
    totals = sums.clone()
    if dist is not None:
        dist.all_reduce(totals)
    return totals.cpu()


def _install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGUSR1)}


def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
