"""The study's errors: DeepColorError subclasses, so every front end shows them as messages."""

from __future__ import annotations

from deepcolor.errors import DeepColorError


class StudyError(DeepColorError):
    """A study folder, setting or request that cannot be used, with a message saying why."""
