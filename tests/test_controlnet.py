"""The ``controlnet`` model end to end on a tiny Stable Diffusion + ControlNet built locally."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_diffusion import build_tiny_pipeline, tiny_colorizer_kwargs

from deepcolor.color import rgb_to_lab
from deepcolor.errors import InvalidCondition, ModelUnavailable
from deepcolor.factory import create_colorizer
from deepcolor.models.controlnet import (
    CONTROLNET_MODEL_ENV,
    DEFAULT_CONTROLNET_MODEL,
    DEFAULT_SD_MODEL,
    SD_MODEL_ENV,
    ControlNetColorizer,
)
from deepcolor.registry import colorizer_info


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny convolutions: extra threads only add synchronisation (slower on a busy 2-core box).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tiny_sd):
    return ControlNetColorizer(**tiny_colorizer_kwargs(tiny_sd)).load()


def test_registry_entry_is_cheap_and_documents_defaults(monkeypatch):
    monkeypatch.delenv(SD_MODEL_ENV, raising=False)
    monkeypatch.delenv(CONTROLNET_MODEL_ENV, raising=False)
    info = colorizer_info("controlnet")
    assert info.needs == ("prompt",)
    assert set(info.accepts) == {"negative_prompt", "steps", "guidance", "seed"}
    default = create_colorizer("controlnet")  # the shipped pointer config: nothing loads
    assert isinstance(default, ControlNetColorizer) and not default.loaded
    assert default.working_size == 512 and default.size_multiple == 8
    assert default.resolved_sources() == (DEFAULT_SD_MODEL, DEFAULT_CONTROLNET_MODEL)
    monkeypatch.setenv(SD_MODEL_ENV, "/models/sd")
    monkeypatch.setenv(CONTROLNET_MODEL_ENV, "/models/cn")
    assert default.resolved_sources() == ("/models/sd", "/models/cn")
    assert not default.loaded


def test_offline_without_weights_says_what_to_download(monkeypatch, tmp_path, tiny_sd):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    missing = "deepcolor-tests/no-such-controlnet"
    model = ControlNetColorizer(base_model=str(tiny_sd), controlnet_model=missing)
    with pytest.raises(ModelUnavailable) as caught:
        model.predict(torch.full((1, 1, 16, 16), 50.0), prompt="a photo")
    message = str(caught.value)
    assert f"hf download {missing}" in message and CONTROLNET_MODEL_ENV in message
    assert message.endswith("or unset HF_HUB_OFFLINE.")  # it is set, so unsetting it may help
    missing_base = "deepcolor-tests/no-such-sd"
    model = ControlNetColorizer(
        base_model=missing_base, controlnet_model=str(tiny_sd / "controlnet")
    )
    with pytest.raises(ModelUnavailable, match=SD_MODEL_ENV) as caught:
        model.load()
    assert f"hf download {missing_base}" in str(caught.value)
    monkeypatch.setenv(SD_MODEL_ENV, str(tmp_path / "not-here"))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        ControlNetColorizer(controlnet_model=str(tiny_sd / "controlnet")).load()


def test_predict_odd_size_batch_is_finite_and_seeded(model):
    L = torch.linspace(0, 100, 97 * 131).reshape(1, 1, 97, 131).repeat(2, 1, 1, 1)
    L[1] = 100 - L[1]
    ab = model.predict(L, prompt=["a red car", "a green field"], steps=2, seed=3)
    assert ab.shape == (2, 2, 97, 131)
    assert torch.isfinite(ab).all() and ab.abs().max() <= 128
    again = model.predict(L, prompt=["a red car", "a green field"], steps=2, seed=3)
    assert torch.equal(ab, again)
    other = model.predict(L, prompt=["a red car", "a green field"], steps=2, seed=4)
    assert not torch.equal(ab, other)


def test_prompt_is_required(model):
    with pytest.raises(InvalidCondition, match="prompt"):
        model.predict(torch.full((1, 1, 16, 16), 50.0))
    with pytest.raises(InvalidCondition, match="2 prompts"):
        model.predict(torch.full((1, 1, 16, 16), 50.0), prompt=["a", "b"])


def test_pipeline_keeps_the_photos_own_lightness(model):
    from deepcolor.pipeline import ColorizationPipeline

    rng = np.random.default_rng(0)
    gray = rng.integers(30, 220, size=(97, 131), dtype=np.uint8)
    result = ColorizationPipeline(model, device="cpu")(
        Image.fromarray(gray), prompt="a photo", steps=2
    )
    assert result.rgb.shape == (97, 131, 3) and result.rgb.dtype == np.uint8
    L_in = rgb_to_lab(torch.from_numpy(np.repeat(gray[..., None], 3, -1) / 255.0).permute(2, 0, 1))
    L_out = rgb_to_lab(torch.from_numpy(result.rgb / 255.0).permute(2, 0, 1))
    # Same luminance up to uint8 rounding and out-of-gamut clipping.
    assert (L_out[0] - L_in[0]).abs().mean() < 1.5


def test_save_pretrained_round_trip_is_bit_exact(model, tmp_path):
    with torch.no_grad():  # make the weights differ from the tiny folder's own ControlNet
        for parameter in model.controlnet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["base_model"] == model.base_model and config["steps"] == model.steps
    assert (tmp_path / "saved" / "controlnet" / "config.json").is_file()
    loaded = create_colorizer("controlnet", weights=str(tmp_path / "saved"))
    assert not loaded.loaded and loaded.working_size == model.working_size
    before, after = model.state_dict(), loaded.state_dict()  # state_dict() loads
    assert loaded.loaded
    assert before.keys() == after.keys() and len(before) > 0
    assert all(torch.equal(before[k], after[k]) for k in before)
    # A second save of a model that was never loaded keeps its fine-tuned ControlNet.
    fresh = create_colorizer("controlnet", weights=str(tmp_path / "saved"))
    fresh.save_pretrained(tmp_path / "again")
    again = create_colorizer("controlnet", weights=str(tmp_path / "again")).state_dict()
    assert all(torch.equal(before[k], again[k]) for k in before)


def test_training_loss_falls_and_only_the_controlnet_learns(tiny_sd):
    model = ControlNetColorizer(**tiny_colorizer_kwargs(tiny_sd)).load()
    unet_before = {k: v.clone() for k, v in model.pipe.unet.state_dict().items()}
    torch.manual_seed(0)
    L = torch.rand(2, 1, 32, 32) * 100
    ab = torch.randn(2, 2, 32, 32) * 30
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    batch = {"L": L, "ab": ab, "caption": ["a red car", ""], "noise": noise}
    batch["timesteps"] = torch.tensor([250, 750])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        batch["generator"] = torch.Generator().manual_seed(2)  # same VAE sample every step
        loss = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.97, losses
    unet_after = model.pipe.unet.state_dict()
    assert all(torch.equal(unet_before[k], unet_after[k]) for k in unet_before)


def test_offline_advice_only_when_offline_mode_is_on(monkeypatch):
    import huggingface_hub

    from deepcolor.weights import offline_advice

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline_advice() == ", or unset HF_HUB_OFFLINE"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    assert offline_advice() == ""  # online and still failing: unsetting it would not help
