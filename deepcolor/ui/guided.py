"""Guided tab: colour hints placed by clicking, the model's suggested colours, global hints.

Hints live in the UI as a list of plain dicts (JSON-friendly, so Gradio can keep them in a
``gr.State`` and the API can send them): ``{"x", "y"}`` in fractions of the image size (the
library's :class:`~deepcolor.hints.PointHint` convention), ``{"a", "b"}`` in CIELAB, ``"size"``
in pixels of the model's working size and ``"color"`` as picked (``#rrggbb``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from .. import suggestions
from ..color import ab_histogram, rgb_to_lab
from ..errors import InvalidCondition
from ..hints import PointHint, as_point_hints
from ..images import LoadedImage, load_image, to_uint8
from ..pipeline import lightness
from ..suggestions import DEFAULT_COUNT, SuggestedColor
from .common import gray_from_l, gray_uint8, load_input, new_folder, save_png
from .models import ModelCatalog

HINT_HEADERS = ["#", "x", "y", "colour", "a", "b"]  # the patch size stays in the JSON list
ADD, MOVE = "Add a hint", "Move the selected hint"
#: a new hint's patch size, in words (the value: pixels of the model's working size)
HINT_SIZES = [("Small dot", 3), ("Medium", 5), ("Large patch", 9)]
INSTRUCTIONS = (
    "**1.** Upload a photo or pick an example. **2.** Click on the photo to put a colour hint "
    "there, in the hint colour; the result updates by itself. **3.** Click a hint's dot to "
    "select it, then give it another colour (or one of the suggested colours), move or remove "
    "it."
)
#: paints each suggested colour's option with its colour (Gradio's radio shows only text)
SUGGESTION_CSS = """
#guided-suggestions label::before { content: ""; display: inline-block; width: 1.4em;
  height: 1.4em; margin-right: .4em; border: 1px solid #888; border-radius: 4px;
  background: var(--swatch, transparent); vertical-align: middle; }
"""
SUGGESTION_SCRIPT = """<script>
(() => {
  const paint = () => document.querySelectorAll("#guided-suggestions label").forEach((label) => {
    const match = label.textContent.match(/#[0-9a-f]{6}/i);
    if (match) label.style.setProperty("--swatch", match[0]);
  });
  new MutationObserver(paint).observe(document.documentElement, {subtree: true, childList: true});
})();
</script>"""
PREVIEW_SIDE = 768  # the clickable canvas's long side; hints are fractions, so any size works
MAX_HINTS = 64


# --- colours ----------------------------------------------------------------------------------
def parse_color(text: str | None) -> tuple[int, int, int]:
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


def color_to_ab(text: str | None) -> tuple[float, float]:
    """The CIELAB chroma (a, b) of a picked colour: a hint gives colour, the photo keeps its L."""
    rgb = torch.tensor(parse_color(text), dtype=torch.float64).view(3, 1, 1) / 255.0
    lab = rgb_to_lab(rgb)
    return round(float(lab[1, 0, 0]), 2), round(float(lab[2, 0, 0]), 2)


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


def make_hint(x: float, y: float, color: str, size: int = 5) -> dict:
    a, b = color_to_ab(color)
    hint = {
        "x": x,
        "y": y,
        "a": a,
        "b": b,
        "size": int(size),
        "color": to_hex(parse_color(color)),
    }
    PointHint(x, y, a, b, int(size))  # validates position, colour and size
    return hint


def add_hint(hints: list[dict] | None, x: float, y: float, color: str, size: int = 5) -> list[dict]:
    hints = list(hints or [])
    if len(hints) >= MAX_HINTS:
        raise InvalidCondition(f"at most {MAX_HINTS} hints; remove one first")
    return [*hints, make_hint(x, y, color, size)]


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
    hints[i] = {**make_hint(x, y, old["color"], old["size"]), "a": old["a"], "b": old["b"]}
    return hints


def recolor_hint(hints: list[dict], index: Any, color: str) -> list[dict]:
    hints = list(hints or [])
    i = _check_index(hints, index)
    old = hints[i]
    hints[i] = make_hint(old["x"], old["y"], color, old["size"])
    return hints


def remove_hint(hints: list[dict], index: Any) -> list[dict]:
    hints = list(hints or [])
    del hints[_check_index(hints, index)]
    return hints


def hints_table(hints: list[dict] | None) -> pd.DataFrame:
    rows = [
        [i + 1, round(h["x"], 2), round(h["y"], 2), h["color"], round(h["a"]), round(h["b"])]
        for i, h in enumerate(hints or [])
    ]
    return pd.DataFrame(rows, columns=HINT_HEADERS)


def point_hints(hints: list[dict] | None) -> list[PointHint]:
    """The library's hints from the UI's dicts (extra keys such as "color" dropped)."""
    return as_point_hints(
        {k: h[k] for k in ("x", "y", "a", "b", "size") if k in h} for h in (hints or [])
    )


# --- pictures ---------------------------------------------------------------------------------
def dot_radius(width: int, height: int) -> int:
    """The radius of a hint's dot on a canvas of this size."""
    return max(5, round(max(width, height) / 80))


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
    radius = dot_radius(width, height)
    chosen = int(selected) if isinstance(selected, (int, float)) and selected else None
    for i, hint in enumerate(hints or [], start=1):
        cx, cy = hint["x"] * (width - 1), hint["y"] * (height - 1)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        outline = "#ff2d55" if i == chosen else "white"
        draw.ellipse(box, fill=hint["color"], outline=outline, width=3 if i == chosen else 2)
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
    color_png: str
    seconds: float
    hints_used: int
    note: str = ""  # said to the visitor, e.g. that the photo was downscaled
    model: str = ""

    def status(self) -> str:
        text = f"{self.model}: {self.hints_used} hint(s), {self.seconds:.2f} s"
        return f"{text}. {self.note}" if self.note else text


def run_guided(
    value: Any,
    model_name: str | None,
    hints: list[dict] | None,
    catalog: ModelCatalog,
    *,
    saturation: float | None = None,
    reference: Any = None,
) -> GuidedResult:
    """Colourise with the hints (and optional global hints) given; any hint-taking model."""
    if not model_name:
        raise InvalidCondition(no_model_message(catalog))
    status = catalog.status(model_name)
    if not status.takes("hints"):
        raise InvalidCondition(f"model {model_name!r} does not take colour hints")
    image = load_input(value, catalog.settings.max_pixels)
    pipe = catalog.pipeline(model_name)
    conditions: dict[str, Any] = {}
    points = point_hints(hints)
    if points:
        conditions["hints"] = points
    if saturation is not None or reference is not None:
        if not status.takes("global_hints"):
            raise InvalidCondition(f"model {model_name!r} does not take global hints")
        conditions["global_hints"] = global_hints(
            pipe, saturation, reference, catalog.settings.max_pixels
        )
    out = pipe(image, **conditions)
    folder = new_folder("guided")
    stem = image.source.rsplit(".", 1)[0]
    return GuidedResult(
        gray_png=save_png(gray_from_l(out.L), folder, f"{stem}-gray"),
        color_png=save_png(out.rgb, folder, f"{stem}-{model_name}-guided", out.alpha),
        seconds=out.seconds,
        hints_used=len(points),
        note=image.size_note(),
        model=model_name,
    )


def no_model_message(catalog: ModelCatalog) -> str:
    takers = [s for s in catalog.statuses() if s.takes("hints")]
    if not takers:
        return "no model that takes colour hints is installed (siggraph17 adds one)"
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in takers)
    return f"no hint-taking model can run here ({reasons})"


#: where suggestions come from when the chosen model has no colour distribution of its own
SUGGESTION_MODEL = "unet_bins"


def suggestion_model(catalog: ModelCatalog, model_name: str | None) -> str | None:
    """The model whose 313-bin distribution gives the suggestions: the chosen one when it has
    one, else ``unet_bins`` when it is available here, else None."""
    available = set(catalog.available())
    for name in (model_name, SUGGESTION_MODEL):
        if name and name in available and hasattr(catalog.pipeline(name).model, "bin_distribution"):
            return name
    return None


def suggest_colors(
    value: Any,
    model_name: str | None,
    x: float,
    y: float,
    catalog: ModelCatalog,
    count: int = DEFAULT_COUNT,
) -> list[SuggestedColor]:
    """The likeliest distinct colours at ``(x, y)`` (fractions of the photo), likeliest first;
    empty when no model here has a colour distribution."""
    source = suggestion_model(catalog, model_name)
    if source is None:
        return []
    image = load_input(value, catalog.settings.max_pixels)
    return suggestions.suggest_colors(catalog.pipeline(source), lightness(image), x, y, count)


def suggestion_choices(suggested: list[SuggestedColor]) -> list[tuple[str, str]]:
    """Radio options (label, value) for the suggestions: ``"#a0522d 34%"`` -> ``"#a0522d"``."""
    return [(f"{c.hex} {c.probability:.0%}", c.hex) for c in suggested]


def apply_click(
    image: LoadedImage,
    hints: list[dict] | None,
    index: Any,
    *,
    mode: str = ADD,
    selected: Any = 0,
    color: str = "#2f7fd2",
    size: int = 5,
) -> tuple[list[dict], int, float, float]:
    """A click on the canvas at ``index`` (canvas pixels): on a hint's dot it selects that hint;
    elsewhere it adds a hint (``mode=ADD``) or moves the selected one there (``mode=MOVE``).

    Returns the hints, the selected hint's number and where the click was (fractions).
    """
    canvas_size = preview_size(*image.size)
    x, y = click_to_fraction(index, canvas_size)
    hints = list(hints or [])
    hit = hint_at(hints, index, canvas_size)
    if hit and mode != MOVE:
        return hints, hit, hints[hit - 1]["x"], hints[hit - 1]["y"]
    if mode == MOVE:
        return move_hint(hints, selected, x, y), int(selected), x, y
    hints = add_hint(hints, x, y, color, int(size))
    return hints, len(hints), x, y


def hint_at(hints: list[dict] | None, index: Any, canvas_size: tuple[int, int]) -> int:
    """The number (1-based) of the hint whose dot is under a click on the canvas, else 0."""
    width, height = canvas_size
    try:
        px, py = float(index[0]), float(index[1])
    except (TypeError, ValueError, IndexError):
        return 0
    reach = 1.5 * dot_radius(width, height)
    best, best_distance = 0, reach
    for i, hint in enumerate(hints or [], start=1):
        distance = (
            (hint["x"] * (width - 1) - px) ** 2 + (hint["y"] * (height - 1) - py) ** 2
        ) ** 0.5
        if distance <= best_distance:
            best, best_distance = i, distance
    return best
