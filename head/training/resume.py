"""Where a run continues from: the checkpoint `--resume` names (auto: out_dir/last.pt) and the options it keeps."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from cmdcl.core.errors import CheckpointError

from ..model.checkpoint import Checkpoint, load_checkpoint
from ..model.config import HeadConfig

# Options that may change when resuming (they do not change what the saved state means).
RESUMABLE_CHANGES = ("epochs", "patience", "eval_batch_size", "data_mode", "converge_patience", "converge_delta")


def resolve_resume(resume: str | Path, out_dir: Path,
                   say: Callable[[str], None]) -> tuple[Checkpoint | None, Path | None]:
    """The checkpoint to continue from ("auto": out_dir/last.pt when it exists, "never", or a path) and its path."""
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


def merge_config(cfg: HeadConfig, saved: HeadConfig, say: Callable[[str], None]) -> HeadConfig:
    """The checkpoint's options win, except those in RESUMABLE_CHANGES."""
    merged = HeadConfig.from_dict(saved.to_dict())
    for key in RESUMABLE_CHANGES:
        setattr(merged, key, getattr(cfg, key))
    for key, value in cfg.to_dict().items():
        if getattr(merged, key) != value:
            say(f"resuming: keeping the checkpoint's {key}={getattr(merged, key)!r} (asked for {value!r}).")
    return merged
