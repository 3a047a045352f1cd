"""``blend``: a weighted sum of other colourisers' ab, a small ensemble.

Regression (``unet``) is close to the truth but pale: where a colour is uncertain it averages
towards gray. The 313-bin classifier (``unet_bins``) commits to a colour, which is vivid but
sometimes wrong. Adding half of the classifier's ab to the regression's gives colour where the
regression is gray and keeps the regression's hue where it is confident (weights chosen on
bsds500's 32 validation photos; see ``docs/TRAINING.md``).

The members are ordinary registered colourisers with their own weights; the blend has no
parameters of its own, so it is not trained (train its members). A saved blend folder stores its
members' weights too, so it loads as it was saved.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from ..errors import InvalidCondition
from ..factory import create_colorizer
from ..registry import colorizer_info, register_colorizer
from ._layers import check_chroma_gain
from .base import Colorizer

#: the shipped default: regression at gain 1 plus half the classifier's annealed mean
DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"model": "unet", "weight": 1.0, "kwargs": {"chroma_gain": 1.0}},
    {"model": "unet_bins", "weight": 0.5, "kwargs": {"temperature": 0.38}},
)


def check_members(members: Any) -> list[dict[str, Any]]:
    """Each member: ``{"model": name, "weight": number, "kwargs": {...}, "weights": spec}``."""
    if not isinstance(members, (list, tuple)) or not members:
        raise InvalidCondition("members must be a non-empty list of {'model', 'weight'} entries")
    checked = []
    for i, member in enumerate(members):
        if not isinstance(member, dict) or not isinstance(member.get("model"), str):
            raise InvalidCondition(f"member {i} must be a dict with a 'model' name, got {member!r}")
        unknown = sorted(set(member) - {"model", "weight", "kwargs", "weights"})
        if unknown:
            raise InvalidCondition(f"member {i} has unknown keys {unknown}")
        weight = member.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise InvalidCondition(f"member {i}'s weight must be a number, got {weight!r}")
        kwargs = member.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise InvalidCondition(f"member {i}'s kwargs must be a dict, got {kwargs!r}")
        info = colorizer_info(member["model"])  # names the choices if unknown
        if info.needs:
            raise InvalidCondition(
                f"member {info.name!r} needs {', '.join(info.needs)}; a blend takes only "
                "automatic models"
            )
        checked.append(
            {
                "model": info.name,
                "weight": float(weight),
                "kwargs": dict(kwargs),
                "weights": member.get("weights", "default"),
            }
        )
    return checked


@register_colorizer(
    "blend",
    accepts=("chroma_gain",),
    summary="Ensemble: unet's ab plus half of unet_bins' (regression + 313-bin classification)",
    weights="its members' (the shipped unet and unet_bins weights)",
    trainable=False,
)
class BlendColorizer(Colorizer):
    """``sum(weight * member(L))`` over automatic colourisers that share a working size."""

    def __init__(
        self, members: list[dict[str, Any]] | None = None, chroma_gain: float = 1.0
    ) -> None:
        specs = check_members(list(DEFAULT_MEMBERS) if members is None else members)
        built = [create_colorizer(m["model"], weights=m["weights"], **m["kwargs"]) for m in specs]
        sizes = {model.working_size for model in built}
        if len(sizes) > 1:
            names = ", ".join(f"{m.name}: {m.working_size}" for m in built)
            raise InvalidCondition(f"blend members must share one working size, got {names}")
        super().__init__(working_size=sizes.pop())
        self.members = nn.ModuleList(built)
        self.weights = [m["weight"] for m in specs]
        self.size_multiple = max(model.size_multiple for model in built)
        self.chroma_gain = check_chroma_gain(chroma_gain)

    def forward(
        self, L: torch.Tensor, chroma_gain: float | None = None, **conditions: Any
    ) -> torch.Tensor:
        # every colouriser's forward returns ab at L's size, so the parts add up directly
        ab = sum(w * m(L) for w, m in zip(self.weights, self.members, strict=True))
        gain = self.chroma_gain if chroma_gain is None else check_chroma_gain(chroma_gain)
        return ab * gain if gain != 1.0 else ab
