"""Reference and Prompt tabs: models that need a second input (a photo or a text)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DeepColorError, InvalidCondition
from .common import gray_from_l, load_input, new_folder, save_png
from .models import ModelCatalog

MAX_PROMPT_CHARS = 500
MAX_STEPS = 100


@dataclass
class ConditionedResult:
    gray_png: str
    color_png: str
    seconds: float
    model: str
    note: str = ""  # said to the visitor: downscaling, a reference without colour

    def status(self) -> str:
        text = f"{self.model}: {self.seconds:.2f} s"
        return f"{text}. {self.note}" if self.note else text


def _run(
    value: Any, model_name: str, catalog: ModelCatalog, tag: str, note: str = "", **conditions: Any
) -> ConditionedResult:
    image = load_input(value, catalog.settings.max_pixels)
    out = catalog.pipeline(model_name)(image, **conditions)
    folder = new_folder(tag)
    stem = image.source.rsplit(".", 1)[0]
    return ConditionedResult(
        gray_png=save_png(gray_from_l(out.L), folder, f"{stem}-gray"),
        color_png=save_png(out.rgb, folder, f"{stem}-{model_name}", out.alpha),
        seconds=out.seconds,
        model=model_name,
        note=" ".join(n for n in (image.size_note(), note) if n),
    )


def _require(catalog: ModelCatalog, model_name: str | None, condition: str, what: str) -> str:
    if not model_name:
        raise InvalidCondition(tab_notice(catalog, condition, what) or f"choose a {what} model")
    if not catalog.status(model_name).takes(condition):
        raise InvalidCondition(f"model {model_name!r} does not take {condition}")
    return model_name


def tab_notice(catalog: ModelCatalog, condition: str, what: str) -> str:
    """Empty when a model for ``condition`` can run, else what is missing and how to fix it."""
    takers = [s for s in catalog.statuses() if condition in s.needs]
    if any(s.available for s in takers):
        return ""
    if not takers:
        return f"No {what} model is installed in this version of DeepColor."
    reasons = "\n".join(f"- `{s.name}`: {s.reason}" for s in takers)
    return f"No {what} model can run here:\n{reasons}"


def prompt_notice(catalog: ModelCatalog) -> str:
    """What a visitor can do when no text-prompt model runs here (empty when one does).

    How to install the diffusion weights is for whoever runs the server: the Models tab says it.
    """
    if not tab_notice(catalog, "prompt", "text-prompt"):
        return ""
    return (
        "**Colourising from a text prompt is not available on this server** (its diffusion "
        "model is not installed). You can still colourise a photo automatically (Compare and "
        "Batch tabs), with colours you click onto it (Guided) or after the colours of another "
        "photo (Reference). If you run DeepColor yourself, the Models tab says what this one "
        "needs."
    )


BLACK_AND_WHITE_REFERENCE = (
    "the reference photo is black-and-white, so it has no colours to give and the result stays "
    "nearly gray: choose a colour photo as the reference"
)


def describe_reference(value: Any, catalog: ModelCatalog) -> str:
    """A warning when the uploaded reference has no colour (empty when it is fine); a file that
    cannot be used is said here, in place, rather than as a pop-up."""
    if not value:
        return ""
    try:
        ref = load_input(value, catalog.settings.max_pixels, what="a reference photo")
    except DeepColorError as exc:
        return f"**Cannot use this reference:** {exc}"
    return "" if ref.is_color else f"**Warning:** {BLACK_AND_WHITE_REFERENCE}."


def run_reference(
    value: Any, reference: Any, model_name: str | None, catalog: ModelCatalog
) -> ConditionedResult:
    """Colourise ``value`` after the colours of ``reference`` (an exemplar model)."""
    name = _require(catalog, model_name, "reference", "reference-based")
    ref = load_input(reference, catalog.settings.max_pixels, what="a reference photo")
    note = "" if ref.is_color else f"Warning: {BLACK_AND_WHITE_REFERENCE}."
    return _run(value, name, catalog, "reference", note, reference=ref)


def run_prompt(
    value: Any,
    prompt: str,
    model_name: str | None,
    catalog: ModelCatalog,
    *,
    negative_prompt: str = "",
    steps: int | None = None,
    seed: int | None = None,
) -> ConditionedResult:
    """Colourise ``value`` as the text ``prompt`` describes (a diffusion model)."""
    name = _require(catalog, model_name, "prompt", "text-prompt")
    prompt = (prompt or "").strip()
    if not prompt:
        raise InvalidCondition("write a prompt describing the colours, e.g. 'a red barn, blue sky'")
    if len(prompt) > MAX_PROMPT_CHARS or len(negative_prompt or "") > MAX_PROMPT_CHARS:
        raise InvalidCondition(f"prompts are limited to {MAX_PROMPT_CHARS} characters")
    conditions: dict[str, Any] = {"prompt": prompt}
    status = catalog.status(name)
    if negative_prompt and status.takes("negative_prompt"):
        conditions["negative_prompt"] = negative_prompt.strip()
    if steps is not None and status.takes("steps"):
        if not 1 <= int(steps) <= MAX_STEPS:
            raise InvalidCondition(f"steps must be between 1 and {MAX_STEPS}")
        conditions["steps"] = int(steps)
    if seed is not None and status.takes("seed"):
        conditions["seed"] = int(seed)
    return _run(value, name, catalog, "prompt", **conditions)
