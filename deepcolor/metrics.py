"""Image-quality metrics by the evaluation protocol of the data folder's ``README.md``.

Every function takes uint8 RGB ``(H, W, 3)`` arrays (the original, then the output). PSNR, SSIM
and CIEDE2000 are scikit-image's; colourfulness is Hasler & Süsstrunk (2003).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from tqdm.auto import tqdm

from .errors import InvalidImage
from .images import load_uint8

METRIC_COLUMNS = ("mse", "psnr", "ssim", "ciede2000", "colourfulness", "delta_colourfulness")


def _check_pair(original: np.ndarray, output: np.ndarray) -> None:
    if original.shape != output.shape:
        raise ValueError(f"shapes differ: original {original.shape}, output {output.shape}")
    if original.dtype != np.uint8 or output.dtype != np.uint8:
        raise TypeError("metrics take uint8 RGB images")


def mse(original: np.ndarray, output: np.ndarray) -> float:
    _check_pair(original, output)
    return float(mean_squared_error(original.astype(np.float64), output.astype(np.float64)))


def psnr(original: np.ndarray, output: np.ndarray) -> float:
    _check_pair(original, output)
    if np.array_equal(original, output):
        return float("inf")
    return float(peak_signal_noise_ratio(original, output, data_range=255))


def ssim(original: np.ndarray, output: np.ndarray) -> float:
    _check_pair(original, output)
    return float(structural_similarity(original, output, channel_axis=-1, data_range=255))


def ciede2000(original: np.ndarray, output: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over the pixels."""
    _check_pair(original, output)
    return float(deltaE_ciede2000(rgb2lab(original / 255.0), rgb2lab(output / 255.0)).mean())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk's colourfulness of a uint8 RGB image (0 for gray)."""
    x = rgb.astype(np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def image_metrics(original: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Every metric for one pair; ``delta_colourfulness`` is output minus original."""
    cf_out, cf_orig = colourfulness(output), colourfulness(original)
    return {
        "mse": mse(original, output),
        "psnr": psnr(original, output),
        "ssim": ssim(original, output),
        "ciede2000": ciede2000(original, output),
        "colourfulness": cf_out,
        "delta_colourfulness": cf_out - cf_orig,
    }


def evaluate(
    pipeline,
    folder: str | Path | Iterable[str | Path],
    *,
    model_label: str | None = None,
    csv_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    progress: bool = True,
    condition_fn: Callable[[Path, np.ndarray], dict] | None = None,
    conditions: dict | None = None,
) -> pd.DataFrame:
    """Colourise every image of ``folder`` from its L and compare with the colour original.

    Returns one row per image (columns ``model, image`` and :data:`METRIC_COLUMNS`); the means
    are :func:`summarize`'s. ``condition_fn(path, original_uint8)`` may give per-image conditions
    (hints or a reference sampled from the ground truth); ``conditions`` apply to every image
    (e.g. ``{"chroma_gain": 1.25}``). Every image must be a colour photo: a grayscale one has no
    colours to compare with and is refused by name.
    """
    files = _folder_images(folder)
    label = model_label or pipeline.model.name
    rows = []
    for path in tqdm(files, desc=f"evaluating {label}", disable=not progress, unit="img"):
        original = _color_original(path)
        per_image = dict(conditions or {})
        if condition_fn:
            per_image.update(condition_fn(path, original))
        start = time.perf_counter()
        result = pipeline(original, **per_image)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "model": label,
                "image": path.name,
                **image_metrics(original, result.rgb),
                "seconds": seconds,
            }
        )
    frame = pd.DataFrame(rows)
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv_path, index=False)
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(to_markdown(summarize(frame)) + "\n")
    return frame


def _folder_images(folder: str | Path | Iterable[str | Path]) -> list[Path]:
    from .pipeline import iter_image_files

    files = iter_image_files([folder] if isinstance(folder, (str, Path)) else folder)
    if not files:
        raise FileNotFoundError(f"no images found in {folder}")
    return files


def _color_original(path: Path) -> np.ndarray:
    original = load_uint8(path)
    if is_grayscale(original):
        raise InvalidImage(
            f"{path} is grayscale: evaluation compares with the colour original; remove it "
            "or use a folder of colour photos"
        )
    return original


def check_originals(folder: str | Path | Iterable[str | Path]) -> list[Path]:
    """The folder's images, each read once and refused if unreadable or gray, before any model
    spends time on them."""
    files = _folder_images(folder)
    for path in files:
        _color_original(path)
    return files


def is_grayscale(rgb: np.ndarray) -> bool:
    """Gray by the data README's rule: every pair of channels differs by under 1 (of 255) on
    average. Such a photo has no colour to compare a colourisation with."""
    channels = rgb.astype(np.int16)
    pairs = ((0, 1), (1, 2), (0, 2))
    return max(np.abs(channels[..., i] - channels[..., j]).mean() for i, j in pairs) < 1.0


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per model (one row per model, in first-seen order)."""
    columns = [c for c in (*METRIC_COLUMNS, "seconds") if c in frame.columns]
    summary = frame.groupby("model", sort=False)[columns].mean()
    summary.insert(0, "images", frame.groupby("model", sort=False).size())
    return summary.reset_index()


def to_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table of a summary (no optional dependency such as tabulate needed)."""
    formats = {
        "mse": "{:.1f}",
        "psnr": "{:.2f}",
        "ssim": "{:.4f}",
        "ciede2000": "{:.3f}",
        "colourfulness": "{:.2f}",
        "delta_colourfulness": "{:+.2f}",
        "seconds": "{:.3f}",
    }
    headers = list(summary.columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in summary.iterrows():
        cells = [formats.get(h, "{}").format(row[h]) for h in headers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
