"""Downloading a published file: a progress bar, the SHA-256 its name promises, atomic placement.

The transfer is ``huggingface_hub``'s ``http_get`` (a tqdm progress bar; a connection that drops
mid-file is resumed with an HTTP Range request, a few times). The bytes go to a temporary file
beside the target; only a complete file whose SHA-256 starts with the expected prefix is renamed
into place. Any failure deletes the temporary file, so a cut or corrupt download leaves nothing
behind and the next attempt starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from ..errors import WeightsNotDownloaded

#: read size for hashing
_HASH_CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(url: str, target: Path, *, sha256_prefix: str, what: str, retry: str) -> Path:
    """Download ``url`` to ``target`` if its SHA-256 starts with ``sha256_prefix``.

    ``what`` names the file in messages, ``retry`` says what to run on a machine with internet.
    Raises :class:`~deepcolor.errors.WeightsNotDownloaded` (server unreachable, HTTP error, cut
    off, wrong hash); ``target`` then does not exist and no temporary file remains.
    """
    from huggingface_hub.file_download import http_get
    from tqdm.auto import tqdm

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    try:
        try:
            with os.fdopen(handle, "wb") as stream, _quiet_retries():
                # tqdm's own bar: shown in logs too (a Space's build log), not only on a terminal
                http_get(url, stream, displayed_filename=target.name, tqdm_class=tqdm)
        except Exception as exc:  # httpx, HTTP status and size errors: one readable line
            received = os.path.getsize(temporary)
            raise WeightsNotDownloaded(_transfer_failure(url, what, received, exc, retry)) from exc
        digest = sha256_of(temporary)
        if not digest.startswith(sha256_prefix):
            raise WeightsNotDownloaded(
                f"{what}: the download is damaged or not the published file (its SHA-256 begins "
                f"{digest[: len(sha256_prefix)]}, its name promises {sha256_prefix}); nothing was "
                f"kept. Run it again to download it afresh, or {retry}"
            )
        os.replace(temporary, target)
    except BaseException:  # also Ctrl-C: never leave the partial file
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


@contextlib.contextmanager
def _quiet_retries() -> Iterator[None]:
    """``http_get`` logs each retry as a warning; the failure, if any, is said once, by us."""
    logger = logging.getLogger("huggingface_hub.file_download")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _transfer_failure(url: str, what: str, received: int, exc: Exception, retry: str) -> str:
    host = urlparse(url).netloc or url
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        cause = f"{host} answered HTTP {status} for {url}"
    elif received:
        cause = f"the download from {host} was cut off after {received:,} bytes"
    else:
        cause = f"cannot reach {host} ({type(exc).__name__})"
    return f"{what}: {cause}; nothing was kept. Run it again to restart the download, or {retry}"
