"""Where weights come from: the shipped folder, a local folder or a Hub id, as a local folder.

This layer knows no model: a model's name only labels the messages, and advice that depends on
the model (``deepcolor download NAME``) is passed in as text by the factory
(:mod:`deepcolor.factory`), which also resolves the ``official`` spec through the converters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelUnavailable, WeightsNotDownloaded

if TYPE_CHECKING:
    import torch

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
#: where downloaded, converted and exported weights are cached
CACHE_ENV = "DEEPCOLOR_CACHE"


def cache_root() -> Path:
    """``DEEPCOLOR_CACHE``, else ``deepcolor`` in the Hugging Face home (``HF_HOME``)."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HOME") or constants.HF_HOME).expanduser() / "deepcolor"


def shipped_weights(model_name: str) -> Path | None:
    """The ``save_pretrained`` folder shipped in the package for ``model_name``, if any."""
    folder = SHIPPED_DIR / model_name
    return folder if (folder / "config.json").is_file() else None


def looks_like_hub_id(spec: str) -> bool:
    """``owner/name``, and not a path."""
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def resolve_weights(
    spec: str | os.PathLike, model_name: str = "model", fetch_advice: str = ""
) -> Path:
    """Turn a weights spec into a local folder.

    ``spec`` may be ``shipped:NAME`` (the package's own folder), a local folder or a Hub id
    (``owner/name``), which is downloaded (or found in the cache when offline). ``fetch_advice``
    is how else to get a Hub repository (e.g. `` `deepcolor download NAME` ``), said when it
    cannot be downloaded here.
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
    if not looks_like_hub_id(text):
        raise ModelUnavailable(f"weights for {model_name!r}: no folder {path} and not a Hub id")
    return download_from_hub(text, model_name, fetch_advice=fetch_advice)


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


def in_hub_cache(repo_id: str, required: str | None = "config.json") -> Path | None:
    """The cached snapshot folder of ``repo_id`` (holding ``required`` if given), else None;
    never downloads."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # any miss or malformed id means "not here"
        return None
    return folder if required is None or (folder / required).is_file() else None


def download_from_hub(
    repo_id: str, model_name: str = "model", fetch_advice: str = "", **kwargs
) -> Path:
    """``snapshot_download`` with an error that says what to do when offline (``fetch_advice``:
    another way to get the repository, e.g. `` `deepcolor download NAME` ``)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, **kwargs))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        if hub_offline():
            raise WeightsNotDownloaded(
                hub_offline_message(repo_id, model_name, fetch_advice)
            ) from exc
        raise WeightsNotDownloaded(
            f"weights for {model_name!r}: the Hub repository {repo_id!r} is not in the local "
            f"cache and cannot be downloaded here ({type(exc).__name__}). On a machine with "
            f"internet run {_fetch_advice(repo_id, fetch_advice)} and pass that folder as "
            "--weights FOLDER."
        ) from exc


def _fetch_advice(repo_id: str, fetch_advice: str) -> str:
    """``fetch_advice`` (a model's own download command) or `hf download`."""
    hf = f"`hf download {repo_id} --local-dir FOLDER`"
    return f"{fetch_advice} or {hf}" if fetch_advice else hf


def hub_offline_message(repo_id: str, model_name: str, fetch_advice: str = "") -> str:
    """Why a Hub repository that is not cached cannot be had while offline, and what to do."""
    return (
        f"weights for {model_name!r}: the Hub repository {repo_id!r} is not in the local cache "
        f"and downloads are off (HF_HUB_OFFLINE is set). On a machine with internet run "
        f"{_fetch_advice(repo_id, fetch_advice)} and pass that folder as --weights FOLDER, or "
        "unset HF_HUB_OFFLINE."
    )


def read_state_dict(
    path: Path, *, wrapper: str, what: str = "", advice: str = ""
) -> dict[str, torch.Tensor]:
    """The state dict in a ``.safetensors`` or PyTorch file (tensors only, loaded on the CPU,
    nothing executed), also when the file wraps it as ``{wrapper: state_dict}``.

    An unreadable file or one holding anything else raises :class:`ModelUnavailable`: ``what``
    starts its message, ``advice`` ends it.
    """
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path))
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a damaged file
        raise ModelUnavailable(
            f"{what}cannot read {path}: not a readable PyTorch checkpoint "
            f"({type(exc).__name__}: {exc}){advice}"
        ) from exc
    if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
        loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ModelUnavailable(
            f"{what}{path} does not hold a state dict of tensors (nor {{{wrapper!r}: ...}}){advice}"
        )
    return dict(loaded)
