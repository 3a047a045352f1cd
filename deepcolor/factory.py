"""The factory: a registered model with its weights (``create_colorizer``), the one place that
puts the two together.

Modelled on timm's ``_factory.create_model`` over its ``_registry``: the catalogue
(:mod:`deepcolor.registry`) says what a model is and where its default weights are; the weights
layer (:mod:`deepcolor.weights`) turns shipped folders, local folders and Hub ids into folders;
the converters (:mod:`deepcolor.convert.official`) turn the authors' released checkpoints into
folders. This module chooses between them and gives each its model-specific advice.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .convert.official import OFFICIAL_SPEC, official_folder
from .errors import ModelUnavailable
from .registry import ColorizerInfo, colorizer_info
from .weights import (
    hub_offline,
    hub_offline_message,
    in_hub_cache,
    looks_like_hub_id,
    resolve_weights,
)

if TYPE_CHECKING:
    from .models.base import Colorizer


def download_command(info: ColorizerInfo, spec: str) -> str:
    """`` `deepcolor download NAME` `` when ``spec`` is the model's own published default."""
    if info.default_weights == spec:
        return f"`deepcolor download {info.name}` (it prints the folder)"
    return ""


def resolve_model_weights(spec: str | os.PathLike, model: str) -> Path:
    """The local folder of ``model``'s weights ``spec``: ``official`` (the authors' released
    checkpoint, downloaded and converted once), ``shipped:NAME``, a local folder or a Hub id."""
    return _resolve(spec, colorizer_info(model))


def _resolve(spec: str | os.PathLike, info: ColorizerInfo) -> Path:
    text = str(spec)
    if text == OFFICIAL_SPEC and not Path(text).exists():
        return official_folder(info.name)
    return resolve_weights(text, info.name, fetch_advice=download_command(info, text))


def default_weights_problem(info: ColorizerInfo) -> str:
    """Empty when ``info``'s default weights can be had here, else why not, in one line.

    Nothing is loaded or downloaded: shipped and local folders must exist, Hub ids and official
    checkpoints must be cached or downloads allowed (HF_HUB_OFFLINE unset).
    """
    spec = info.default_weights
    if spec is None:
        if not info.trainable:
            return ""  # baselines carry no weights
        return (
            f"model {info.name!r} has no default weights in this installation; train it "
            f"(`accelerate launch -m train --model {info.name} ...`) and pass --weights RUN/final"
        )
    if looks_like_hub_id(spec) and not Path(spec).expanduser().exists():
        if not hub_offline() or in_hub_cache(spec) is not None:
            return ""  # cached, or downloaded on first use
        return hub_offline_message(spec, info.name, download_command(info, spec))
    if spec == OFFICIAL_SPEC and not hub_offline():
        return ""  # cached, or downloaded and converted on first use
    try:
        _resolve(spec, info)  # folders only: nothing is downloaded
    except ModelUnavailable as exc:
        return str(exc)
    return ""


def create_colorizer(name: str, weights: str | None = "default", **kwargs: Any) -> Colorizer:
    """Build model ``name``.

    ``weights``: ``"default"`` loads the shipped weights where the model has them (a model that
    needs weights and has none raises :class:`ModelUnavailable`); ``None`` builds it with fresh
    (random or pretrained-backbone) weights; anything else is a local ``save_pretrained`` folder,
    a Hub id or ``official`` (the authors' released checkpoint, converted on first use).
    """
    info = colorizer_info(name)
    if weights is None:
        return info.factory(**{**info.defaults, **kwargs})
    if weights == "default":
        if info.default_weights is None:
            if not info.trainable:  # baselines carry no trained weights
                return info.factory(**{**info.defaults, **kwargs})
            raise ModelUnavailable(default_weights_problem(info))
        weights = info.default_weights
    folder = _resolve(weights, info)
    cls = info.factory
    if not hasattr(cls, "from_pretrained"):
        raise ModelUnavailable(f"model {name!r} cannot load saved weights")
    # huggingface_hub prints "Loading weights from local directory" on every local load
    with contextlib.redirect_stdout(io.StringIO()):
        return cls.from_pretrained(str(folder), **kwargs)
