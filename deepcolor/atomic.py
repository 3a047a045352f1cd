"""Atomic file and folder writes: a crash or an error never leaves half a file (or half a
folder) at the destination."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, prefix: str = ".deepcolor-") -> Iterator[IO[bytes]]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    The temporary file is created with mode 0o666 minus the process umask, as ``open`` would
    create ``path`` (``tempfile.mkstemp`` makes 0600 files that only their owner can read).
    """
    path = Path(path)
    tmp = path.with_name(f"{prefix}{uuid.uuid4().hex}{path.suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_folder_atomically(
    final: Path, build: Callable[[Path], None], *, complete: str, locks: Path
) -> Path:
    """``final``, built by ``build(staging)`` in a staging folder beside it and renamed into
    place, unless it already holds ``complete`` (a file written last).

    A file lock under ``locks`` makes two processes build it once; staging folders that a killed
    process left behind are removed first, and a failed build leaves nothing.
    """
    from filelock import FileLock

    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{final.name}.lock")):
        if (final / complete).is_file():  # another process finished it meanwhile
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{final.name}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete or damaged earlier one
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            build(staging / "folder")
            os.replace(staging / "folder", final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final
