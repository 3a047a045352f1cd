"""A colourisation run over files: the work list, its split across processes, and the outcome.

Every process builds the same work list (photos and clips, sorted; a clip is one unit), checks
it as a whole (two inputs written to one output, an output over an input), and takes its share
with Accelerate's ``PartialState.split_between_processes``: contiguous, deterministic, each unit
exactly once. Started by ``accelerate launch`` (or ``torchrun``), the processes talk over NCCL on
GPUs or gloo on CPUs; started plainly, the run is one process and Accelerate is not imported.
Each process appends one manifest row per unit to its own part as it goes; the main process
merges the parts into the manifest at the end (:mod:`deepcolor.manifest`).

Outputs are written atomically, so an output that exists is complete: ``skip_existing`` reports
it as skipped and a rerun continues where a killed one stopped.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeepColorError, InvalidCondition, ModelUnavailable
from .manifest import ManifestRow, ManifestWriter, merge_manifest, part_path


# --- processes ------------------------------------------------------------------------------------
class SingleProcess:
    """The state of a run started without a launcher: one process, nothing to split or wait for."""

    process_index = 0
    num_processes = 1
    is_main_process = True

    @contextmanager
    def split_between_processes(self, inputs: list) -> Iterator[list]:
        yield inputs

    def wait_for_everyone(self) -> None:
        pass


def launched() -> bool:
    """Whether a launcher (``accelerate launch``, ``torchrun``) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state() -> Any:
    """Accelerate's ``PartialState`` under a launcher (gloo on a machine without CUDA), else a
    :class:`SingleProcess`. On CPUs each process gets its share of the cores for torch."""
    if not launched():
        return SingleProcess()
    import torch
    from accelerate import PartialState

    on_cpu = not torch.cuda.is_available()
    state = PartialState(cpu=on_cpu)
    if on_cpu:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // max(1, local)))
    return state


def process_device(state: Any, device: str) -> str:
    """``auto`` under a launcher on GPUs means this process's own GPU."""
    if device == "auto" and launched() and state.device.type == "cuda":
        return str(state.device)
    return device


def gather(state: Any, value: Any) -> list:
    """``value`` from every process, in process order, on every process."""
    if isinstance(state, SingleProcess):
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


# --- the work list --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One unit of work: a photo or a whole clip, and where its output goes."""

    source: Path
    target: Path
    kind: str  # "photo" or "clip"
    problem: str = ""  # a mistake known before any work (it fails this unit only)


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    manifest: Path
    model: str
    weights: str
    suffix: str = ""
    photo_format: str = "png"
    video_format: str = "mp4"
    overwrite: bool = False
    skip_existing: bool = False
    frames_fps: float | None = None
    stabilize: bool = True


def plan(
    clips: Sequence[tuple[Path, Path]], photos: Sequence[tuple[Path, Path]], options: RunOptions
) -> list[Unit]:
    """Clips then photos, each with its output; clashes and outputs over inputs are marked."""
    from .video import output_path

    out = options.out_dir
    units = [
        Unit(
            clip,
            output_path(out / relative.parent, clip, options.video_format, options.suffix),
            "clip",
        )
        for clip, relative in clips
    ]
    units += [
        Unit(
            path,
            out / relative.parent / f"{relative.stem}{options.suffix}.{options.photo_format}",
            "photo",
        )
        for path, relative in photos
    ]
    inputs = {unit.source.resolve() for unit in units}
    claimed: dict[str, Path] = {}  # output (as the file system compares it) -> its input
    checked = []
    for unit in units:
        key = os.path.normcase(os.path.abspath(unit.target))
        problem = ""
        if unit.target.resolve() in inputs:
            problem = (
                f"output {unit.target} would overwrite an input; choose another -o or --suffix"
            )
        elif key in claimed:
            problem = (
                f"{claimed[key]} is written to the same output {unit.target}; rename one of "
                "them or colourise them into different output folders"
            )
        else:
            claimed[key] = unit.source
        checked.append(Unit(unit.source, unit.target, unit.kind, problem))
    return checked


# --- doing the work -------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one process did, by kind: counts and the failures with their reasons."""

    total: dict[str, int] = field(default_factory=lambda: {"photo": 0, "clip": 0})
    written: dict[str, int] = field(default_factory=lambda: {"photo": 0, "clip": 0})
    skipped: dict[str, int] = field(default_factory=lambda: {"photo": 0, "clip": 0})
    failures: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: {"photo": [], "clip": []}
    )

    def add(self, unit: Unit, status: str, reason: str) -> None:
        self.total[unit.kind] += 1
        if status == "ok":
            self.written[unit.kind] += 1
        elif status == "skipped":
            self.skipped[unit.kind] += 1
        else:
            self.failures[unit.kind].append((str(unit.source), reason))

    @classmethod
    def combine(cls, parts: Sequence[Outcome]) -> Outcome:
        whole = cls()
        for part in parts:
            for kind in whole.total:
                whole.total[kind] += part.total[kind]
                whole.written[kind] += part.written[kind]
                whole.skipped[kind] += part.skipped[kind]
                whole.failures[kind] += part.failures[kind]
        return whole


def _without_name(reason: str, path: Path) -> str:
    prefix = f"{path.name}: "
    return reason[len(prefix) :] if reason.startswith(prefix) else reason


def _existing_output(unit: Unit, options: RunOptions) -> Path | None:
    candidates = [unit.target]
    if unit.kind == "clip" and options.video_format == "mp4":
        candidates.append(unit.target.with_suffix(".mkv"))  # audio MP4 cannot hold
    return next((path for path in candidates if path.exists()), None)


def _do_photo(unit: Unit, pipe, conditions: dict, options: RunOptions) -> Path:
    pipe(unit.source, **conditions).save(unit.target, overwrite=options.overwrite)
    return unit.target


def _do_clip(unit: Unit, pipe, conditions: dict, options: RunOptions, position: int) -> Path:
    from tqdm.auto import tqdm

    from .video import colorize_video

    bar = tqdm(
        desc=f"{unit.source.name} ({pipe.model.name})",
        unit="frame",
        leave=False,
        position=position + 1,
    )

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = colorize_video(
            unit.source,
            unit.target,
            pipe,
            conditions=conditions,
            stabilize=options.stabilize,
            output_format=options.video_format,
            frames_fps=options.frames_fps,
            overwrite=options.overwrite,
            progress=advance,
        )
    finally:
        bar.close()
    for note in result.notes:
        tqdm.write(f"note: {unit.source.name}: {note}", file=sys.stderr)
    tqdm.write(
        f"{unit.source} -> {result.path}: {result.frames} frames, {result.shots} shot(s), "
        f"{result.seconds:.1f} s"
    )
    return result.path


def _do(unit: Unit, pipe, conditions: dict, options: RunOptions, position: int) -> tuple:
    """``(status, output, reason)`` for one unit; mistakes that would fail every unit raise."""
    if unit.problem:
        return "failed", unit.target, unit.problem
    existing = _existing_output(unit, options)
    if existing is not None and not options.overwrite:
        if options.skip_existing:
            return "skipped", existing, "the output exists"
        return (
            "failed",
            existing,
            (f"{existing} exists (use --overwrite to replace it or --skip-existing to keep it)"),
        )
    try:
        if unit.kind == "clip":
            return "ok", _do_clip(unit, pipe, conditions, options, position), ""
        return "ok", _do_photo(unit, pipe, conditions, options), ""
    except (InvalidCondition, ModelUnavailable):
        raise  # the same for every unit: stop at once
    except (DeepColorError, OSError) as exc:
        return "failed", unit.target, _without_name(str(exc), unit.source)


def run(units: list[Unit], pipe, conditions: dict, options: RunOptions, state: Any) -> Outcome:
    """This process's share of ``units``, one manifest row each; then, on the main process, the
    parts merged into the manifest. Returns every process's outcome combined."""
    from tqdm.auto import tqdm

    try:
        options.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeepColorError(
            f"cannot create output folder {options.out_dir}: {exc.strerror}"
        ) from None
    rank, count = state.process_index, state.num_processes
    outcome = Outcome()
    desc = f"colourising ({options.model})"
    if count > 1:
        desc += f" [process {rank + 1} of {count}]"
    with (
        ManifestWriter(part_path(options.manifest, rank)) as manifest,
        state.split_between_processes(units) as mine,
    ):
        for unit in tqdm(mine, desc=desc, unit="file", position=rank if count > 1 else None):
            started = time.perf_counter()
            status, output, reason = _do(unit, pipe, conditions, options, rank)
            manifest.write(
                ManifestRow(
                    input=str(unit.source),
                    output=str(output),
                    model=options.model,
                    weights=options.weights,
                    seconds=time.perf_counter() - started,
                    status=status,
                    reason=reason,
                    process=rank,
                )
            )
            outcome.add(unit, status, reason)
    state.wait_for_everyone()
    if state.is_main_process:
        merge_manifest(options.manifest)
    whole = Outcome.combine(gather(state, outcome))
    state.wait_for_everyone()
    return whole


def report(outcome: Outcome, options: RunOptions) -> int:
    """The summary (stdout) and every failure with its reason (stderr); the exit status."""
    status = 0
    for kind, what in (("clip", "clip(s)"), ("photo", "image(s)")):
        total = outcome.total[kind]
        if not total:
            continue
        failures = outcome.failures[kind]
        if kind == "photo":
            line = f"{outcome.written[kind]} of {total} {what} written to {options.out_dir}"
            if outcome.skipped[kind]:
                line += f", {outcome.skipped[kind]} skipped (already done)"
            print(line)
        elif outcome.skipped[kind]:
            print(f"{outcome.skipped[kind]} of {total} {what} skipped (already done)")
        if failures:
            status = 1
            print(f"{len(failures)} of {total} {what} failed:", file=sys.stderr)
            for path, reason in failures:
                print(f"  {path}: {reason}", file=sys.stderr)
    print(f"manifest: {options.manifest}")
    return status
