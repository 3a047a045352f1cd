"""The study's errors, shown by ``python -m study`` and the server as messages, never tracebacks.

Kept free of ``deepcolor`` (whose package imports torch), so that the server, which never runs a
model, never loads torch either. ``prepare`` also lets the library's own ``DeepColorError``
through; the CLI shows both the same way.
"""

from __future__ import annotations

from typing import NoReturn


class StudyError(Exception):
    """A study folder, setting or request that cannot be used, with a message saying why."""


def fail(message: str) -> NoReturn:
    """Stop with ``message`` (a :class:`StudyError`)."""
    raise StudyError(message)
