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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..color import gray_rgb_from_l
from ..errors import DeepColorError, ImageTooLarge, InvalidImage
from ..images import DEFAULT_MAX_PIXELS, LoadedImage, load_image, save_image, to_pil, to_uint8
from ..pipeline import lightness

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


#: the smallest side a photo may have: below it there is nothing to colourise
MIN_SIDE = 16


@dataclass
class AppImage(LoadedImage):
    """An upload as the app works on it: ``original_size`` is set when it was downscaled."""

    original_size: tuple[int, int] | None = None  # (width, height) as uploaded

    def size_note(self) -> str:
        """One sentence for the visitor when the photo was made smaller, else empty."""
        if self.original_size is None:
            return ""
        (w0, h0), (w, h) = self.original_size, self.size
        return (
            f"{self.source} is {w0}x{h0} ({w0 * h0 / 1e6:.1f} MP), more than this server "
            f"colourises at once: it was downscaled to {w}x{h} ({w * h / 1e6:.1f} MP)."
        )


def _downscaled(image: LoadedImage, max_pixels: int) -> AppImage:
    """``image`` shrunk (area-averaged) to at most ``max_pixels``, keeping its aspect ratio."""
    width, height = image.size
    scale = (max_pixels / (width * height)) ** 0.5
    size = max(1, int(height * scale)), max(1, int(width * scale))
    planes = torch.from_numpy(image.rgb).permute(2, 0, 1).float()
    if image.alpha is not None:
        planes = torch.cat([planes, torch.from_numpy(image.alpha).float()[None]])
    small = torch.nn.functional.interpolate(
        planes[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0].clamp(0, 1)
    small = small.double().permute(1, 2, 0).numpy()
    return AppImage(
        rgb=np.ascontiguousarray(small[..., :3]),
        alpha=np.ascontiguousarray(small[..., 3]) if image.alpha is not None else None,
        source=image.source,
        mode=image.mode,
        bit_depth=image.bit_depth,
        original_size=image.size,
    )


def load_input(value: Any, max_pixels: int | None, *, what: str = "a photo") -> AppImage:
    """Decode an upload with the library's checks (format, damage), refuse one too small to
    colourise, and downscale one larger than ``max_pixels`` (the server's memory) to fit.

    Photos up to the library's limit (50 MP, or ``max_pixels`` when that is higher) are opened;
    larger ones are refused with what to do.
    """
    if isinstance(value, AppImage):
        return value
    if isinstance(value, LoadedImage):
        loaded = value
    else:
        loaded = _decode(value, max(max_pixels or 0, DEFAULT_MAX_PIXELS), what)
    width, height = loaded.size
    if min(width, height) < MIN_SIDE:
        raise InvalidImage(
            f"{loaded.source}: {width}x{height} pixels is too small to colourise; use a photo "
            f"at least {MIN_SIDE} pixels wide and high"
        )
    if max_pixels is not None and width * height > max_pixels:
        return _downscaled(loaded, max_pixels)
    return AppImage(
        **{f: getattr(loaded, f) for f in ("rgb", "alpha", "source", "mode")},
        bit_depth=loaded.bit_depth,
    )


def _decode(value: Any, limit: int, what: str) -> LoadedImage:
    """The library's decoding, with the visitor's file name and advice a visitor can follow."""
    raw = isinstance(value, (np.ndarray, bytes))
    path = None if raw else path_of(value)
    if not raw and path is None:
        raise InvalidImage(f"please upload {what} first")
    try:
        loaded = load_image(value if raw else path, max_pixels=limit)
    except InvalidImage as exc:
        message = str(exc)
        if path is not None:  # the library names Gradio's cache file; the visitor knows theirs
            message = message.replace(str(Path(path)), display_name(value))
            message = message.replace(Path(path).name, display_name(value))
        if isinstance(exc, ImageTooLarge):  # a visitor cannot raise the server's limit
            message = message.split(", over the limit")[0].split(" is over the limit")[0]
            message += (
                f"; this app opens photos up to {limit / 1e6:g} MP: resize it (or export it "
                "smaller) and upload it again"
            )
        raise type(exc)(message) from None
    if path is not None:
        loaded.source = display_name(value)
    return loaded


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
