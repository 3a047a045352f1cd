import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

from deepcolor import color


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(2, 0, 1)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).detach().cpu().numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rgb_to_lab_matches_skimage_on_random_colours(dtype):
    rgb = np.random.default_rng(0).random((50, 40, 3))
    ours = _hwc(color.rgb_to_lab(_chw(rgb).to(dtype))).astype(np.float64)
    ref = rgb2lab(rgb)
    tol = 1e-3 if dtype == torch.float64 else 2e-3
    assert deltaE_ciede2000(ref, ours).max() < tol
    if dtype == torch.float64:
        assert np.abs(ours - ref).max() < 1e-9


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(1)
    lab = np.stack(
        [
            rng.uniform(0, 100, (30, 30)),
            rng.uniform(-110, 110, (30, 30)),
            rng.uniform(-110, 110, (30, 30)),
        ],
        axis=-1,
    )
    ours = _hwc(color.lab_to_rgb(_chw(lab)))
    ref = lab2rgb(lab)
    assert np.abs(ours - ref).max() < 1e-9


def test_round_trip_and_batching():
    rgb = torch.rand(3, 3, 17, 23, dtype=torch.float64)
    lab = color.rgb_to_lab(rgb)
    assert lab.shape == (3, 3, 17, 23)
    assert torch.allclose(color.lab_to_rgb(lab), rgb, atol=1e-9)
    single = color.rgb_to_lab(rgb[1])
    assert torch.allclose(single, lab[1])


def test_conversions_are_differentiable():
    rgb = torch.rand(1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: color.rgb_to_lab(x * 0.9 + 0.05), (rgb,), eps=1e-6, atol=1e-4
    )
    lab = color.rgb_to_lab(rgb.detach() * 0.8 + 0.1).requires_grad_(True)
    color.lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all() and lab.grad.abs().sum() > 0


def test_gradients_finite_at_black_and_white():
    rgb = torch.tensor(
        [[[[0.0]], [[0.0]], [[0.0]]], [[[1.0]], [[1.0]], [[1.0]]]], requires_grad=True
    )
    color.rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()


def test_matches_skimage_on_evaluation_photos(shared_data):
    from PIL import Image

    for name in ("kodim03.png", "kodim23.png"):
        rgb = (
            np.asarray(Image.open(shared_data / "eval" / "kodak24" / name), dtype=np.float64) / 255
        )
        ours = _hwc(color.rgb_to_lab(_chw(rgb).float())).astype(np.float64)
        assert deltaE_ciede2000(rgb2lab(rgb), ours).max() < 1e-3


def test_shape_is_checked():
    with pytest.raises(ValueError, match="expected"):
        color.rgb_to_lab(torch.rand(1, 4, 2, 2))


def test_scaling_constants_round_trip():
    L = torch.tensor([0.0, 50.0, 100.0])
    assert torch.allclose(color.normalize_l(L), torch.tensor([-0.5, 0.0, 0.5]))
    ab = torch.tensor([-110.0, 55.0])
    assert torch.allclose(color.denormalize_ab(color.normalize_ab(ab)), ab)


def test_bins_prior_and_rebalancing_facts():
    bins = color.ab_bin_centers(dtype=torch.float64)
    assert bins.shape == (313, 2) and bins[0].tolist() == [-90.0, 50.0]
    prior = color.ab_prior(dtype=torch.float64)
    assert abs(prior.sum().item() - 1) < 1e-9 and prior.argmax().item() == 120
    assert bins[120].tolist() == [0.0, 0.0]
    w = color.rebalancing_weights(0.5, dtype=torch.float64)
    assert abs((prior * w).sum().item() - 1) < 1e-9
    assert abs(w.min().item() - 0.0965) < 1e-3 and abs(w.max().item() - 6.175) < 1e-3


def test_quantisation_and_soft_encoding():
    ab = torch.tensor([[[[0.0, 21.0]], [[0.0, -38.0]]]])  # two pixels: (0,0) and (21,-38)
    bins = color.ab_to_bins(ab)
    centers = color.ab_bin_centers()
    assert centers[bins[0, 0, 0]].tolist() == [0.0, 0.0]
    assert centers[bins[0, 0, 1]].tolist() == [20.0, -40.0]
    soft = color.soft_encode_ab(ab)
    assert soft.shape == (1, 313, 1, 2)
    assert torch.allclose(soft.sum(dim=1), torch.ones(1, 1, 2))
    assert ((soft > 0).sum(dim=1) == 5).all()
    assert soft[0, :, 0, 0].argmax() == bins[0, 0, 0]


def test_annealed_mean_limits():
    logits = torch.randn(1, 313, 2, 2)
    # A clear winner per pixel, whatever the draw: with two near-equal top logits, T=1e-3 is
    # not yet the mode.
    logits.scatter_add_(1, logits.argmax(dim=1, keepdim=True), torch.ones(1, 1, 2, 2))
    centers = color.ab_bin_centers()
    mode = centers[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    assert torch.allclose(color.annealed_mean(logits, 1e-3), mode, atol=1e-3)
    probs = torch.softmax(logits, dim=1)
    mean = torch.einsum("bqhw,qc->bchw", probs, centers)
    assert torch.allclose(color.annealed_mean(logits, 1.0), mean, atol=1e-4)
    with pytest.raises(ValueError):
        color.annealed_mean(logits, 0)


def test_ab_histogram_sums_to_one():
    ab = torch.zeros(2, 2, 4, 4)
    ab[1] = 30.0
    hist = color.ab_histogram(ab)
    assert torch.allclose(hist.sum(dim=1), torch.ones(2))
    assert hist[0, 120] == 1.0 and hist[1, 120] == 0.0


def test_luminance_is_lab_l_for_colour_and_gray_images():
    from deepcolor.color import rgb_to_luminance

    colour = torch.rand(2, 3, 17, 23, dtype=torch.float64)
    gray = colour[:, :1].expand(-1, 3, -1, -1).contiguous()
    for rgb in (colour, gray):
        expected = color.rgb_to_lab(rgb)[:, :1]
        assert torch.allclose(rgb_to_luminance(rgb), expected, rtol=0, atol=1e-12)
    assert rgb_to_luminance(colour[0]).shape == (1, 17, 23)
