"""Several runs on one feature set with the features read once: `train_seeds` (one method over several
seeds, `cmdcl train-head --seeds 0,1,2`) and `train_jobs` (any list of (config, run folder), e.g. the
demo's methods x seeds).

Each job is an ordinary `train()` run in its own folder (head/training/seed_runs.py fixes the layout of a
multi-seed run), so it resumes on its own: a killed multi-seed run continues each seed from its last.pt
and skips the finished ones. Validation is carved per seed with that seed (as `train-head --seed K`
does), so RUN/seed-K is exactly the run `train-head --seed K` would make.

Workers: with `workers` > 1, jobs run in that many forked worker processes (one torch thread each), all
reading the parent's FeatureData (fork shares it copy-on-write: nothing is read or copied again). Tiny
heads on a CPU spend their time in per-op overhead on one thread, so two workers on two cores do twice
the work in the same time. SIGTERM/SIGUSR1 to the parent reach every worker: each saves last.pt at its
next step boundary and no new job starts. So does Ctrl-C (SIGINT), which the workers report as SIGINT;
a second Ctrl-C stops without waiting for them.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import queue
import signal
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from cmdcl.core.distributed import world_from_env
from cmdcl.core.errors import CmdclError

from ..model.config import HeadConfig
from ..data import FeatureData, load_run_data
from .run_files import run_lock
from .runtime import stop_on_sigint
from .seed_runs import read_seeds, seed_dir, write_seeds

Job = tuple[HeadConfig, Path]
# The parent's jobs and data, inherited by forked workers (only job indices cross the queue).
_SHARED: dict[str, Any] = {}


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (or a mix) -> distinct non-negative seeds in the order given."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in str(text).split(",") if p.strip()):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise CmdclError(f"--seeds {text!r}: expected seeds like 0,1,2 or 0-4.") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise CmdclError(f"--seeds {text!r}: expected distinct non-negative seeds, e.g. 0,1,2.")
    return seeds


def train_seeds(features: str | Path | Sequence[str | Path], out_dir: str | Path, cfg: HeadConfig,
                seeds: Sequence[int], *, workers: int = 1, data: FeatureData | None = None,
                **train_kwargs: Any) -> dict[str, Any]:
    """Train `cfg` once per seed into out_dir/seed-K (out_dir/seeds.json lists them); features read once.

    train_kwargs go to every `train()` (resume "auto" | "never", device, deterministic, progress, log,
    on_step). Returns {"run_dir", "seeds", "runs": [train()'s summary per seed], "interrupted"}.
    """
    out_dir = Path(out_dir)
    seeds = [int(s) for s in seeds]
    # The whole run folder is locked first (each seed's run locks its own folder too): a second
    # `--seeds` run into it stops at once. Under DDP each seed's run does the locking (train()), with
    # every rank agreeing; a refusal here would leave the other ranks waiting for rank 0.
    lock = run_lock(out_dir) if world_from_env()[2] == 1 else None
    if lock is not None:
        note = lock.take()
        if note:
            (train_kwargs.get("log") or print)(note)
    try:
        _check_seed_folder(out_dir, seeds, cfg.method)
        previous = read_seeds(out_dir) or []
        write_seeds(out_dir, previous + [s for s in seeds if s not in previous], cfg.method)
        jobs = [(dataclasses.replace(cfg, seed=s), seed_dir(out_dir, s)) for s in seeds]
        runs = train_jobs(features, jobs, workers=workers, data=data, **train_kwargs)
    finally:
        if lock is not None:
            lock.release()
    return {"run_dir": str(out_dir), "seeds": seeds, "runs": runs,
            "interrupted": any(r["interrupted"] for r in runs)}


def _check_seed_folder(out_dir: Path, seeds: list[int], method: str) -> None:
    if not seeds:
        raise CmdclError("--seeds: no seeds given.")
    if (out_dir / "last.pt").exists() and read_seeds(out_dir) is None:
        raise CmdclError(f"{out_dir} is a single-seed run folder; a multi-seed run needs its own --out.")
    seeds_file = out_dir / "seeds.json"
    if seeds_file.is_file():
        recorded = json.loads(seeds_file.read_text()).get("method")
        if recorded not in (None, method):
            raise CmdclError(f"{seeds_file}: this run folder trains --method {recorded}, not {method}.",
                             fix="pass another --out.")


def train_jobs(features: str | Path | Sequence[str | Path], jobs: Sequence[Job], *, workers: int = 1,
               data: FeatureData | None = None, log: Callable[[str], None] | None = None,
               evaluate: Sequence[str] = (), **train_kwargs: Any) -> list[dict[str, Any]]:
    """Run `train(features, run_dir, cfg)` for every (cfg, run_dir), reading the features once per
    distinct (frames, use_patches, data_mode); returns train()'s summaries in job order, each with
    "train_seconds" and, when `evaluate` names splits, "metrics" {split: evaluate_splits' metrics of
    best.pt} (scored in the job's worker, written to run_dir/metrics_<split>.json). A job that did not
    start because the run was stopped has {"interrupted": True, "started": False}."""
    if workers < 1:
        raise CmdclError(f"--seed-workers must be >= 1, got {workers}.")
    if workers > 1 and world_from_env()[2] > 1:
        raise CmdclError(f"--seed-workers {workers} under DDP ({world_from_env()[2]} processes): use 1, the "
                         "processes already share the work.")
    say = log or (lambda m: print(m, flush=True))
    datasets: dict[tuple, FeatureData] = {}
    for cfg, _ in jobs:
        cfg.check()
        key = _data_key(cfg)
        if key not in datasets:
            datasets[key] = data if data is not None else load_run_data(
                features, cfg.frames, cfg.patches_wanted(), cfg.data_mode, log=say, score_after=evaluate,
                train_split=cfg.train_split)
    _SHARED.update(features=features, jobs=list(jobs), datasets=datasets, kwargs=train_kwargs, log=say,
                   prefix=workers > 1 and len(jobs) > 1, evaluate=list(evaluate))
    try:
        if workers == 1 or len(jobs) <= 1:
            return _run_here(len(jobs))
        return _run_forked(len(jobs), min(workers, len(jobs)))
    finally:
        _SHARED.clear()


def _data_key(cfg: HeadConfig) -> tuple:
    return cfg.frames, cfg.patches_wanted(), cfg.data_mode, cfg.train_split


def _run_job(index: int) -> dict[str, Any]:
    from .train import train

    cfg, run_dir = _SHARED["jobs"][index]
    say = _SHARED["log"]
    if _SHARED["prefix"]:
        tag = f"[{Path(run_dir).parent.name}/{Path(run_dir).name}] "
        say = (lambda m, _say=say, _tag=tag: _say(_tag + m))
    started = time.perf_counter()
    summary = train(_SHARED["features"], run_dir, cfg, log=say, data=_SHARED["datasets"][_data_key(cfg)],
                    evaluate=_SHARED["evaluate"], **_SHARED["kwargs"])
    summary["train_seconds"] = time.perf_counter() - started - summary.get("evaluate_seconds", 0.0)
    return summary


def _not_started(index: int) -> dict[str, Any]:
    return {"run_dir": str(_SHARED["jobs"][index][1]), "interrupted": True, "started": False}


def _run_here(count: int) -> list[dict[str, Any]]:
    results = []
    for index in range(count):
        results.append(_run_job(index))
        if results[-1]["interrupted"]:  # a signal: leave the remaining jobs to the resumed run
            results.extend(_not_started(i) for i in range(index + 1, count))
            break
    return results


def _worker(tasks, results, stop) -> None:
    """A forked worker: take job indices until none are left or a stop was asked for."""
    import torch
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    torch.set_num_threads(1)  # tiny heads: one thread per worker, one worker per core
    # And one OpenMP/BLAS thread: a forked child inherits the parent's OpenMP thread pool as a stale copy, and
    # scikit-learn's KMeans (the head's dictionaries) then waits forever for threads that do not exist when the
    # parent ran OpenMP code before forking (seen: the demo after other KMeans users in one pytest process).
    threadpool_limits(1)
    stop_on_sigint()  # Ctrl-C: save last.pt and say SIGINT, as SIGTERM does (the parent forwards it too)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):  # between runs (train() has its own handlers)
        signal.signal(sig, lambda signum, frame: stop.set())
    while not stop.is_set():
        index = tasks.get()  # blocking: a multiprocessing queue may look empty before its feeder flushes
        if index is None:
            return
        try:
            result = _run_job(index)
        except CmdclError as exc:
            results.put((index, "cmdcl", exc.one_line()))
            return
        except BaseException:  # noqa: BLE001 (reported to the parent, which raises)
            results.put((index, "error", traceback.format_exc()))
            return
        results.put((index, "ok", result))
        if result["interrupted"]:
            stop.set()


def _run_forked(count: int, workers: int) -> list[dict[str, Any]]:
    mp = multiprocessing.get_context("fork")
    tasks, results, stop = mp.Queue(), mp.Queue(), mp.Event()
    for index in [*range(count), *[None] * workers]:  # a None per worker: no job left
        tasks.put(index)
    procs = [mp.Process(target=_worker, args=(tasks, results, stop), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()

    def forward(signum, frame):  # pre-emption or Ctrl-C: every worker saves at its next step boundary
        stop.set()
        if signum == signal.SIGINT:  # a second Ctrl-C does not wait for them
            signal.signal(signal.SIGINT, signal.default_int_handler)
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signum)

    handlers = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        done = _collect(results, procs, count)
    except BaseException:  # a failed run or Ctrl-C: the others save last.pt at their next step and leave
        stop.set()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for proc in procs:
            proc.join(timeout=60)
    return [done.get(i) or _not_started(i) for i in range(count)]


def _collect(results, procs, count: int) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    while len(done) < count:
        try:
            index, kind, value = results.get(timeout=0.5)
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break  # every worker has left (stopped, or died: its jobs are reported as not started)
            continue
        if kind == "cmdcl":
            raise CmdclError(value)
        if kind == "error":
            raise RuntimeError(f"training {_SHARED['jobs'][index][1]} failed in a worker process:\n{value}")
        done[index] = value
    return done
