"""Guided tab: colour hints placed by clicking, the model's suggested colours, global hints.

Hints live in the UI as a list of plain dicts (JSON-friendly, so Gradio can keep them in a
``gr.State`` and the API can send them): ``{"x", "y"}`` in fractions of the image size (the
library's :class:`~deepcolor.hints.PointHint` convention), ``{"a", "b"}`` in CIELAB, ``"size"``
in pixels of the model's working size and ``"colour"`` as picked (``#rrggbb``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..color import ab_bin_centers, ab_histogram, lab_to_rgb, rgb_to_lab
from ..errors import InvalidCondition
from ..hints import PointHint, as_point_hints
from ..images import LoadedImage, load_image, to_uint8
from .common import gray_from_l, gray_uint8, lightness, load_input, new_folder, save_png
from .models import ModelHub

HINT_HEADERS = ["#", "x", "y", "colour", "a", "b"]  # the patch size stays in the JSON list
PREVIEW_SIDE = 768  # the clickable canvas's long side; hints are fractions, so any size works
MAX_HINTS = 64
SUGGESTION_SIDE = 256
MIN_SUGGESTION = 0.02  # bins less likely than this are not worth offering  # L side for a model without a fixed working size when asking for bins


# --- colours ----------------------------------------------------------------------------------
def parse_colour(text: str | None) -> tuple[int, int, int]:
    """``#rgb``, ``#rrggbb`` or ``rgb(a)(r, g, b[, a])`` (what colour pickers send) -> RGB."""
    value = (text or "").strip().lower()
    match = re.fullmatch(r"#?([0-9a-f]{6}|[0-9a-f]{3})", value)
    if match:
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(ch * 2 for ch in digits)
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    match = re.fullmatch(r"rgba?\(([^)]*)\)", value)
    if match:
        parts = [p.strip() for p in match.group(1).split(",")]
        try:
            rgb = [float(p.rstrip("%")) * (2.55 if p.endswith("%") else 1) for p in parts[:3]]
        except ValueError:
            rgb = []
        if len(rgb) == 3 and all(0 <= v <= 255.5 for v in rgb):
            return tuple(int(round(v)) for v in rgb)  # type: ignore[return-value]
    raise InvalidCondition(f"{text!r} is not a colour; pick one or type #rrggbb")


def to_hex(rgb: tuple[int, int, int] | np.ndarray) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def colour_to_ab(text: str | None) -> tuple[float, float]:
    """The CIELAB chroma (a, b) of a picked colour: a hint gives colour, the photo keeps its L."""
    rgb = torch.tensor(parse_colour(text), dtype=torch.float64).view(3, 1, 1) / 255.0
    lab = rgb_to_lab(rgb)
    return round(float(lab[1, 0, 0]), 2), round(float(lab[2, 0, 0]), 2)


def ab_to_hex(L: float, a: float, b: float) -> str:
    """How chroma (a, b) looks at lightness L, as #rrggbb."""
    lab = torch.tensor([L, a, b], dtype=torch.float64).view(3, 1, 1)
    rgb = lab_to_rgb(lab)[:, 0, 0].numpy()
    return to_hex(np.round(np.clip(rgb, 0, 1) * 255))


# --- the list of hints ------------------------------------------------------------------------
def preview_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, PREVIEW_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def click_to_fraction(index: Any, canvas_size: tuple[int, int]) -> tuple[float, float]:
    """Gradio's click position (pixels of the shown canvas) -> fractions of the image."""
    try:
        px, py = float(index[0]), float(index[1])
    except (TypeError, ValueError, IndexError):
        raise InvalidCondition("click on the photo to place a hint") from None
    width, height = canvas_size
    x = min(max(px / max(width - 1, 1), 0.0), 1.0)
    y = min(max(py / max(height - 1, 1), 0.0), 1.0)
    return round(x, 4), round(y, 4)


def make_hint(x: float, y: float, colour: str, size: int = 5) -> dict:
    a, b = colour_to_ab(colour)
    hint = {
        "x": x,
        "y": y,
        "a": a,
        "b": b,
        "size": int(size),
        "colour": to_hex(parse_colour(colour)),
    }
    PointHint(x, y, a, b, int(size))  # validates position, colour and size
    return hint


def add_hint(
    hints: list[dict] | None, x: float, y: float, colour: str, size: int = 5
) -> list[dict]:
    hints = list(hints or [])
    if len(hints) >= MAX_HINTS:
        raise InvalidCondition(f"at most {MAX_HINTS} hints; remove one first")
    return [*hints, make_hint(x, y, colour, size)]


def _check_index(hints: list[dict], index: Any) -> int:
    if not hints:
        raise InvalidCondition("there are no hints yet; click on the photo to place one")
    try:
        i = int(index)
    except (TypeError, ValueError):
        raise InvalidCondition("choose a hint number first") from None
    if not 1 <= i <= len(hints):
        raise InvalidCondition(f"there is no hint #{i}; hints are numbered 1 to {len(hints)}")
    return i - 1


def move_hint(hints: list[dict], index: Any, x: float, y: float) -> list[dict]:
    hints = list(hints or [])
    i = _check_index(hints, index)
    old = hints[i]
    hints[i] = {**make_hint(x, y, old["colour"], old["size"]), "a": old["a"], "b": old["b"]}
    return hints


def recolour_hint(hints: list[dict], index: Any, colour: str) -> list[dict]:
    hints = list(hints or [])
    i = _check_index(hints, index)
    old = hints[i]
    hints[i] = make_hint(old["x"], old["y"], colour, old["size"])
    return hints


def remove_hint(hints: list[dict], index: Any) -> list[dict]:
    hints = list(hints or [])
    del hints[_check_index(hints, index)]
    return hints


def hints_table(hints: list[dict] | None) -> pd.DataFrame:
    rows = [
        [i + 1, round(h["x"], 2), round(h["y"], 2), h["colour"], round(h["a"]), round(h["b"])]
        for i, h in enumerate(hints or [])
    ]
    return pd.DataFrame(rows, columns=HINT_HEADERS)


def point_hints(hints: list[dict] | None) -> list[PointHint]:
    """The library's hints from the UI's dicts (extra keys such as "colour" dropped)."""
    return as_point_hints(
        {k: h[k] for k in ("x", "y", "a", "b", "size") if k in h} for h in (hints or [])
    )


# --- pictures ---------------------------------------------------------------------------------
def canvas(image: LoadedImage, hints: list[dict] | None, selected: Any = None) -> np.ndarray:
    """The grayscale photo, preview-sized, with each hint drawn as a numbered dot."""
    small = load_image(
        np.asarray(
            Image.fromarray(to_uint8(image.rgb)).resize(preview_size(*image.size), Image.BILINEAR)
        )
    )
    gray = Image.fromarray(gray_uint8(small))
    draw = ImageDraw.Draw(gray)
    width, height = gray.size
    radius = max(5, round(max(width, height) / 80))
    chosen = int(selected) if isinstance(selected, (int, float)) and selected else None
    for i, hint in enumerate(hints or [], start=1):
        cx, cy = hint["x"] * (width - 1), hint["y"] * (height - 1)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        outline = "#ff2d55" if i == chosen else "white"
        draw.ellipse(box, fill=hint["colour"], outline=outline, width=3 if i == chosen else 2)
        draw.text(
            (cx + radius + 2, cy - radius),
            str(i),
            fill="white",
            stroke_width=2,
            stroke_fill="black",
        )
    return np.asarray(gray)


# --- running the model ------------------------------------------------------------------------
def global_hints(
    pipe, saturation: float | None = None, reference: Any = None, max_pixels: int | None = None
) -> dict | None:
    """SIGGRAPH17's global hints: the colour histogram of a reference photo and/or a saturation."""
    out: dict[str, torch.Tensor] = {}
    dtype = pipe.dtype if pipe.dtype != torch.float16 else torch.float32
    if reference is not None:
        ref = load_input(reference, max_pixels, what="a reference photo")
        small = Image.fromarray(np.round(ref.rgb * 255).astype(np.uint8))
        small.thumbnail((256, 256))
        rgb = torch.from_numpy(np.asarray(small, dtype=np.float64) / 255.0).permute(2, 0, 1)
        ab = rgb_to_lab(rgb.unsqueeze(0))[:, 1:]
        out["histogram"] = ab_histogram(ab).to(pipe.device, dtype)
        if saturation is None:
            chroma = ab.pow(2).sum(dim=1).sqrt().mean() / 110.0
            out["saturation"] = chroma.clamp(0, 1).view(1, 1).to(pipe.device, dtype)
    if saturation is not None:
        if not 0.0 <= float(saturation) <= 1.0:
            raise InvalidCondition(f"saturation {saturation} must be between 0 and 1")
        out["saturation"] = torch.tensor([[float(saturation)]], device=pipe.device, dtype=dtype)
    return out or None


@dataclass
class GuidedResult:
    gray_png: str
    colour_png: str
    seconds: float
    hints_used: int


def run_guided(
    value: Any,
    model_name: str | None,
    hints: list[dict] | None,
    hub: ModelHub,
    *,
    saturation: float | None = None,
    reference: Any = None,
) -> GuidedResult:
    """Colourise with the hints (and optional global hints) given; any hint-taking model."""
    if not model_name:
        raise InvalidCondition(_no_model_message(hub))
    status = hub.status(model_name)
    if not status.takes("hints"):
        raise InvalidCondition(f"model {model_name!r} does not take colour hints")
    image = load_input(value, hub.settings.max_pixels)
    pipe = hub.pipeline(model_name)
    conditions: dict[str, Any] = {}
    points = point_hints(hints)
    if points:
        conditions["hints"] = points
    if saturation is not None or reference is not None:
        if not status.takes("global_hints"):
            raise InvalidCondition(f"model {model_name!r} does not take global hints")
        conditions["global_hints"] = global_hints(
            pipe, saturation, reference, hub.settings.max_pixels
        )
    out = pipe(image, **conditions)
    folder = new_folder("guided")
    stem = image.source.rsplit(".", 1)[0]
    return GuidedResult(
        gray_png=save_png(gray_from_l(out.L), folder, f"{stem}-gray"),
        colour_png=save_png(out.rgb, folder, f"{stem}-{model_name}-guided", out.alpha),
        seconds=out.seconds,
        hints_used=len(points),
    )


def _no_model_message(hub: ModelHub) -> str:
    takers = [s for s in hub.statuses() if s.takes("hints")]
    if not takers:
        return "no model that takes colour hints is installed (siggraph17 adds one)"
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in takers)
    return f"no hint-taking model can run here ({reasons})"


def suggest_colours(
    value: Any, model_name: str | None, x: float, y: float, hub: ModelHub, k: int = 6
) -> list[tuple[str, float]]:
    """The model's most likely colours at (x, y) as ``[(#rrggbb, probability)]``.

    Only models exposing ``bin_distribution(L)`` (a distribution over the 313 ab bins) can
    suggest; for the others the list is empty.
    """
    if not model_name:
        return []
    pipe = hub.pipeline(model_name)
    model = pipe.model
    if not hasattr(model, "bin_distribution"):
        return []
    image = value if isinstance(value, LoadedImage) else load_input(value, hub.settings.max_pixels)
    L = lightness(image).float()
    side = model.working_size or SUGGESTION_SIDE
    multiple = max(1, getattr(model, "size_multiple", 1))
    height, width = L.shape[-2:]
    if model.working_size:
        work = (side, side)
    else:
        scale = min(1.0, side / max(height, width))
        work = tuple(max(multiple, round(n * scale / multiple) * multiple) for n in (height, width))
    L_work = F.interpolate(L, size=work, mode="bilinear", align_corners=False, antialias=True)
    with torch.inference_mode():
        probs = model.bin_distribution(L_work.to(pipe.device, pipe.dtype)).float().cpu()
    cells_h, cells_w = probs.shape[-2:]
    row = min(int(y * cells_h), cells_h - 1)
    col = min(int(x * cells_w), cells_w - 1)
    p = probs[0, :, row, col]
    top = torch.topk(p, min(k, p.numel()))
    centres = ab_bin_centers(dtype=torch.float64)
    L_point = float(L[0, 0, min(int(y * height), height - 1), min(int(x * width), width - 1)])
    return [
        (ab_to_hex(L_point, *(float(v) for v in centres[i])), round(float(prob), 3))
        for rank, (prob, i) in enumerate(zip(top.values, top.indices, strict=True))
        if rank == 0 or prob >= MIN_SUGGESTION  # the likeliest always; the rest when plausible
    ]
