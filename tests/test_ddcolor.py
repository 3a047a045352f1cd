"""DDColor: exact reproduction of the original under the formula weights of the data folder's
``ddcolor/README.md``, the checkpoint formats, and a full-resolution CLI run from a folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage.color import rgb2lab
from tiny_models import TINY_KWARGS

from deepcolor import create_colorizer
from deepcolor.cli import main
from deepcolor.errors import InvalidCondition, ModelUnavailable
from deepcolor.models.ddcolor import (
    DDColorColorizer,
    DDColorTinyColorizer,
    colorfulness,
)

VARIANTS = {"tiny": DDColorTinyColorizer, "large": DDColorColorizer}
#: the largest output error allowed, relative to the reference output's standard deviation
TOLERANCE = 1e-9
#: a model small enough to save and load in every format within a fraction of a second
SMALL = {**TINY_KWARGS["ddcolor-tiny"], "input_size": 64}


# --- the formula weights and the test input, as the data folder's README defines them ---------


def formula_state_dict(layout: dict[str, list[int]], batchnorm: dict[str, np.ndarray]) -> dict:
    """Every tensor of ``layout`` (in its order) from its index and shape alone, float64."""
    state: dict[str, torch.Tensor] = {}
    for i, (key, shape) in enumerate(layout.items()):
        n = math.prod(shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.long)
            continue
        s = torch.sin(torch.arange(n, dtype=torch.float64) * 0.618 + i).reshape(shape)
        if key.endswith("running_var"):
            value = 1.0 + 0.5 * s**2
        elif len(shape) == 1 and key.endswith(("weight", "gamma")):
            value = 1.0 + 0.1 * s
        elif key.endswith("running_mean") or len(shape) <= 1:
            value = 0.02 * s
        elif key.endswith("weight_v"):
            value = s / s.norm()
        else:
            value = s * math.sqrt(2.0 / max(1, n // shape[0]))
        state[key] = value
    for key in state:
        if key.endswith("weight_u"):
            weight = state[key[: -len("u")] + "orig"]
            wv = weight.reshape(weight.shape[0], -1) @ state[key[: -len("u")] + "v"]
            state[key] = wv / wv.norm()
    state.update({k: torch.from_numpy(v) for k, v in batchnorm.items()})
    return state


def gray_input(size: int) -> torch.Tensor:
    y, x = torch.meshgrid(
        torch.linspace(0, 1, size, dtype=torch.float64),
        torch.linspace(0, 1, size, dtype=torch.float64),
        indexing="ij",
    )
    gray = 0.5 + 0.3 * torch.sin(6.0 * x + 2.0 * y) * torch.cos(4.0 * y - x)
    return gray.clamp(0, 1).expand(1, 3, size, size).contiguous()


@pytest.fixture(scope="module")
def data(shared_data) -> Path:
    folder = shared_data / "ddcolor"
    if not (folder / "reference.json").is_file():
        pytest.skip(f"{folder} holds no DDColor reference")
    return folder


def formula_weights(data: Path, variant: str) -> dict[str, torch.Tensor]:
    layout = json.loads((data / f"{variant}_state_dict.json").read_text())
    with np.load(data / f"{variant}_batchnorm.npz") as batchnorm:
        return formula_state_dict(layout, dict(batchnorm))


@pytest.fixture(scope="module")
def tiny_weights(data) -> dict[str, torch.Tensor]:
    """DDColor-T's formula weights (several tests read them; none changes them in place)."""
    return formula_weights(data, "tiny")


# --- exact reproduction -------------------------------------------------------------------------


def _stage_modules(model: DDColorColorizer) -> dict[str, torch.nn.Module]:
    stages = {f"encoder.norm{i}": getattr(model.encoder.arch, f"norm{i}") for i in range(4)}
    stages.update({f"decoder.layers.{i}": model.decoder.layers[i] for i in range(3)})
    stages["decoder.last_shuf"] = model.decoder.last_shuf
    stages["decoder.color_decoder"] = model.decoder.color_decoder
    return stages


@pytest.mark.slow  # 55 M and 228 M float64 weights from their formula, two sizes each
@pytest.mark.parametrize("variant", ["tiny", "large"])
def test_float64_output_and_stages_match_the_original(variant, data, request):
    reference = json.loads((data / "reference.json").read_text())[variant]
    layout = json.loads((data / f"{variant}_state_dict.json").read_text())
    weights = (
        request.getfixturevalue("tiny_weights")
        if variant == "tiny"
        else formula_weights(data, variant)
    )
    # from_state_dict checks the layout key for key and loads with strict=True
    model = VARIANTS[variant].from_state_dict(weights, dtype=torch.float64)
    model.eval()
    state = model.state_dict()
    assert list(state) == list(layout)  # same keys in the same order: no renaming
    assert all(list(state[k].shape) == shape for k, shape in layout.items())
    assert all(v.dtype == torch.float64 for v in state.values() if v.is_floating_point())
    assert model.num_parameters() == reference["parameters"]
    assert len(state) == reference["tensors"]

    captured: dict[str, torch.Tensor] = {}
    for name, module in _stage_modules(model).items():
        module.register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    for size in (64, 128):
        with torch.inference_mode():
            ab = model.colorize_rgb(gray_input(size)).numpy()
        expected = np.load(data / f"{variant}_ab_{size}.npy")
        assert ab.shape == expected.shape == (1, 2, size, size)
        relative = np.abs(ab - expected).max() / expected.std()
        assert relative <= TOLERANCE, f"{variant} at {size}: max error / std = {relative:.3g}"
        if size == 64:
            stages = {k: v.clone() for k, v in captured.items()}

    for name, stats in reference["references"]["64"]["stages"].items():
        out = stages[name]
        assert list(out.shape) == stats["shape"], name
        # the stage's RMS value: a channel that is nearly constant over a 2x2 map (ConvNeXt-L's
        # last stage) has a spread 3e4 times below its values and their float64 rounding
        means, stds = np.asarray(stats["channel_mean"]), np.asarray(stats["channel_std"])
        scale = float(np.sqrt(np.mean(means**2 + stds**2)))
        for what, got in (("mean", out.mean((0, 2, 3))), ("std", out.std((0, 2, 3)))):
            want = np.asarray(stats[f"channel_{what}"])
            error = np.abs(got.numpy() - want).max() / scale
            assert error <= TOLERANCE, f"{variant} {name} channel {what}: error {error:.3g}"


def test_a_perturbed_weight_is_detected(data, tiny_weights):
    """The tolerance separates a faithful port from a slightly wrong one (here: one level
    embedding off by 0.1 %)."""
    key = "decoder.color_decoder.level_embed.weight"
    state = {**tiny_weights, key: tiny_weights[key] * 1.001}
    model = DDColorTinyColorizer.from_state_dict(state, dtype=torch.float64).eval()
    with torch.inference_mode():
        ab = model.colorize_rgb(gray_input(64)).numpy()
    expected = np.load(data / "tiny_ab_64.npy")
    assert np.abs(ab - expected).max() / expected.std() > 100 * TOLERANCE


def test_the_other_size_s_layout_is_refused_by_name(data, tiny_weights):
    with pytest.raises(ModelUnavailable, match=r"wrong shape: encoder\.arch\.downsample"):
        DDColorColorizer.from_state_dict(tiny_weights, **SMALL)
    large_layout = json.loads((data / "large_state_dict.json").read_text())
    # only keys and shapes matter: meta tensors stand in for ConvNeXt-L's 228 M parameters
    large = {k: torch.empty(shape, device="meta") for k, shape in large_layout.items()}
    with pytest.raises(ModelUnavailable, match=r"unexpected: encoder\.arch\.stages\.2\.9\."):
        DDColorTinyColorizer.from_state_dict(large)  # ConvNeXt-L has 27 blocks in stage 3


# --- checkpoint formats ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model() -> DDColorColorizer:
    torch.manual_seed(0)
    return DDColorColorizer(**SMALL).eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("fmt", ["safetensors", "bin", "pt-raw", "pt-params", "pt-file"])
def test_every_published_format_loads(fmt, small_model, tmp_path):
    """The Hub folders (``config.json`` with the original's arguments, nested or not) and
    the single ``pytorch_model.pt`` (a state dict or ``{"params": ...}``)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    state = small_model.state_dict()
    # as the original's training code may write it (encoder_from_pretrain: a training switch)
    config = dict(SMALL, encoder_name="convnext-t", encoder_from_pretrain=True)
    if fmt == "safetensors":
        (folder / "config.json").write_text(json.dumps(config))
        save_file(state, str(folder / "model.safetensors"))
    elif fmt == "bin":
        (folder / "config.json").write_text(json.dumps({"config": config}))
        torch.save(state, folder / "pytorch_model.bin")
    else:
        checkpoint = {"params": state} if fmt == "pt-params" else state
        torch.save(checkpoint, folder / "pytorch_model.pt")
    source = folder / "pytorch_model.pt" if fmt == "pt-file" else folder
    kwargs = {} if fmt in ("safetensors", "bin") else SMALL  # a bare .pt carries no config
    loaded = DDColorTinyColorizer.from_pretrained(source, **kwargs)
    assert loaded.encoder_name == "convnext-t"
    assert _same_weights(loaded, small_model)
    via_registry = create_colorizer("ddcolor-tiny", weights=str(folder), **kwargs)
    assert _same_weights(via_registry, small_model)


def test_bad_checkpoints_give_clear_errors(small_model, tmp_path):
    state = small_model.state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if "level_embed" not in k}, "missing: decoder"),
        "extra": ({**state, "head.weight": torch.zeros(2)}, "unexpected: head.weight"),
        "shape": (
            {**state, "refine_net.0.0.bias": torch.zeros(3)},
            r"wrong shape: refine_net\.0\.0\.bias \(3,\) \(expected \(2,\)\)",
        ),
    }
    # the input statistics are constants: a file without them still loads, with their values
    no_statistics = {k: v for k, v in state.items() if k not in ("mean", "std")}
    loaded = DDColorColorizer.from_state_dict(no_statistics, **SMALL)
    assert torch.equal(loaded.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    for name, (bad, message) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        torch.save(bad, folder / "pytorch_model.pt")
        with pytest.raises(ModelUnavailable, match=message):
            DDColorColorizer.from_pretrained(folder, **SMALL)
    (tmp_path / "torn.pt").write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(ModelUnavailable, match="cannot read"):
        DDColorColorizer.from_pretrained(tmp_path / "torn.pt", **SMALL)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match="holds none of model.safetensors"):
        DDColorColorizer.from_pretrained(empty)
    (empty / "config.json").write_text(json.dumps({"encoder_name": "convnext-t", "blocks": 3}))
    torch.save(state, empty / "pytorch_model.pt")
    with pytest.raises(ModelUnavailable, match="does not know: blocks"):
        DDColorColorizer.from_pretrained(empty)


def test_only_the_published_configuration_is_built():
    with pytest.raises(InvalidCondition, match="do_normalize=True"):
        DDColorColorizer(**SMALL, do_normalize=True)
    with pytest.raises(InvalidCondition, match="unknown encoder_name 'convnext-b'"):
        DDColorColorizer(**{**SMALL, "encoder_name": "convnext-b"})
    with pytest.raises(InvalidCondition, match="multiple of 32"):
        DDColorColorizer(**{**SMALL, "input_size": 100})


def test_registered_names_and_defaults():
    from deepcolor.registry import colorizer_info

    expected = {
        "ddcolor": ("piddnad/ddcolor_modelscope", "convnext-l"),
        "ddcolor-artistic": ("piddnad/ddcolor_artistic", "convnext-l"),
        "ddcolor-paper": ("piddnad/ddcolor_paper", "convnext-l"),
        "ddcolor-tiny": ("piddnad/ddcolor_paper_tiny", "convnext-t"),
    }
    for name, (hub_id, encoder) in expected.items():
        info = colorizer_info(name)
        assert info.default_weights == hub_id and info.trainable
        assert info.factory.name == name and info.factory.default_encoder == encoder
        assert create_colorizer(name, weights=None, **SMALL).working_size == 64
    assert (
        DDColorColorizer(**{k: v for k, v in SMALL.items() if k != "input_size"}).working_size
        == 512
    )


def test_a_saved_folder_names_its_encoder(tmp_path):
    tiny = create_colorizer("ddcolor-tiny", weights=None, **SMALL)
    tiny.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["encoder_name"] == "convnext-t" and config["input_size"] == 64
    loaded = create_colorizer("ddcolor", weights=str(tmp_path / "saved"))  # a ConvNeXt-L name
    assert loaded.encoder_name == "convnext-t" and _same_weights(loaded, tiny)


# --- inference and training -------------------------------------------------------------------


def test_predict_pads_any_size_and_the_loss_trains(small_model):
    L = torch.rand(2, 1, 45, 70, generator=torch.Generator().manual_seed(0)) * 100
    ab = small_model.predict(L)
    assert ab.shape == (2, 2, 45, 70) and torch.isfinite(ab).all()

    torch.manual_seed(0)
    model = DDColorColorizer(**SMALL).train()
    lab = torch.cat([L, torch.full_like(L, 20.0), torch.full_like(L, -30.0)], dim=1)
    batch = {"L": lab[:, :1], "ab": lab[:, 1:]}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = model.training_loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "refine_net.0.0.weight_orig" in changed and "encoder.arch.stages.0.0.gamma" in changed


def test_colorfulness_term_rewards_colour():
    gray = torch.full((1, 3, 8, 8), 0.5)
    vivid = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert colorfulness(gray).item() == 0.0 and colorfulness(vivid).item() > 0.2


# --- a full-resolution run from a saved folder --------------------------------------------------


@pytest.mark.slow
def test_cli_colorizes_at_full_resolution_from_a_folder_keeping_l(tiny_weights, tmp_path):
    model = DDColorTinyColorizer.from_state_dict(tiny_weights)  # cast to float32
    folder = tmp_path / "ddcolor-tiny"
    model.save_pretrained(folder)
    height, width = 300, 437  # not the working size, not square
    y, x = np.mgrid[0:height, 0:width]
    # pixel-level noise: L resampled through the 512 x 512 working size could not keep it
    noise = np.random.default_rng(0).integers(-40, 41, size=(height, width))
    gray = np.clip(127 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0) + noise, 20, 235)
    gray = gray.astype(np.uint8)
    photo = tmp_path / "photo.png"
    Image.fromarray(gray).save(photo)

    out = tmp_path / "out"
    code = main(
        ["colorize", str(photo), "-o", str(out), "--model", "ddcolor-tiny"]
        + ["--weights", str(folder), "--device", "cpu"]
    )
    assert code == 0
    result = np.asarray(Image.open(out / "photo.png").convert("RGB"))
    assert result.shape == (height, width, 3)
    L_in = rgb2lab(np.repeat(gray[..., None], 3, axis=2) / 255.0)[..., 0]
    # the photo's own L, to 8-bit rounding (a resampled L would be off by tens on this noise)
    assert np.abs(rgb2lab(result / 255.0)[..., 0] - L_in).max() < 0.5
    assert np.ptp(result.astype(int), axis=2).max() > 0  # it is coloured
