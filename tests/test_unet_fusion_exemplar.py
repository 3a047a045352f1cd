"""The feed-forward regression models: unet / densenet / mobilenet, fusion, exemplar."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from deepcolor import create_colorizer
from deepcolor.color import lab_to_rgb, rgb_to_lab
from deepcolor.errors import InvalidCondition, ModelUnavailable
from deepcolor.models.exemplar import self_reference


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On a busy 2-core machine two OpenMP threads per process spin against each other (a training
    # step of these tiny models measured 3 s with 2 threads, 0.1 s with 1); restore afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = "test_efficientnet"  # timm's 82k-parameter test network: fast, random init
# name -> kwargs of a tiny variant (the registered defaults are tested separately)
CONFIGS = {
    "unet": dict(encoder=TINY, pretrained_encoder=False, decoder_max_width=32),
    "densenet": dict(encoder=TINY, pretrained_encoder=False, decoder_max_width=32, loss="l1"),
    "mobilenet": dict(encoder=TINY, pretrained_encoder=False, decoder_max_width=32, loss="huber"),
    "fusion": dict(width=8, pretrained_embedding=False),
    "exemplar": dict(encoder=TINY, pretrained_encoder=False, decoder_max_width=32, match_dim=16),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _tiny(name: str, **extra):
    torch.manual_seed(0)
    return create_colorizer(name, weights=None, **{**CONFIGS[name], **extra})


def _conditions(name: str, batch: int = 1, size=(40, 56)) -> dict:
    if name != "exemplar":
        return {}
    g = torch.Generator().manual_seed(1)
    return {"reference": torch.rand(batch, 3, *size, generator=g)}


def _batch(n: int = 2, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    lab = rgb_to_lab(rgb)
    return {"L": lab[:, :1], "ab": lab[:, 1:]}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_shapes_range_and_determinism(name):
    model = _tiny(name)
    L = torch.rand(2, 1, 97, 131, generator=torch.Generator().manual_seed(0)) * 100
    ab = model.predict(L, **_conditions(name))
    assert ab.shape == (2, 2, 97, 131)
    assert torch.isfinite(ab).all()
    assert ab.abs().max() <= 128
    assert torch.equal(ab, model.predict(L, **_conditions(name)))
    one = model.predict(L[1:], **_conditions(name))  # batch independence in eval mode
    torch.testing.assert_close(one, ab[1:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_and_load_bit_exact(name, tmp_path):
    model = _tiny(name)
    model.save_pretrained(tmp_path)
    loaded = create_colorizer(name, weights=str(tmp_path))
    assert type(loaded) is type(model)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    L = torch.rand(1, 1, 64, 96) * 100
    assert torch.equal(
        model.predict(L, **_conditions(name)), loaded.predict(L, **_conditions(name))
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_few_steps_lower_the_loss(name):
    model = _tiny(name).train()
    batch = _batch()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    if name == "exemplar":
        batch["reference"] = lab_to_rgb(torch.cat((batch["L"], batch["ab"]), 1))
    torch.manual_seed(0)
    first = model.training_loss(batch)
    for _ in range(8):
        opt.zero_grad()
        loss = model.training_loss(batch)
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = model.training_loss(batch)
    assert last < 0.9 * first.detach()


def test_registered_defaults():
    unet = create_colorizer("unet", weights=None)
    assert unet.encoder_name == "efficientnet_lite0"
    assert unet.working_size == 128 and unet.size_multiple == 32
    # the encoder really is the package's ImageNet network (stem = summed RGB stem)
    from deepcolor.convert.efficientnet_lite0 import package_state_dict

    stem = package_state_dict()["_conv_stem.weight"].sum(1, keepdim=True)
    assert torch.equal(unet.encoder.conv_stem.weight, stem)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mobile = create_colorizer("mobilenet", weights=None, decoder_max_width=32)
    assert mobile.encoder_name == "mobilenetv3_large_100"
    assert any("random weights" in str(w.message) for w in caught)
    dense = create_colorizer(
        "densenet", weights=None, pretrained_encoder=False, decoder_max_width=32
    )
    assert dense.encoder_name == "densenet121"
    assert dense.encoder.feature_info.channels()[-1] == 1024
    ex = create_colorizer("exemplar", weights=None)
    assert ex.needs == ("reference",)
    fusion = create_colorizer("fusion", weights=None, width=8)
    assert fusion.embedding_name == "efficientnet_lite0" and fusion.working_size == 224


def test_loss_choice_and_unknown_encoder():
    batch = _batch()
    losses = {k: _tiny("unet", loss=k).training_loss(batch).item() for k in ("mse", "l1", "huber")}
    assert len(set(losses.values())) == 3
    with pytest.raises(ValueError, match="unknown loss"):
        _tiny("unet", loss="hinge")
    with pytest.raises(ModelUnavailable, match="no-such-net"):
        _tiny("unet", encoder="no-such-net")


def test_classification_head_decodes_bins_with_the_annealed_mean(tmp_path):
    from deepcolor.color import NUM_AB_BINS, ab_bin_centers, annealed_mean

    model = _tiny("unet", loss="classification", temperature=0.5, working_size=None).eval()
    L = _batch()["L"]
    with torch.no_grad():
        logits = model._head_output(L)
    assert logits.shape == (2, NUM_AB_BINS, 64, 64)
    torch.testing.assert_close(model.predict(L), annealed_mean(logits, 0.5))
    # the colours lie inside the bins' gamut, whatever the logits
    centers = ab_bin_centers()
    ab = model.predict(L)
    assert (ab[:, 0].min() >= centers[:, 0].min()) and (ab[:, 1].max() <= centers[:, 1].max())
    # temperature and loss travel with the saved config
    model.save_pretrained(tmp_path)
    loaded = create_colorizer("unet", weights=str(tmp_path))
    assert (loaded.loss, loaded.temperature) == ("classification", 0.5)
    torch.testing.assert_close(loaded.predict(L), model.predict(L))
    for bad in (0, -1):
        with pytest.raises(InvalidCondition, match="temperature"):
            _tiny("unet", loss="classification", temperature=bad)
    with pytest.raises(ValueError, match="rebalance"):
        _tiny("unet", loss="classification", rebalance=2)


def test_classification_loss_learns_a_colour():
    # one flat red image: training must move the decoded colour from gray to red
    rgb = torch.zeros(2, 3, 64, 64)
    rgb[:, 0] = 0.8
    lab = rgb_to_lab(rgb)
    batch = {"L": lab[:, :1], "ab": lab[:, 1:]}
    model = _tiny(
        "unet", loss="classification", semantic_weight=0.1, semantic_size=32, working_size=None
    ).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = model.eval().predict(batch["L"])[:, 0].mean()
    model.train()
    first = model.training_loss(batch).item()
    for _ in range(15):
        opt.zero_grad()
        model.training_loss(batch).backward()
        opt.step()
    assert model.training_loss(batch).item() < 0.5 * first
    after = model.eval().predict(batch["L"])[:, 0].mean()
    target = lab[:, 1].mean()  # a* of the red, about 68
    assert abs(after - target) < 0.5 * abs(before - target)


def test_chroma_gain_scales_colours_at_inference_only(tmp_path):
    model = _tiny("unet")
    L = _batch()["L"]
    plain = model.predict(L)
    torch.testing.assert_close(model.predict(L, chroma_gain=2.5), plain * 2.5)
    assert model.predict(L, chroma_gain=0).abs().max() == 0
    # the model's own default travels with its saved config
    vivid = _tiny("unet", chroma_gain=1.5)
    vivid.save_pretrained(tmp_path)
    loaded = create_colorizer("unet", weights=str(tmp_path))
    assert loaded.chroma_gain == 1.5
    torch.testing.assert_close(loaded.predict(L), plain * 1.5)
    # training never sees the gain
    vivid.train()
    torch.testing.assert_close(vivid(L), model.train()(L))
    for bad in (-1, 9, "lots"):
        with pytest.raises(InvalidCondition, match="chroma_gain"):
            model.predict(L, chroma_gain=bad)
    with pytest.raises(InvalidCondition, match="chroma_gain"):
        _tiny("unet", chroma_gain=-0.5)


def test_semantic_weight_adds_the_classifier_term():
    batch = _batch(size=32)
    plain = _tiny("unet").training_loss(batch)
    with_semantic = _tiny("unet", semantic_weight=0.5, semantic_size=32).training_loss(batch)
    assert with_semantic > plain
    with pytest.raises(ValueError, match="semantic_weight"):
        _tiny("unet", semantic_weight=-1)
    # the frozen classifier is not part of what the model saves
    assert not any("classifier" in k for k in _tiny("unet", semantic_weight=0.5).state_dict())


def test_package_parts_need_not_be_stored(tmp_path):
    model = create_colorizer("unet", weights=None, freeze_encoder=True, decoder_max_width=32)
    model.save_package_weights = False
    model.save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert not any(k.startswith("encoder.") for k in stored)
    loaded = create_colorizer("unet", weights=str(tmp_path))
    L = torch.rand(1, 1, 64, 64) * 100
    assert torch.equal(model.predict(L), loaded.predict(L))
    # a trainable part missing from the folder is an error, not a silent random init
    del stored["head.conv.weight"]
    save_file(stored, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelUnavailable, match="head.conv.weight"):
        create_colorizer("unet", weights=str(tmp_path))


def test_fusion_embedding_is_frozen():
    model = _tiny("fusion").train()
    assert not model.embedding.training
    before = {k: v.clone() for k, v in model.embedding.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.training_loss(_batch()).backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.embedding.state_dict().items())
    assert not any(p.requires_grad for p in model.embedding.parameters())


def test_fusion_inception_offline_is_a_clear_error():
    with pytest.raises(ModelUnavailable, match="inception_resnet_v2"):
        create_colorizer("fusion", weights=None, embedding="inception_resnet_v2", width=8)


def test_exemplar_reference_checks():
    model = _tiny("exemplar")
    L = torch.rand(2, 1, 64, 64) * 100
    with pytest.raises(InvalidCondition, match="reference"):
        model.predict(L)
    with pytest.raises(InvalidCondition, match="2 images"):
        model.predict(L, reference=torch.rand(3, 3, 32, 32))
    both = model.predict(L, reference=torch.rand(2, 3, 300, 20))  # any size and shape
    assert both.shape == (2, 2, 64, 64)


def test_exemplar_self_reference_and_training_without_reference():
    batch = _batch(n=3)
    ref = self_reference(batch["L"], batch["ab"], generator=torch.Generator().manual_seed(0))
    assert ref.shape == (3, 3, 64, 64) and 0 <= ref.min() and ref.max() <= 1
    assert not torch.equal(ref, lab_to_rgb(torch.cat((batch["L"], batch["ab"]), 1)))
    loss = _tiny("exemplar").training_loss(batch)  # no "reference" in the batch
    assert torch.isfinite(loss) and loss > 0


def _stripes(n: int, g: torch.Generator, size: int = 64) -> dict[str, torch.Tensor]:
    """Photos whose colours cannot be guessed from L: three stripes of random L and random ab."""
    L = torch.zeros(n, 1, size, size)
    ab = torch.zeros(n, 2, size, size)
    for i in range(n):
        cuts = sorted(torch.randint(12, size - 12, (2,), generator=g).tolist())
        bounds = [0, cuts[0], max(cuts[1], cuts[0] + 8), size]
        for j in range(3):
            L[i, :, :, bounds[j] : bounds[j + 1]] = 30 + 50 * torch.rand(1, generator=g)
            ab[i, :, :, bounds[j] : bounds[j + 1]] = (torch.rand(2, 1, 1, generator=g) - 0.5) * 80
    return {"L": L, "ab": ab}


def test_exemplar_uses_the_reference():
    """After a short training, the ground truth as reference beats a mismatched reference."""
    model = _tiny("exemplar").train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(25):
        batch = _stripes(4, g)
        batch["reference"] = lab_to_rgb(torch.cat((batch["L"], batch["ab"]), 1))
        opt.zero_grad()
        model.training_loss(batch).backward()
        opt.step()
    test = _stripes(2, torch.Generator().manual_seed(99))
    truth = lab_to_rgb(torch.cat((test["L"], test["ab"]), 1))
    with_truth = model.predict(test["L"], reference=truth)
    with_other = model.predict(test["L"], reference=truth.flip(0))  # each gets the other's colours
    err_truth = (with_truth - test["ab"]).abs().mean()
    err_other = (with_other - test["ab"]).abs().mean()
    assert err_truth < 0.6 * err_other
