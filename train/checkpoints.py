"""Checkpoint folders of a run: ``RUN/checkpoints/checkpoint-STEP``.

Each holds ``accelerator.save_state`` (weights, optimiser, scheduler, EMA, every process's RNG
states) and ``train_state.json`` (where in the data the run stood), written last: a folder
without it is an interrupted save and is ignored.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import TrainingError

STATE_FILE = "train_state.json"
PREFIX = "checkpoint-"


@dataclass
class TrainState:
    """Where a run stands: optimiser steps done, epoch, micro-batches consumed in that epoch."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    wall_seconds: float = 0.0  # training time so far, resumed parts included


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of the run, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        step = folder.name[len(PREFIX) :]
        if folder.name.startswith(PREFIX) and step.isdigit() and (folder / STATE_FILE).is_file():
            found.append((int(step), folder))
    return [folder for _, folder in sorted(found)]


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return checkpoint_root(output_dir) / f"{PREFIX}{step}"


def resolve_resume(output_dir: Path, spec: str | None) -> Path | None:
    """``--resume_from_checkpoint``: ``latest`` (None if the run has none yet) or a folder."""
    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    folder = Path(spec).expanduser()
    if not (folder / STATE_FILE).is_file():
        raise TrainingError(
            f"--resume_from_checkpoint {spec}: not a complete checkpoint folder "
            f"(no {STATE_FILE}); use 'latest' or a RUN/checkpoints/checkpoint-STEP folder"
        )
    return folder


def prune_checkpoints(output_dir: Path, keep: int | None) -> list[Path]:
    """Delete the oldest checkpoints so that ``keep - 1`` remain (room for the next save)."""
    if keep is None:
        return []
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - (keep - 1))]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def write_state(folder: Path, state: TrainState) -> None:
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(folder / STATE_FILE)


def read_state(folder: Path) -> TrainState:
    return TrainState(**json.loads((Path(folder) / STATE_FILE).read_text()))


#: what a run writes into its folder
RUN_ENTRIES = ("checkpoints", "final", "logs", "validation", "metrics.csv", "config.json")


def prepare_output_dir(output_dir: Path, args, process_index: int) -> None:
    """Create the run folder, prove it is writable, refuse to mix two runs in one folder."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{process_index}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(
            f"--output_dir {output_dir}: cannot write there ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from None
    taken = [n for n in RUN_ENTRIES if (output_dir / n).exists()]
    if taken and not args.resume_from_checkpoint and not args.overwrite_output_dir:
        raise TrainingError(
            f"--output_dir {output_dir} already holds a run ({', '.join(taken)}); pass "
            "--resume_from_checkpoint latest to continue it or --overwrite_output_dir to start "
            "afresh"
        )


def clear_run(output_dir: Path) -> None:
    """Remove what a previous run left in ``output_dir`` (for --overwrite_output_dir)."""
    for name in RUN_ENTRIES:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
