"""Files the study writes into its folder, written whole or not at all.

The same rule as ``deepcolor.atomic`` (a temporary file beside the target, renamed into place on
success, with the permissions ``open`` would give), kept here because the server writes into the
study folder too and never imports ``deepcolor``, whose package loads torch.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomically(path: str | os.PathLike, data: bytes, *, prefix: str = ".study-") -> Path:
    """Write ``data`` to ``path`` so that a crash never leaves half a file under its name."""
    path = Path(path)
    tmp = path.with_name(f"{prefix}{uuid.uuid4().hex}{path.suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
