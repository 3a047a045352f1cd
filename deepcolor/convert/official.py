"""Zhang et al.'s official checkpoints on first use: download, check, convert once, cache.

``--weights official`` with ``eccv16`` or ``siggraph17`` (``deepcolor download eccv16-official``
beforehand, for an offline machine) downloads the released ``.pth`` (URLs in
:mod:`deepcolor.convert.eccv16` / :mod:`deepcolor.convert.siggraph17`), checks that its SHA-256
starts with the prefix in its file name, converts it to the ``full`` variant and keeps only the
converted ``save_pretrained`` folder, under ``<cache>/converted/<name>-<prefix>`` (``<cache>``:
``DEEPCOLOR_CACHE``, else ``deepcolor`` in the Hugging Face home). The folder appears in one
rename when complete, so a cut download, a wrong file or a failed conversion leaves nothing there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import build_folder_atomically
from ..errors import ModelUnavailable, WeightsNotDownloaded
from ..weights import CACHE_ENV, cache_root, hub_offline

#: the weights spec naming a model's official published checkpoint (``--weights official``)
OFFICIAL_SPEC = "official"
#: what a converted folder records about its origin
PROVENANCE_FILE = "deepcolor_source.json"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One released checkpoint of a registered model."""

    model: str  # registered model name
    file_name: str  # the official file, its SHA-256 prefix after the last "-"
    url: str
    load: Callable[[Path], object]  # path -> the converted Colorizer

    @property
    def sha256_prefix(self) -> str:
        return Path(self.file_name).stem.rsplit("-", 1)[-1]

    @property
    def key(self) -> str:
        """The name ``deepcolor download`` takes."""
        return f"{self.model}-official"

    @property
    def folder_name(self) -> str:
        return f"{self.model}-{self.sha256_prefix}"


def _official_checkpoints() -> dict[str, OfficialCheckpoint]:
    from . import eccv16, siggraph17

    return {
        "eccv16": OfficialCheckpoint(
            "eccv16", eccv16.OFFICIAL_FILE, eccv16.OFFICIAL_URL, eccv16.load_eccv16_checkpoint
        ),
        "siggraph17": OfficialCheckpoint(
            "siggraph17",
            siggraph17.OFFICIAL_FILE,
            siggraph17.OFFICIAL_URL,
            siggraph17.load_siggraph17_checkpoint,
        ),
    }


#: registered model -> its official checkpoint
OFFICIAL: dict[str, OfficialCheckpoint] = _official_checkpoints()


def official_checkpoint(model: str) -> OfficialCheckpoint:
    try:
        return OFFICIAL[model]
    except KeyError:
        raise ModelUnavailable(
            f"model {model!r} has no official published checkpoint (those exist for "
            f"{', '.join(OFFICIAL)})"
        ) from None


def converted_folder(model: str) -> Path:
    """Where the converted folder of ``model``'s official checkpoint lives (present or not)."""
    return cache_root() / "converted" / official_checkpoint(model).folder_name


def cached_official_folder(model: str) -> Path | None:
    """The converted folder if it is complete in the cache, else None (never downloads)."""
    folder = converted_folder(model)
    return folder if (folder / "config.json").is_file() else None


def official_folder(model: str) -> Path:
    """The converted ``save_pretrained`` folder of ``model``'s official checkpoint.

    Cached: returned at once. Otherwise downloaded, checked and converted (once, under a file
    lock so that two processes do not both download); offline or on failure a
    :class:`~deepcolor.errors.WeightsNotDownloaded` says what to run instead.
    """
    cached = cached_official_folder(model)
    if cached is not None:
        return cached
    checkpoint = official_checkpoint(model)
    final = converted_folder(model)
    retry = (
        f"on a machine with internet run `deepcolor download {checkpoint.key}` and pass the "
        "folder it prints as --weights FOLDER"
    )
    if hub_offline():
        raise WeightsNotDownloaded(
            f"weights for {model!r}: the official {checkpoint.file_name} is not in the cache "
            f"({final}) and downloads are off (HF_HUB_OFFLINE is set); {retry}, or unset "
            "HF_HUB_OFFLINE"
        )
    try:
        return _fetch_into_cache(checkpoint, final, retry)
    except OSError as exc:  # a read-only or full disk: say where, and what to set
        raise ModelUnavailable(
            f"weights for {model!r}: cannot write the converted {checkpoint.file_name} under "
            f"{cache_root()} ({exc.strerror or exc}); set {CACHE_ENV} to a writable folder with "
            "room for it"
        ) from exc


def _fetch_into_cache(checkpoint: OfficialCheckpoint, final: Path, retry: str) -> Path:
    """Download and convert into a staging folder, then rename it to ``final`` (under a lock)."""
    return build_folder_atomically(
        final,
        lambda folder: _download_and_convert(checkpoint, folder, retry),
        complete="config.json",
        locks=cache_root() / ".locks",
    )


def _download_and_convert(checkpoint: OfficialCheckpoint, folder: Path, retry: str) -> None:
    from .download import download_verified

    source = download_verified(
        checkpoint.url,
        folder.parent / checkpoint.file_name,
        sha256_prefix=checkpoint.sha256_prefix,
        what=f"weights for {checkpoint.model!r}: the official {checkpoint.file_name}",
        retry=retry,
    )
    model = checkpoint.load(source)
    model.save_pretrained(folder)
    provenance = {"url": checkpoint.url, "file": checkpoint.file_name, "variant": "full"}
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
