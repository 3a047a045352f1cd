"""Reading and writing the files users really have.

Formats: whatever Pillow decodes (JPEG, PNG, WebP, TIFF, BMP, GIF's first frame, ...). EXIF
orientation is applied; modes L, LA, P, RGB, RGBA, CMYK, I;16, I and F are turned into float RGB
in [0, 1] (16-bit data keeps its precision); alpha is kept apart so it can be restored on output.
Every failure raises :class:`~deepcolor.errors.InvalidImage` with a readable message.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_open
from .errors import ImageTooLarge, InvalidImage

DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: a large camera photo, far from a decompression bomb
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")

_PIL_LIMIT_LOCK = threading.Lock()


@dataclass
class LoadedImage:
    """An image as DeepColor works on it."""

    rgb: np.ndarray  # (H, W, 3) float64 in [0, 1]
    alpha: np.ndarray | None  # (H, W) float64 in [0, 1], or None
    source: str  # file name or a short description
    mode: str  # the PIL mode it was decoded from
    bit_depth: int  # 8 or 16 (or 32 for I / F)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def is_color(self) -> bool:
        """True when the photo carries real colour (not gray, sepia or a mild tint)."""
        return color_spread(self.rgb) > 8.0


def color_spread(rgb: np.ndarray) -> float:
    """How much the chroma varies across the image (CIELAB ab standard deviation, 0 for a tint).

    A sepia or tinted "black and white" photo has a nearly constant ab, so its spread is small
    even though its mean chroma is not; a real colour photo's is large.
    """
    from skimage.color import rgb2lab

    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65536)))
    ab = rgb2lab(rgb[::step, ::step])[..., 1:]
    return float(np.sqrt(ab.reshape(-1, 2).var(axis=0).sum()))


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return type(source).__name__


def _open(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise InvalidImage("the uploaded file is empty (0 bytes)")
        return Image.open(io.BytesIO(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidImage(f"{path}: no such file")
        if path.is_dir():
            raise InvalidImage(f"{path}: is a folder, not an image")
        if path.stat().st_size == 0:
            raise InvalidImage(f"{path.name}: the file is empty (0 bytes)")
        return Image.open(path)
    if hasattr(source, "read"):
        return Image.open(source)
    raise InvalidImage(
        f"cannot read an image from a {type(source).__name__}; give a file path, bytes, "
        "a PIL image or a numpy array"
    )


def _to_float_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Decode any PIL mode into float64 RGB in [0, 1] and optional alpha."""
    mode = im.mode
    alpha = None
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im, dtype=np.float64) / 65535.0
        return np.repeat(arr[..., None], 3, axis=2), None, 16
    if mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        # 16-bit PNGs decode as mode I; genuine 32-bit data is rescaled by its own range.
        peak = 65535.0 if arr.max(initial=0) <= 65535 and arr.min(initial=0) >= 0 else None
        if peak is None:
            lo, hi = arr.min(), arr.max()
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        else:
            arr = arr / peak
        return np.repeat(arr[..., None], 3, axis=2), None, 16
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise InvalidImage("the image holds NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            lo, hi = arr.min(), arr.max()
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return np.repeat(arr[..., None], 3, axis=2), None, 32
    if mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float64) / 255.0
        return rgba[..., :3], rgba[..., 3], 8
    if mode == "L" or mode == "1":
        arr = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
        return np.repeat(arr[..., None], 3, axis=2), alpha, 8
    arr = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0  # RGB, CMYK, YCbCr, LAB, HSV
    return arr, alpha, 8


def load_image(
    source,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    keep_alpha: bool = True,
) -> LoadedImage:
    """Read ``source`` (path, bytes, file object, PIL image or numpy array) into a LoadedImage.

    ``max_pixels`` refuses larger images before they are decoded (None: no limit).
    ``keep_alpha=False`` flattens transparency onto white instead of keeping it for the output.
    """
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    name = _describe(source)
    try:
        with _PIL_LIMIT_LOCK:
            # Our own limit replaces PIL's decompression-bomb error, which users cannot act on.
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = _open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        width, height = im.size
        if width == 0 or height == 0:
            raise InvalidImage(f"{name}: the image has zero size ({width}x{height})")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLarge(
                f"{name}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the "
                f"limit of {max_pixels / 1e6:g} MP; resize it first or raise the limit"
            )
        if getattr(im, "is_animated", False):
            im.seek(0)  # GIF / APNG / WebP animation: first frame
        mode = im.mode
        im.load()
        im = ImageOps.exif_transpose(im)
        rgb, alpha, depth = _to_float_rgb(im)
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"{name}: the image is damaged or truncated ({exc})") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - PIL limit disabled above
        raise ImageTooLarge(f"{name}: {exc}") from None
    if alpha is not None and not keep_alpha:
        rgb = rgb * alpha[..., None] + (1.0 - alpha[..., None])
        alpha = None
    return LoadedImage(rgb=rgb, alpha=alpha, source=name, mode=mode, bit_depth=depth)


def _from_array(arr: np.ndarray, max_pixels: int | None) -> LoadedImage:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InvalidImage(f"array of shape {arr.shape} is not an image (H, W[, 1|3|4])")
    height, width = arr.shape[:2]
    if height == 0 or width == 0:
        raise InvalidImage(f"the image has zero size ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} is over the limit of {max_pixels / 1e6:g} MP")
    if arr.dtype == np.uint8:
        data, depth = arr.astype(np.float64) / 255.0, 8
    elif arr.dtype == np.uint16:
        data, depth = arr.astype(np.float64) / 65535.0, 16
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidImage("the image holds NaN or infinite values")
        data, depth = np.clip(arr.astype(np.float64), 0.0, 1.0), 32
    else:
        raise InvalidImage(f"unsupported array type {arr.dtype}; use uint8, uint16 or float")
    if data.ndim == 2:
        data = data[..., None]
    alpha = data[..., 3] if data.shape[2] == 4 else None
    rgb = np.repeat(data, 3, axis=2) if data.shape[2] == 1 else data[..., :3]
    return LoadedImage(rgb=rgb, alpha=alpha, source="array", mode="array", bit_depth=depth)


def load_uint8(source, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``source`` as uint8 RGB ``(H, W, 3)``, transparency flattened onto white: a colour
    original as the evaluation compares with it."""
    return to_uint8(load_image(source, max_pixels=max_pixels, keep_alpha=False).rgb)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 by rounding, as the evaluation protocol does."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None) -> Image.Image:
    """Float or uint8 RGB (and optional alpha) -> PIL image."""
    rgb8 = rgb if rgb.dtype == np.uint8 else to_uint8(rgb)
    if alpha is None:
        return Image.fromarray(rgb8, "RGB")
    alpha8 = alpha if alpha.dtype == np.uint8 else to_uint8(alpha)
    return Image.fromarray(np.dstack((rgb8, alpha8)), "RGBA")


def save_image(image: Image.Image, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write atomically (temporary file + rename): a crash never leaves half a file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower() or ".png"
    fmt = Image.registered_extensions().get(suffix, "PNG")
    if fmt == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    with atomic_open(path) as fh:
        image.save(fh, format=fmt)
    return path
