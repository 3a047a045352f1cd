"""Compare tab: one photo through several models, side by side, scored against the original."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import DeepColorError, InvalidCondition, number_in_range
from ..models._layers import MAX_CHROMA_GAIN
from ..processing import SMOOTH
from .common import gray_from_l, load_input, new_folder, save_png
from .models import ModelCatalog

METRIC_HEADERS = ["model", "seconds", "PSNR (dB)", "SSIM", "CIEDE2000", "colourfulness"]
MAX_MODELS = 8  # a visitor's one click may not queue unbounded work
#: the Compare tab's "colour strength" multiplies a model's own chroma gain (1 = as shipped)
MAX_COLOR_STRENGTH = 3.0


@dataclass
class ModelOutput:
    name: str
    rgb: Any  # (H, W, 3) uint8 at the input's resolution
    png: str  # lossless download
    seconds: float


@dataclass
class CompareResult:
    gray_png: str  # the model input every result is compared against (the slider's left side)
    outputs: list[ModelOutput] = field(default_factory=list)
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_HEADERS))
    has_ground_truth: bool = False
    size: tuple[int, int] = (0, 0)  # (width, height)
    note: str = ""  # said to the visitor, e.g. that the photo was downscaled
    processing: str = ""  # the steps around the networks, in words

    def summary(self) -> str:
        width, height = self.size
        truth = (
            "the colour original is the ground truth for the metrics"
            if self.has_ground_truth
            else "no colour original, so only colourfulness and time are shown"
        )
        text = f"{len(self.outputs)} result(s) at {width}x{height}; {truth}."
        return " ".join(part for part in (text, self.processing, self.note) if part)


def describe_processing(pipes: list[Any]) -> str:
    """Which steps around the networks made these results, in one sentence: the smooth path
    for all, and how to get the authors' own pixels where a model's original code differs."""
    names = sorted({pipe.processing.name for pipe in pipes})
    text = f"Processing: {', '.join(names)}"
    if names == [SMOOTH]:
        text += " (exact CIELAB, antialiased resizing, smooth colour upsampling)"
    differ = [
        p.model.name for p in pipes if p.processing.name == SMOOTH and p.model.authors_processing
    ]
    if differ:
        text += (
            f"; {', '.join(differ)}'s own code resizes and converts differently: "
            "`deepcolor colorize --processing authors` gives its authors' pixels"
        )
    return text + "."


def describe_input(value: Any, catalog: ModelCatalog) -> str:
    """One line about an upload, raising a readable error for a bad file (shown on upload)."""
    image = load_input(value, catalog.settings.max_pixels)
    width, height = image.size
    kind = (
        "colour photo: converted to grayscale, the original kept as ground truth"
        if image.is_color
        else "black-and-white photo: no ground truth, metrics limited to colourfulness"
    )
    note = image.size_note()
    return f"**{image.source}** - {width}x{height}, {kind}." + (f"\n\n{note}" if note else "")


def describe_upload(value: Any, catalog: ModelCatalog) -> str:
    """:func:`describe_input` for the page: a file that cannot be used is said in place of the
    description rather than as a pop-up (pressing Colourise says it once more)."""
    if not value:
        return ""
    try:
        return describe_input(value, catalog)
    except DeepColorError as exc:
        return f"**Cannot use this file:** {exc}"


def strength_conditions(model: Any, strength: float) -> dict[str, float]:
    """``chroma_gain`` for a model that takes one: its own gain times ``strength``."""
    if strength == 1.0 or "chroma_gain" not in getattr(model, "accepts", ()):
        return {}
    return {
        "chroma_gain": min(MAX_CHROMA_GAIN, float(getattr(model, "chroma_gain", 1.0)) * strength)
    }


def check_strength(strength: Any) -> float:
    if strength is None:
        return 1.0
    return number_in_range(strength, "colour strength", 0.0, MAX_COLOR_STRENGTH, "1 = as shipped")


def compare(
    value: Any,
    model_names: list[str] | str | None,
    catalog: ModelCatalog,
    color_strength: float | None = 1.0,
) -> CompareResult:
    """Colourise ``value`` with each model; metrics against the original when it was in colour.

    ``color_strength`` scales the colours of models that take a ``chroma_gain`` (0 = gray,
    1 = each model's own setting); other models are unaffected.
    """
    strength = check_strength(color_strength)
    names = [model_names] if isinstance(model_names, str) else list(model_names or [])
    names = list(dict.fromkeys(n for n in names if n))  # keep order, drop duplicates
    if not names:
        raise InvalidCondition("choose at least one model")
    if len(names) > MAX_MODELS:
        raise InvalidCondition(
            f"choose at most {MAX_MODELS} models at a time ({len(names)} chosen)"
        )
    for name in names:
        _check_automatic(catalog, name)
    from ..metrics import colourfulness, image_metrics  # scikit-image: imported on first use

    image = load_input(value, catalog.settings.max_pixels)
    folder = new_folder("compare")
    stem = image.source.rsplit(".", 1)[0]
    result = CompareResult(gray_png="", size=image.size, note=image.size_note())
    rows = []
    original = None
    pipes = []
    for name in names:
        pipe = catalog.pipeline(name)
        pipes.append(pipe)
        out = pipe(image, **strength_conditions(pipe.model, strength))
        if not result.gray_png:  # the input's L, as every model saw it
            result.gray_png = save_png(gray_from_l(out.L), folder, f"{stem}-gray")
        original = out.original
        png = save_png(out.rgb, folder, f"{stem}-{name}", out.alpha)
        result.outputs.append(ModelOutput(name, out.rgb, png, out.seconds))
        row = {"model": name, "seconds": round(out.seconds, 3)}
        if out.original is not None:
            scores = image_metrics(out.original, out.rgb)
            row.update(
                {
                    "PSNR (dB)": round(scores["psnr"], 2),
                    "SSIM": round(scores["ssim"], 4),
                    "CIEDE2000": round(scores["ciede2000"], 3),
                    "colourfulness": round(scores["colourfulness"], 2),
                }
            )
        else:
            row["colourfulness"] = round(colourfulness(out.rgb), 2)
        rows.append(row)
    result.has_ground_truth = original is not None
    result.processing = describe_processing(pipes)
    if original is not None:
        rows.append(
            {"model": "original (ground truth)", "colourfulness": round(colourfulness(original), 2)}
        )
    result.metrics = pd.DataFrame(rows, columns=METRIC_HEADERS)
    return result


def _check_automatic(catalog: ModelCatalog, name: str) -> None:
    status = catalog.status(name)
    if not status.automatic:
        raise InvalidCondition(f"model {name!r} needs {', '.join(status.needs)}; use its own tab")


def colorize_one(value: Any, model_name: str | None, catalog: ModelCatalog) -> str:
    """One photo, one model (default: the app's default model) -> the PNG's path (the API).

    No metrics and no gray copy: only what the caller asked for, as fast as the model allows.
    """
    name = model_name or catalog.default_model()
    _check_automatic(catalog, name)
    image = load_input(value, catalog.settings.max_pixels)
    out = catalog.pipeline(name)(image)
    stem = image.source.rsplit(".", 1)[0]
    return save_png(out.rgb, new_folder("colorize"), f"{stem}-{name}", out.alpha)
