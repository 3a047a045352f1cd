"""deepcolor.suggestions: the likeliest distinct colours of a 313-bin distribution at a point."""

from __future__ import annotations

import pytest
import torch

from deepcolor.color import ab_bin_centers, ab_to_bins, rgb_to_lab
from deepcolor.errors import InvalidCondition
from deepcolor.suggestions import MAX_COUNT, MIN_DISTANCE, distinct_colors, point_distribution


def _bin(a: float, b: float) -> int:
    return int(ab_to_bins(torch.tensor([float(a), float(b)]).view(1, 2, 1, 1)).flatten()[0])


def test_neighbouring_bins_merge_into_one_suggestion_with_their_mass():
    p = torch.zeros(313)
    red, next_to_red, blue = _bin(60, 50), _bin(60, 40), _bin(10, -60)
    p[red], p[next_to_red], p[blue] = 0.4, 0.35, 0.25
    out = distinct_colors(p, 50.0, count=6)
    assert [round(s.probability, 2) for s in out[:2]] == [0.75, 0.25]
    assert (out[0].a, out[0].b) == tuple(round(float(v), 2) for v in ab_bin_centers()[red])
    r, g, b = (int(out[1].hex[i : i + 2], 16) for i in (1, 3, 5))
    assert b > r  # the second is the blue bin


def test_suggestions_are_distinct_and_ordered_and_at_most_count():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(313) * 3, dim=0)
    out = distinct_colors(p, 60.0, count=MAX_COUNT)
    assert 5 <= len(out) <= MAX_COUNT
    assert len({s.hex for s in out}) == len(out)
    probabilities = [s.probability for s in out]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 1.0 + 1e-6
    with pytest.raises(InvalidCondition, match="1 to 8"):
        distinct_colors(p, 60.0, count=20)


def test_every_pair_of_suggestions_looks_different_as_shown():
    p = torch.full((313,), 1 / 313)  # no preference: the gamut alone decides
    for lightness in (5.0, 50.0, 95.0):
        out = distinct_colors(p, lightness, count=MAX_COUNT)
        rgb = torch.tensor([[int(s.hex[i : i + 2], 16) for i in (1, 3, 5)] for s in out]) / 255
        lab = rgb_to_lab(rgb.T.reshape(3, -1, 1).double()).reshape(3, -1).T
        distances = torch.cdist(lab, lab) + torch.eye(len(out)) * 1e9
        assert float(distances.min()) >= MIN_DISTANCE - 1.0  # less uint8 rounding


def test_point_distribution_reads_the_cells_around_the_point():
    probs = torch.zeros(313, 8, 8)
    probs[5, :, :4] = 1.0  # left half
    probs[7, :, 4:] = 1.0  # right half
    assert int(point_distribution(probs, 0.05, 0.5).argmax()) == 5
    assert int(point_distribution(probs, 0.95, 0.5).argmax()) == 7
    assert point_distribution(probs, 1.0, 1.0).sum() == pytest.approx(1.0)
    with pytest.raises(InvalidCondition, match="outside"):
        point_distribution(probs, 1.5, 0.5)
