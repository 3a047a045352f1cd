"""Experimental design: which trials a participant sees, in which order, on which side.

Pure functions. The server passes in how many judgements each (photo, condition) cell already
has; the allocation picks the least-judged cells, so with participants arriving one by one
(open sign-up, unknown total) every model and every photo gets comparable numbers of judgements.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PROTOCOLS = ("single", "2afc")
ALLOCATIONS = ("mixed", "per-model")
REAL = "real"  # the condition of an original photo shown alone (single-image protocol)
SENTINEL = "sentinel"  # an obviously wrong colourisation, to spot inattentive participants

Cell = tuple[str, str]  # (photo, condition)


@dataclass(frozen=True)
class PlannedTrial:
    phase: str  # "practice" | "test"
    photo: str
    condition: str  # a model name, REAL or SENTINEL
    fake_side: str | None  # 2AFC: the side of the non-original image; single: None


def sentinel_count(test_trials: int, rate: float) -> int:
    """Sentinel trials among ``test_trials``: ``rate`` of them, rounded, at least one if asked."""
    if rate <= 0 or test_trials <= 1:
        return 0
    return min(test_trials - 1, max(1, round(test_trials * rate)))


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
) -> Cell:
    # Fresh photos first (a photo seen twice is judged against memory); then the condition this
    # participant has had least (so nobody sees, say, only real photos); then the cell with the
    # fewest judgements across participants; ties at random.
    def key(cell: Cell) -> tuple[bool, int, int]:
        return (cell[0] in seen_photos, own[cell[1]], counts[cell])

    best = min(key(c) for c in candidates)
    return rng.choice([c for c in candidates if key(c) == best])


def plan_trials(
    *,
    protocol: str,
    photos: Sequence[str],
    conditions: Sequence[str],
    test_trials: int,
    practice_trials: int,
    sentinel_rate: float,
    counts: Mapping[Cell, int],
    sentinel_counts: Mapping[str, int] | None = None,
    rng: random.Random,
) -> list[PlannedTrial]:
    """One participant's trials: practice first (with feedback), then test trials in random
    order with about ``sentinel_rate`` sentinels among them.

    ``conditions`` are the cells this participant may see (all models, or their one model, plus
    REAL in the single protocol); ``counts`` the test judgements each (photo, condition) cell
    already has across participants; ``sentinel_counts`` the same for sentinels per photo.
    """
    if not photos:
        raise ValueError("a study needs at least one photo")
    if not conditions:
        raise ValueError("a study needs at least one model")
    cells = [(p, c) for p in photos for c in conditions]
    counts = Counter(dict(counts))
    sentinels_used = Counter(dict(sentinel_counts or {}))
    n_sentinels = sentinel_count(test_trials, sentinel_rate)

    seen: set[str] = set()
    own: Counter = Counter()
    measured: list[tuple[str, str]] = []
    for _ in range(test_trials - n_sentinels):
        cell = _pick_least_used(cells, counts, seen, own, rng)
        counts[cell] += 1
        own[cell[1]] += 1
        seen.add(cell[0])
        measured.append(cell)
    sentinel_cells = []
    for _ in range(n_sentinels):
        photo_cells = [(p, SENTINEL) for p in photos]
        used = Counter({(p, SENTINEL): sentinels_used[p] for p in photos})
        cell = _pick_least_used(photo_cells, used, seen, Counter(), rng)
        sentinels_used[cell[0]] += 1
        seen.add(cell[0])
        sentinel_cells.append(cell)

    test = measured + sentinel_cells
    rng.shuffle(test)
    # Practice: the photos this participant will not be tested on where possible, since the
    # feedback tells them which image was fake.
    practice = []
    practice_own: Counter = Counter()
    for _ in range(practice_trials):
        cell = _pick_least_used(cells, Counter(), seen, practice_own, rng)
        practice_own[cell[1]] += 1
        seen.add(cell[0])
        practice.append(cell)

    def side() -> str | None:
        return rng.choice(("left", "right")) if protocol == "2afc" else None

    plan = [PlannedTrial("practice", p, c, side()) for p, c in practice]
    plan += [PlannedTrial("test", p, c, side()) for p, c in test]
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
