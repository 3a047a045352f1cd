"""``python -m study audit STUDY``: what a script could read from the prepared stimuli without
judging colour, checked before anyone is invited.

Each rule looks at the two images of a trial (the original and one fake, as a 2AFC trial shows
them) and names one as the fake by a statistic no person can see: fewer distinct colours, less
chroma noise, less chroma high-frequency energy, less 8- or 16-pixel chroma blockiness (JPEG
traces), lower saturation, more clipped pixels, a smaller file, other dimensions, other PNG
chunks, less luminance noise. Its accuracy over the study's photos is given per condition with a
two-sided binomial p (a rule that cannot decide, equal statistics, counts half). On the
``oracle`` condition (the original's own colour through the same bottleneck and treatment as
every fake) every rule must stay at chance: 40-60 % and p > 0.01, or the stimuli leak processing
artefacts. On real models a rule may legitimately win (a pale model is paler); it is reported.

Sentinels must hide among the model trials: for each statistic of a trial's pair, a threshold
fitted on half of the photos tells sentinel trials from model trials on the other half (and the
other way round); the best balanced accuracy must stay at most 60 %.

The audit exits 1 when a rule beats chance on the oracle or sentinels can be told apart.
Needs no torch: the stimuli are read as files.
"""

from __future__ import annotations

import math
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.stats import binomtest

from .design import ORACLE, REAL, SENTINEL
from .manifest import Manifest, media_path, read_manifest

CHANCE_LOW, CHANCE_HIGH, ALPHA = 0.40, 0.60, 0.01
SENTINEL_LIMIT = 0.60
MIN_SENTINEL_PHOTOS = 20  # fewer: a fitted threshold's held-out accuracy is mostly noise


@dataclass
class Features:
    """The statistics of one stimulus a script could compute."""

    colours: int  # distinct RGB colours
    chroma_noise: float  # std of ab minus its 3x3 mean
    chroma_hf: float  # share of ab energy above 0.25 cycles per pixel
    block16: float  # chroma jumps on 16-px boundaries / elsewhere
    block8: float
    saturation: float  # mean CIELAB chroma
    clipped: float  # share of channel values at 0 or 255
    luma_noise: float  # std of L minus its 3x3 mean
    size: int  # file bytes
    dims: tuple[int, int]
    chunks: tuple  # PNG chunk types and ancillary contents


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of uint8 sRGB (numpy, D65), ``(H, W, 3)``."""
    x = rgb.astype(np.float64) / 255.0
    linear = np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    m = np.array(
        [
            [0.412453, 0.357580, 0.180423],
            [0.212671, 0.715160, 0.072169],
            [0.019334, 0.119193, 0.950227],
        ]
    )
    xyz = linear @ m.T / np.array([0.950456, 1.0, 1.088754])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    L = np.where(xyz[..., 1] > 0.008856, 116.0 * np.cbrt(xyz[..., 1]) - 16.0, 903.3 * xyz[..., 1])
    return np.stack([L, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def _residual(x: np.ndarray) -> np.ndarray:
    """``x`` (H, W, C) minus its 3x3 mean (edges replicated)."""
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    mean = sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0
    return x - mean


def _blockiness(ab: np.ndarray, period: int) -> float:
    jumps_x = np.abs(np.diff(ab, axis=1)).sum(-1)
    jumps_y = np.abs(np.diff(ab, axis=0)).sum(-1)
    on_x = (np.arange(jumps_x.shape[1]) % period) == period - 1
    on_y = (np.arange(jumps_y.shape[0]) % period) == period - 1
    on = jumps_x[:, on_x].sum() + jumps_y[on_y].sum()
    off = jumps_x[:, ~on_x].sum() + jumps_y[~on_y].sum()
    n_on = jumps_x[:, on_x].size + jumps_y[on_y].size
    n_off = jumps_x[:, ~on_x].size + jumps_y[~on_y].size
    return float((on / max(n_on, 1)) / max(off / max(n_off, 1), 1e-12))


def _high_frequency(ab: np.ndarray) -> float:
    total, high = 0.0, 0.0
    for c in range(2):
        power = np.abs(np.fft.fft2(ab[..., c] - ab[..., c].mean())) ** 2
        fy = np.abs(np.fft.fftfreq(ab.shape[0]))[:, None]
        fx = np.abs(np.fft.fftfreq(ab.shape[1]))[None, :]
        total += power.sum()
        high += power[np.maximum(fy, fx) > 0.25].sum()
    return float(high / total) if total > 0 else 0.0


def features_of(data: bytes, rgb: np.ndarray) -> Features:
    lab = _lab(rgb)
    ab = lab[..., 1:]
    flat = rgb.reshape(-1, 3).astype(np.int64)
    return Features(
        colours=int(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]).size),
        chroma_noise=float(_residual(ab).std()),
        chroma_hf=_high_frequency(ab),
        block16=_blockiness(ab, 16),
        block8=_blockiness(ab, 8),
        saturation=float(np.hypot(ab[..., 0], ab[..., 1]).mean()),
        clipped=float(((rgb == 0) | (rgb == 255)).mean()),
        luma_noise=float(_residual(lab[..., :1]).std()),
        size=len(data),
        dims=(rgb.shape[1], rgb.shape[0]),
        chunks=tuple((kind, content) for kind, _, content in png_layout(data) if kind != b"IDAT"),
    )


def png_layout(data: bytes) -> list[tuple[bytes, int, bytes | None]]:
    """(type, length, content) of every PNG chunk, content left out for pixel data (IDAT)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return [(b"not a PNG", len(data), None)]
    chunks, at = [], 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        content = data[at + 8 : at + 8 + length]
        chunks.append((kind, length, None if kind == b"IDAT" else content))
        at += 12 + length
    return chunks


def _fake_if(smaller_is_fake: bool, value: Callable[[Features], float]):
    """A rule from a statistic: the image with the smaller (or larger) value is the fake."""

    def rule(real: Features, fake: Features) -> bool | None:
        a, b = value(real), value(fake)
        if a == b:
            return None
        return (b < a) if smaller_is_fake else (b > a)

    return rule


def _by_chunks(real: Features, fake: Features) -> bool | None:
    # "the one with more ancillary chunks (camera metadata) is real"
    if real.chunks == fake.chunks:
        return None
    return len(fake.chunks) < len(real.chunks)


RULES: dict[str, Callable[[Features, Features], bool | None]] = {
    "fewer distinct RGB colours = fake": _fake_if(True, lambda f: f.colours),
    "more chroma noise (3x3 residual) = real": _fake_if(True, lambda f: f.chroma_noise),
    "more chroma high-frequency energy = real": _fake_if(True, lambda f: f.chroma_hf),
    "chroma 16-px blockiness = real": _fake_if(True, lambda f: f.block16),
    "chroma 8-px blockiness = real": _fake_if(True, lambda f: f.block8),
    "more saturated = real": _fake_if(True, lambda f: f.saturation),
    "more clipped pixels = fake": _fake_if(False, lambda f: f.clipped),
    "more luminance noise = real": _fake_if(True, lambda f: f.luma_noise),
    "smaller file = fake": _fake_if(True, lambda f: f.size),
    "fewer pixels = fake": _fake_if(True, lambda f: f.dims[0] * f.dims[1]),
    "fewer PNG chunks (metadata) = fake": _by_chunks,
}

# Statistics of a trial's pair a bot could use to spot sentinels (symmetric: it need not know
# which image is the fake).
PAIR_STATISTICS: dict[str, Callable[[Features], float]] = {
    "distinct colours": lambda f: math.log(f.colours),
    "chroma noise": lambda f: f.chroma_noise,
    "chroma high frequencies": lambda f: f.chroma_hf,
    "16-px blockiness": lambda f: f.block16,
    "saturation": lambda f: f.saturation,
    "clipped pixels": lambda f: f.clipped,
}


@dataclass
class RuleScore:
    correct: int
    ties: int
    trials: int

    @property
    def accuracy(self) -> float:
        return (self.correct + self.ties / 2) / self.trials if self.trials else float("nan")

    @property
    def p(self) -> float:
        decided = self.trials - self.ties
        return binomtest(self.correct, decided, 0.5).pvalue if decided else 1.0

    @property
    def at_chance(self) -> bool:
        return CHANCE_LOW <= self.accuracy <= CHANCE_HIGH and self.p > ALPHA


@dataclass
class AuditResult:
    photos: int
    scores: dict[str, dict[str, RuleScore]]  # condition -> rule -> score
    sentinel_accuracy: float | None  # best balanced accuracy telling sentinels from models
    sentinel_statistic: str | None

    @property
    def oracle_ok(self) -> bool | None:
        if ORACLE not in self.scores:
            return None
        return all(s.at_chance for s in self.scores[ORACLE].values())

    @property
    def sentinels_ok(self) -> bool | None:
        if self.sentinel_accuracy is None:
            return None
        return self.sentinel_accuracy <= SENTINEL_LIMIT

    @property
    def ok(self) -> bool:
        return self.oracle_ok is not False and self.sentinels_ok is not False


def score_conditions(
    stimuli: dict[str, dict[str, Features]],
) -> dict[str, dict[str, RuleScore]]:
    """{condition: {rule: score}} for ``stimuli`` ({condition: {photo: features}}, with
    ``real``)."""
    real = stimuli[REAL]
    scores: dict[str, dict[str, RuleScore]] = {}
    for condition, fakes in stimuli.items():
        if condition == REAL:
            continue
        photos = [p for p in fakes if p in real]
        scores[condition] = {}
        for name, rule in RULES.items():
            verdicts = [rule(real[p], fakes[p]) for p in photos]
            scores[condition][name] = RuleScore(
                sum(v is True for v in verdicts), sum(v is None for v in verdicts), len(photos)
            )
    return scores


def _pair_values(real: Features, fake: Features, statistic) -> tuple[float, ...]:
    a, b = statistic(real), statistic(fake)
    return (min(a, b), max(a, b), abs(a - b))


def _balanced(data, threshold: float, above: bool) -> float:
    """Balanced accuracy of "sentinel when value > threshold" (or <=, ``above`` False) on
    ``data``, a list of (value, is_sentinel)."""
    pos = [v for v, s in data if s]
    neg = [v for v, s in data if not s]
    if not pos or not neg:
        return 0.5
    hit = sum((v > threshold) == above for v in pos) / len(pos)
    reject = sum((v > threshold) != above for v in neg) / len(neg)
    return (hit + reject) / 2


def _best_classifier(columns: dict[str, list[tuple[float, bool]]]):
    """(train accuracy, column, threshold, above) of the best single-statistic threshold."""
    best = (0.0, "", 0.0, True)
    for name, data in columns.items():
        values = sorted({v for v, _ in data})
        cuts = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] or values
        for threshold in cuts:
            for above in (True, False):
                accuracy = _balanced(data, threshold, above)
                if accuracy > best[0]:
                    best = (accuracy, name, threshold, above)
    return best


def sentinel_detectability(
    stimuli: dict[str, dict[str, Features]], sources: dict[str, str] | None = None
) -> tuple[float | None, str | None]:
    """(held-out balanced accuracy of the best classifier telling sentinel trials from the
    trials of the models the sentinels were drawn from, the statistic it chose); (None, reason)
    without sentinels or models, or with fewer than ``MIN_SENTINEL_PHOTOS`` photos.

    The classifier is a threshold on one statistic of a trial's pair of images (the lower, the
    higher or the difference: a bot need not know which image is the fake), the statistic,
    threshold and direction chosen on half of the photos and scored on the other half, and the
    other way round (the two scores averaged).

    ``sources``: {photo: the model its sentinel comes from} (as ``prepare`` records it); models
    never used as a source (a colourless baseline) are left out, all of them without it. The
    oracle is no model: its trials show one image twice, and a bot cannot inflate them."""
    real = stimuli[REAL]
    models = [c for c in stimuli if c not in (REAL, SENTINEL, ORACLE)]
    used = {s for s in (sources or {}).values() if s in models}
    models = [m for m in models if m in used] if used else models
    if SENTINEL not in stimuli or not models:
        return None, None
    photos = sorted(p for p in stimuli[SENTINEL] if p in real)
    if len(photos) < MIN_SENTINEL_PHOTOS:
        return (
            None,
            f"{len(photos)} photos, too few to judge (the audit needs {MIN_SENTINEL_PHOTOS})",
        )

    def columns(chosen: list[str]) -> dict[str, list[tuple[float, bool]]]:
        out: dict[str, list[tuple[float, bool]]] = {}
        for name, statistic in PAIR_STATISTICS.items():
            for part, label in enumerate(("lower", "higher", "difference")):
                key = f"{name} ({label} of the pair)"
                out[key] = [
                    (_pair_values(real[p], stimuli[SENTINEL][p], statistic)[part], True)
                    for p in chosen
                ] + [
                    (_pair_values(real[p], stimuli[m][p], statistic)[part], False)
                    for p in chosen
                    for m in models
                    if p in stimuli[m]
                ]
        return out

    # Halves drawn at random (seeded): every half holds sentinels of every source model, which
    # take turns by photo and would otherwise fall one model to a half.
    shuffled = random.Random(0).sample(photos, len(photos))
    halves = (columns(shuffled[0::2]), columns(shuffled[1::2]))
    scores, chosen = [], []
    for train, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        _, name, threshold, above = _best_classifier(train)
        scores.append(_balanced(test[name], threshold, above))
        chosen.append(name)
    return sum(scores) / 2, " / ".join(dict.fromkeys(chosen))


def features_of_study(
    study_dir: str | os.PathLike, manifest: Manifest | None = None
) -> tuple[dict[str, dict[str, Features]], dict[str, str]]:
    """({condition: {photo: Features}}, {photo: its sentinel's source model}) of a prepared
    study's stimuli."""
    manifest = manifest or read_manifest(study_dir)
    stimuli: dict[str, dict[str, Features]] = {}
    sources: dict[str, str] = {}
    for entry in manifest.stimuli:
        path = media_path(study_dir, entry.media_id)
        data = path.read_bytes()
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        stimuli.setdefault(entry.condition, {})[entry.photo] = features_of(data, rgb)
        if entry.condition == SENTINEL and entry.source:
            sources[entry.photo] = entry.source
    return stimuli, sources


def audit_stimuli(
    stimuli: dict[str, dict[str, Features]], sources: dict[str, str] | None = None
) -> AuditResult:
    scores = score_conditions(stimuli)
    accuracy, statistic = sentinel_detectability(stimuli, sources)
    return AuditResult(len(stimuli.get(REAL, {})), scores, accuracy, statistic)


def audit_study(study_dir: str | os.PathLike) -> AuditResult:
    return audit_stimuli(*features_of_study(study_dir))


def format_audit(result: AuditResult) -> str:
    """The battery as a table (rules x conditions: accuracy and p), then the verdicts."""
    conditions = list(result.scores)
    width = max(len(r) for r in RULES) + 2
    lines = [
        f"audit of {result.photos} photos: how often each rule names the fake "
        "(a rule at chance: 40-60 % and p > 0.01)",
        "rule".ljust(width) + "".join(c[:18].rjust(20) for c in conditions),
    ]
    for rule in RULES:
        cells = []
        for condition in conditions:
            score = result.scores[condition][rule]
            flag = "" if score.at_chance else " !"
            cells.append(f"{score.accuracy * 100:5.1f} % p={_p(score.p)}{flag}".rjust(20))
        lines.append(rule.ljust(width) + "".join(cells))
    if result.oracle_ok is None:
        lines.append(
            "oracle: not in this study (prepare --models oracle,...) - processing artefacts unchecked"
        )
    elif result.oracle_ok:
        lines.append("oracle: every rule at chance - the stimuli leak no processing artefacts")
    else:
        failed = [r for r, s in result.scores[ORACLE].items() if not s.at_chance]
        lines.append(
            "oracle: FAILED - these rules tell the original from a perfect colourisation: "
            + "; ".join(failed)
        )
    if result.sentinel_accuracy is None:
        lines.append(f"sentinels: {result.sentinel_statistic or 'none in this study'}")
    else:
        verdict = "hidden among" if result.sentinels_ok else "FAILED - can be told from"
        lines.append(
            f"sentinels: {verdict} the model trials (classifier on "
            f"{result.sentinel_statistic}, {result.sentinel_accuracy * 100:.1f} % held out; "
            f"limit {SENTINEL_LIMIT * 100:.0f} %)"
        )
    return "\n".join(lines)


def _p(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.0e}"
