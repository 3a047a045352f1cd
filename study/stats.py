"""Pure statistics for the study: Wilson intervals, a crossed bootstrap, rates and exclusions.

Nothing here touches the database or the file system, so every function can be checked against
values worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n successes,
    which matters for small per-photo counts. With no trials the proportion is unknown: (nan, nan).
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return (math.nan, math.nan)
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; the formula leaves rounding noise there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def rate(successes: int, trials: int) -> float:
    """successes / trials, or nan when there are no trials."""
    return successes / trials if trials else math.nan


def crossed_rate(
    outcomes: np.ndarray,
    participant_index: np.ndarray,
    photo_index: np.ndarray,
    participant_weights: np.ndarray,
    photo_weights: np.ndarray,
) -> float:
    """Rate of ``outcomes`` when trial i counts ``participant_weights[p_i] * photo_weights[f_i]``
    times: one resample of the crossed bootstrap, where a participant (or photo) drawn twice
    contributes all of its trials twice."""
    weights = participant_weights[participant_index] * photo_weights[photo_index]
    total = weights.sum()
    return float((weights * outcomes).sum() / total) if total > 0 else math.nan


BOOTSTRAP_CELLS = 4_000_000  # floats per chunk of replicates: about 32 MB, whatever the study

#: per-trial outcomes (1 = success) and per-trial labels (participant or photo ids)
Outcomes = Sequence[float] | np.ndarray
Labels = Sequence | np.ndarray


def bootstrap_replicates(
    outcomes: Outcomes, participants: Labels, photos: Labels, *, reps: int = 2000, seed: int = 0
) -> np.ndarray:
    """The rate in each replicate of a bootstrap over participants *and* photos.

    Judgements by one person, or of one photo, are correlated; resampling single trials would
    pretend they are independent and give too narrow an interval. Each replicate draws
    participants and photos with replacement, independently (a crossed, two-way bootstrap), and
    recomputes the pooled rate (see :func:`crossed_rate`). Seeded, so a report is reproducible.
    Replicates whose drawn participants never judged a drawn photo are dropped.

    Memory stays bounded: the trials are summed once into a sparse participant x photo table,
    and replicates are drawn in chunks of at most ``BOOTSTRAP_CELLS`` weights, so no
    (replicates x trials) array is ever built.
    """
    from scipy.sparse import coo_matrix

    y = np.asarray(outcomes, dtype=float)
    if y.size == 0:
        return np.empty(0)
    part_codes, part_index = np.unique(np.asarray(participants), return_inverse=True)
    photo_codes, photo_index = np.unique(np.asarray(photos), return_inverse=True)
    n_part, n_photo = len(part_codes), len(photo_codes)
    shape = (n_part, n_photo)
    # Successes and trials per (participant, photo): duplicates are summed on conversion.
    successes = coo_matrix((y, (part_index, photo_index)), shape=shape).tocsr()
    trials = coo_matrix((np.ones_like(y), (part_index, photo_index)), shape=shape).tocsr()
    part_rng, photo_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    chunk = max(1, min(reps, BOOTSTRAP_CELLS // (n_part + n_photo)))
    out = []
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        # Multinomial counts: how many times each unit was drawn in n draws with replacement.
        part_w = part_rng.multinomial(n_part, np.full(n_part, 1.0 / n_part), size=size)
        photo_w = photo_rng.multinomial(n_photo, np.full(n_photo, 1.0 / n_photo), size=size)
        # Replicate r: sum over trials of w_part * w_photo * y = part_w[r] @ S @ photo_w[r].
        numerator = ((successes.T @ part_w.T.astype(float)).T * photo_w).sum(axis=1)
        total = ((trials.T @ part_w.T.astype(float)).T * photo_w).sum(axis=1)
        keep = total > 0
        out.append(numerator[keep] / total[keep])
    return np.concatenate(out)


def bootstrap_interval(
    outcomes: Outcomes,
    participants: Labels,
    photos: Labels,
    *,
    reps: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of a rate under the crossed bootstrap of :func:`bootstrap_replicates`."""
    values = bootstrap_replicates(outcomes, participants, photos, reps=reps, seed=seed)
    if values.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def rates_by(frame: pd.DataFrame, keys: str | list[str], outcome: str) -> pd.DataFrame:
    """Count, successes, rate and Wilson interval of the boolean column ``outcome`` per group."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    rows = []
    for group, part in frame.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        n = int(len(part))
        k = int(part[outcome].astype(bool).sum())
        low, high = wilson_interval(k, n)
        rows.append(
            {
                **dict(zip(keys, group, strict=True)),
                "n": n,
                "k": k,
                "rate": rate(k, n),
                "wilson_low": low,
                "wilson_high": high,
            }
        )
    columns = [*keys, "n", "k", "rate", "wilson_low", "wilson_high"]
    return pd.DataFrame(rows, columns=columns)


def sentinel_accuracy(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per participant: sentinel trials seen, answered correctly, accuracy, excluded?

    ``frame`` has one row per sentinel answer with columns ``participant`` and ``correct``.
    A participant is excluded when their accuracy is below ``threshold``; one who saw no
    sentinel cannot be judged and is kept.
    """
    if frame.empty:
        return pd.DataFrame(columns=["participant", "sentinels", "correct", "accuracy", "excluded"])
    grouped = frame.groupby("participant", sort=True)["correct"]
    out = pd.DataFrame({"sentinels": grouped.size(), "correct": grouped.sum().astype(int)})
    out["accuracy"] = out["correct"] / out["sentinels"]
    out["excluded"] = out["accuracy"] < threshold
    return out.reset_index()


def excluded_participants(accuracy: pd.DataFrame) -> set:
    """The participants :func:`sentinel_accuracy` marked as excluded."""
    if accuracy.empty:
        return set()
    return set(accuracy.loc[accuracy["excluded"], "participant"])
