"""The study's statistics and design, against values worked out by hand."""

import math
import random
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from study.design import (
    REAL,
    SENTINEL,
    balanced_sides,
    chance_pass_rate,
    choose_model,
    conditions_for,
    judge,
    plan_trials,
    sentinel_count,
)
from study.report import summarize
from study.stats import (
    bootstrap_interval,
    bootstrap_replicates,
    crossed_rate,
    excluded_participants,
    rates_by,
    sentinel_accuracy,
    wilson_interval,
)

# Wilson 95 % by hand, z = 1.959964, z^2 = 3.841459:
#   5/10: centre (0.5 + 0.192073) / 1.384146 = 0.5, half 1.959964 * sqrt(0.025 + 0.009604) / 1.384146 = 0.263407
#   0/10: centre 0.192073 / 1.384146 = 0.138767 = half, so (0, 0.277533)
#   8/10: centre 0.992073 / 1.384146 = 0.716741, half 1.959964 * 0.160011 / 1.384146 = 0.226578
#  10/10: mirror image of 0/10
WILSON = [
    (5, 10, 0.236593, 0.763407),
    (0, 10, 0.0, 0.277533),
    (8, 10, 0.490163, 0.943319),
    (10, 10, 0.722467, 1.0),
]


@pytest.mark.parametrize(("k", "n", "low", "high"), WILSON)
def test_wilson_interval_matches_hand_computed_values(k, n, low, high):
    got = wilson_interval(k, n)
    # Hand values carry six rounded decimals, so agreement to 1e-5.
    assert got[0] == pytest.approx(low, abs=1e-5)
    assert got[1] == pytest.approx(high, abs=1e-5)


def test_wilson_interval_edge_cases():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(-1, 2)


def test_crossed_rate_weights_each_trial_by_its_participant_and_photo_draws():
    y = np.array([1.0, 0.0, 1.0, 1.0])
    part = np.array([0, 0, 1, 1])
    photo = np.array([0, 1, 0, 1])
    # participant 0 drawn twice, 1 never; photos once each: trials 0 and 1 count twice -> 2 / 4
    assert crossed_rate(y, part, photo, np.array([2.0, 0.0]), np.array([1.0, 1.0])) == 0.5
    # only participant 1 and photo 1: trial 3 alone -> 1
    assert crossed_rate(y, part, photo, np.array([0.0, 2.0]), np.array([0.0, 2.0])) == 1.0
    # photo 0 twice: trials 0 and 2, both 1 -> 1
    assert crossed_rate(y, part, photo, np.array([1.0, 1.0]), np.array([2.0, 0.0])) == 1.0
    assert math.isnan(crossed_rate(y, part, photo, np.zeros(2), np.ones(2)))


def test_bootstrap_over_participants_has_the_hand_computed_distribution():
    # Two participants, one photo: A says 0 on all ten trials, B says 1. Drawing two participants
    # with replacement gives {A, A} -> 0, {A, B} -> 0.5, {B, B} -> 1 with probabilities 1/4, 1/2, 1/4.
    y = [0] * 10 + [1] * 10
    participants = ["A"] * 10 + ["B"] * 10
    photos = ["p"] * 20
    values = bootstrap_replicates(y, participants, photos, reps=4000, seed=1)
    share = {v: np.mean(values == v) for v in (0.0, 0.5, 1.0)}
    assert sum(share.values()) == pytest.approx(1.0)
    assert share[0.0] == pytest.approx(0.25, abs=0.04)
    assert share[0.5] == pytest.approx(0.50, abs=0.04)
    assert share[1.0] == pytest.approx(0.25, abs=0.04)
    assert bootstrap_interval(y, participants, photos, reps=4000, seed=1) == (0.0, 1.0)
    # A trial-level interval would be far narrower: the crossed one respects the clustering.
    assert wilson_interval(10, 20)[1] - wilson_interval(10, 20)[0] < 0.45


def test_bootstrap_over_photos_too_and_is_seeded():
    # One participant, photo X always judged real, photo Y never: same 1/4, 1/2, 1/4 by photos.
    y = [1, 1, 0, 0]
    values = bootstrap_replicates(y, ["a"] * 4, ["X", "X", "Y", "Y"], reps=4000, seed=2)
    assert np.mean(values == 0.5) == pytest.approx(0.5, abs=0.04)
    first = bootstrap_interval(y, ["a"] * 4, ["X", "X", "Y", "Y"], reps=500, seed=7)
    assert first == bootstrap_interval(y, ["a"] * 4, ["X", "X", "Y", "Y"], reps=500, seed=7)
    # No variation at all: the interval collapses onto the rate.
    assert bootstrap_interval([1, 1, 1], ["a", "b", "c"], ["x", "y", "z"], reps=200) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_interval([], [], []))


def test_rates_by_counts_and_intervals():
    frame = pd.DataFrame(
        {
            "condition": ["m1"] * 10 + ["m2"] * 4,
            "judged_real": [True] * 5 + [False] * 5 + [True] * 4,
        }
    )
    table = rates_by(frame, "condition", "judged_real").set_index("condition")
    assert table.loc["m1", ["n", "k"]].tolist() == [10, 5]
    assert table.loc["m1", "rate"] == 0.5
    assert table.loc["m1", "wilson_low"] == pytest.approx(0.236593, abs=1e-6)
    assert table.loc["m2", "rate"] == 1.0


def test_sentinel_accuracy_and_exclusion_threshold():
    frame = pd.DataFrame(
        {
            "participant": [1] * 4 + [2] * 4,
            "correct": [True, True, True, False, True, False, False, False],
        }
    )
    acc = sentinel_accuracy(frame, threshold=0.75).set_index("participant")
    assert acc.loc[1, "accuracy"] == 0.75 and not acc.loc[1, "excluded"]  # at the threshold: kept
    assert acc.loc[2, "accuracy"] == 0.25 and acc.loc[2, "excluded"]
    assert excluded_participants(acc.reset_index()) == {2}
    assert excluded_participants(sentinel_accuracy(frame.iloc[:0], 0.75)) == set()


def test_summarize_leaves_out_excluded_participants():
    rows = []
    # Participant 1 is attentive (2/2 sentinels) and is fooled by m1 on 1 of 4 trials.
    rows += [(1, "test", SENTINEL, "s", True, False)] * 2
    rows += [(1, "test", "m1", f"p{i}", i != 0, i == 0) for i in range(4)]
    # Participant 2 fails every sentinel and says "real" to everything: excluded.
    rows += [(2, "test", SENTINEL, "s", False, True)] * 2
    rows += [(2, "test", "m1", f"p{i}", False, True) for i in range(4)]
    # A practice answer never counts.
    rows += [(1, "practice", "m1", "p0", False, True)]
    frame = pd.DataFrame(
        rows, columns=["participant", "phase", "condition", "photo", "correct", "judged_real"]
    )
    report = summarize(frame, protocol="2afc", models=["m1", "m2"], threshold=0.75, reps=200)
    table = report.models.set_index("condition")
    assert report.excluded == {2}
    assert (
        table.loc["m1", "n"] == 4 and table.loc["m1", "k"] == 1 and table.loc["m1", "rate"] == 0.25
    )
    assert table.loc["m1", "participants"] == 1
    assert table.loc["m2", "n"] == 0 and math.isnan(table.loc["m2", "rate"])


def test_sentinel_count():
    assert sentinel_count(38, 0.1) == 4
    assert sentinel_count(10, 0.1) == 1
    assert sentinel_count(3, 0.1) == 1
    assert sentinel_count(1, 0.1) == 0
    assert sentinel_count(40, 0.0) == 0


def test_sentinel_count_keeps_a_random_clicker_below_five_percent():
    # 4 sentinels, 3 needed (75 %): 5 of 16 equally likely answer patterns pass = 31 %.
    assert chance_pass_rate(4, 0.75) == 5 / 16
    # 8 sentinels at 80 %: 7 needed, (8 + 1) / 256 = 3.5 %; 7 sentinels would need 6: 8/128.
    assert chance_pass_rate(8, 0.8) == 9 / 256
    assert chance_pass_rate(7, 0.8) == 8 / 128
    assert sentinel_count(38, 0.1, 0.8) == 8
    assert sentinel_count(38, 0.1, 0.75) == 11  # 9 of 11: 67 / 2048 = 3.3 %
    assert chance_pass_rate(11, 0.75) == 67 / 2048
    assert sentinel_count(38, 0.1, 1.0) == 5  # all 5: 1 / 32
    assert sentinel_count(38, 0.3, 0.8) == 11  # the rate asks for more: more it is
    assert sentinel_count(38, 0.1, 0.0) == 4  # nobody excluded: no check to tighten
    for threshold in (0.75, 0.8, 0.9, 1.0):
        assert chance_pass_rate(sentinel_count(38, 0.1, threshold), threshold) <= 0.05
    with pytest.raises(ValueError, match="too few for an attention check"):
        sentinel_count(6, 0.2, 0.8)


def test_plan_has_practice_first_sentinels_and_balanced_sides():
    plan = plan_trials(
        protocol="2afc",
        photos=[f"p{i}" for i in range(22)],
        conditions=["a", "b"],
        test_trials=20,
        practice_trials=2,
        sentinels=2,
        counts={},
        rng=random.Random(0),
    )
    assert [t.phase for t in plan] == ["practice"] * 2 + ["test"] * 20
    assert sum(t.condition == SENTINEL for t in plan if t.phase == "test") == 2
    # Half the fakes on each side, so "always the left one" scores exactly chance.
    assert Counter(t.fake_side for t in plan if t.phase == "test") == {"left": 10, "right": 10}
    assert Counter(t.fake_side for t in plan if t.phase == "practice") == {"left": 1, "right": 1}
    assert sorted(balanced_sides(5, random.Random(1))).count("left") in (2, 3)
    single = plan_trials(
        protocol="single",
        photos=["p0", "p1", "p2", "p3"],
        conditions=conditions_for("single", ["a"]),
        test_trials=4,
        practice_trials=0,
        sentinels=0,
        counts={},
        rng=random.Random(0),
    )
    assert {t.fake_side for t in single} == {None}
    assert {t.condition for t in single} == {"a", REAL}


def test_a_participant_sees_each_photo_once_or_the_plan_is_refused():
    for seed in range(20):
        plan = plan_trials(
            protocol="2afc",
            photos=[f"p{i}" for i in range(12)],
            conditions=["a", "b", "c"],
            test_trials=10,
            practice_trials=2,
            sentinels=2,
            counts={},
            rng=random.Random(seed),
        )
        photos = [t.photo for t in plan]
        assert len(set(photos)) == len(photos) == 12  # practice photos never come back either
    with pytest.raises(ValueError, match="need 13 photos to show each one once; there are 12"):
        plan_trials(
            protocol="2afc",
            photos=[f"p{i}" for i in range(12)],
            conditions=["a"],
            test_trials=11,
            practice_trials=2,
            sentinels=1,
            counts={},
            rng=random.Random(0),
        )


def _allocate_many(photos, conditions, people, seed, protocol="2afc", allow_repeats=False):
    counts, sentinels, rng = Counter(), Counter(), random.Random(seed)
    for _ in range(people):
        plan = plan_trials(
            protocol=protocol,
            photos=photos,
            conditions=conditions,
            test_trials=38,
            practice_trials=2,
            sentinels=8,
            counts=counts,
            sentinel_counts=sentinels,
            rng=rng,
            allow_repeats=allow_repeats,
        )
        for t in plan:
            if t.phase == "test" and t.condition == SENTINEL:
                sentinels[t.photo] += 1
            elif t.phase == "test":
                counts[(t.photo, t.condition)] += 1
        own = Counter(t.condition for t in plan if t.phase == "test" and t.condition != SENTINEL)
        assert max(own.values()) - min(own.values()) <= 1  # each person sees every condition alike
    return [counts[(p, c)] for p in photos for c in conditions], sentinels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("protocol", ["2afc", "single"])
def test_allocation_balances_cells_with_each_photo_once(protocol, seed):
    photos = [f"p{i}" for i in range(40)]
    conditions = conditions_for(protocol, ["a", "b"])
    values, sentinels = _allocate_many(photos, conditions, 50, seed, protocol)
    assert sum(values) == 50 * 30
    # Every (photo, condition) cell within one judgement of every other.
    assert max(values) - min(values) <= 1
    # Sentinels take the photos left over (all 40 are used by everyone here): looser.
    assert sum(sentinels.values()) == 50 * 8
    assert max(sentinels.values()) - min(sentinels.values()) <= 3


@pytest.mark.parametrize("seed", [0, 1])
def test_allocation_with_repeats_allowed_still_balances(seed):
    photos = [f"p{i}" for i in range(6)]
    values, sentinels = _allocate_many(photos, ["a", "b"], 30, seed, allow_repeats=True)
    assert sum(values) == 30 * 30
    assert max(values) - min(values) <= 2
    assert max(sentinels.values()) - min(sentinels.values()) <= 1


def test_per_model_allocation_balances_participants():
    rng = random.Random(0)
    per_model = Counter()
    for _ in range(9):
        per_model[choose_model(["a", "b", "c"], per_model, rng)] += 1
    assert per_model == Counter({"a": 3, "b": 3, "c": 3})


def test_judge():
    assert judge("2afc", "a", "left", "left") == (True, False)  # spotted the fake
    assert judge("2afc", "a", "left", "right") == (False, True)  # fooled: the fake taken for real
    assert judge("single", "a", None, "real") == (False, True)  # accepted as real
    assert judge("single", "a", None, "fake") == (True, False)
    assert judge("single", REAL, None, "real") == (True, True)  # the control
    with pytest.raises(ValueError):
        judge("2afc", "a", "left", "real")
    with pytest.raises(ValueError):
        judge("single", "a", None, "left")


def test_bootstrap_memory_stays_bounded_at_50000_judgements():
    # The old (replicates x trials) weights were 2,000 x 50,000 x 8 bytes = 800 MB.
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 50_000
    outcomes = rng.random(n) < 0.4
    participants = rng.integers(0, 1250, n)
    photos = rng.integers(0, 40, n)
    tracemalloc.start()
    try:
        values = bootstrap_replicates(outcomes, participants, photos, reps=2000, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert values.shape == (2000,) and abs(values.mean() - outcomes.mean()) < 0.01


def test_bootstrap_chunks_agree_with_the_direct_weighted_rate(monkeypatch):
    import study.stats

    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    part = np.array([0, 0, 1, 1, 2, 2, 2])
    photo = np.array([0, 1, 0, 1, 0, 1, 1])
    whole = bootstrap_replicates(y, part, photo, reps=50, seed=3)
    monkeypatch.setattr(study.stats, "BOOTSTRAP_CELLS", 5)  # one replicate per chunk
    assert np.allclose(bootstrap_replicates(y, part, photo, reps=50, seed=3), whole)
    # Each replicate is crossed_rate under the same draws.
    seeds = np.random.SeedSequence(3).spawn(2)
    part_w = np.random.default_rng(seeds[0]).multinomial(3, [1 / 3] * 3, size=50)
    photo_w = np.random.default_rng(seeds[1]).multinomial(2, [0.5, 0.5], size=50)
    direct = [
        crossed_rate(y, part, photo, a.astype(float), b.astype(float))
        for a, b in zip(part_w, photo_w, strict=True)
    ]
    direct = np.array([v for v in direct if not math.isnan(v)])
    assert np.allclose(direct, whole)
