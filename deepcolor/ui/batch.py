"""Batch tab: many photos (or zips of photos) in, one zip of colourised PNGs out.

Zip members are read into memory under a byte budget and never extracted, so a crafted archive
can neither write outside a folder (path traversal) nor fill the disk (zip bomb). The folders
inside an uploaded zip are kept in the zip that comes out (cleaned of ``..`` and absolute parts).
Every file that fails is listed with its reason; the others still come out.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from ..errors import DeepColorError, InvalidCondition, InvalidImage
from ..images import IMAGE_SUFFIXES
from .common import display_name, load_input, new_folder, path_of
from .models import ModelCatalog

FAILURE_HEADERS = ["file", "reason"]
PREVIEW_COUNT = 12  # results shown on the page; the zip has them all
PREVIEW_SIDE = 320
Progress = Callable[[float, str], None]


@dataclass
class BatchItem:
    name: str  # what the visitor calls it ("photos.zip/summer/beach.jpg")
    data: bytes | None = None
    error: str = ""
    inner: str = ""  # the path inside its zip ("summer/beach.jpg"); empty for a plain upload


@dataclass
class BatchResult:
    zip_path: str | None
    done: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    previews: list[tuple[str, str]] = field(default_factory=list)  # (png path, caption)
    downscaled: int = 0  # photos larger than the server's limit, made smaller to fit

    def failures_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.failures, columns=FAILURE_HEADERS)

    def summary(self) -> str:
        text = f"{len(self.done)} photo(s) colourised"
        if self.failures:
            text += f", {len(self.failures)} failed (listed below)"
        text += "."
        if self.downscaled:
            text += (
                f" {self.downscaled} photo(s) were larger than this server colourises at once "
                "and were downscaled."
            )
        if len(self.done) > len(self.previews) > 0:
            text += f" The first {len(self.previews)} are shown; the zip has them all."
        return text


class _Budget:
    """Bytes still allowed to be read from the uploads of one batch."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise InvalidCondition(
                f"the batch expands to more than {self.limit / 2**20:.0f} MB of files; "
                "split it into smaller batches"
            )


def _read_zip(path: str, label: str, budget: _Budget) -> Iterator[BatchItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield BatchItem(label, error=f"not a readable zip file ({exc})")
        return
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            inner = PurePosixPath(info.filename.replace("\\", "/"))
            clean = "/".join(p for p in inner.parts if p not in ("", ".", "..", "/"))
            name = f"{label}/{clean}"
            if inner.name.startswith(".") or "__MACOSX" in inner.parts:
                continue  # macOS resource forks and hidden files are not photos
            if inner.suffix.lower() not in IMAGE_SUFFIXES:
                yield BatchItem(
                    name,
                    error=f"skipped: {inner.suffix or 'no'} extension is not an image type",
                    inner=clean,
                )
                continue
            if info.flag_bits & 0x1:
                yield BatchItem(name, error="the file is encrypted in the zip", inner=clean)
                continue
            # Declared sizes can lie: read at most what the budget allows, plus one byte.
            try:
                with archive.open(info) as fh:
                    data = fh.read(max(budget.left, 0) + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
                yield BatchItem(name, error=f"damaged inside the zip ({exc})", inner=clean)
                continue
            budget.take(len(data))
            yield BatchItem(name, data=data, inner=clean)


def collect(files: Any, budget_bytes: int, max_files: int) -> list[BatchItem]:
    """Every photo in the uploads (zips opened in memory), in upload order."""
    values = files if isinstance(files, (list, tuple)) else [files] if files else []
    budget = _Budget(budget_bytes)
    items: list[BatchItem] = []
    for value in values:
        path = path_of(value)
        if path is None:
            continue
        label = display_name(value)
        if label.lower().endswith(".zip") or zipfile.is_zipfile(path):
            items.extend(_read_zip(path, label, budget))
        else:
            size = Path(path).stat().st_size if Path(path).is_file() else 0
            budget.take(size)
            items.append(BatchItem(label, data=Path(path).read_bytes() if size else b""))
        if sum(1 for i in items if i.data is not None) > max_files or len(items) > 4 * max_files:
            raise InvalidCondition(f"at most {max_files} photos per batch; split the upload")
    if not items:
        raise InvalidCondition("upload photos or a zip of photos first")
    return items


def _output_name(item: BatchItem, taken: set[str]) -> str:
    """A PNG name for ``item`` in the output zip: its folders inside the uploaded zip kept, every
    part made safe, and a number added when two photos would share a name."""
    parts = PurePosixPath(item.inner or Path(item.name).name).parts
    safe = ["".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in p)[:80] for p in parts]
    folders = [p.strip(" .") or "_" for p in safe[:-1]]
    stem = Path(safe[-1]).stem.strip() or "image"
    prefix = "".join(f"{f}/" for f in folders)
    candidate, n = f"{prefix}{stem}.png", 2
    while candidate.lower() in taken:
        candidate, n = f"{prefix}{stem}-{n}.png", n + 1
    taken.add(candidate.lower())
    return candidate


def _preview(colorized: Any, folder: Path, index: int) -> str:
    small = colorized.to_pil()
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    path = folder / f"preview-{index:03d}.png"
    small.save(path)
    return str(path)


def run_batch(
    files: Any, model_name: str | None, catalog: ModelCatalog, progress: Progress | None = None
) -> BatchResult:
    """Colourise every photo with one model; a zip of PNGs plus the failures with reasons."""
    name = model_name or catalog.default_model()
    if not catalog.status(name).automatic:
        raise InvalidCondition(
            f"model {name!r} needs {', '.join(catalog.status(name).needs)}; batch runs automatic models"
        )
    settings = catalog.settings
    items = collect(files, settings.batch_max_total_bytes, settings.batch_max_files)
    pipe = catalog.pipeline(name)
    folder = new_folder("batch")
    zip_path = folder / f"deepcolor-{name}.zip"
    result = BatchResult(zip_path=None)
    taken: set[str] = set()
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as out:
        for i, item in enumerate(items):
            if progress:
                progress(i / len(items), f"{item.name} ({i + 1}/{len(items)})")
            if item.error:
                result.failures.append((item.name, item.error))
                continue
            try:
                image = load_input(item.data or b"", settings.max_pixels)
                colorized = pipe(image)
            except InvalidImage as exc:
                reason = str(exc).removeprefix("bytes: ").removeprefix("bytes")
                result.failures.append((item.name, reason.strip(": ") or "not an image"))
                continue
            except DeepColorError as exc:
                result.failures.append((item.name, str(exc)))
                continue
            buffer = io.BytesIO()
            colorized.to_pil().save(buffer, format="PNG")
            out.writestr(_output_name(item, taken), buffer.getvalue())
            result.done.append(item.name)
            result.downscaled += bool(image.original_size)
            if len(result.previews) < PREVIEW_COUNT:
                index = len(result.previews)
                result.previews.append((_preview(colorized, folder, index), item.name))
    if progress:
        progress(1.0, "done")
    result.zip_path = str(zip_path) if result.done else None
    if not result.done:
        zip_path.unlink(missing_ok=True)
    return result
