"""Experimental design: which trials a participant sees, in which order, on which side.

Pure functions. The server passes in how many judgements each (photo, condition) cell already
has; the allocation picks the least-judged cells, so with participants arriving one by one
(open sign-up, unknown total) every model and every photo gets comparable numbers of judgements.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PROTOCOLS = ("single", "2afc")
ALLOCATIONS = ("mixed", "per-model")
REAL = "real"  # the condition of an original photo shown alone (single-image protocol)
ORACLE = "oracle"  # the original's own colour through a model's bottleneck (study.treatment)
SENTINEL = "sentinel"  # an obviously wrong colourisation, to spot inattentive participants

Cell = tuple[str, str]  # (photo, condition)


@dataclass(frozen=True)
class PlannedTrial:
    phase: str  # "practice" | "test"
    photo: str
    condition: str  # a model name, REAL or SENTINEL
    fake_side: str | None  # 2AFC: the side of the non-original image; single: None


MAX_CHANCE_PASS = 0.05  # a random clicker may pass the attention check at most this often


def sentinels_needed(correct_share: float, sentinels: int) -> int:
    """Correct sentinel answers a participant needs to be kept (accuracy >= ``correct_share``)."""
    return math.ceil(correct_share * sentinels - 1e-9)


def chance_pass_rate(sentinels: int, threshold: float) -> float:
    """Probability that someone answering at random (p = 1/2 per trial) passes the attention
    check: at least ``sentinels_needed(threshold, sentinels)`` of ``sentinels`` correct."""
    if sentinels <= 0:
        return 1.0
    need = sentinels_needed(threshold, sentinels)
    return sum(math.comb(sentinels, k) for k in range(need, sentinels + 1)) / 2**sentinels


def sentinel_count(
    test_trials: int,
    rate: float,
    threshold: float | None = None,
    max_chance: float = MAX_CHANCE_PASS,
) -> int:
    """Sentinel trials among ``test_trials``: ``rate`` of them, rounded, at least one if asked;
    with ``threshold``, raised until a random clicker passes with probability <= ``max_chance``.

    Raises ValueError when ``test_trials`` are too few for such a check.
    """
    if rate <= 0 or test_trials <= 1:
        return 0
    count = min(test_trials - 1, max(1, round(test_trials * rate)))
    if threshold is None or threshold <= 0:  # nobody is excluded: no check to make strict
        return count
    while chance_pass_rate(count, threshold) > max_chance:
        count += 1
        if count > test_trials - 1:
            raise ValueError(
                f"with a sentinel threshold of {threshold:.2f}, {test_trials} test trials are too "
                f"few for an attention check a random clicker passes at most "
                f"{max_chance * 100:.0f} % of the time; use more trials or a higher threshold"
            )
    return count


def photos_needed(test_trials: int, practice_trials: int) -> int:
    """Distinct photos a participant needs when no photo may be shown to them twice."""
    return test_trials + practice_trials


def conditions_for(protocol: str, models: Sequence[str]) -> list[str]:
    """The measured conditions: each model, plus real photos alone in the single protocol
    (the control: without them "real" would always be the wrong answer)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return [*models, REAL] if protocol == "single" else list(models)


def choose_model(
    models: Sequence[str], participants_per_model: Mapping[str, int], rng: random.Random
) -> str:
    """Per-model allocation: the model with the fewest participants so far (ties at random)."""
    fewest = min(participants_per_model.get(m, 0) for m in models)
    return rng.choice([m for m in models if participants_per_model.get(m, 0) == fewest])


def _pick_least_used(
    candidates: Sequence[Cell],
    counts: Counter,
    seen_photos: set[str],
    own: Counter,
    rng: random.Random,
    allow_repeats: bool,
) -> Cell:
    # A photo seen before is answered from memory (the original is the one seen before): it is
    # never picked again unless repeats are allowed, and then only when nothing fresh is left.
    # Among the rest: the condition this participant has had least (so nobody sees, say, only
    # real photos); then the cell with the fewest judgements across participants; ties at random.
    if not allow_repeats:
        candidates = [c for c in candidates if c[0] not in seen_photos]
        if not candidates:
            raise ValueError("not enough photos to show each participant a photo only once")

    def key(cell: Cell) -> tuple[bool, int, int]:
        return (cell[0] in seen_photos, own[cell[1]], counts[cell])

    best = min(key(c) for c in candidates)
    return rng.choice([c for c in candidates if key(c) == best])


def balanced_sides(count: int, rng: random.Random) -> list[str]:
    """2AFC: the fake image's side, half left and half right (the odd one at random), shuffled,
    so that "always the left one" scores exactly chance for every participant."""
    sides = ["left", "right"] * (count // 2) + (
        [rng.choice(("left", "right"))] if count % 2 else []
    )
    rng.shuffle(sides)
    return sides


def plan_trials(
    *,
    protocol: str,
    photos: Sequence[str],
    conditions: Sequence[str],
    test_trials: int,
    practice_trials: int,
    sentinels: int,
    counts: Mapping[Cell, int],
    sentinel_counts: Mapping[str, int] | None = None,
    rng: random.Random,
    allow_repeats: bool = False,
) -> list[PlannedTrial]:
    """One participant's trials: practice first (with feedback), then test trials in random
    order, ``sentinels`` of them sentinels.

    ``conditions`` are the cells this participant may see (all models, or their one model, plus
    REAL in the single protocol); ``counts`` the test judgements each (photo, condition) cell
    already has across participants; ``sentinel_counts`` the same for sentinels per photo.
    Each photo appears at most once per participant (practice included) unless
    ``allow_repeats``; ValueError when there are too few photos for that.
    """
    if not photos:
        raise ValueError("a study needs at least one photo")
    if not conditions:
        raise ValueError("a study needs at least one model")
    needed = photos_needed(test_trials, practice_trials)
    if not allow_repeats and len(set(photos)) < needed:
        raise ValueError(
            f"{test_trials} test and {practice_trials} practice trials need {needed} photos "
            f"to show each one once; there are {len(set(photos))}"
        )
    cells = [(p, c) for p in photos for c in conditions]
    counts = Counter(dict(counts))
    sentinels_used = Counter(dict(sentinel_counts or {}))

    seen: set[str] = set()
    own: Counter = Counter()
    measured: list[tuple[str, str]] = []
    for _ in range(test_trials - sentinels):
        cell = _pick_least_used(cells, counts, seen, own, rng, allow_repeats)
        counts[cell] += 1
        own[cell[1]] += 1
        seen.add(cell[0])
        measured.append(cell)
    sentinel_cells = []
    photo_cells = [(p, SENTINEL) for p in photos]
    for _ in range(sentinels):
        used = Counter({(p, SENTINEL): sentinels_used[p] for p in photos})
        cell = _pick_least_used(photo_cells, used, seen, Counter(), rng, allow_repeats)
        sentinels_used[cell[0]] += 1
        seen.add(cell[0])
        sentinel_cells.append(cell)

    test = measured + sentinel_cells
    rng.shuffle(test)
    # Practice on photos this participant is not tested on: the feedback says which was fake.
    practice = []
    practice_own: Counter = Counter()
    for _ in range(practice_trials):
        cell = _pick_least_used(cells, Counter(), seen, practice_own, rng, allow_repeats)
        practice_own[cell[1]] += 1
        seen.add(cell[0])
        practice.append(cell)

    def sides(count: int) -> list[str | None]:
        return balanced_sides(count, rng) if protocol == "2afc" else [None] * count

    plan = [
        PlannedTrial("practice", p, c, s)
        for (p, c), s in zip(practice, sides(len(practice)), strict=True)
    ]
    plan += [
        PlannedTrial("test", p, c, s) for (p, c), s in zip(test, sides(len(test)), strict=True)
    ]
    return plan


def judge(protocol: str, condition: str, fake_side: str | None, answer: str) -> tuple[bool, bool]:
    """(correct, judged_real) of an answer.

    single: "real" or "fake". The answer is correct when it names what the image is;
    ``judged_real`` is True when the image was called real (for a colourised image, that is
    public acceptance; for an original, the control rate).
    2afc ("which one has fake colours?"): "left" or "right". Correct when it names the fake
    side; ``judged_real`` is True when the colourised image was taken for the real one.
    """
    if protocol == "single":
        if answer not in ("real", "fake"):
            raise ValueError("answer must be 'real' or 'fake'")
        is_real = condition == REAL
        correct = (answer == "real") == is_real
        return correct, answer == "real"
    if protocol == "2afc":
        if answer not in ("left", "right"):
            raise ValueError("answer must be 'left' or 'right'")
        correct = answer == fake_side
        return correct, not correct
    raise ValueError(f"unknown protocol {protocol!r}")


def answers_for(protocol: str) -> tuple[str, str]:
    return ("real", "fake") if protocol == "single" else ("left", "right")
