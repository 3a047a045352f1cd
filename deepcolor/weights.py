"""Where a model's weights come from: the shipped folder, a local folder, or a Hub id."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelUnavailable

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def shipped_weights(model_name: str) -> Path | None:
    """The ``save_pretrained`` folder shipped in the package for ``model_name``, if any."""
    folder = SHIPPED_DIR / model_name
    return folder if (folder / "config.json").is_file() else None


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def resolve_weights(spec: str | os.PathLike, model_name: str = "model") -> Path:
    """Turn a weights spec into a local folder.

    ``spec`` may be ``shipped:NAME`` (the package's own folder), a local folder, or a Hub id
    (``owner/name``), which is downloaded (or found in the cache when offline).
    """
    text = str(spec)
    if text.startswith("shipped:"):
        folder = shipped_weights(text.split(":", 1)[1])
        if folder is None:
            raise ModelUnavailable(
                f"the shipped weights for {model_name!r} are missing from this installation "
                f"(expected {SHIPPED_DIR / text.split(':', 1)[1]}); reinstall deepcolor"
            )
        return folder
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelUnavailable(
                f"weights for {model_name!r}: {path} is a file, expected a folder"
            )
        return path
    if not _looks_like_hub_id(text):
        raise ModelUnavailable(f"weights for {model_name!r}: no folder {path} and not a Hub id")
    return download_from_hub(text, model_name)


def hub_offline() -> bool:
    """Offline mode as the environment says now (the Hub libraries read it once at import)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import is_offline_mode

        return bool(is_offline_mode())
    except ImportError:  # pragma: no cover - older huggingface_hub
        return False


def offline_advice() -> str:
    """The end of a "cannot download" message: unsetting HF_HUB_OFFLINE helps only if it is set."""
    return ", or unset HF_HUB_OFFLINE" if hub_offline() else ""


def download_from_hub(repo_id: str, model_name: str = "model", **kwargs) -> Path:
    """``snapshot_download`` with an error that says what to do when offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, **kwargs))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelUnavailable(
            f"weights for {model_name!r}: the Hub repository {repo_id!r} is not in the local "
            f"cache and cannot be downloaded here ({type(exc).__name__}). On a machine with "
            f"internet run `hf download {repo_id} --local-dir FOLDER` and pass that folder "
            f"instead{offline_advice()}."
        ) from exc
