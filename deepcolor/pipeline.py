"""``ColorizationPipeline``: full-resolution L in, ab at the model's size, recombined at full res.

Everything around the model lives here, once: decoding, L at full resolution, resizing L to the
model's working size, batching, device and dtype, upsampling ab and recombining it with the
original L, alpha. The output has the input's exact size and its luminance. How L is resized, ab
upsampled and the two joined is a processing (:mod:`deepcolor.processing`): ``smooth`` by
default, or ``authors`` for a model whose original code is reproduced (DDColor).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import DeviceUnavailable, InvalidCondition
from .hints import as_point_hints, encode_point_hints
from .images import DEFAULT_MAX_PIXELS, LoadedImage, load_image, save_image, to_pil, to_uint8
from .models.base import Colorizer
from .processing import SMOOTH, SmoothProcessing, processing_for, recombine
from .runtime import create_backend
from .runtime.torch_backend import TorchBackend

__all__ = ["ColorizationPipeline", "ColorizationResult", "lightness", "recombine"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if present, then Apple MPS, else CPU.

    A named device must exist here: ``"cuda"`` without a usable GPU, an index past the last GPU or
    an unknown name raises :class:`~deepcolor.errors.DeviceUnavailable` with what to use instead.
    """
    if device not in (None, "auto"):
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise DeviceUnavailable(
                f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
            ) from None
        _check_available(chosen)
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_available(device: torch.device) -> None:
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceUnavailable(
                f"device {str(device)!r} is not available: PyTorch finds no CUDA GPU on this "
                "machine; use cpu or auto"
            )
        if device.index is not None and device.index >= count:
            raise DeviceUnavailable(
                f"device {str(device)!r} is not available: this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailable(
                "device 'mps' is not available: it needs an Apple-silicon Mac with a PyTorch "
                "built for it; use cpu or auto"
            )


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: float16 on CUDA, float32 elsewhere (CPU half precision is slow)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(_DTYPES)}") from None


@dataclass
class ColorizationResult:
    """One colourised image at the input's full resolution."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) float in [0, 1]
    L: np.ndarray  # (H, W) float64, the input's lightness
    ab: np.ndarray  # (H, W, 2) float32, the predicted chroma at full resolution
    source: str
    original: np.ndarray | None = None  # (H, W, 3) uint8 when the input was in colour
    seconds: float = 0.0

    def __repr__(self) -> str:  # the arrays would print thousands of numbers
        height, width = self.rgb.shape[:2]
        return (
            f"ColorizationResult({width}x{height}, source={self.source!r}, "
            f"seconds={self.seconds:.3f})"
        )

    def to_pil(self) -> Image.Image:
        return to_pil(self.rgb, self.alpha)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        return save_image(self.to_pil(), path, overwrite=overwrite)


def lightness(image: LoadedImage) -> torch.Tensor:
    """The image's CIELAB L, ``(1, 1, H, W)`` float64: what every model starts from."""
    return SmoothProcessing().lightness(image.rgb)


def reference_tensor(reference: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """A reference photo (path, bytes, array, PIL image or RGB tensor) as ``(1, 3, h, w)``
    float32 in [0, 1], decoded by :func:`~deepcolor.images.load_image` like every photo."""
    if isinstance(reference, torch.Tensor):
        ref = reference if reference.dim() == 4 else reference.unsqueeze(0)
    else:
        image = load_image(reference, max_pixels=max_pixels, keep_alpha=False)
        ref = torch.from_numpy(image.rgb).permute(2, 0, 1).unsqueeze(0)
    return ref.to(torch.float32)


class ColorizationPipeline:
    """Colourise images of any size with any registered model.

    >>> pipe = ColorizationPipeline("unet")             # doctest: +SKIP
    >>> result = pipe("photo.jpg")                       # doctest: +SKIP
    >>> result.save("photo-colour.png")                  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Colorizer | str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = "float32",
        batch_size: int = 8,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        weights: str | None = "default",
        processing: str | None = SMOOTH,
        backend: str | None = None,
    ) -> None:
        built_here = isinstance(model, str)
        if built_here:
            from .factory import create_colorizer

            model = create_colorizer(model, weights=weights)
        #: the steps around the network: ``smooth`` or the model's ``authors``' own
        self.processing = processing_for(processing, model.name, model.authors_processing)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = max_pixels
        #: who runs the network: ``torch``, or ``openvino`` on a CPU for the models it serves
        self.backend = create_backend(self.model, backend, self.device, self.dtype)
        if self.backend.note:
            print(f"deepcolor: {self.backend.note}", file=sys.stderr)
        if built_here and self.backend.name != "torch":
            # the runtime holds its own copy: a second one in torch would only take memory
            self.model.to("meta")

    # --- public API ---------------------------------------------------------------------------
    def __call__(self, images, **conditions: Any):
        """Colourise one image (returns a result) or a list of images (returns a list)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results = self.colorize_many(items, **conditions)
        return results[0] if single else results

    def colorize_many(self, images: Sequence, **conditions: Any) -> list[ColorizationResult]:
        loaded = [load_image(img, max_pixels=self.max_pixels) for img in images]
        per_image_hints = self._split_hints(conditions.pop("hints", None), len(loaded))
        if conditions.get("reference") is not None:
            reference = reference_tensor(conditions["reference"], self.max_pixels)
            conditions["reference"] = reference.to(self.device)
        results: list[ColorizationResult] = []
        size = self.model.working_size
        if size is not None and not any(per_image_hints):
            for start in range(0, len(loaded), self.batch_size):
                chunk = loaded[start : start + self.batch_size]
                results.extend(self._run_batch(chunk, conditions))
        else:
            for image, hints in zip(loaded, per_image_hints, strict=True):
                extra = dict(conditions)
                if hints:
                    extra["hints"] = hints
                results.extend(self._run_batch([image], extra))
        return results

    def predict_ab(self, L: torch.Tensor, **conditions: Any) -> torch.Tensor:
        """Full-resolution ``L (B,1,H,W)`` -> full-resolution ``ab`` (float32, CPU).

        The public path for L already in memory (video frames, an app's photo): the model runs
        at its working size, on the pipeline's device and dtype, exactly as for a file.
        ``hints`` are point hints (:class:`~deepcolor.hints.PointHint`), as for ``__call__``.
        """
        ab = self._predict_working(self.to_working_size(L), conditions)
        return self.processing.upsample_ab(ab, tuple(L.shape[-2:]))

    def to_working_size(self, L: torch.Tensor, rgb: np.ndarray | None = None) -> torch.Tensor:
        """Full-resolution ``L (B,1,H,W)`` -> float32 L at the model's working size, on the
        pipeline's device (``smooth``: antialiased when shrinking; ``authors``: from ``rgb``,
        the photo, where it is given)."""
        work = self._working_shape(*L.shape[-2:])
        return self.processing.working_lightness(rgb, L, work).to(self.device)

    def bin_distribution(self, L: torch.Tensor) -> torch.Tensor:
        """Full-resolution ``L (1,1,H,W)`` -> the model's probabilities of the 313 ab bins,
        ``(313, h, w)`` over the whole photo at the model's own resolution (float32, CPU).

        Only models with a ``bin_distribution`` method (``unet_bins``, ``eccv16``) have one.
        """
        if not hasattr(self.model, "bin_distribution"):
            raise InvalidCondition(f"model {self.model.name!r} gives no colour distribution")
        torch_backend = TorchBackend(self.model, self.device, self.dtype)
        probs = torch_backend.run("bin_distribution", self.to_working_size(L))
        return probs.float().cpu()[0]

    # --- internals ----------------------------------------------------------------------------

    def _working_shape(self, height: int, width: int) -> tuple[int, int]:
        size = self.model.working_size
        if size is not None:
            return (size, size)
        multiple = max(1, self.model.size_multiple)
        return (
            max(multiple, round(height / multiple) * multiple),
            max(multiple, round(width / multiple) * multiple),
        )

    def _predict_working(self, L_work: torch.Tensor, conditions: dict) -> torch.Tensor:
        """L at the working size -> ab there (float32, CPU); every prediction comes here."""
        if "hints" in conditions:
            conditions = dict(conditions)
            hint_ab, mask = encode_point_hints(conditions.pop("hints"), *L_work.shape[-2:])
            conditions["hints"] = (
                hint_ab.to(self.device).expand(L_work.shape[0], -1, -1, -1),
                mask.to(self.device).expand(L_work.shape[0], -1, -1, -1),
            )
        ab = self.backend.predict(L_work, conditions).float().cpu()
        if not torch.isfinite(ab).all():
            raise RuntimeError(f"model {self.model.name!r} produced non-finite colours")
        return ab

    def _run_batch(self, images: list[LoadedImage], conditions: dict) -> list[ColorizationResult]:
        start = time.perf_counter()
        L_full = [self.processing.lightness(img.rgb) for img in images]
        L_work = [self.to_working_size(L, img.rgb) for img, L in zip(images, L_full, strict=True)]
        if self.model.working_size is not None and len(images) > 1:
            # one working size for all: the photos go through the model as one batch
            ab_batch = self._predict_working(torch.cat(L_work), conditions)
            ab_work = [ab_batch[i : i + 1] for i in range(len(images))]
        else:
            ab_work = [self._predict_working(L, conditions) for L in L_work]
        ab_full = [
            self.processing.upsample_ab(ab, tuple(L.shape[-2:]))
            for ab, L in zip(ab_work, L_full, strict=True)
        ]
        elapsed = (time.perf_counter() - start) / len(images)
        return [
            self._result(img, L, ab, elapsed)
            for img, L, ab in zip(images, L_full, ab_full, strict=True)
        ]

    def _result(
        self, image: LoadedImage, L: torch.Tensor, ab: torch.Tensor, seconds: float
    ) -> ColorizationResult:
        original = to_uint8(image.rgb) if image.is_color else None
        return ColorizationResult(
            rgb=self.processing.recombine(L, ab),
            alpha=image.alpha,
            L=L[0, 0].numpy(),
            ab=ab[0].permute(1, 2, 0).numpy().astype(np.float32),
            source=image.source,
            original=original,
            seconds=seconds,
        )

    @staticmethod
    def _split_hints(hints, count: int) -> list[list]:
        if hints is None:
            return [[] for _ in range(count)]
        hints = list(hints)
        nested = hints and all(
            isinstance(h, (list, tuple)) and h and not _is_number(h[0]) for h in hints
        )
        if count > 1 or nested:
            if len(hints) != count or not nested:
                raise InvalidCondition(
                    f"with {count} images, give one list of hints per image ({len(hints)} given)"
                )
            return [as_point_hints(h) for h in hints]
        return [as_point_hints(hints)]


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating))


def iter_image_files(inputs: Iterable[str | Path], recursive: bool = True) -> list[Path]:
    """Expand files, folders and glob patterns into image paths (sorted, de-duplicated)."""
    return [path for path, _ in find_image_files(inputs, recursive=recursive)]


def find_image_files(
    inputs: Iterable[str | Path], recursive: bool = True, skip: str | Path | None = None
) -> list[tuple[Path, Path]]:
    """``(path, relative)`` for each image that ``inputs`` name, sorted and de-duplicated.

    ``relative`` is the path below the input that found it: below a folder, below a glob
    pattern's fixed leading folders (``album`` for ``album/**/*.tif``), or the bare name for a
    file given by name (also when a pattern's ``..`` leads above its fixed folders). Outputs
    that mirror it keep same-named photos of different subfolders apart.

    ``skip``: a folder (the output folder) whose files a folder or glob input does not pick up
    when it lies below that input, so that a rerun does not colourise its own outputs. Files
    given by name, and an input that is ``skip`` itself, are kept.
    """
    from glob import glob

    from .images import IMAGE_SUFFIXES

    skipped = Path(skip).resolve() if skip is not None else None

    def skip_test(base: Path):
        """Per input, once: whether a file found below ``base`` lies in the skipped folder."""
        if skipped is None or skipped == base.resolve():
            return lambda path: False
        return lambda path: path.resolve().is_relative_to(skipped)

    def mirrored(path: Path, base: Path) -> Path:
        relative = Path(os.path.relpath(path, base))
        return Path(path.name) if relative.parts[0] == ".." else relative

    found: list[tuple[Path, Path]] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if any(ch in text for ch in "*?["):
            fixed = []
            for part in path.parts:
                if any(ch in part for ch in "*?["):
                    break
                fixed.append(part)
            base = Path(*fixed) if fixed else Path(".")
            in_skipped = skip_test(base)
            found.extend(
                (Path(p), mirrored(Path(p), base))
                for p in sorted(glob(text, recursive=True))
                if Path(p).is_file() and not in_skipped(Path(p))
            )
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            in_skipped = skip_test(path)
            found.extend(
                (p, p.relative_to(path))
                for p in sorted(path.glob(pattern))
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not in_skipped(p)
            )
        else:
            found.append((path, Path(path.name)))  # a missing file is reported by the caller
    seen: set[Path] = set()
    unique = []
    for path, relative in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, relative))
    return unique
