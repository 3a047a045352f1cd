"""Shared by every tab: reading what Gradio hands over, temp files, and readable errors."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..color import gray_rgb_from_l, rgb_to_lab
from ..errors import DeepColorError, InvalidImage
from ..images import LoadedImage, load_image, save_image, to_pil, to_uint8

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger("deepcolor.app")

_WORKDIR: Path | None = None
_WORKDIR_LOCK = threading.Lock()


def work_dir() -> Path:
    """This process's scratch folder under the system temp dir, removed when the process exits.

    Nothing is ever written to the working folder (a Space's repository checkout).
    """
    global _WORKDIR
    with _WORKDIR_LOCK:
        if _WORKDIR is None or not _WORKDIR.is_dir():
            _WORKDIR = Path(tempfile.mkdtemp(prefix="deepcolor-app-"))
            atexit.register(shutil.rmtree, _WORKDIR, ignore_errors=True)
        return _WORKDIR


MAX_AGE_SECONDS = 3600  # Gradio copies results into its own cache; ours are needed only briefly


def new_folder(prefix: str) -> Path:
    """A fresh folder inside :func:`work_dir` for one request's files (old ones are pruned)."""
    root = work_dir()
    cutoff = time.time() - MAX_AGE_SECONDS
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another request pruned it first
            pass
    folder = root / f"{prefix}-{uuid.uuid4().hex[:10]}"
    folder.mkdir()
    return folder


def path_of(value: Any) -> str | None:
    """The file path inside whatever Gradio passed (str, FileData dict/object, or None)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, dict):
        return value.get("path") or None
    return getattr(value, "path", None) or getattr(value, "name", None)


def display_name(value: Any) -> str:
    """The name the visitor knows the file by (Gradio renames uploads in its cache)."""
    if isinstance(value, dict) and value.get("orig_name"):
        return str(value["orig_name"])
    orig = getattr(value, "orig_name", None)
    if orig:
        return str(orig)
    path = path_of(value)
    return Path(path).name if path else "image"


def load_input(value: Any, max_pixels: int | None, *, what: str = "a photo") -> LoadedImage:
    """Decode an uploaded image with the library's checks (format, size limit, damage)."""
    if isinstance(value, LoadedImage):
        return value
    if isinstance(value, np.ndarray):
        return load_image(value, max_pixels=max_pixels)
    path = path_of(value)
    if path is None:
        raise InvalidImage(f"please upload {what} first")
    try:
        loaded = load_image(path, max_pixels=max_pixels)
    except InvalidImage as exc:
        # The library names Gradio's cache file; the visitor knows their own file name.
        cached = Path(path).name
        message = str(exc).replace(str(Path(path)), display_name(value))
        raise type(exc)(message.replace(cached, display_name(value))) from None
    loaded.source = display_name(value)
    return loaded


def lightness(image: LoadedImage) -> torch.Tensor:
    """The image's CIELAB L as ``(1, 1, H, W)`` float64 (what every model starts from)."""
    rgb = torch.from_numpy(image.rgb).permute(2, 0, 1)
    return rgb_to_lab(rgb)[:1].unsqueeze(0)


@functools.lru_cache(maxsize=1)
def _gray_table() -> np.ndarray:
    """uint8 gray level for L = 0, 0.05, ..., 100 (the library's own L -> sRGB conversion)."""
    L = torch.linspace(0.0, 100.0, 2001, dtype=torch.float64).view(1, 1, 1, -1)
    return to_uint8(gray_rgb_from_l(L)[0, 0, 0].numpy())


def gray_from_l(L: np.ndarray) -> np.ndarray:
    """uint8 gray RGB ``(H, W, 3)`` showing lightness ``L`` ``(H, W)`` with no colour.

    A lookup table: a full Lab -> sRGB conversion of a large photo only to show it in gray
    would cost as much as colourising it.
    """
    index = np.clip(np.rint(np.asarray(L, dtype=np.float64) * 20.0), 0, 2000).astype(np.intp)
    return np.repeat(_gray_table()[index][..., None], 3, axis=2)


def gray_uint8(image: LoadedImage) -> np.ndarray:
    """The grayscale version of ``image`` (its L with no colour), uint8 RGB."""
    return gray_from_l(lightness(image)[0, 0].numpy())


def save_png(rgb: np.ndarray, folder: Path, stem: str, alpha: np.ndarray | None = None) -> str:
    """Write a lossless PNG (the download the visitor gets) and return its path."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80] or "image"
    return str(save_image(to_pil(rgb, alpha), folder / f"{safe}.png", overwrite=True))


def user_errors(fn: F) -> F:
    """Turn the library's errors into ``gr.Error`` so the UI shows a message, not a traceback."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DeepColorError as exc:
            raise gr.Error(str(exc), title="Cannot do that", print_exception=False) from None
        except MemoryError:
            raise gr.Error(
                "the server ran out of memory; try a smaller photo", print_exception=False
            ) from None
        except torch.cuda.OutOfMemoryError:
            raise gr.Error(
                "the GPU ran out of memory; try a smaller photo", print_exception=False
            ) from None
        except Exception as exc:  # a bug: the visitor gets a sentence, the log gets the traceback
            _log.exception("unexpected error in %s", getattr(fn, "__name__", "an action"))
            raise gr.Error(
                f"something went wrong on the server ({type(exc).__name__}); the details are in "
                "the server log",
                print_exception=False,
            ) from None

    return wrapper  # type: ignore[return-value]
