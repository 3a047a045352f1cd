"""Hints: the user's point hints, and the simulation of hints for training (Zhang et al. 2017)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepcolor.errors import DeepColorError, InvalidCondition
from deepcolor.hints import (
    PointHint,
    as_point_hints,
    encode_point_hints,
    geodesic_distances,
    sample_hints_from_truth,
    saturation_hint,
    spread_hint_colours,
    wrong_colour_point_hint,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors: one thread is as fast and avoids stalls when the 2 cores are shared
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_ab(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 2, height, width, generator=gen) * 200 - 100


# --- simulated hints ----------------------------------------------------------------------------


def test_number_of_points_is_geometric_with_mean_seven():
    # 1x1 patches on a large canvas rarely overlap, so each image's mask sum counts its points
    gen = torch.Generator().manual_seed(0)
    counts = []
    for _ in range(5):
        _, mask = sample_hints_from_truth(
            torch.zeros(200, 2, 96, 96), p=1 / 8, patch_sizes=(1,), generator=gen
        )
        counts.append(mask.flatten(1).sum(dim=1))
    counts = torch.cat(counts)  # 1000 draws: mean 7, sd 7.5 -> standard error 0.24
    assert abs(counts.mean().item() - 7.0) < 0.75
    assert abs((counts == 0).float().mean().item() - 1 / 8) < 0.03  # P(n = 0) = p
    assert abs((counts == 1).float().mean().item() - 7 / 64) < 0.03  # P(n = 1) = (1-p) p
    assert abs(counts.var().item() - 56.0) < 16.0  # (1-p)/p^2


def test_patch_sizes_stay_within_one_to_nine_and_reveal_the_mean_colour():
    ab = random_ab(150, 40, 40, seed=1)
    hint_ab, mask = sample_hints_from_truth(
        ab, num_points=1, generator=torch.Generator().manual_seed(2)
    )
    sizes = set()
    for i in range(ab.shape[0]):
        rows = mask[i, 0].any(dim=1).nonzero().flatten()
        cols = mask[i, 0].any(dim=0).nonzero().flatten()
        side = len(rows)
        assert side == len(cols) and mask[i].sum() == side * side  # one square patch
        sizes.add(side)
        top, left = int(rows[0]), int(cols[0])
        patch = ab[i, :, top : top + side, left : left + side]
        revealed = hint_ab[i, :, top : top + side, left : left + side]
        # the patch shows one colour: the mean of the truth under it
        torch.testing.assert_close(revealed, patch.mean(dim=(1, 2), keepdim=True).expand_as(patch))
        assert hint_ab[i][:, mask[i, 0] == 0].abs().max() == 0  # nothing outside the mask
    assert sizes == set(range(1, 10))  # every size 1..9 appears in 150 draws


def test_points_gather_around_the_centre():
    gen = torch.Generator().manual_seed(3)
    _, mask = sample_hints_from_truth(
        torch.zeros(400, 2, 64, 64), num_points=1, patch_sizes=(1,), generator=gen
    )
    rows = mask[:, 0].sum(dim=2).argmax(dim=1).float()
    cols = mask[:, 0].sum(dim=1).argmax(dim=1).float()
    for coord in (rows, cols):
        assert abs(coord.mean().item() - 32) < 2.5  # N(extent/2, extent/4), extent = 64
        assert 12 < coord.std().item() < 19  # 16, a little less where clipped


def test_simulation_is_reproducible_with_a_generator():
    ab = random_ab(3, 32, 32, seed=4)
    first = sample_hints_from_truth(ab, generator=torch.Generator().manual_seed(5))
    second = sample_hints_from_truth(ab, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    assert first[1].sum() > 0


def test_no_hints_when_p_is_one():
    hint_ab, mask = sample_hints_from_truth(random_ab(20, 16, 16, seed=6), p=1.0)
    assert mask.sum() == 0 and hint_ab.abs().sum() == 0


# --- user hints ---------------------------------------------------------------------------------


def test_point_hints_are_placed_and_coloured():
    hints = as_point_hints([(0.0, 0.0, 20, -30, 3), {"x": 1.0, "y": 1.0, "a": 5.0, "b": 6.0}])
    ab, mask = encode_point_hints(hints, 20, 30)
    assert ab.shape == (1, 2, 20, 30) and mask.shape == (1, 1, 20, 30)
    assert mask[0, 0, :3, :3].all() and mask.sum() == 9 + 9  # both 3x3, clipped to the image
    assert ab[0, :, 0, 0].tolist() == [20.0, -30.0]
    assert ab[0, :, 19, 29].tolist() == [5.0, 6.0]
    assert mask[0, 0, 17:, 27:].all()


@pytest.mark.parametrize(
    "bad",
    [
        (1.5, 0.5, 0, 0),
        (0.5, 0.5, 300, 0),
        (0.5, 0.5, 0, 0, 0),
        (0.5,),
        {"x": 0.5},
        "hint",  # a 4-character string is not (x, y, a, b)
        ("a", "b", "c", "d"),
    ],
)
def test_bad_point_hints_are_refused(bad):
    with pytest.raises(InvalidCondition):
        as_point_hints([bad])


def test_saturation_hint_is_mean_chroma_over_110():
    ab = torch.zeros(2, 2, 8, 8)
    ab[1, 0] = 33.0
    ab[1, 1] = 44.0  # chroma 55
    torch.testing.assert_close(saturation_hint(ab), torch.tensor([[0.0], [0.5]]))
    assert PointHint(0.5, 0.5, 1.0, 2.0).size == 3


# --- spreading hint colours ---------------------------------------------------------------------

#: a broad reach, so that the colour part of the spreading can be checked on its own
BROAD = {"sigma_reach": 10.0, "edge_cost": 0.0}


def two_region_image() -> torch.Tensor:
    """Left half dark (L 30), right half light (L 70)."""
    L = torch.full((1, 1, 20, 40), 30.0)
    L[..., 20:] = 70.0
    return L


def lined_image(height: int = 80, width: int = 120) -> torch.Tensor:
    """Two halves of the same lightness (L 60) with a dark line (L 25) between them."""
    L = torch.full((1, 1, height, width), 60.0)
    L[..., width // 2 - 3 : width // 2 + 3] = 25.0
    return L


def test_a_hint_stays_on_its_side_of_an_edge_between_regions_of_equal_lightness():
    L = lined_image()
    ab = torch.zeros(1, 2, 80, 120)
    hint_ab, mask = encode_point_hints([PointHint(x=0.2, y=0.5, a=40.0, b=-20.0, size=3)], 80, 120)
    out = spread_hint_colours(L, ab, hint_ab, mask)
    assert torch.allclose(out[0, :, 40, 24], torch.tensor([40.0, -20.0]), atol=1.0)
    assert out[0, 0, :, :54].mean() > 20.0  # the hinted region takes the colour...
    # ...the other barely moves (a little next to the line, whose blurred edge is lower)
    assert out[0, :, :, 66:].norm(dim=0).mean() < 1.0
    assert out[0, :, :, 90:].norm(dim=0).max() < 1.0


def test_hints_on_two_regions_are_independent():
    L = lined_image()
    ab = torch.zeros(1, 2, 80, 120)
    given = [PointHint(0.2, 0.5, 40.0, -20.0, 3), PointHint(0.8, 0.5, -30.0, 30.0, 3)]
    hint_ab, mask = encode_point_hints(given, 80, 120)
    out = spread_hint_colours(L, ab, hint_ab, mask)
    left, right = out[0, :, 10:70, 8:48], out[0, :, 10:70, 72:112]
    assert torch.allclose(left.mean(dim=(1, 2)), torch.tensor([40.0, -20.0]), atol=4.0)
    assert torch.allclose(right.mean(dim=(1, 2)), torch.tensor([-30.0, 30.0]), atol=4.0)


def test_a_hint_fades_with_distance_on_a_flat_surface():
    L = torch.full((1, 1, 20, 120), 50.0)
    ab = torch.zeros(1, 2, 20, 120)
    hint_ab, mask = encode_point_hints([PointHint(x=0.0, y=0.5, a=40.0, b=0.0, size=3)], 20, 120)
    out = spread_hint_colours(L, ab, hint_ab, mask, sigma_reach=0.2, edge_cost=1.0)
    profile = out[0, 0].mean(dim=0)
    assert profile[2] > 39.0
    assert bool((profile[1:].diff() <= 1e-4).all())  # never grows away from the hint
    assert profile[-1] < 1.0  # a whole image-length away: the prediction stays


def test_two_hints_on_one_surface_cover_the_ground_between_them_more_than_either():
    L = torch.full((1, 1, 20, 120), 50.0)
    ab = torch.zeros(1, 2, 20, 120)
    settings = {"sigma_reach": 0.3, "edge_cost": 1.0}
    both = [PointHint(0.0, 0.5, 40.0, 0.0, 3), PointHint(1.0, 0.5, 40.0, 0.0, 3)]
    together = spread_hint_colours(L, ab, *encode_point_hints(both, 20, 120), **settings)
    alone = spread_hint_colours(L, ab, *encode_point_hints(both[:1], 20, 120), **settings)
    middle = together[0, 0, 10, 60]
    assert alone[0, 0, 10, 60] < middle < 40.0
    # with chances 1 - prod(1 - reach): 1 - (1 - r)^2 for two equal reaches r
    r = float(alone[0, 0, 10, 60]) / 40.0
    assert float(middle) / 40.0 == pytest.approx(1 - (1 - r) ** 2, abs=0.02)


def test_the_colour_follows_lightness_among_the_hints_that_reach():
    L = two_region_image()
    ab = torch.zeros(1, 2, 20, 40)
    hint_ab, mask = encode_point_hints([PointHint(x=0.1, y=0.5, a=40.0, b=-20.0, size=3)], 20, 40)
    out = spread_hint_colours(L, ab, hint_ab, mask, sigma_l=5.0, floor=0.01, **BROAD)
    # at the hint: its colour; on the dark half: most of it; across the edge: nothing
    assert torch.allclose(out[0, :, 10, 4], torch.tensor([40.0, -20.0]), atol=1.0)
    assert out[0, 0, 10, 18] > 30.0
    assert out[0, :, :, 21:].abs().max() < 1.0


def test_spreading_carries_the_hint_colour_not_its_difference_to_the_prediction():
    """Where the prediction varies inside a region, the region takes the hint's colour: a
    residual would have copied the prediction's variation (hint + (ab - ab at the hint))."""
    L = two_region_image()
    ab = torch.zeros(1, 2, 20, 40)
    ab[:, 0] = torch.linspace(-20.0, 20.0, 40)  # a left-to-right ramp in a
    hint_ab, mask = encode_point_hints([PointHint(x=0.1, y=0.5, a=40.0, b=-20.0, size=3)], 20, 40)
    out = spread_hint_colours(L, ab, hint_ab, mask, **BROAD)
    dark = out[0, :, :, :20]
    assert torch.allclose(dark[0], torch.full_like(dark[0], 40.0), atol=2.0)
    assert torch.allclose(dark[1], torch.full_like(dark[1], -20.0), atol=2.0)
    # the light half, unreached, keeps its prediction
    assert torch.allclose(out[0, 0, :, 21:], ab[0, 0, :, 21:], atol=1.0)


def test_a_shaded_part_keeps_the_hue_with_chroma_scaled_by_lightness():
    """ab / L spreads: where a surface is darker than at the hint, its colour is a darker shade
    of the hint's (same hue, chroma in proportion to L); switched off, ab itself spreads."""
    L = torch.full((1, 1, 20, 40), 60.0)
    L[..., 20:] = 57.0  # the same surface, a little shaded (within sigma_l of the hint)
    ab = torch.zeros(1, 2, 20, 40)
    hint_ab, mask = encode_point_hints([PointHint(x=0.1, y=0.5, a=40.0, b=-20.0, size=3)], 20, 40)
    out = spread_hint_colours(L, ab, hint_ab, mask, **BROAD)
    shaded = out[0, :, 10, 30]
    assert torch.allclose(out[0, :, 10, 4], torch.tensor([40.0, -20.0]), atol=0.5)
    assert torch.allclose(shaded[0] / shaded[1], torch.tensor(-2.0), atol=0.01)  # same hue
    assert torch.allclose(shaded, torch.tensor([40.0, -20.0]) * 57.0 / 60.0, atol=1.0)
    plain = spread_hint_colours(L, ab, hint_ab, mask, chroma_follows_lightness=False, **BROAD)
    assert torch.allclose(plain[0, :, 10, 30], torch.tensor([40.0, -20.0]), atol=1.0)
    assert shaded.norm() < plain[0, :, 10, 30].norm() - 1.0


def test_a_hint_on_a_near_black_pixel_is_not_amplified_on_lighter_ones():
    """ab / L of a hint at L 2 would be multiplied by 4 at L 8; chroma stays within the hint's."""
    L = torch.full((1, 1, 20, 40), 2.0)
    L[..., 20:] = 8.0
    ab = torch.zeros(1, 2, 20, 40)
    hint_ab, mask = encode_point_hints([PointHint(x=0.1, y=0.5, a=30.0, b=30.0, size=3)], 20, 40)
    out = spread_hint_colours(L, ab, hint_ab, mask, sigma_l=10.0, **BROAD)
    lighter = out[0, :, 10, 30]
    assert lighter.norm() <= torch.tensor([30.0, 30.0]).norm() + 1e-3
    assert torch.allclose(lighter[0], lighter[1])  # still the hint's hue
    assert lighter.norm() > 20.0  # and still coloured by it


def test_propagation_without_hints_is_the_identity_and_is_differentiable():
    L = two_region_image()
    ab = (torch.randn(2, 2, 20, 40) * 10).requires_grad_(True)
    hint_ab, mask = encode_point_hints([PointHint(x=0.9, y=0.2, a=-30.0, b=10.0)], 20, 40)
    no_hints = torch.zeros(1, 1, 20, 40)
    mask2 = torch.cat((mask, no_hints))
    out = spread_hint_colours(L.repeat(2, 1, 1, 1), ab, hint_ab.repeat(2, 1, 1, 1), mask2)
    assert torch.equal(out[1], ab[1])
    out.sum().backward()
    assert ab.grad is not None and torch.isfinite(ab.grad).all()


def test_spreading_in_chunks_gives_the_same_colours(monkeypatch):
    """Memory is bounded by weighing pixels in chunks; the chunk size must not change the result."""
    import deepcolor.hints as hints_module

    torch.manual_seed(0)
    L = torch.rand(2, 1, 30, 44) * 100
    ab = torch.randn(2, 2, 30, 44) * 20
    given = [PointHint(x=0.2, y=0.3, a=30.0, b=-10.0, size=5), PointHint(0.8, 0.7, -20.0, 40.0, 7)]
    hint_ab, mask = encode_point_hints(given, 30, 44)
    hint_ab, mask = hint_ab.repeat(2, 1, 1, 1), mask.repeat(2, 1, 1, 1)
    whole = spread_hint_colours(L, ab, hint_ab, mask)
    monkeypatch.setattr(hints_module, "MAX_SPREAD_PAIRS", 10)  # 2 hints: 5-pixel chunks
    chunked = spread_hint_colours(L, ab, hint_ab, mask)
    assert torch.allclose(whole, chunked, atol=1e-4)
    assert not torch.allclose(whole, ab, atol=1.0)  # the hints did change the colours


def test_geodesic_distance_crosses_flat_ground_at_its_length_and_pays_for_edges():
    L = np.full((10, 50), 50.0)
    sources = np.zeros((10, 50), dtype=int)
    sources[5, 0] = 1
    flat = geodesic_distances(L, sources, edge_cost=1.0)[0]
    assert flat[5, 49] == pytest.approx(49 / 50)  # straight along a row
    assert flat[0, 5] == pytest.approx(5 * np.sqrt(2) / 50)  # diagonal steps
    L[:, 25:] = 90.0  # an edge of 40 L: costs 0.4 * edge_cost on top
    edged = geodesic_distances(L, sources, edge_cost=2.0, limit=2.0)[0]
    assert edged[5, 49] == pytest.approx(48 / 50 + np.hypot(1 / 50, 0.8), rel=1e-6)
    assert np.isinf(geodesic_distances(L, sources, edge_cost=2.0, limit=1.5)[0][5, 49])


# --- the shipped model: locality through the pipeline -------------------------------------------


@pytest.fixture(scope="module")
def guided_pipeline():
    from deepcolor import ColorizationPipeline, create_colorizer

    try:
        return ColorizationPipeline(create_colorizer("siggraph17"), device="cpu")
    except DeepColorError as exc:
        pytest.skip(f"siggraph17 is not available here: {exc}")


def ciede2000_change(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    from skimage.color import deltaE_ciede2000, rgb2lab

    return deltaE_ciede2000(rgb2lab(first / 255.0), rgb2lab(second / 255.0))


def test_a_hint_leaves_a_region_of_equal_lightness_behind_an_edge_alone(guided_pipeline):
    from skimage.color import lab2rgb

    L = np.full((120, 180), 60.0)
    L[:, 86:94] = 25.0
    photo = (lab2rgb(np.stack((L, 0 * L, 0 * L), axis=-1)) * 255).round().astype(np.uint8)
    hint = PointHint(x=0.25, y=0.5, a=20.0, b=35.0, size=5)
    moved = ciede2000_change(guided_pipeline(photo).rgb, guided_pipeline(photo, hints=[hint]).rgb)
    assert moved[:, :78].mean() > 10.0  # the hinted region takes the colour
    assert moved[:, 102:].mean() < 1.0


@pytest.mark.slow
def test_a_wrong_hint_on_a_photo_stays_near_where_it_was_given(guided_pipeline, shared_data):
    """Kodak's first three photos, one wrong-colour hint each: far pixels move much less than
    near ones. (bench/hint_locality.py measures the bars, 8.0 and 40 %, on all 24 photos; three
    photos, one of them a door filling the frame, get looser bounds here. The global spreading
    this replaced moved far pixels by about 22 and 80 % of them by more than 5.)"""
    from deepcolor.images import load_image, to_uint8

    near_change, far_change, far_share = [], [], []
    for i, name in enumerate(("kodim01.png", "kodim02.png", "kodim03.png")):
        photo = to_uint8(load_image(shared_data / "eval" / "kodak24" / name).rgb)
        hint = wrong_colour_point_hint(photo, seed=i)
        moved = ciede2000_change(
            guided_pipeline(photo).rgb, guided_pipeline(photo, hints=[hint]).rgb
        )
        h, w = moved.shape
        ys, xs = np.mgrid[0:h, 0:w]
        far = np.hypot(ys - hint.y * (h - 1), xs - hint.x * (w - 1)) > 0.1 * np.hypot(h, w)
        near_change.append(moved[~far].mean())
        far_change.append(moved[far].mean())
        far_share.append((moved[far] > 5.0).mean())
    assert min(near_change) > 10.0  # the hint does colour its own neighbourhood
    assert np.mean(far_change) < 0.5 * np.mean(near_change)
    assert np.mean(far_change) <= 12.0
    assert np.mean(far_share) <= 0.6
