"""Reference and Prompt tabs: models that need a second input (a photo or a text)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidCondition
from .common import gray_from_l, load_input, new_folder, save_png
from .diffusion import DIFFUSION_ENV
from .models import ModelHub

MAX_PROMPT_CHARS = 500
MAX_STEPS = 100


@dataclass
class ConditionedResult:
    gray_png: str
    colour_png: str
    seconds: float
    model: str


def _run(
    value: Any, model_name: str, hub: ModelHub, tag: str, **conditions: Any
) -> ConditionedResult:
    image = load_input(value, hub.settings.max_pixels)
    out = hub.pipeline(model_name)(image, **conditions)
    folder = new_folder(tag)
    stem = image.source.rsplit(".", 1)[0]
    return ConditionedResult(
        gray_png=save_png(gray_from_l(out.L), folder, f"{stem}-gray"),
        colour_png=save_png(out.rgb, folder, f"{stem}-{model_name}", out.alpha),
        seconds=out.seconds,
        model=model_name,
    )


def _require(hub: ModelHub, model_name: str | None, condition: str, what: str) -> str:
    if not model_name:
        raise InvalidCondition(tab_notice(hub, condition, what) or f"choose a {what} model")
    if not hub.status(model_name).takes(condition):
        raise InvalidCondition(f"model {model_name!r} does not take {condition}")
    return model_name


def tab_notice(hub: ModelHub, condition: str, what: str) -> str:
    """Empty when a model for ``condition`` can run, else what is missing and how to fix it."""
    takers = [s for s in hub.statuses() if condition in s.needs]
    if any(s.available for s in takers):
        return ""
    if not takers:
        return f"No {what} model is installed in this version of DeepColor."
    reasons = "\n".join(f"- `{s.name}`: {s.reason}" for s in takers)
    return f"No {what} model can run here:\n{reasons}"


def prompt_notice(hub: ModelHub) -> str:
    """What to set to enable the Prompt tab (empty when it is enabled)."""
    notice = tab_notice(hub, "prompt", "text-prompt")
    if not notice:
        return ""
    settings = "\n".join(
        f"- `{var}`: {what}, a Hub id or a local diffusers folder (now {'`' + os.environ[var] + '`' if os.environ.get(var) else 'unset'})"
        for var, what in DIFFUSION_ENV.items()
    )
    return (
        f"{notice}\n\nTo enable this tab, make the diffusion weights available and restart the "
        f"app:\n{settings}\n\nThe other tabs work without them."
    )


def run_reference(
    value: Any, reference: Any, model_name: str | None, hub: ModelHub
) -> ConditionedResult:
    """Colourise ``value`` after the colours of ``reference`` (an exemplar model)."""
    name = _require(hub, model_name, "reference", "reference-based")
    ref = load_input(reference, hub.settings.max_pixels, what="a reference photo")
    return _run(value, name, hub, "reference", reference=ref)


def run_prompt(
    value: Any,
    prompt: str,
    model_name: str | None,
    hub: ModelHub,
    *,
    negative_prompt: str = "",
    steps: int | None = None,
    seed: int | None = None,
) -> ConditionedResult:
    """Colourise ``value`` as the text ``prompt`` describes (a diffusion model)."""
    name = _require(hub, model_name, "prompt", "text-prompt")
    prompt = (prompt or "").strip()
    if not prompt:
        raise InvalidCondition("write a prompt describing the colours, e.g. 'a red barn, blue sky'")
    if len(prompt) > MAX_PROMPT_CHARS or len(negative_prompt or "") > MAX_PROMPT_CHARS:
        raise InvalidCondition(f"prompts are limited to {MAX_PROMPT_CHARS} characters")
    conditions: dict[str, Any] = {"prompt": prompt}
    status = hub.status(name)
    if negative_prompt and status.takes("negative_prompt"):
        conditions["negative_prompt"] = negative_prompt.strip()
    if steps is not None and status.takes("steps"):
        if not 1 <= int(steps) <= MAX_STEPS:
            raise InvalidCondition(f"steps must be between 1 and {MAX_STEPS}")
        conditions["steps"] = int(steps)
    if seed is not None and status.takes("seed"):
        conditions["seed"] = int(seed)
    return _run(value, name, hub, "prompt", **conditions)
