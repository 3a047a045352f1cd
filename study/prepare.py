"""``python -m study prepare``: render every stimulus beforehand, so serving costs no model time.

For each colour photo: the original, one colourisation per model, and a sentinel (the photo with
its chroma inverted and exaggerated: grass turns magenta, sky orange - obviously wrong to anyone
paying attention). Every image is re-encoded the same way and named by a random id: an
*uncompressed* PNG without metadata, so the four versions of a photo are byte-for-byte the same
size (a compressed colourisation is smaller than its original, which would give the answer away
to anyone watching the network), and neither names, formats nor sizes tell them apart.
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
from deepcolor.images import color_spread, to_uint8
from deepcolor.pipeline import iter_image_files
from deepcolor.registry import colorizer_info

from .audit import audit_study, format_audit
from .db import Database, record_database
from .design import (
    ALLOCATIONS,
    MAX_CHANCE_PASS,
    ORACLE,
    PROTOCOLS,
    REAL,
    SENTINEL,
    chance_pass_rate,
    photos_needed,
    sentinel_count,
)
from .errors import StudyError
from .manifest import (
    MANIFEST,
    MEDIA,
    WORKER_ID_PARAMS,
    Manifest,
    StimulusEntry,
    media_path,
    record_manifest,
    write_manifest,
)
from .public_sets import public_photo_warning
from .treatment import finish, lab_of, oracle_ab

SENTINEL_MIN_CHROMA = 5.0  # a fake paler than this (mean CIELAB chroma) makes a poor sentinel
# A photo carries real colour when its chroma varies a lot (the library's colour spread), or when
# it holds several hues: a sepia or tinted photo has one hue, however strong. Measured on the
# evaluation photos: gray, sepia and tinted versions of 109 of them have a hue variance of at
# most 0.021; kodim17 (gold leaves on green, spread 7.5) has 0.076. Of the 1,084 photos, this
# keeps 987 (all of Kodak24 and McMaster18), the spread alone 865.
MIN_SPREAD = 8.0
MIN_HUE_VARIANCE = 0.04  # 1 - mean resultant length of the chroma-weighted hues
NEUTRAL_CHROMA = 4.0  # pixels closer than this to gray carry no hue (JPEG noise, gray areas)
MIN_MEAN_CHROMA = 1.0  # mean chroma above NEUTRAL_CHROMA: a few noisy pixels are not colour


def sentinel_ab(
    photo_index: int, fakes: dict[str, torch.Tensor], ab: torch.Tensor
) -> tuple[torch.Tensor, str]:
    """(the chroma of a sentinel, the condition it comes from): a model's own colourisation of
    the photo with its hue turned by 180 degrees (ab negated: a blue face, an orange sky), so
    that it comes out of the same pipeline as the model trials it hides among, with their
    smoothness, saturation and treatment, and differs from them in colour, which a person sees
    at once. The models take turns by photo; models whose output is nearly gray on this photo
    are passed over (their inverse is as gray), and so is the oracle (its trials show the same
    image twice, which a sentinel cannot); without any model left, the original's colour
    through the oracle's bottleneck is inverted."""
    colourful = [
        name
        for name, fake in fakes.items()
        if name != ORACLE and float(fake.pow(2).sum(dim=1).sqrt().mean()) >= SENTINEL_MIN_CHROMA
    ]
    if not colourful:
        return -oracle_ab(ab), ORACLE
    source = colourful[photo_index % len(colourful)]
    return -fakes[source], source


def render_photo(
    rgb: np.ndarray, photo_index: int, models: list[str], pipelines: dict
) -> tuple[dict[str, np.ndarray], str]:
    """({condition: the stimulus, uint8 RGB}, the sentinel's source) for one photo: the original
    (``real``), each model (``oracle`` included) and the sentinel, every one the photo's own L
    with its chroma through the final treatment (:mod:`study.treatment`)."""
    L, ab = lab_of(rgb)
    fakes: dict[str, torch.Tensor] = {}
    for model in models:
        if model == ORACLE:
            fakes[model] = oracle_ab(ab)
        else:
            result = pipelines[model](Image.fromarray(rgb, "RGB"))
            fakes[model] = torch.from_numpy(result.ab).permute(2, 0, 1)[None].double()
    sentinel, source = sentinel_ab(photo_index, fakes, ab)
    chroma = {REAL: ab, **fakes, SENTINEL: sentinel}
    return {condition: finish(L, c) for condition, c in chroma.items()}, source


def hue_variance(rgb: np.ndarray) -> tuple[float, float]:
    """(circular variance of the hue, weighted by chroma; mean chroma above gray) of ``rgb``."""
    from skimage.color import rgb2lab

    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65536)))
    ab = rgb2lab(rgb[::step, ::step])[..., 1:].reshape(-1, 2)
    chroma = np.hypot(ab[:, 0], ab[:, 1])
    weight = np.clip(chroma - NEUTRAL_CHROMA, 0, None)
    if weight.sum() == 0:
        return 0.0, 0.0
    unit = ab / np.maximum(chroma, 1e-9)[:, None]
    resultant = np.linalg.norm((unit * weight[:, None]).sum(axis=0)) / weight.sum()
    return float(1.0 - resultant), float(weight.mean())


def has_real_color(rgb: np.ndarray) -> bool:
    """True for a colour photo; False for gray, sepia or a tint (see MIN_HUE_VARIANCE)."""
    if color_spread(rgb) > MIN_SPREAD:
        return True
    variance, chroma = hue_variance(rgb)
    return variance >= MIN_HUE_VARIANCE and chroma >= MIN_MEAN_CHROMA


def _save_png(rgb: np.ndarray, study_dir: Path) -> StimulusEntry:
    media_id = secrets.token_hex(16)
    path = media_path(study_dir, media_id)
    # A fresh image from raw pixels: no EXIF, no text chunks, the same encoder for every kind,
    # and no compression, so the file size depends on the width and height alone.
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(
        path, format="PNG", compress_level=0, optimize=False
    )
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
    rgb = to_uint8(load_image(path, keep_alpha=False).rgb)
    if not has_real_color(rgb):
        return None
    pil = Image.fromarray(rgb, "RGB")
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(pil)


def _check_settings(
    images: Path,
    models: list[str],
    out: Path,
    *,
    protocol: str,
    allocation: str,
    test_trials: int,
    practice_trials: int,
    sentinel_rate: float,
    sentinel_threshold: float,
    exposure_ms: int | None,
    max_chance_pass: float,
) -> int:
    """Every mistake that needs no photo loaded, before any work; returns the sentinel count."""
    if not images.is_dir():
        raise StudyError(f"{images}: no such folder of photos")
    if not models:
        raise StudyError("give at least one model (--models gray,tint)")
    if len(set(models)) != len(models):
        raise StudyError(f"a model is listed twice: {', '.join(models)}")
    for model in models:
        if model in (REAL, SENTINEL):
            raise StudyError(f"{model!r} is reserved for the study's own conditions")
        if model != ORACLE:  # the study's own: the original's colour through the bottleneck
            colorizer_info(model)  # UnknownModel names the available models
    if protocol not in PROTOCOLS:
        raise StudyError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if allocation not in ALLOCATIONS:
        raise StudyError(f"unknown allocation {allocation!r}; choose from {', '.join(ALLOCATIONS)}")
    if test_trials < 1 or practice_trials < 0:
        raise StudyError("need at least one test trial and no negative number of practice trials")
    if not 0 <= sentinel_rate < 1:
        raise StudyError("the sentinel rate is a share of the test trials, in [0, 1)")
    if not 0 <= sentinel_threshold <= 1:
        raise StudyError("the sentinel threshold is a share of correct sentinel answers, in [0, 1]")
    if exposure_ms is not None and exposure_ms <= 0:
        raise StudyError("the exposure limit is a positive number of milliseconds")
    if (out / MANIFEST).exists():
        raise StudyError(f"{out} already holds a study; choose a new --out folder")
    try:
        return sentinel_count(test_trials, sentinel_rate, sentinel_threshold, max_chance_pass)
    except ValueError as error:
        raise StudyError(str(error)) from None


def color_photos(
    images: Path, files: list[Path], max_side: int
) -> tuple[dict[str, np.ndarray], list[str]]:
    """{photo name: pixels} of the colour photos, and the names of the others."""
    photos: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for path in files:
        rgb = _load_photo(path, max_side)
        if rgb is None:
            skipped.append(path.name)
            continue
        photo = path.relative_to(images).with_suffix("").as_posix()
        if photo in photos:  # a.jpg and a.png
            photo = path.relative_to(images).as_posix()
        photos[photo] = rgb
    if skipped:
        print(
            f"skipped {len(skipped)} photo(s) without real colour (gray, sepia or one tint; "
            "a study needs colour originals): "
            + ", ".join(skipped[:10])
            + (" ..." if len(skipped) > 10 else ""),
            file=sys.stderr,
        )
    return photos, skipped


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
    sentinel_threshold: float = 0.8,
    max_side: int = 512,
    name: str | None = None,
    device: str | None = None,
    database_url: str | None = None,
    seed: int = 0,
    progress: bool = True,
    torch_threads: int | None = None,
    allow_repeats: bool = False,
    max_chance_pass: float = MAX_CHANCE_PASS,
    worker_id_params: list[str] | None = None,
    require_worker_id: bool = False,
    audit: bool = True,
) -> Manifest:
    """Colourise the photos in ``images`` with each model and write the STUDY folder ``out``.

    Each participant sees a photo at most once (practice included), so a study needs at least
    ``test_trials + practice_trials`` colour photos; with fewer it stops and says how many,
    unless ``allow_repeats`` (the organiser accepts that a repeated photo is judged from memory).
    Sentinels: ``sentinel_rate`` of the test trials, raised until someone answering at random
    passes the attention check (``sentinel_threshold`` correct) at most ``max_chance_pass`` of
    the time (5 %; a threshold of 0 turns the exclusion, and so this rule, off).
    ``torch_threads`` caps torch's CPU threads while colourising (restored afterwards): on a busy
    machine, small images go several times faster on one thread than on oversubscribed cores.
    ``worker_id_params``: URL parameters carrying a recruitment platform's participant id
    (default ``PROLIFIC_PID`` and ``workerId``); ``require_worker_id`` refuses joins without one.
    ``audit``: run :mod:`study.audit` on the result at the end and print its table and verdict.
    """
    images, out = Path(images), Path(out)
    sentinels = _check_settings(
        images,
        models,
        out,
        protocol=protocol,
        allocation=allocation,
        test_trials=test_trials,
        practice_trials=practice_trials,
        sentinel_rate=sentinel_rate,
        sentinel_threshold=sentinel_threshold,
        exposure_ms=exposure_ms,
        max_chance_pass=max_chance_pass,
    )
    files = iter_image_files([images])
    if not files:
        raise StudyError(f"{images}: no photos found (looked for .jpg, .png, .webp, .tif, ...)")
    photos, _ = color_photos(images, files, max_side)
    if not photos:
        raise StudyError(f"{images}: none of the {len(files)} photos is in colour")
    warning = public_photo_warning(photos)
    if warning:
        print(warning, file=sys.stderr)
    needed = photos_needed(test_trials, practice_trials)
    if len(photos) < needed and not allow_repeats:
        raise StudyError(
            f"{test_trials} test + {practice_trials} practice trials show each participant "
            f"{needed} photos, each once: {images} has {len(photos)} colour photos. Add "
            f"{needed - len(photos)} more, lower --trials to {max(0, len(photos) - practice_trials)}"
            " (or --practice), or pass --allow-repeats to show photos twice knowingly"
        )

    (out / MEDIA).mkdir(parents=True, exist_ok=True)
    pipelines = {m: ColorizationPipeline(m, device=device) for m in models if m != ORACLE}
    stimuli: list[StimulusEntry] = []
    bar = tqdm(
        total=len(photos) * (len(models) + 2),
        desc="preparing stimuli",
        unit="image",
        disable=not progress,
    )
    with _torch_threads(torch_threads):
        for index, (photo, rgb) in enumerate(photos.items()):
            renders, source = render_photo(rgb, index, models, pipelines)
            bar.update(len(renders))
            for condition, image in renders.items():
                entry = _save_png(image, out)
                entry.photo, entry.condition = photo, condition
                entry.source = source if condition == SENTINEL else None
                stimuli.append(entry)
    bar.close()
    if sentinels and sentinel_threshold > 0:
        print(
            f"{sentinels} of {test_trials} test trials are sentinels: a random clicker passes "
            f"the attention check {chance_pass_rate(sentinels, sentinel_threshold) * 100:.1f}% "
            "of the time",
            file=sys.stderr,
        )
    manifest = Manifest(
        public_id=uuid.uuid4().hex,
        name=name or out.name,
        protocol=protocol,
        allocation=allocation,
        models=list(models),
        photos=list(photos),
        test_trials=test_trials,
        practice_trials=practice_trials,
        sentinel_rate=sentinel_rate,
        exposure_ms=exposure_ms,
        open_signup=open_signup,
        sentinel_threshold=sentinel_threshold,
        seed=seed,
        sentinels=sentinels,
        allow_repeats=allow_repeats,
        worker_id_params=list(worker_id_params or WORKER_ID_PARAMS),
        require_worker_id=require_worker_id,
        stimuli=stimuli,
    )
    write_manifest(out, manifest)
    db = Database.for_study(out, database_url)
    try:
        record_manifest(db, manifest)
        record_database(out, db.url)
    finally:
        db.dispose()
    if audit:
        result = audit_study(out)
        print(format_audit(result), file=sys.stderr)
        print(
            "audit: "
            + (
                "passed"
                if result.ok
                else "FAILED (see above; fix the stimuli before inviting anyone)"
            )
            + f" - run it again with: python -m study audit {out}",
            file=sys.stderr,
        )
    return manifest
