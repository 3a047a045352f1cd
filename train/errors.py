"""The training entry points' error: a message a person can act on, never a traceback."""

from __future__ import annotations

from deepcolor.errors import DeepColorError


class TrainingError(DeepColorError):
    """A training run that cannot start or cannot go on (bad data, column, folder, model...)."""
