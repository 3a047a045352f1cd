"""The run manifest: one CSV row per unit of work (a photo, a clip, a dataset row), written as the
run goes.

Each process appends to its own part file, one ``write`` per row on a file opened for appending,
so a killed process leaves every finished row readable and at most one torn last line, which
:func:`read_manifest` drops. At the end the main process merges the parts (and any left by an
earlier, killed run) into the manifest, rewritten atomically: one row per input: the run that
wrote its output, or else its latest outcome.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from .atomic import atomic_open
from .errors import DeepColorError

#: what a row's ``status`` may be
STATUSES = ("ok", "skipped", "failed")
PART_INFIX = ".part-"


@dataclass(frozen=True)
class ManifestRow:
    input: str
    output: str
    model: str
    weights: str
    seconds: float
    status: str  # one of STATUSES
    reason: str = ""
    process: int = 0
    finished: str = ""  # UTC, ISO 8601; filled in when the row is written

    def to_line(self) -> str:
        handle = io.StringIO()
        record = asdict(self)
        record["seconds"] = f"{self.seconds:.3f}"
        csv.writer(handle, lineterminator="\n").writerow(record.values())
        return handle.getvalue()


COLUMNS = tuple(f.name for f in fields(ManifestRow))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class ManifestWriter:
    """Appends rows to one part file; each row reaches the file in one ``write`` call."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise DeepColorError(f"cannot write the manifest {self.path}: {exc.strerror}") from None
        if os.fstat(self._fd).st_size == 0:
            os.write(self._fd, (",".join(COLUMNS) + "\n").encode())

    def write(self, row: ManifestRow) -> ManifestRow:
        if not row.finished:
            row = ManifestRow(**{**asdict(row), "finished": _now()})
        os.write(self._fd, row.to_line().encode())
        return row

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """The rows of a manifest or a part; a torn last line (a killed writer) is left out."""
    text = Path(path).read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return []
    if tuple(header) != COLUMNS:
        raise DeepColorError(
            f"{path} is not a DeepColor run manifest (its columns are {', '.join(header)})"
        )
    for record in reader:
        if len(record) != len(COLUMNS):
            continue
        values = dict(zip(COLUMNS, record, strict=True))
        try:
            values["seconds"] = float(values["seconds"])
            values["process"] = int(values["process"])
        except ValueError:
            continue
        rows.append(ManifestRow(**values))
    return rows


def part_path(manifest: Path, process: int) -> Path:
    """This process's part of ``manifest`` (the process id keeps a rerun's parts apart)."""
    return manifest.with_name(f"{manifest.stem}{PART_INFIX}{process}-{os.getpid()}.csv")


def find_parts(manifest: Path) -> list[Path]:
    return sorted(manifest.parent.glob(f"{manifest.stem}{PART_INFIX}*.csv"))


def latest_outcomes(rows: Iterable[ManifestRow]) -> list[ManifestRow]:
    """One row per input, sorted by input: the latest ``ok`` row, else the latest row.

    Outputs are written whole or not at all, so a later failure or skip leaves the output that
    an ``ok`` row describes as it was; that row stays the true account of the input.
    """
    chosen: dict[str, ManifestRow] = {}
    for row in sorted(rows, key=lambda r: r.finished):
        held = chosen.get(row.input)
        if held is None or row.status == "ok" or held.status != "ok":
            chosen[row.input] = row
    return sorted(chosen.values(), key=lambda r: r.input)


def merge_manifest(manifest: str | os.PathLike) -> list[ManifestRow]:
    """Fold every part beside ``manifest`` into it (atomically) and remove the parts."""
    manifest = Path(manifest)
    parts = find_parts(manifest)
    rows: list[ManifestRow] = []
    for source in ([manifest] if manifest.exists() else []) + parts:
        rows.extend(read_manifest(source))
    merged = latest_outcomes(rows)
    with atomic_open(manifest) as handle:
        handle.write((",".join(COLUMNS) + "\n").encode())
        handle.write("".join(row.to_line() for row in merged).encode())
    for part in parts:
        part.unlink(missing_ok=True)
    return merged
