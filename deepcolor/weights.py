"""Where a model's weights come from: the shipped folder, a local folder, a Hub id, or an
official checkpoint converted on first use.

One way to say where a model's default weights are: ``register_colorizer(default_weights=...)``
with a spec that :func:`resolve_weights` understands (``shipped:NAME``, a Hub id,
``official``); :func:`default_weights_problem` says whether
they can be had here without loading or downloading anything.
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
#: the weights spec naming a model's official published checkpoint
OFFICIAL_SPEC = "official"


def shipped_weights(model_name: str) -> Path | None:
    """The ``save_pretrained`` folder shipped in the package for ``model_name``, if any."""
    folder = SHIPPED_DIR / model_name
    return folder if (folder / "config.json").is_file() else None


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def resolve_weights(spec: str | os.PathLike, model_name: str = "model") -> Path:
    """Turn a weights spec into a local folder.

    ``spec`` may be ``shipped:NAME`` (the package's own folder), a local folder, a Hub id
    (``owner/name``), which is downloaded (or found in the cache when offline), or ``official``
    (``model_name``'s official checkpoint, downloaded and converted once: see
    :mod:`deepcolor.convert.official`).
    """
    text = str(spec)
    if text == OFFICIAL_SPEC and not Path(text).exists():
        from .convert.official import official_folder

        return official_folder(model_name)
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


def in_hub_cache(repo_id: str, required: str | None = "config.json") -> Path | None:
    """The cached snapshot folder of ``repo_id`` (holding ``required`` if given), else None;
    never downloads."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # any miss or malformed id means "not here"
        return None
    return folder if required is None or (folder / required).is_file() else None


def download_from_hub(repo_id: str, model_name: str = "model", **kwargs) -> Path:
    """``snapshot_download`` with an error that says what to do when offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, **kwargs))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        if hub_offline():
            raise WeightsNotDownloaded(hub_offline_message(repo_id, model_name)) from exc
        raise WeightsNotDownloaded(
            f"weights for {model_name!r}: the Hub repository {repo_id!r} is not in the local "
            f"cache and cannot be downloaded here ({type(exc).__name__}). On a machine with "
            f"internet run {_fetch_advice(repo_id, model_name)} and pass that folder as "
            "--weights FOLDER."
        ) from exc


def _fetch_advice(repo_id: str, model_name: str) -> str:
    """`deepcolor download NAME` for a model's own published weights, else `hf download`."""
    hf = f"`hf download {repo_id} --local-dir FOLDER`"
    from .registry import _REGISTRY

    info = _REGISTRY.get(model_name)
    if info is not None and info.default_weights == repo_id:
        return f"`deepcolor download {model_name}` (it prints the folder) or {hf}"
    return hf


def default_weights_problem(info) -> str:  # info: registry.ColorizerInfo (import cycle)
    """Empty when ``info``'s default weights can be had here, else why not, in one line.

    Nothing is loaded or downloaded: shipped and local folders must exist, Hub ids and official
    checkpoints must be cached or downloads allowed (HF_HUB_OFFLINE unset).
    """
    spec = info.default_weights
    if spec is None:
        if not info.trainable:
            return ""  # baselines carry no weights
        return (
            f"model {info.name!r} has no default weights in this installation; train it "
            f"(`accelerate launch -m train --model {info.name} ...`) and pass --weights RUN/final"
        )
    if _looks_like_hub_id(spec) and not Path(spec).expanduser().exists():
        if not hub_offline() or in_hub_cache(spec) is not None:
            return ""  # cached, or downloaded on first use
        return hub_offline_message(spec, info.name)
    if spec == OFFICIAL_SPEC and not hub_offline():
        return ""  # cached, or downloaded and converted on first use
    try:
        resolve_weights(spec, model_name=info.name)  # folders only: nothing is downloaded
    except ModelUnavailable as exc:
        return str(exc)
    return ""


def hub_offline_message(repo_id: str, model_name: str) -> str:
    """Why a Hub repository that is not cached cannot be had while offline, and what to do."""
    return (
        f"weights for {model_name!r}: the Hub repository {repo_id!r} is not in the local cache "
        f"and downloads are off (HF_HUB_OFFLINE is set). On a machine with internet run "
        f"{_fetch_advice(repo_id, model_name)} and pass that folder as --weights FOLDER, or "
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
