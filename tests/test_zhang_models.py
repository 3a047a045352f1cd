"""The Zhang et al. models: ``eccv16`` (313-bin classification) and ``siggraph17`` (hints)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepcolor import ColorizationPipeline, colorizer_info, create_colorizer
from deepcolor.color import (
    ab_bin_centers,
    ab_histogram,
    annealed_mean,
    lab_to_rgb,
    rebalancing_weights,
    rgb_to_lab,
)
from deepcolor.errors import InvalidCondition, ModelUnavailable
from deepcolor.hints import sample_hints_from_truth
from deepcolor.models.eccv16 import ECCV16Colorizer
from deepcolor.models.siggraph17 import SIGGRAPH17Colorizer
from deepcolor.weights import shipped_weights

NAMES = ("eccv16", "siggraph17")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: one thread is as fast and avoids stalls when the 2 cores are shared
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def photo(batch: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth, colourful random image: ``(L, ab)`` in CIELAB units."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(2, height // 8), max(2, width // 8), generator=gen)
    rgb = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    lab = rgb_to_lab(rgb)
    return lab[:, :1], lab[:, 1:]


def model(name: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_colorizer(name, weights=None, **kwargs)


# --- registry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, accepts", [("eccv16", {"temperature"}), ("siggraph17", {"hints", "global_hints"})]
)
def test_registered_compact_by_default(name, accepts):
    info = colorizer_info(name)
    assert set(info.accepts) == accepts and not info.needs
    assert info.default_weights == (f"shipped:{name}" if shipped_weights(name) else None)
    compact = model(name)
    assert compact.variant == "compact"
    assert 200_000 <= compact.num_parameters() <= 2_000_000
    assert compact.working_size % compact.size_multiple == 0
    if info.default_weights is None:  # until trained weights ship, "default" says what to do
        with pytest.raises(ModelUnavailable, match="train"):
            create_colorizer(name)
    else:
        assert create_colorizer(name).variant == "compact"


def test_full_variants_have_the_papers_sizes():
    with torch.device("meta"):  # no memory, no init time
        eccv16 = ECCV16Colorizer(variant="full")
        siggraph17 = SIGGRAPH17Colorizer(variant="full")
    assert eccv16.num_parameters() == 32_236_011  # the released checkpoint's count
    assert siggraph17.num_parameters() == 34_187_027
    assert eccv16.working_size == siggraph17.working_size == 256


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(InvalidCondition, match="variant"):
        ECCV16Colorizer(variant="huge")
    with pytest.raises(InvalidCondition, match="full"):
        ECCV16Colorizer(variant="full", widths=[8] * 8)
    with pytest.raises(InvalidCondition, match="10 positive"):
        SIGGRAPH17Colorizer(widths=[8] * 8)
    with pytest.raises(InvalidCondition, match="global"):
        SIGGRAPH17Colorizer(variant="full", global_branch=True)


# --- eccv16: annealed mean, temperature, distribution -------------------------------------------


def test_annealed_mean_tends_to_the_mode_and_is_the_mean_at_t1():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 313, 3, 4, generator=gen) * 3
    centers = ab_bin_centers()
    mode = centers[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    mean = torch.einsum("bqhw,qc->bchw", logits.softmax(dim=1), centers)

    compact = model("eccv16")
    with torch.device("meta"):  # only the decoder is used: skip 32M parameters' init
        full = ECCV16Colorizer(variant="full")
    full.decoder.to_empty(device="cpu")
    with torch.no_grad():  # the released decoder holds the bin centres / 110 (Caffe's class8_ab)
        full.decoder.weight.copy_(centers.T.reshape(2, 313, 1, 1) / 110)
    for decode in (annealed_mean, compact.decode, full.decode):
        torch.testing.assert_close(decode(logits, 1e-3), mode, atol=1e-3, rtol=0)
        torch.testing.assert_close(decode(logits, 1.0), mean, atol=1e-4, rtol=1e-5)
        between = decode(logits, 0.38)  # the paper's setting lies between mean and mode
        distance = (between - mode).norm(dim=1).mean()
        assert distance < (mean - mode).norm(dim=1).mean()


def test_temperature_is_a_per_call_condition():
    eccv16 = model("eccv16")
    assert eccv16.temperature == 0.38
    L, _ = photo(1, 32, 32, seed=1)
    default = eccv16.predict(L)
    assert torch.equal(default, eccv16.predict(L, temperature=0.38))
    assert not torch.allclose(default, eccv16.predict(L, temperature=1.0))
    assert torch.equal(
        eccv16.predict(L, temperature=torch.tensor(1.0)), eccv16.predict(L, temperature=1.0)
    )
    for bad in (0, -1.0, "hot", True):
        with pytest.raises(InvalidCondition, match="temperature"):
            eccv16.predict(L, temperature=bad)
    with pytest.raises(InvalidCondition, match="does not take"):
        eccv16.predict(L, hints=(torch.zeros(1, 2, 32, 32), torch.zeros(1, 1, 32, 32)))


def test_bin_distribution_for_colour_suggestions():
    eccv16 = model("eccv16")
    L, _ = photo(2, 97, 131, seed=2)
    probs = eccv16.bin_distribution(L)
    assert probs.shape == (2, 313, math.ceil(97 / 4), math.ceil(131 / 4))
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, 25, 33))
    # the distribution is the one the colours come from
    with torch.no_grad():
        eccv16.eval()
        expected = eccv16.decode(eccv16.logits(L), 1.0)
    torch.testing.assert_close(torch.einsum("bqhw,qc->bchw", probs, ab_bin_centers()), expected)
    sharper = eccv16.bin_distribution(L, temperature=0.1)
    assert sharper.max() > probs.max()


# --- eccv16: the rebalanced loss ----------------------------------------------------------------


def test_eccv16_loss_is_rebalanced_at_the_target_bin():
    eccv16 = model("eccv16")
    with torch.no_grad():  # uniform predicted distribution: cross-entropy = log 313 everywhere
        eccv16.classifier.weight.zero_()
        eccv16.classifier.bias.zero_()
    weights = rebalancing_weights(0.5)
    for index in (120, 200):  # (0, 0) is common, bin 200 rare: their weights differ a lot
        center = ab_bin_centers()[index]
        ab = center.view(1, 2, 1, 1).expand(1, 2, 16, 16).clone()
        ab[..., 0, 0] += 60  # one vivid pixel so that even the (0, 0) image is not gray
        L = torch.full((1, 1, 16, 16), 50.0)
        loss = eccv16.training_loss({"L": L, "ab": ab})
        # 16 cells of 4x4 pixels: 15 exactly at the bin centre, 1 with the vivid pixel averaged in
        cells = F.adaptive_avg_pool2d(ab, (4, 4))
        from deepcolor.color import ab_to_bins

        expected = math.log(313) * weights[ab_to_bins(cells)].mean()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert weights[200] > 3 * weights[120]


def test_eccv16_loss_leaves_gray_images_out():
    eccv16 = model("eccv16").eval()  # eval: batch norm does not mix the images
    L, ab = photo(2, 32, 32, seed=3)
    gray = ab.clone()
    gray[1] = gray[1].clamp(-4.9, 4.9)  # nothing above 5 in |a| or |b|: a gray image
    colour_only = eccv16.training_loss({"L": L[:1], "ab": ab[:1]})
    mixed = eccv16.training_loss({"L": L, "ab": gray})
    torch.testing.assert_close(mixed, colour_only)
    all_gray = eccv16.training_loss({"L": L[1:], "ab": gray[1:]})
    assert all_gray.item() == 0.0
    all_gray.backward()  # still a graph a training loop can step through


def test_siggraph17_loss_leaves_gray_images_out():
    sig = model("siggraph17", global_branch=False).eval()
    L, ab = photo(2, 32, 32, seed=3)
    gray = ab.clone()
    gray[1] = gray[1].clamp(-4.9, 4.9)
    torch.manual_seed(1)  # image 0 draws the same simulated hints in both calls
    colour_only = sig.training_loss({"L": L[:1], "ab": ab[:1]})
    torch.manual_seed(1)
    mixed = sig.training_loss({"L": L, "ab": gray})
    torch.testing.assert_close(mixed, colour_only)
    assert colour_only.item() > 0
    all_gray = sig.training_loss({"L": L[1:], "ab": gray[1:]})
    assert all_gray.item() == 0.0
    all_gray.backward()


# --- siggraph17: conditions ---------------------------------------------------------------------


def test_siggraph17_hints_change_the_colours_and_are_checked():
    sig = model("siggraph17")
    L, ab = photo(2, 40, 48, seed=4)
    hint_ab, mask = sample_hints_from_truth(
        ab, num_points=5, generator=torch.Generator().manual_seed(0)
    )
    auto = sig.predict(L)
    hinted = sig.predict(L, hints=(hint_ab, mask))
    assert (hinted - auto).abs().max() > 1e-3
    # hints drawn at another resolution are resized (nearest) to L's
    big = (
        F.interpolate(hint_ab, scale_factor=2, mode="nearest"),
        F.interpolate(mask, scale_factor=2, mode="nearest"),
    )
    torch.testing.assert_close(sig.predict(L, hints=big), hinted)
    # one set of hints for the whole batch
    shared = sig.predict(L, hints=(hint_ab[:1], mask[:1]))
    torch.testing.assert_close(shared[:1], hinted[:1])
    for bad in ((hint_ab,), (mask, mask), (hint_ab, mask[:, :, 0]), "hints"):
        with pytest.raises(InvalidCondition, match="hint"):
            sig.predict(L, hints=bad)
    with pytest.raises(InvalidCondition, match="batch"):
        sig.predict(L, hints=(hint_ab.repeat(2, 1, 1, 1)[:3], mask.repeat(2, 1, 1, 1)[:3]))


def test_siggraph17_global_hints_are_checked():
    sig = model("siggraph17")
    L, ab = photo(1, 32, 32, seed=5)
    histogram = ab_histogram(ab)
    with_hist = sig.predict(L, global_hints={"histogram": histogram})
    # counts are normalised: any positive scale of a histogram means the same colours
    scaled = sig.predict(L, global_hints={"histogram": histogram[0] * 7})
    torch.testing.assert_close(scaled, with_hist)
    for bad, words in (
        ({"palette": histogram}, "unknown global hints"),
        ({"histogram": histogram[:, :100]}, "histogram"),
        ({"histogram": -histogram}, "histogram"),
        ({"saturation": 3.0}, "saturation"),
        ([histogram], "dict"),
    ):
        with pytest.raises(InvalidCondition, match=words):
            sig.predict(L, global_hints=bad)


def ambiguous_image(size: int = 24) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One gray image and two opposite colourings of it: L alone cannot tell which is meant."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    disc = (((xx - 0.6) ** 2 + (yy - 0.4) ** 2) < 0.06).float()
    L = (30 + 40 * yy + 25 * disc).view(1, 1, size, size)
    ab = torch.stack((torch.where(xx < 0.5, 45.0, -30.0), torch.where(yy < 0.5, 40.0, -35.0)))
    return L, (ab.unsqueeze(0), -ab.unsqueeze(0))


def settle_batch_norm(net, run, passes: int = 10) -> None:
    """Re-estimate batch-norm running statistics for the final weights of a short fit."""
    net.train()
    with torch.no_grad():
        for _ in range(passes):
            run()


def test_hints_resolve_what_l_cannot():
    """With the truth's colours as hints, siggraph17 lands closer to the truth than without.

    One image, fitted briefly (its own training loss, simulated hints) to two opposite
    colourings: from L alone the colours are ambiguous, so without hints the model must be
    wrong for at least one of them; point hints taken from the truth tell it which is meant.
    """
    L, truths = ambiguous_image()
    batch = {"L": L.repeat(2, 1, 1, 1), "ab": torch.cat(truths)}
    sig = model("siggraph17")
    sig.propagate_hints = False  # the network itself must use them (propagation tested apart)
    optimiser = torch.optim.Adam(sig.parameters(), lr=2e-3)  # 3e-3 diverges for some seeds
    for _ in range(40):
        optimiser.zero_grad()
        loss = sig.training_loss(batch)
        loss.backward()
        optimiser.step()
    settle_batch_norm(sig, lambda: sig.training_loss(batch))

    gen = torch.Generator().manual_seed(1)
    without, with_hints = [], []
    for truth in truths:
        auto_error = (sig.predict(L) - truth).abs().mean()
        for _ in range(3):
            hints = sample_hints_from_truth(truth, num_points=10, generator=gen)
            with_hints.append((sig.predict(L, hints=hints) - truth).abs().mean())
            without.append(auto_error)
    assert torch.stack(with_hints).mean() < 0.8 * torch.stack(without).mean()


def test_siggraph17_spreads_what_the_network_leaves_at_the_hints():
    """Untrained, the network ignores hints; propagation still brings the hinted colours in."""
    sig = model("siggraph17")
    L, ab = photo(1, 40, 48, seed=6)
    hint_ab, mask = sample_hints_from_truth(
        ab, num_points=10, generator=torch.Generator().manual_seed(3)
    )
    sig.propagate_hints = False
    network = sig.predict(L, hints=(hint_ab, mask))
    automatic = sig.predict(L)
    sig.propagate_hints = True
    spread = sig.predict(L, hints=(hint_ab, mask))
    at_hints = mask.bool().expand_as(ab)
    assert (spread - hint_ab)[at_hints].abs().mean() < 0.5 * (network - hint_ab)[
        at_hints
    ].abs().mean()
    assert (spread - ab).abs().mean() < (network - ab).abs().mean()
    torch.testing.assert_close(sig.predict(L), automatic)  # without hints nothing changes


def test_siggraph17_can_train_through_the_spreading():
    """``propagation_in_loss``: the loss sees the spread output, and gradients still reach the
    network (away from the hints the spreading leaves the network's colours in charge)."""
    L, ab = photo(2, 32, 32, seed=7)
    batch = {"L": L, "ab": ab}
    plain, through = model("siggraph17"), model("siggraph17", propagation_in_loss=True)
    torch.manual_seed(5)
    loss_plain = plain.training_loss(batch)
    torch.manual_seed(5)  # the same simulated hints
    loss_through = through.training_loss(batch)
    assert not torch.isclose(loss_plain, loss_through)
    loss_through.backward()
    assert all(p.grad is not None for p in through.head.parameters())
    assert float(through.head.weight.grad.abs().sum()) > 0


def test_global_histogram_hint_resolves_what_l_cannot():
    """The compact variant's global branch carries colour information to the output."""
    L, truths = ambiguous_image()
    L2, ab2 = L.repeat(2, 1, 1, 1), torch.cat(truths)
    global_hints = {"histogram": ab_histogram(ab2)}
    sig = model("siggraph17")
    optimiser = torch.optim.Adam(sig.parameters(), lr=3e-3)
    for _ in range(20):
        optimiser.zero_grad()
        (sig(L2, global_hints=global_hints) - ab2).abs().mean().backward()
        optimiser.step()
    settle_batch_norm(sig, lambda: sig(L2, global_hints=global_hints), passes=5)

    without = torch.stack([(sig.predict(L) - t).abs().mean() for t in truths])
    with_histogram = torch.stack(
        [
            (sig.predict(L, global_hints={"histogram": ab_histogram(t)}) - t).abs().mean()
            for t in truths
        ]
    )
    assert with_histogram.mean() < 0.85 * without.mean()


# --- both: training, sizes, determinism, saving ------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_optimiser_steps_lower_the_training_loss(name):
    net = model(name)
    L, ab = photo(2, 32, 32, seed=6)
    batch = {"L": L, "ab": ab}

    def loss() -> torch.Tensor:
        torch.manual_seed(7)  # the same simulated hints every time
        return net.training_loss(batch)

    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    before = loss().item()
    for _ in range(6):
        optimiser.zero_grad()
        step_loss = loss()
        step_loss.backward()
        optimiser.step()
    assert math.isfinite(before)
    assert loss().item() < 0.9 * before


@pytest.mark.parametrize("name", NAMES)
def test_odd_sizes_batches_and_determinism(name):
    net = model(name)
    L, ab = photo(2, 97, 131, seed=8)
    conditions = {}
    if name == "siggraph17":
        conditions["hints"] = sample_hints_from_truth(
            ab, num_points=4, generator=torch.Generator().manual_seed(0)
        )
    out = net.predict(L, **conditions)
    assert out.shape == (2, 2, 97, 131) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() <= 110
    assert out.std() > 0  # not a constant
    assert torch.equal(out, net.predict(L, **conditions))  # deterministic
    # images in a batch are coloured independently of each other
    alone = net.predict(L[1:], **{k: tuple(t[1:] for t in v) for k, v in conditions.items()})
    torch.testing.assert_close(out[1:], alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("eccv16", {}),
        (
            "eccv16",
            {"widths": [8, 8, 16, 16, 16, 16, 16, 16], "working_size": 64, "temperature": 0.5},
        ),
        ("siggraph17", {}),
        ("siggraph17", {"widths": [8] * 10, "mask_center": 0.0, "global_branch": False}),
    ],
)
def test_save_pretrained_round_trip_is_bit_exact(name, kwargs, tmp_path):
    net = model(name, **kwargs)
    L, ab = photo(2, 32, 32, seed=9)
    with torch.no_grad():  # move the batch-norm statistics off their initial values
        net.train()
        net.training_loss({"L": L, "ab": ab})
    net.save_pretrained(tmp_path / "saved")
    loaded = create_colorizer(name, weights=str(tmp_path / "saved"))
    assert type(loaded) is type(net)
    for attribute in (
        "variant",
        "widths",
        "working_size",
        "temperature",
        "mask_center",
        "has_global_branch",
    ):
        assert getattr(loaded, attribute, None) == getattr(net, attribute, None)
    original, restored = net.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    assert torch.equal(net.predict(L), loaded.predict(L))


# --- through the pipeline ---------------------------------------------------------------------


def test_pipeline_passes_hints_and_temperature():
    rng = np.random.default_rng(0)
    L, ab = photo(1, 45, 61, seed=10)
    image = (lab_to_rgb(torch.cat((L, ab), dim=1))[0].permute(1, 2, 0).numpy() * 255).astype(
        np.uint8
    )
    image = np.clip(image.astype(int) + rng.integers(-2, 3, image.shape), 0, 255).astype(np.uint8)

    sig = model("siggraph17", working_size=32)
    pipe = ColorizationPipeline(sig, device="cpu")
    auto = pipe(image)
    hinted = pipe(image, hints=[(0.5, 0.5, 60.0, -40.0, 9)])
    assert hinted.rgb.shape == auto.rgb.shape == (45, 61, 3)
    assert not np.array_equal(hinted.ab, auto.ab)

    pipe = ColorizationPipeline(model("eccv16", working_size=32), device="cpu")
    vivid, mean = pipe(image, temperature=0.2), pipe(image, temperature=1.0)
    assert vivid.rgb.shape == (45, 61, 3)
    assert not np.array_equal(vivid.ab, mean.ab)
