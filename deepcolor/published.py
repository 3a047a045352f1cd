"""Published weights: what exists, how big, under which licence, cached or not; the default model.

The registry says where each model's weights come from (``default_weights``); this module adds
what a user needs to choose: the source, the download size, the licence and whether the weights
are already here. It also picks the automatic model the app and the CLI use when none is named:
``DEEPCOLOR_DEFAULT_MODEL`` if set, else ``ddcolor`` when its weights are cached or can be
downloaded now, else the shipped ``blend`` (which works offline with no download).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .convert.official import OFFICIAL, OFFICIAL_SPEC, cached_official_folder
from .errors import ModelUnavailable, UnknownModel
from .factory import resolve_model_weights
from .registry import DEFAULT_AUTOMATIC, colorizer_info, list_colorizers
from .weights import hub_offline, in_hub_cache

DEFAULT_MODEL_ENV = "DEEPCOLOR_DEFAULT_MODEL"
#: the automatic model preferred when its published weights can be had
PREFERRED_PUBLISHED = "ddcolor"
#: seconds a reachability probe may take (a machine without internet fails at once)
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class PublishedWeights:
    """Weights released by a model's authors, fetched on first use (or `deepcolor download`)."""

    key: str  # what `deepcolor download` takes
    model: str  # the registered model they load into
    weights: str  # the --weights spec: a Hub id or "official"
    source: str  # where they come from, as a URL
    size_bytes: int  # download size (float32 parameters of the published layout)
    licence: str
    authors: str  # whom to cite

    @property
    def size_label(self) -> str:
        return f"{self.size_bytes / 1e6:,.0f} MB"

    def cached_folder(self) -> Path | None:
        """The local folder when the weights are here (never downloads)."""
        if self.weights == OFFICIAL_SPEC:
            return cached_official_folder(self.model)
        return in_hub_cache(self.weights)

    @property
    def cached(self) -> bool:
        return self.cached_folder() is not None

    def fetch(self) -> Path:
        """Download (and convert) now unless cached; the folder ``--weights`` takes."""
        return resolve_model_weights(self.weights, self.model)


_DDCOLOR = "Kang et al., DDColor (ICCV 2023), piddnad/DDColor"
_ZHANG = "richzhang/colorization"
# Sizes: the parameter count of each published layout times 4 bytes (float32), so the figure is
# the size of the weights file to within its small header.
_PUBLISHED = (
    PublishedWeights(
        "ddcolor",
        "ddcolor",
        "piddnad/ddcolor_modelscope",
        "https://huggingface.co/piddnad/ddcolor_modelscope",
        911_687_456,
        "Apache-2.0",
        _DDCOLOR,
    ),
    PublishedWeights(
        "ddcolor-artistic",
        "ddcolor-artistic",
        "piddnad/ddcolor_artistic",
        "https://huggingface.co/piddnad/ddcolor_artistic",
        911_687_456,
        "Apache-2.0",
        _DDCOLOR,
    ),
    PublishedWeights(
        "ddcolor-paper",
        "ddcolor-paper",
        "piddnad/ddcolor_paper",
        "https://huggingface.co/piddnad/ddcolor_paper",
        911_687_456,
        "Apache-2.0",
        _DDCOLOR,
    ),
    PublishedWeights(
        "ddcolor-tiny",
        "ddcolor-tiny",
        "piddnad/ddcolor_paper_tiny",
        "https://huggingface.co/piddnad/ddcolor_paper_tiny",
        220_204_064,
        "Apache-2.0",
        _DDCOLOR,
    ),
)


def _official_entries() -> tuple[PublishedWeights, ...]:
    sizes = {"eccv16": 128_964_040, "siggraph17": 136_771_184}
    return tuple(
        PublishedWeights(
            c.key, c.model, OFFICIAL_SPEC, c.url, sizes[c.model], "BSD-2-Clause", _ZHANG
        )
        for c in OFFICIAL.values()
    )


def published_weights() -> list[PublishedWeights]:
    """Every published set whose model is registered here, in a stable order."""
    registered = {info.name for info in list_colorizers()}
    entries = [*_PUBLISHED, *_official_entries()]
    return [entry for entry in entries if entry.model in registered]


def find_published(key: str) -> PublishedWeights:
    """The entry ``deepcolor download KEY`` means, or UnknownModel naming the choices."""
    entries = {entry.key: entry for entry in published_weights()}
    if key in entries:
        return entries[key]
    raise UnknownModel(
        f"no published weights named {key!r}; choose from {', '.join(entries) or 'none'}"
    )


def published_for_model(model: str) -> PublishedWeights | None:
    """The published weights a model loads by default (``--weights default``), if any."""
    for entry in published_weights():
        if entry.model == model and colorizer_info(model).default_weights == entry.weights:
            return entry
    return None


def choice_label(model: str) -> str:
    """``model``, or ``model (912 MB download)`` while its default published weights are not
    cached (the app's model lists)."""
    entry = published_for_model(model)
    if entry is None or entry.cached:
        return model
    return f"{model} ({entry.size_label} download)"


@lru_cache(maxsize=8)
def _reachable(repo_id: str) -> bool:
    """Whether the Hub answers for ``repo_id`` now (once per process; a short timeout)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:  # hf_hub_url follows HF_ENDPOINT (a mirror)
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=PROBE_TIMEOUT)
    except Exception:  # no network, no DNS, a proxy, a missing repo: not downloadable now
        return False
    return True


@dataclass(frozen=True)
class DefaultChoice:
    """The default automatic model and why, in words."""

    name: str
    reason: str

    def line(self) -> str:
        return f"default model: {self.name} ({self.reason})"


def choose_default_model() -> DefaultChoice:
    """``DEEPCOLOR_DEFAULT_MODEL``, else ``ddcolor`` if its weights are cached or downloadable
    now, else the shipped ``blend``. An unknown name in the variable raises UnknownModel."""
    configured = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    if configured:
        try:
            colorizer_info(configured)
        except UnknownModel as exc:  # the name came from the setting, not from a --model
            raise UnknownModel(f"{DEFAULT_MODEL_ENV}={configured}: {exc}") from None
        return DefaultChoice(configured, f"set by {DEFAULT_MODEL_ENV}")
    fallback = f"using the shipped {DEFAULT_AUTOMATIC}"
    try:
        entry = published_for_model(PREFERRED_PUBLISHED)
    except (UnknownModel, ModelUnavailable):
        entry = None
    if entry is None:
        return DefaultChoice(
            DEFAULT_AUTOMATIC, f"{PREFERRED_PUBLISHED} is not installed; {fallback}"
        )
    if entry.cached:
        return DefaultChoice(entry.model, f"its published weights {entry.weights} are cached")
    missing = f"{entry.model}'s weights are not cached and"
    if hub_offline():
        return DefaultChoice(DEFAULT_AUTOMATIC, f"{missing} HF_HUB_OFFLINE is set; {fallback}")
    if not _reachable(entry.weights):
        return DefaultChoice(DEFAULT_AUTOMATIC, f"{missing} the Hub cannot be reached; {fallback}")
    return DefaultChoice(
        entry.model,
        f"its published weights {entry.weights} download on first use, {entry.size_label}",
    )
