"""Live training curves for TensorBoard and Weights & Biases (`train-head --report-to tensorboard,wandb`).

The loop (head/training/train.py) calls `RunLoggers`: `start` once it knows where the run begins (the resolved
config as hyper-parameters), `epoch` with each metrics.jsonl line, `splits` with the test metrics of best.pt
(grounding included when the head has step attention), `close`. Only rank 0 starts them (DDP).

    metrics.jsonl key   train_loss, train_top1   val_top1, val_loss, ...   lr   epoch_seconds
    logged tag          train/loss, train/top1   val/top1, val/loss, ...   lr   time/epoch_seconds

TensorBoard: event files in RUN/tb/ (a multi-seed run: RUN/seed-K/tb/, so `tensorboard --logdir RUN` shows each
seed as its own run); a resumed run purges the epochs it redoes. W&B: one run per run folder, grouped by the
multi-seed run's folder (head/training/seed_runs.py: run_label); its id is kept in RUN/wandb-id.txt so that a
resumed run continues it. Offline (no W&B server reachable, no API key, or WANDB_MODE=offline): files under
RUN/wandb/, uploaded later with `wandb sync RUN/wandb/offline-run-*`.
Only the standard library is imported at module level: the CLI parses --report-to before torch is loaded.
"""
from __future__ import annotations

import importlib.util
import json
import math
import netrc
import os
import secrets
import socket
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from cmdcl.core.errors import CmdclError, shorten

# --report-to name -> (package, extra that installs it)
REPORTERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


def parse_report_to(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """'tensorboard', 'wandb', 'tensorboard,wandb' or 'none' -> the names; a one-line error for an unknown
    name or a package that is not installed (before anything is trained)."""
    parts = value.split(",") if isinstance(value, str) else list(value or ())
    names = tuple(dict.fromkeys(p.strip().lower() for p in parts if p.strip() and p.strip().lower() != "none"))
    for name in names:
        if name not in REPORTERS:
            raise CmdclError(f"--report-to {name!r} is not one of tensorboard, wandb, none.")
        package, extra = REPORTERS[name]
        if importlib.util.find_spec(package) is None:
            raise CmdclError(f"--report-to {name}: the {package} package is not installed.",
                             fix=f"pip install 'cmdcl[{extra}]'.")
    return names


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The tag -> number of a metrics.jsonl line (flags such as "best" and missing values are left out)."""
    tags = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        prefix, _, rest = key.partition("_")
        tag = f"{prefix}/{rest}" if prefix in ("train", "val") and rest else "time/" + key if key.endswith(
            "seconds") else key
        tags[tag] = float(value)
    return tags


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """A nested config flattened to "a/b" keys whose values are numbers, strings or booleans."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in hyperparameters(value).items()})
        else:
            flat[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return flat


class RunLoggers:
    """The loggers of one run folder (none when `report_to` is empty: every call does nothing)."""

    def __init__(self, report_to: str | Sequence[str] | None = ()) -> None:
        self.names = parse_report_to(report_to)
        self.backends: list[Any] = []

    def start(self, run_dir: Path, config: dict[str, Any], metric: str, first_epoch: int,
              say: Callable[[str], None]) -> None:
        """Open the loggers; `first_epoch`: epochs already done (a resumed run), `metric`: the val metric tag."""
        from .seed_runs import run_label

        name, group = run_label(run_dir)
        hparams = hyperparameters(config)
        for kind in self.names:
            if kind == "tensorboard":
                self.backends.append(_TensorBoard(Path(run_dir) / "tb", hparams, f"val/{metric}", first_epoch))
            else:
                self.backends.append(_WandB(Path(run_dir), hparams, name, group, say))

    def epoch(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        for backend in self.backends:
            backend.log(values, int(record["epoch"]))

    def splits(self, metrics: dict[str, dict[str, Any]], epoch: int) -> None:
        """The scores of best.pt (trained `epoch` epochs) on each split, e.g. test/top1, test/grounding_mass."""
        values = {f"{split}/{k}": v for split, m in metrics.items() for k, v in scalars(m).items()
                  if k not in ("num_videos", "num_classes")}
        for backend in self.backends:
            backend.final(values, epoch)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
        self.backends = []


class _TensorBoard:
    def __init__(self, folder: Path, hparams: dict[str, Any], metric_tag: str, first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        # purge_step: the epochs a resumed run redoes replace those its last run logged after the checkpoint
        self.writer = SummaryWriter(str(folder), purge_step=first_epoch + 1 if first_epoch else None)
        for summary in hparams_summary(hparams, {metric_tag: 0.0}):  # the HPARAMS tab, in this run's own file
            self.writer.file_writer.add_summary(summary)

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # live: a job watched from TensorBoard shows each epoch as it ends

    final = log

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run_dir: Path, hparams: dict[str, Any], name: str, group: str | None,
                 say: Callable[[str], None]) -> None:
        import wandb

        mode = wandb_mode()
        id_file = run_dir / "wandb-id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(6)
        id_file.write_text(run_id + "\n")
        where = {} if os.environ.get("WANDB_DIR") else {"dir": str(run_dir)}
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "cmdcl"), name=name, group=group,
                                  id=run_id, resume="allow", config=hparams, mode=mode,
                                  settings=wandb.Settings(console="off", silent=True), **where)
        except Exception as exc:  # noqa: BLE001 (login, network, service start: one line)
            raise CmdclError(f"--report-to wandb: {shorten(exc, 200)}", fix="set WANDB_MODE=offline to log to "
                             "files and upload them later with `wandb sync`.") from None
        if mode == "offline":
            say(f"W&B offline: logging to {Path(self.run.dir).parent}; upload it later with "
                f"`wandb sync {Path(self.run.dir).parent}`.")

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def final(self, values: dict[str, float], step: int) -> None:
        self.run.summary.update(values)  # after the last epoch's step: W&B refuses an earlier step

    def close(self) -> None:
        self.run.finish()


def wandb_mode() -> str:
    """WANDB_MODE when set; else "online" when an API key is known and the W&B server answers, else "offline"
    (a cluster node without network: the run is logged to files and synced later)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        logged_in = bool(os.environ.get("WANDB_API_KEY")) or netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        logged_in = False
    if not logged_in:
        return "offline"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return "online"
    except OSError:
        return "offline"
