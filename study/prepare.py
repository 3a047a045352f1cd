"""``python -m study prepare``: render every stimulus beforehand, so serving costs no model time.

For each colour photo: the original, one colourisation per model, and a sentinel (the photo with
its chroma inverted and exaggerated: grass turns magenta, sky orange - obviously wrong to anyone
paying attention). Every image is re-encoded the same way (PNG, no metadata) and named by a random
id, so neither file names nor formats tell an original from a colourisation.
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from deepcolor import ColorizationPipeline, load_image
from deepcolor.color import lab_to_rgb, rgb_to_lab
from deepcolor.images import to_uint8
from deepcolor.pipeline import iter_image_files
from deepcolor.registry import colorizer_info

from .db import Database
from .design import ALLOCATIONS, PROTOCOLS, REAL, SENTINEL, sentinel_count
from .errors import StudyError
from .manifest import (
    MANIFEST,
    MEDIA,
    Manifest,
    StimulusEntry,
    media_path,
    record_manifest,
    write_manifest,
)

SENTINEL_GAIN = -1.6  # invert the hue (180 degrees) and push the saturation


def sentinel_image(rgb: np.ndarray) -> np.ndarray:
    """An obviously wrong colourisation of ``rgb`` (H, W, 3 uint8): same L, ab * -1.6."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    lab = rgb_to_lab(x)
    lab[:, 1:] = (lab[:, 1:] * SENTINEL_GAIN).clamp(-110, 110)
    out = lab_to_rgb(lab)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    return to_uint8(out)


def _save_png(rgb: np.ndarray, study_dir: Path) -> StimulusEntry:
    media_id = secrets.token_hex(16)
    path = media_path(study_dir, media_id)
    # A fresh image from raw pixels: no EXIF, no text chunks, same encoder for every kind.
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(path, format="PNG", optimize=False)
    return StimulusEntry(
        media_id=media_id, photo="", condition="", width=rgb.shape[1], height=rgb.shape[0]
    )


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _load_photo(path: Path, max_side: int) -> np.ndarray | None:
    """The photo as uint8 RGB at most ``max_side`` pixels on its long side; None if not colour."""
    image = load_image(path, keep_alpha=False)
    if not image.is_color:
        return None
    pil = Image.fromarray(to_uint8(image.rgb), "RGB")
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(pil)


def prepare_study(
    images: str | os.PathLike,
    models: list[str],
    out: str | os.PathLike,
    *,
    protocol: str = "2afc",
    allocation: str = "mixed",
    test_trials: int = 40,
    practice_trials: int = 2,
    sentinel_rate: float = 0.1,
    exposure_ms: int | None = None,
    open_signup: bool = True,
    sentinel_threshold: float = 0.75,
    max_side: int = 512,
    name: str | None = None,
    device: str | None = None,
    database_url: str | None = None,
    seed: int = 0,
    progress: bool = True,
    torch_threads: int | None = None,
) -> Manifest:
    """Colourise the photos in ``images`` with each model and write the STUDY folder ``out``.

    ``torch_threads`` caps torch's CPU threads while colourising (restored afterwards): on a busy
    machine, small images go several times faster on one thread than on oversubscribed cores.
    """
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise StudyError(f"{images}: no such folder of photos")
    if not models:
        raise StudyError("give at least one model (--models gray,tint)")
    if len(set(models)) != len(models):
        raise StudyError(f"a model is listed twice: {', '.join(models)}")
    for model in models:
        if model in (REAL, SENTINEL):
            raise StudyError(f"{model!r} is reserved for the study's own conditions")
        colorizer_info(model)  # UnknownModel names the available models
    if protocol not in PROTOCOLS:
        raise StudyError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if allocation not in ALLOCATIONS:
        raise StudyError(f"unknown allocation {allocation!r}; choose from {', '.join(ALLOCATIONS)}")
    if test_trials < 1 or practice_trials < 0:
        raise StudyError("need at least one test trial and no negative number of practice trials")
    if not 0 <= sentinel_rate < 1:
        raise StudyError("the sentinel rate is a share of the test trials, in [0, 1)")
    if exposure_ms is not None and exposure_ms <= 0:
        raise StudyError("the exposure limit is a positive number of milliseconds")
    if (out / MANIFEST).exists():
        raise StudyError(f"{out} already holds a study; choose a new --out folder")
    files = iter_image_files([images])
    if not files:
        raise StudyError(f"{images}: no photos found (looked for .jpg, .png, .webp, .tif, ...)")

    (out / MEDIA).mkdir(parents=True, exist_ok=True)
    pipelines = {m: ColorizationPipeline(m, device=device) for m in models}
    stimuli: list[StimulusEntry] = []
    photos: list[str] = []
    skipped: list[str] = []
    used_names: set[str] = set()
    bar = tqdm(
        total=len(files) * (len(models) + 2),
        desc="preparing stimuli",
        unit="image",
        disable=not progress,
    )
    with _torch_threads(torch_threads):
        for path in files:
            rgb = _load_photo(path, max_side)
            if rgb is None:
                skipped.append(path.name)
                bar.update(len(models) + 2)
                continue
            photo = path.relative_to(images).with_suffix("").as_posix()
            if photo in used_names:  # a.jpg and a.png
                photo = path.relative_to(images).as_posix()
            used_names.add(photo)
            photos.append(photo)
            renders = {REAL: rgb, SENTINEL: sentinel_image(rgb)}
            bar.update(2)
            for model, pipeline in pipelines.items():
                renders[model] = pipeline(Image.fromarray(rgb, "RGB")).rgb
                bar.update(1)
            for condition, image in renders.items():
                entry = _save_png(image, out)
                entry.photo, entry.condition = photo, condition
                stimuli.append(entry)
    bar.close()
    if skipped:
        print(
            f"skipped {len(skipped)} photo(s) without real colour (a study needs colour originals): "
            + ", ".join(skipped[:10])
            + (" ..." if len(skipped) > 10 else ""),
            file=sys.stderr,
        )
    if not photos:
        raise StudyError(f"{images}: none of the {len(files)} photos is in colour")
    if test_trials - sentinel_count(test_trials, sentinel_rate) > len(photos):
        print(
            f"note: {test_trials} trials per participant but only {len(photos)} photos; "
            "participants will see some photos more than once",
            file=sys.stderr,
        )

    manifest = Manifest(
        public_id=uuid.uuid4().hex,
        name=name or out.name,
        protocol=protocol,
        allocation=allocation,
        models=list(models),
        photos=photos,
        test_trials=test_trials,
        practice_trials=practice_trials,
        sentinel_rate=sentinel_rate,
        exposure_ms=exposure_ms,
        open_signup=open_signup,
        sentinel_threshold=sentinel_threshold,
        seed=seed,
        stimuli=stimuli,
    )
    write_manifest(out, manifest)
    db = Database.for_study(out, database_url)
    try:
        record_manifest(db, manifest)
    finally:
        db.dispose()
    return manifest
