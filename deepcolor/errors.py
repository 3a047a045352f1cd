"""The package's errors: each carries a message a person can act on."""

from __future__ import annotations


class DeepColorError(Exception):
    """Base class of every error DeepColor raises on purpose."""


class InvalidImage(DeepColorError):
    """A file or object that cannot be read as an image."""


class ImageTooLarge(InvalidImage):
    """An image above the configured pixel limit."""


class InvalidVideo(DeepColorError):
    """A file or folder that cannot be read as a video clip."""


class UnknownModel(DeepColorError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelUnavailable(DeepColorError):
    """A model whose weights cannot be found or loaded here."""


class WeightsNotDownloaded(ModelUnavailable):
    """Published weights that are not cached here and cannot be downloaded now (offline, or the
    server cannot be reached, or the download failed); the message says what to run instead."""


class InvalidCondition(DeepColorError, ValueError):
    """A missing, unknown or malformed condition (hints, reference, prompt, ...)."""


class DeviceUnavailable(DeepColorError, RuntimeError):
    """A device name that torch does not know, or a device this machine does not have."""


class DuplicateModel(DeepColorError, ValueError):
    """A second registration under a name already taken."""


class DataUnavailable(DeepColorError, FileNotFoundError):
    """The evaluation data folder is not set, or not where the setting says."""


def number_in_range(value: object, what: str, low: float, high: float, hint: str = "") -> float:
    """``value`` as a float in [low, high], or an InvalidCondition that names ``what``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidCondition(f"{what} must be a number, got {value!r}") from None
    if not low <= number <= high:  # also refuses NaN
        extra = f" ({hint})" if hint else ""
        raise InvalidCondition(f"{what} must be between {low:g} and {high:g}{extra}, got {value!r}")
    return number
