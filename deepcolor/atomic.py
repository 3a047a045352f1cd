"""Atomic file writes: a crash or an error never leaves half a file at the destination."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
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
