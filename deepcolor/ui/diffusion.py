"""Whether a text-prompt model's diffusion weights are configured, without loading gigabytes.

A diffusion model (``controlnet``) builds cheaply and loads its Stable Diffusion base and its
ControlNet on first use. The Prompt tab is enabled when each source is a local folder, is set
explicitly through its environment variable, is already in the Hugging Face cache, or can be
downloaded on first use (downloads are on: HF_HUB_OFFLINE unset), so an online host needs no
settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..weights import hub_offline
from ..weights import in_hub_cache as cached_snapshot

# Environment variables naming the diffusion weights (Hub ids or local diffusers folders).
DIFFUSION_ENV = {
    "DEEPCOLOR_SD_MODEL": "the Stable Diffusion base model",
    "DEEPCOLOR_CONTROLNET_MODEL": "the colourisation ControlNet",
}


def in_hub_cache(repo_id: str) -> bool:
    """True when a snapshot of ``repo_id`` is in the local cache (never downloads)."""
    return cached_snapshot(repo_id, required=None) is not None


def missing_weights(model) -> str:
    """Empty when ``model``'s diffusion weights can be found, else what to set."""
    if not hasattr(model, "resolved_sources"):
        return ""
    missing = []
    for spec, env in zip(model.resolved_sources(), DIFFUSION_ENV, strict=False):
        if os.environ.get(env) or Path(spec).expanduser().is_dir() or spec == "unet":
            continue  # configured explicitly (downloaded on first use) or a local folder
        if not hub_offline() or in_hub_cache(spec):
            continue  # downloaded on first use, or already here
        missing.append(f"{env} ({DIFFUSION_ENV[env]}; the default {spec!r} is not downloaded)")
    if not missing:
        return ""
    return (
        "diffusion weights are not downloaded and HF_HUB_OFFLINE is set: set "
        + " and ".join(missing)
        + " to a local diffusers folder (or a Hub id), or unset HF_HUB_OFFLINE"
    )
